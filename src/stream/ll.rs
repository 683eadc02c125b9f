//! What the actor keeps of one track as LL-HLS: each part cut from the chunk flow
//! ([`crate::packaging::parts`]) packaged as a CMAF chunk right away, segments as their parts
//! joined, and an init segment of its own per codec configuration. Independent of the
//! per-segment fMP4 tracks (`rendition.rs`), so a part never waits for its segment.

use crate::media::{Chunk, MediaInfo};
use crate::packaging::fmp4::{self, AacConfig, AudioTrack, AvcConfig, Demuxed, VideoTrack};
use crate::packaging::llhls::{self, LlSegment, Part, Report, Skip};
use crate::packaging::parts::{PartCut, PartCutter, SegmentStart};
use crate::packaging::{InitSegment, LlTrackSnapshot};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// Frame duration assumed until the media info gives the frame rate (25 fps).
const DEFAULT_FRAME: Duration = Duration::from_millis(40);

/// LL-HLS of a stream: the first rendition's video and the stream's audio, cut into parts
/// as the chunks arrive.
#[derive(Debug)]
pub(super) struct LowLatency {
    cutter: PartCutter,
    video: LlTrack,
    audio: LlTrack,
    /// The actor's start, UNIX ms: part and segment names carry it, so no name is reused by
    /// a later actor of the stream.
    run: u64,
    part_target_ms: u32,
    /// A part that cannot be packaged was logged (reset by the next success).
    failing: bool,
}

impl LowLatency {
    pub(super) fn new(part_target: Duration, run: u64) -> Self {
        LowLatency {
            cutter: PartCutter::new(part_target, DEFAULT_FRAME),
            video: LlTrack::video(),
            audio: LlTrack::audio(),
            run,
            part_target_ms: u32::try_from(part_target.as_millis()).unwrap_or(u32::MAX),
            failing: false,
        }
    }

    /// The first rendition's media info: the frame rate sets where parts may end.
    pub(super) fn set_media(&mut self, media: &MediaInfo) {
        if let Some((n, d)) = media.video.as_ref().and_then(|v| v.frame_rate)
            && n > 0
        {
            self.cutter
                .set_frame(Duration::from_secs_f64(f64::from(d) / f64::from(n)));
        }
    }

    /// One chunk of the first rendition: `opens` when the segmenter opened a segment with
    /// it, `building` whether a segment is being filled after it. Returns whether a part
    /// was published.
    pub(super) fn push(
        &mut self,
        chunk: &Chunk,
        opens: Option<SegmentStart>,
        building: bool,
        epoch_ms: &mut Option<u64>,
        media: Option<&MediaInfo>,
    ) -> bool {
        let cut = if building {
            self.cutter.push(chunk, opens)
        } else {
            // The segmenter closed (a timestamp jump) or dropped its segment.
            self.cutter.finish()
        };
        cut.is_some_and(|cut| self.package(&cut, epoch_ms, media))
    }

    /// The source stopped: the open segment's last part.
    pub(super) fn finish(&mut self, epoch_ms: &mut Option<u64>, media: Option<&MediaInfo>) -> bool {
        self.cutter
            .finish()
            .is_some_and(|cut| self.package(&cut, epoch_ms, media))
    }

    fn package(
        &mut self,
        cut: &PartCut,
        epoch_ms: &mut Option<u64>,
        media: Option<&MediaInfo>,
    ) -> bool {
        let epoch = *epoch_ms.get_or_insert(cut.segment.start_ms);
        let size = media
            .and_then(|m| m.video.as_ref())
            .map(|v| (v.width, v.height));
        let result = fmp4::demux(&cut.ts).and_then(|demuxed| {
            // A track with nothing in this part (a short last part may hold no audio frame)
            // still ends its segment with it.
            let video = if demuxed.video.is_empty() {
                self.video.close(cut);
                Ok(())
            } else {
                self.video.add(cut, &demuxed, epoch, size)
            };
            let audio = if demuxed.audio.is_empty() {
                self.audio.close(cut);
                Ok(())
            } else {
                self.audio.add(cut, &demuxed, epoch, None)
            };
            video.and(audio)
        });
        match result {
            Ok(()) => {
                self.failing = false;
                true
            }
            Err(e) if !self.failing => {
                self.failing = true;
                warn!(seq = cut.segment.sequence, part = cut.index, error = %e, "cannot package an LL-HLS part; other outputs are unaffected");
                false
            }
            Err(e) => {
                debug!(error = %e, "LL-HLS parts still failing");
                false
            }
        }
    }

    /// Drops what the TS window no longer serves.
    pub(super) fn prune(&mut self, oldest: Option<u64>) {
        self.video.prune(oldest);
        self.audio.prune(oldest);
    }

