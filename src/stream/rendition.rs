//! What the actor keeps per rendition (TS window, media info, fMP4 video track) and for the
//! shared fMP4 audio track, and how each TS segment becomes fMP4 fragments: the same segment
//! boundaries, so HLS-TS, HLS-fMP4 and DASH all list the same stretches of time.

use crate::media::{MediaInfo, Segment};
use crate::packaging::fmp4::{self, AacConfig, AudioTrack, AvcConfig, Demuxed, VideoTrack};
use crate::packaging::{
    FragmentEntry, InitSegment, RenditionSnapshot, TrackSnapshot, Window, consecutive_tail, hls,
};
use std::collections::VecDeque;
use std::sync::Arc;

/// Converts `ms` after the epoch to ticks of `timescale`.
fn ticks(ms_after_epoch: u64, timescale: u32) -> u64 {
    ms_after_epoch * u64::from(timescale) / 1000
}

/// One fMP4 track's init segment and fragments, kept as long as their TS segments are served.
#[derive(Debug, Default)]
pub(super) struct FragmentTrack {
    /// The init segment of the current configuration (its version: 0 for the first, +1 at
    /// each change).
    init: Option<Arc<InitSegment>>,
    /// Oldest first; pruned with the TS window.
    fragments: VecDeque<Arc<FragmentEntry>>,
    /// Version of the first init segment: 0, or where the stream's previous actor stopped
    /// (so that `init-N.mp4` never names two different init segments).
    first_version: u32,
}

impl FragmentTrack {
    /// A track whose first init segment gets version `first_version`.
    pub(super) fn numbered_from(first_version: u32) -> Self {
        FragmentTrack {
            first_version,
            ..FragmentTrack::default()
        }
    }

    /// The version the next init segment gets.
    pub(super) fn next_version(&self) -> u32 {
        self.init
            .as_ref()
            .map_or(self.first_version, |i| i.version + 1)
    }

    /// Makes `init` the current init segment from `segment` on, numbering it after the
    /// previous one.
    fn set_init(&mut self, segment: &Segment, mut init: InitSegment) {
        init.version = self.next_version();
        init.since_ms = segment.start_ms;
        self.init = Some(Arc::new(init));
    }

    fn push(&mut self, segment: &Segment, fragment: fmp4::Fragment) {
        self.fragments.push_back(Arc::new(FragmentEntry {
            sequence: segment.sequence,
            start_ms: segment.start_ms,
            duration_ms: segment.duration_ms,
            discontinuity: segment.discontinuity,
            data: fragment.data,
            base_time: fragment.base_time,
            duration: fragment.duration,
            timescale: fragment.timescale,
            init: self.init.clone().unwrap_or_default(),
        }));
    }

    /// Drops fragments older than `oldest` (the oldest TS segment still served).
    fn prune(&mut self, oldest: Option<u64>) {
        let Some(oldest) = oldest else {
            self.fragments.clear();
            return;
        };
        while self.fragments.front().is_some_and(|f| f.sequence < oldest) {
            self.fragments.pop_front();
        }
    }

    /// The reader's view: fragments of the TS `window`'s live segments are live. The HLS
    /// playlist lists those after the last hole (a segment that could not be remuxed), so
    /// that every fragment keeps its media sequence number across playlist updates.
    fn snapshot(&self, window: &Window) -> TrackSnapshot {
        let split = window.first_live_sequence().unwrap_or(u64::MAX);
        let (retired, live): (Vec<_>, Vec<_>) = self
            .fragments
            .iter()
            .cloned()
            .partition(|f| f.sequence < split);
        let (peak_bitrate, average_bitrate) =
            hls::bitrates(live.iter().map(|f| (f.data.len() as u64, f.duration_ms)));
        let listed = consecutive_tail(&live, |f| f.sequence);
        let playlist = listed.first().filter(|_| self.init.is_some()).map(|first| {
            let disc_seq = window.discontinuities_before(first.sequence);
            hls::fmp4_playlist(listed, window.target_ms(), disc_seq).into()
        });
        TrackSnapshot {
            init: self.init.clone(),
            live,
            retired,
            playlist,
            peak_bitrate,
            average_bitrate,
            ll: None,
        }
    }
}

/// State of one rendition.
#[derive(Debug)]
pub(super) struct Rendition {
    pub window: Window,
    /// From ingest's probes; `None` until its caps arrived.
    pub media: Option<MediaInfo>,
    video: VideoTrack,
    /// Parameter sets the current init segment was made from.
    avc: Option<AvcConfig>,
    track: FragmentTrack,
    /// A run of the video track is open (false before the first fragment).
    started: bool,
}

