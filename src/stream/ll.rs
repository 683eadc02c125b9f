//! What the actor keeps of one track as LL-HLS: each part cut from the chunk flow
//! ([`crate::packaging::parts`]) packaged as a CMAF chunk right away, segments as their parts
//! joined, and an init segment of its own per codec configuration. Independent of the
//! per-segment fMP4 tracks (`rendition.rs`), so a part never waits for its segment.

use crate::packaging::fmp4::{
    self, AacConfig, AudioFrame, AudioTrack, AvcConfig, Demuxed, VideoTrack,
};
use crate::packaging::llhls::{LlSegment, Part};
use crate::packaging::parts::PartCut;
use crate::packaging::{InitSegment, LlTrackSnapshot};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::Arc;

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
        /// Most AAC frames a part may hold and stay within the part target.
        part_target_ms: u32,
        /// Frames that would have made their part longer than the target: they open the
        /// next part (dropped at a new run).
        carry: Vec<AudioFrame>,
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
    pub(super) fn video() -> Self {
        LlTrack::new(Packager::Video {
            track: VideoTrack::new(),
            avc: None,
        })
    }

    /// Audio parts hold whole AAC frames and last at most `part_target_ms`.
    pub(super) fn audio(part_target_ms: u32) -> Self {
        LlTrack::new(Packager::Audio {
            track: AudioTrack::new(0),
            aac: None,
            part_target_ms,
            carry: Vec::new(),
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
    pub(super) fn add(
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
            Packager::Audio {
                track,
                aac,
                part_target_ms,
                carry,
            } => {
                let rate = aac.map_or(0, |a| a.sample_rate);
                let run_start = new_run.then(|| {
                    let lead = demuxed.audio_lead().unwrap_or(0) * i64::from(rate) / 90_000;
                    ticks(start, rate).saturating_add_signed(lead)
                });
                if new_run {
                    carry.clear();
                }
                let mut frames = std::mem::take(carry);
                frames.extend(demuxed.audio.iter().cloned());
                let fit = (u64::from(*part_target_ms) * u64::from(rate)
                    / (1000 * u64::from(fmp4::AAC_FRAME_SAMPLES)))
                .max(1) as usize;
                if frames.len() > fit {
                    *carry = frames.split_off(fit);
                }
                track.fragment(self.next_part, run_start, &frames)?
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
    pub(super) fn close(&mut self, cut: &PartCut) {
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
            Packager::Audio { track, aac, .. } => {
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
    pub(super) fn prune(&mut self, oldest: Option<u64>) {
        let Some(oldest) = oldest else {
            return;
        };
        while self.segments.front().is_some_and(|s| s.sequence < oldest) {
            self.segments.pop_front();
        }
    }

    /// The reader's view; `first_live` is the first sequence the TS playlist lists. The
    /// playlists are rendered by the actor, which knows the other renditions.
    pub(super) fn snapshot(&self, run: u64, first_live: Option<u64>) -> LlTrackSnapshot {
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
