//! The immutable per-stream view that HTTP serves: swapped whole after each new segment.

use super::llhls::{self, LlSegment, Part};
use super::tracks::{Track, Tracks};
use crate::media::{MediaInfo, Segment, SegmentName};
use bytes::Bytes;
use std::sync::Arc;

/// Everything a reader needs, with playlists already rendered.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The ladder, best first; one entry for a pass-through stream (empty before start).
    pub renditions: Vec<RenditionSnapshot>,
    /// The fMP4 audio track (`a1`), cut from the first rendition's segments.
    pub audio: Option<TrackSnapshot>,
    /// `index.m3u8` text (MPEG-TS); `None` until media info and a segment exist.
    pub master_playlist: Option<Bytes>,
    /// `index.fmp4.m3u8` text; `None` until every listed track has a fragment.
    pub fmp4_master_playlist: Option<Bytes>,
    /// `index.ll.m3u8` text (LL-HLS); `None` until the first rendition's video has parts.
    pub ll_master_playlist: Option<Bytes>,
    /// UTC ms that `tfdt` 0 of every fMP4 track stands for: the DASH `availabilityStartTime`.
    pub epoch_ms: u64,
    /// Configured segment duration, ms.
    pub target_ms: u32,
}

/// One rendition: its MPEG-TS segments and its fMP4 video track.
#[derive(Debug, Clone, Default)]
pub struct RenditionSnapshot {
    pub media: Option<MediaInfo>,
    /// The live window, oldest first.
    pub live: Vec<Arc<Segment>>,
    /// Dropped from the playlist, still in their grace period.
    pub retired: Vec<Arc<Segment>>,
    /// `mono.m3u8` text; `None` until the first segment exists.
    pub media_playlist: Option<Bytes>,
    /// The video track as fMP4.
    pub video: TrackSnapshot,
    /// The video with the stream's audio in the same parts, as LL-HLS (`tracks-vNa1`).
    pub ll_muxed: Option<Arc<LlTrackSnapshot>>,
}

/// One fMP4 track: an init segment and a fragment per live segment.
#[derive(Debug, Clone, Default)]
pub struct TrackSnapshot {
    /// The current init segment; `None` until the first fragment was made.
    pub init: Option<Arc<InitSegment>>,
    /// Fragments of the live window, oldest first.
    pub live: Vec<Arc<FragmentEntry>>,
    /// Fragments of retired segments, still served.
    pub retired: Vec<Arc<FragmentEntry>>,
    /// `index.fmp4.m3u8` text of this track.
    pub playlist: Option<Bytes>,
    /// Peak bits/s of one fragment in the window.
    pub peak_bitrate: u64,
    /// Bits/s over the window.
    pub average_bitrate: u64,
    /// The track as LL-HLS parts; `None` for tracks not published that way.
    pub ll: Option<Arc<LlTrackSnapshot>>,
}

/// One track's LL-HLS view: the parts and segments still served, playlists rendered.
#[derive(Debug, Clone, Default)]
pub struct LlTrackSnapshot {
    /// The stream actor's run (in every part and segment name).
    pub run: u64,
    /// Every segment still served, oldest first; the last may still be being cut.
    pub segments: Vec<Arc<LlSegment>>,
    /// Index in `segments` of the first one the playlist lists.
    pub listed_from: usize,
    /// The number the next part will get (the preload hint).
    pub next_part: u64,
    /// `PART-TARGET`, ms (0 before the playlists are rendered).
    pub part_target_ms: u32,
    /// `index.ll.m3u8` text, whole and as a delta update (`_HLS_skip=YES`).
    pub playlist: Option<Bytes>,
    pub playlist_skip: Option<Bytes>,
}

impl LlTrackSnapshot {
    /// The segments the playlist lists.
    pub fn listed(&self) -> &[Arc<LlSegment>] {
        self.segments.get(self.listed_from..).unwrap_or_default()
    }

    /// (media sequence number, part index) of the newest part listed.
    pub fn last(&self) -> Option<(u64, u32)> {
        llhls::last_part(self.listed())
    }

    /// Part `number`, while served.
    pub fn part(&self, number: u64) -> Option<&Arc<Part>> {
        self.segments
            .iter()
            .rev()
            .flat_map(|s| s.parts.iter().rev())
            .take_while(|p| p.number >= number)
            .find(|p| p.number == number)
    }

    /// Segment `sequence`, once complete (served as its parts in a row).
    pub fn segment(&self, sequence: u64) -> Option<&Arc<LlSegment>> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.sequence == sequence)
            .filter(|s| s.complete())
    }

    /// Init segment `version`, while a served segment decodes with it.
    pub fn init(&self, version: u32) -> Option<&Bytes> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.init.version == version)
            .map(|s| &s.init.data)
    }
}

/// One fMP4 fragment: the same stretch of time as the TS segment of the same sequence.
#[derive(Debug, Clone)]
pub struct FragmentEntry {
    pub sequence: u64,
    pub start_ms: u64,
    pub duration_ms: u32,
    pub discontinuity: bool,
    /// `styp`+`moof`+`mdat`.
    pub data: Bytes,
    /// `tfdt` of the first sample and total duration, in `timescale` units.
    pub base_time: u64,
    pub duration: u64,
    pub timescale: u32,
    /// The init segment this fragment decodes with.
    pub init: Arc<InitSegment>,
}