    /// The video and audio views with their playlists (each reporting the other), given the
    /// first rendition's first live sequence and discontinuities before a sequence.
    pub(super) fn snapshots(
        &self,
        target_ms: u32,
        first_live: Option<u64>,
        discontinuities_before: impl Fn(u64) -> u64,
    ) -> (LlTrackSnapshot, LlTrackSnapshot) {
        let mut video = self.video.snapshot(self.run, first_live);
        let mut audio = self.audio.snapshot(self.run, first_live);
        let report = |uri: &str, t: &LlTrackSnapshot| {
            t.last().map(|(last_msn, last_part)| Report {
                uri: uri.to_owned(),
                last_msn,
                last_part,
            })
        };
        let video_reports: Vec<Report> = report("../tracks-a1/index.ll.m3u8", &audio)
            .into_iter()
            .collect();
        let audio_reports: Vec<Report> = report("../tracks-v1/index.ll.m3u8", &video)
            .into_iter()
            .collect();
        for (track, reports) in [(&mut video, video_reports), (&mut audio, audio_reports)] {
            let listed = track.listed();
            if listed.iter().all(|s| s.parts.is_empty()) {
                continue;
            }
            let media = llhls::LlMedia {
                segments: listed,
                target_ms,
                part_target_ms: self.part_target_ms,
                discontinuity_sequence: listed
                    .first()
                    .map_or(0, |s| discontinuities_before(s.sequence)),
                run: self.run,
                next_part: track.next_part,
                reports: &reports,
            };
            let full: Bytes = llhls::media_playlist(&media, Skip::No).into();
            let skip: Bytes = llhls::media_playlist(&media, Skip::Yes).into();
            track.playlist = Some(full);
            track.playlist_skip = Some(skip);
        }
        (video, audio)
    }
}

/// Completes `segment`: its parts joined are the whole segment.
fn join(segment: &mut LlSegment) {
    let mut joined = BytesMut::with_capacity(segment.parts.iter().map(|p| p.data.len()).sum());
    for p in &segment.parts {
        joined.extend_from_slice(&p.data);
    }
    segment.data = Some(joined.freeze());
}

/// Converts `ms` after the epoch to ticks of `timescale`.
fn ticks(ms_after_epoch: u64, timescale: u32) -> u64 {
    ms_after_epoch * u64::from(timescale) / 1000
}

/// The packager of the track's kind, with the configuration its init segment describes.
#[derive(Debug)]
enum Packager {
    Video {
        track: VideoTrack,
        avc: Option<AvcConfig>,
    },
    Audio {
        track: AudioTrack,
        aac: Option<AacConfig>,
    },
}

/// One track's LL-HLS state.
#[derive(Debug)]
pub(super) struct LlTrack {
    packager: Packager,
    /// A run of the track's timeline is open (false before the first part).
    started: bool,
    /// The init segment parts are made for now; `None` before the first part.
    init: Option<Arc<InitSegment>>,
    /// Oldest first; only the last may be incomplete. Pruned with the TS window.
    segments: VecDeque<Arc<LlSegment>>,
    /// The number the next part gets (names are unique for the actor's life).
    next_part: u64,
}

impl LlTrack {
    fn video() -> Self {
        LlTrack::new(Packager::Video {
            track: VideoTrack::new(),
            avc: None,
        })
    }

    fn audio() -> Self {
        LlTrack::new(Packager::Audio {
            track: AudioTrack::new(0),
            aac: None,
        })
    }

    fn new(packager: Packager) -> Self {
        LlTrack {
            packager,
            started: false,
            init: None,
            segments: VecDeque::new(),
            next_part: 0,
        }
    }