impl Rendition {
    /// `first_version`: see [`FragmentTrack::numbered_from`].
    pub(super) fn new(window: Window, first_version: u32) -> Self {
        Rendition {
            window,
            media: None,
            video: VideoTrack::new(),
            avc: None,
            track: FragmentTrack::numbered_from(first_version),
            started: false,
        }
    }

    /// The segment's H.264 configuration differs from the one before (none before: false).
    pub(super) fn changes_configuration(&self, demuxed: &Demuxed) -> bool {
        matches!((&self.avc, &demuxed.avc), (Some(old), Some(new)) if old != new)
    }

    /// Adds the video fragment of `segment` (demuxed as `demuxed`); `epoch_ms` is tfdt 0.
    pub(super) fn add_fragment(
        &mut self,
        segment: &Segment,
        demuxed: &Demuxed,
        epoch_ms: u64,
    ) -> Result<(), fmp4::Fmp4Error> {
        let avc = demuxed.avc_config()?;
        if self.avc.as_ref() != Some(avc) {
            let (w, h) = avc
                .dimensions()
                .or_else(|| {
                    let v = self.media.as_ref()?.video.as_ref()?;
                    Some((v.width, v.height))
                })
                .unwrap_or((0, 0));
            self.track.set_init(
                segment,
                InitSegment {
                    data: fmp4::video_init(avc, w, h).into(),
                    codec: avc.codec_string(),
                    width: w,
                    height: h,
                    ..InitSegment::default()
                },
            );
            self.avc = Some(avc.clone());
        }
        let run_start = (segment.discontinuity || !self.started).then(|| {
            ticks(
                segment.start_ms.saturating_sub(epoch_ms),
                fmp4::VIDEO_TIMESCALE,
            )
        });
        let fragment = self
            .video
            .fragment(segment.sequence, run_start, &demuxed.video)?;
        self.started = true;
        self.track.push(segment, fragment);
        Ok(())
    }

    /// Drops fragments whose TS segment is no longer served.
    pub(super) fn prune(&mut self) {
        self.track.prune(self.window.oldest_sequence());
    }

    /// The version the video track's next init segment gets.
    pub(super) fn next_init_version(&self) -> u32 {
        self.track.next_version()
    }

    pub(super) fn snapshot(&self) -> RenditionSnapshot {
        let mut r = self.window.rendition(self.media.as_ref());
        r.video = self.track.snapshot(&self.window);
        r
    }
}

/// The fMP4 audio track, cut from the first rendition's segments.
#[derive(Debug)]
pub(super) struct Audio {
    track: AudioTrack,
    aac: AacConfig,
    fragments: FragmentTrack,
    started: bool,
}

impl Audio {
    /// The segment's AAC configuration differs from the track's (no track yet: false).
    pub(super) fn changes_configuration(audio: Option<&Audio>, demuxed: &Demuxed) -> bool {
        matches!((audio, demuxed.aac), (Some(a), Some(new)) if a.aac != new)
    }

    /// Adds the audio fragment of `segment`; creates the track on first audio, and again
    /// when the AAC configuration changes.
    /// `first_version` numbers the track's first init segment.
    pub(super) fn add(
        slot: &mut Option<Audio>,
        segment: &Segment,
        demuxed: &Demuxed,
        epoch_ms: u64,
        first_version: u32,
    ) -> Result<(), fmp4::Fmp4Error> {
        let Some(aac) = demuxed.aac else {
            return Ok(());
        };
        if slot.as_ref().is_none_or(|a| a.aac != aac) {
            let mut fragments = slot.take().map_or_else(
                || FragmentTrack::numbered_from(first_version),
                |a| a.fragments,
            );
            fragments.set_init(
                segment,
                InitSegment {
                    data: fmp4::audio_init(&aac).into(),
                    codec: aac.codec_string(),
                    sample_rate: aac.sample_rate,
                    channels: aac.channels,
                    ..InitSegment::default()
                },
            );
            *slot = Some(Audio {
                track: AudioTrack::new(aac.sample_rate),
                aac,
                fragments,
                started: false,
            });
        }
        let Some(audio) = slot.as_mut() else {
            return Ok(());
        };
        let run_start = (segment.discontinuity || !audio.started).then(|| {
            // The video's start on the audio clock, moved by how much later audio begins.
            let video = ticks(segment.start_ms.saturating_sub(epoch_ms), aac.sample_rate);
            let lead = demuxed.audio_lead().unwrap_or(0) * i64::from(aac.sample_rate) / 90_000;
            video.saturating_add_signed(lead)
        });
        let fragment = audio
            .track
            .fragment(segment.sequence, run_start, &demuxed.audio)?;
        audio.started = true;
        audio.fragments.push(segment, fragment);
        Ok(())
    }