/// One init segment of a track and the format it describes, so that manifests can describe
/// the fragments that decode with it even after the source has changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitSegment {
    /// `ftyp`+`moov`.
    pub data: Bytes,
    /// 0 for the track's first; +1 at each codec configuration change (e.g. a new resolution).
    pub version: u32,
    /// RFC 6381 codec string (`avc1.4d401e`, `mp4a.40.2`).
    pub codec: String,
    /// Picture size; 0 for audio.
    pub width: u32,
    pub height: u32,
    /// Sample rate (Hz) and channel configuration; 0 for video.
    pub sample_rate: u32,
    pub channels: u8,
    /// UTC ms at which the first fragment decoding with it starts (where a DASH Period for
    /// it begins).
    pub since_ms: u64,
}

/// The newest run of `items` whose sequence numbers follow one another: players number
/// segments by position (HLS media sequence, DASH `$Number$`), so a hole in the numbers
/// (a segment that could not be packaged) cannot be listed inside one playlist or timeline.
pub fn consecutive_tail<T>(items: &[T], sequence: impl Fn(&T) -> u64) -> &[T] {
    let mut start = items.len().saturating_sub(1);
    while start > 0 && sequence(&items[start - 1]) + 1 == sequence(&items[start]) {
        start -= 1;
    }
    items.get(start..).unwrap_or_default()
}

/// The name of a track's init segment version, relative to its playlist.
pub fn init_name(version: u32) -> String {
    match version {
        0 => "init.mp4".to_owned(),
        v => format!("init-{v}.mp4"),
    }
}

impl FragmentEntry {
    /// `YYYY/MM/DD/HH/MM/SS-DDDDD.m4s`, the TS segment's path with the fMP4 extension.
    pub fn path(&self) -> String {
        let mut p = crate::media::segment_path(self.start_ms, self.duration_ms);
        p.truncate(p.len() - ".ts".len());
        p.push_str(".m4s");
        p
    }
}

impl TrackSnapshot {
    /// A fragment by its HLS name (`…/SS-DDDDD.m4s`); newest wins.
    pub fn by_name(&self, name: &SegmentName) -> Option<&Arc<FragmentEntry>> {
        self.all().find(|f| name.names(f.start_ms, f.duration_ms))
    }

    /// Init segment `version` while a fragment still uses it. `None` is `init.mp4`, the name
    /// playlists give version 0: version 0 while a fragment uses it, else the current one (for
    /// clients that only know the unversioned name).
    pub fn init_version(&self, version: Option<u32>) -> Option<&Bytes> {
        let wanted = version.unwrap_or(0);
        if let Some(f) = self.all().find(|f| f.init.version == wanted) {
            return Some(&f.init.data);
        }
        let current = self.init.as_ref()?;
        (version.is_none() || current.version == wanted).then_some(&current.data)
    }

    /// A fragment by sequence number (DASH `$Number$`).
    pub fn by_number(&self, sequence: u64) -> Option<&Arc<FragmentEntry>> {
        self.all().find(|f| f.sequence == sequence)
    }

    fn all(&self) -> impl Iterator<Item = &Arc<FragmentEntry>> {
        self.live.iter().rev().chain(self.retired.iter().rev())
    }
}

impl RenditionSnapshot {
    /// Finds a segment by its Flussonic name (`YYYY/MM/DD/HH/MM/SS-DDDDD.ts`); newest wins.
    pub fn segment(&self, name: &SegmentName) -> Option<&Arc<Segment>> {
        self.live
            .iter()
            .rev()
            .chain(self.retired.iter().rev())
            .find(|s| s.is_named(name))
    }

    /// Flussonic's track selector of this rendition's TS: `v2a1`, or `v2` without audio.
    pub fn tracks(&self, index: usize) -> String {
        let audio = self.media.as_ref().is_some_and(|m| m.audio.is_some());
        format!("v{}{}", index + 1, if audio { "a1" } else { "" })
    }
}

impl Snapshot {
    /// The first rendition's media (the whole stream's for pass-through).
    pub fn media(&self) -> Option<&MediaInfo> {
        self.renditions.first().and_then(|r| r.media.as_ref())
    }

    /// The first rendition's live window.
    pub fn live(&self) -> &[Arc<Segment>] {
        self.renditions.first().map_or(&[], |r| &r.live)
    }

    /// The rendition a TS track selector names: `None` selects the first; `v2a1` (or `v2`)
    /// the second. The TS segments always carry the stream's audio.
    pub fn rendition(&self, tracks: Option<Tracks>) -> Option<(usize, &RenditionSnapshot)> {
        let index = match tracks {
            None => 0,
            Some(t) => t.rendition()?,
        };
        self.renditions.get(index).map(|r| (index, r))
    }

    /// The LL-HLS view of `tracks`: `vN`, `a1` or `vNa1` (video and audio in one).
    pub fn ll_track(&self, tracks: Tracks) -> Option<&Arc<LlTrackSnapshot>> {
        match tracks.single() {
            Some(track) => self.fmp4_track(track)?.ll.as_ref(),
            None => self.renditions.get(tracks.rendition()?)?.ll_muxed.as_ref(),
        }
    }

    /// The fMP4 track: a rendition's video or the audio (`a1`; the stream has one).
    pub fn fmp4_track(&self, track: Track) -> Option<&TrackSnapshot> {
        match track {
            Track::Audio(0) => self.audio.as_ref(),
            Track::Audio(_) => None,
            Track::Video(n) => self.renditions.get(n).map(|r| &r.video),
        }
    }
}