    /// Packages part `cut` (demuxed as `demuxed`); `epoch_ms` is `tfdt` 0, `size` the
    /// picture size from the media info when the SPS does not say. A part of a segment whose
    /// first part is missing is skipped (a segment never starts without its keyframe).
    fn add(
        &mut self,
        cut: &PartCut,
        demuxed: &Demuxed,
        epoch_ms: u64,
        size: Option<(u32, u32)>,
    ) -> Result<(), fmp4::Fmp4Error> {
        let first = cut.index == 0;
        if !first
            && !self
                .segments
                .back()
                .is_some_and(|s| s.sequence == cut.segment.sequence && !s.complete())
        {
            return Ok(());
        }
        let reconfigured = first && self.configure(demuxed, size)?;
        let Some(init) = self.init.clone() else {
            return Ok(());
        };
        let new_run = first && (cut.segment.discontinuity || reconfigured || !self.started);
        let start = cut.segment.start_ms.saturating_sub(epoch_ms);
        let fragment = match &mut self.packager {
            Packager::Video { track, .. } => {
                let run_start = new_run.then(|| ticks(start, fmp4::VIDEO_TIMESCALE));
                track.fragment(self.next_part, run_start, &demuxed.video)?
            }
            Packager::Audio { track, aac } => {
                let rate = aac.map_or(0, |a| a.sample_rate);
                let run_start = new_run.then(|| {
                    let lead = demuxed.audio_lead().unwrap_or(0) * i64::from(rate) / 90_000;
                    ticks(start, rate).saturating_add_signed(lead)
                });
                track.fragment(self.next_part, run_start, &demuxed.audio)?
            }
        };
        self.started = true;
        if first {
            // A segment left incomplete (its source broke off) is never listed.
            if self.segments.back().is_some_and(|s| !s.complete()) {
                self.segments.pop_back();
            }
            self.segments.push_back(Arc::new(LlSegment {
                sequence: cut.segment.sequence,
                start_ms: cut.segment.start_ms,
                discontinuity: cut.segment.discontinuity || reconfigured,
                parts: Vec::new(),
                data: None,
                init,
            }));
        }
        let Some(segment) = self.segments.back_mut() else {
            return Ok(());
        };
        let segment = Arc::make_mut(segment);
        segment.parts.push(Arc::new(Part {
            number: self.next_part,
            duration: fragment.duration as f64 / f64::from(fragment.timescale.max(1)),
            independent: cut.independent || matches!(self.packager, Packager::Audio { .. }),
            data: fragment.data,
        }));
        self.next_part += 1;
        if cut.last {
            join(segment);
        }
        Ok(())
    }

    /// `cut` had nothing of this track: when it was its segment's last part, the segment
    /// is complete with the parts it has.
    fn close(&mut self, cut: &PartCut) {
        if let Some(segment) = self.segments.back_mut()
            && cut.last
            && segment.sequence == cut.segment.sequence
            && !segment.complete()
            && !segment.parts.is_empty()
        {
            join(Arc::make_mut(segment));
        }
    }

    /// Takes the codec configuration of a segment's first part; a new one gets a new init
    /// segment (true when it replaces another).
    fn configure(
        &mut self,
        demuxed: &Demuxed,
        size: Option<(u32, u32)>,
    ) -> Result<bool, fmp4::Fmp4Error> {
        let version = self.init.as_ref().map_or(0, |i| i.version + 1);
        let had = self.init.is_some();
        let init = match &mut self.packager {
            Packager::Video { avc, .. } => {
                let new = demuxed.avc_config()?;
                if avc.as_ref() == Some(new) {
                    return Ok(false);
                }
                let (w, h) = new.dimensions().or(size).unwrap_or((0, 0));
                *avc = Some(new.clone());
                InitSegment {
                    data: fmp4::video_init(new, w, h).into(),
                    version,
                    codec: new.codec_string(),
                    width: w,
                    height: h,
                    ..InitSegment::default()
                }
            }
            Packager::Audio { track, aac } => {
                let Some(new) = demuxed.aac else {
                    return Err(fmp4::Fmp4Error::NoSamples);
                };
                if *aac == Some(new) {
                    return Ok(false);
                }
                *aac = Some(new);
                *track = AudioTrack::new(new.sample_rate);
                InitSegment {
                    data: fmp4::audio_init(&new).into(),
                    version,
                    codec: new.codec_string(),
                    sample_rate: new.sample_rate,
                    channels: new.channels,
                    ..InitSegment::default()
                }
            }
        };
        self.init = Some(Arc::new(init));
        Ok(had)
    }

    /// Drops segments older than `oldest` (the oldest TS segment still served).
    /// (Nothing is dropped while the window is empty: the first segment is still being cut.)
    fn prune(&mut self, oldest: Option<u64>) {
        let Some(oldest) = oldest else {
            return;
        };
        while self.segments.front().is_some_and(|s| s.sequence < oldest) {
            self.segments.pop_front();
        }
    }

    /// The reader's view; `first_live` is the first sequence the TS playlist lists. The
    /// playlists are rendered by the actor, which knows the other renditions.
    fn snapshot(&self, run: u64, first_live: Option<u64>) -> LlTrackSnapshot {
        let segments: Vec<Arc<LlSegment>> = self.segments.iter().cloned().collect();
        let from = first_live.unwrap_or(u64::MAX);
        // Listed: from the first live sequence on, but never a hole in the numbering.
        let mut listed_from = segments
            .iter()
            .position(|s| s.sequence >= from)
            .unwrap_or(segments.len().saturating_sub(1));
        let tail = crate::packaging::consecutive_tail(&segments, |s| s.sequence);
        listed_from = listed_from.max(segments.len() - tail.len());
        LlTrackSnapshot {
            run,
            segments,
            listed_from,
            next_part: self.next_part,
            playlist: None,
            playlist_skip: None,
        }
    }
}