    pub(super) fn prune(&mut self, oldest: Option<u64>) {
        self.fragments.prune(oldest);
    }

    /// The version the audio track's next init segment gets.
    pub(super) fn next_version(&self) -> u32 {
        self.fragments.next_version()
    }

    pub(super) fn snapshot(&self, window: &Window) -> TrackSnapshot {
        self.fragments.snapshot(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Three 1 s segments of real mpegtsmux output (160x90 H.264 + AAC).
    const SEGMENTS: [&[u8]; 3] = [
        include_bytes!("../../tests/fixtures/fmp4/seg0.ts"),
        include_bytes!("../../tests/fixtures/fmp4/seg1.ts"),
        include_bytes!("../../tests/fixtures/fmp4/seg2.ts"),
    ];

    /// Segment 5 could not be remuxed: the fMP4 playlist lists 6 and 7 only, with the media
    /// sequence and discontinuity sequence numbers they have in the TS playlist.
    #[test]
    fn the_fmp4_playlist_starts_after_a_segment_without_fragment() {
        let epoch = 1_795_305_600_000;
        let mut r = Rendition::new(Window::new(6, 1000), 0);
        for sequence in 3..=7 {
            let ts = SEGMENTS[0];
            let seg = Segment {
                sequence,
                start_ms: epoch + sequence * 1000,
                duration_ms: 1000,
                discontinuity: sequence == 4 || sequence == 6,
                data: Bytes::from_static(ts),
            };
            if sequence != 5 {
                let demuxed = fmp4::demux(ts).unwrap();
                r.add_fragment(&seg, &demuxed, epoch).unwrap();
            }
            r.window.push(Arc::new(seg), 0);
        }
        let snap = r.snapshot();
        assert_eq!(
            snap.video.live.len(),
            4,
            "fragments of 3, 4, 6, 7 are served"
        );
        let text = String::from_utf8(snap.video.playlist.clone().unwrap().to_vec()).unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{text}");
        // segment 4's tag precedes the listed ones; 6 keeps its own, in front of it
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        assert_eq!(text.matches(".m4s").count(), 2, "{text}");
        let ts = String::from_utf8(snap.media_playlist.clone().unwrap().to_vec()).unwrap();
        let six = crate::media::segment_path(epoch + 6000, 1000);
        let (before_six, _) = ts.split_once(six.as_str()).expect("segment 6 listed");
        assert_eq!(
            before_six.matches("#EXT-X-DISCONTINUITY\n").count(),
            2,
            "{ts}"
        );
        assert!(ts.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{ts}");
    }

    #[test]
    fn a_new_codec_configuration_gets_a_new_init_segment_version() {
        let epoch = 1_795_305_600_000;
        let mut r = Rendition::new(Window::new(6, 1000), 0);
        for (i, ts) in SEGMENTS.iter().enumerate() {
            let seg = Segment {
                sequence: i as u64,
                start_ms: epoch + i as u64 * 1000,
                duration_ms: 1000,
                discontinuity: false,
                data: Bytes::from_static(ts),
            };
            let mut demuxed = fmp4::demux(ts).unwrap();
            if i == 2 {
                // The source changed its parameter sets.
                demuxed.avc.as_mut().unwrap().pps.push(0x80);
            }
            r.add_fragment(&seg, &demuxed, epoch).unwrap();
            r.window.push(Arc::new(seg), 0);
        }
        let snap = r.snapshot();
        let text = String::from_utf8(snap.video.playlist.clone().unwrap().to_vec()).unwrap();
        let maps: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-MAP"))
            .collect();
        assert_eq!(
            maps,
            [
                "#EXT-X-MAP:URI=\"init.mp4\"",
                "#EXT-X-MAP:URI=\"init-1.mp4\""
            ],
            "{text}"
        );
        let before_third = text.split("#EXT-X-MAP:URI=\"init-1.mp4\"").next().unwrap();
        assert_eq!(before_third.matches(".m4s").count(), 2, "{text}");
        let (v0, v1) = (
            snap.video.init_version(Some(0)).unwrap(),
            snap.video.init_version(Some(1)).unwrap(),
        );
        assert_ne!(v0, v1);
        assert_eq!(
            snap.video.init_version(None),
            Some(v0),
            "init.mp4 is version 0 while the playlist lists it"
        );
        assert_eq!(snap.video.live[0].base_time, 0, "tfdt 0 at the epoch");
        assert_eq!(snap.video.live[2].init.since_ms, epoch + 2000);
        // Once no fragment decodes with version 0, init.mp4 is the current one.
        r.track.prune(Some(2));
        let snap = r.snapshot();
        assert_eq!(snap.video.init_version(None), Some(v1));
        assert_eq!(snap.video.init_version(Some(0)), None);
    }
}
