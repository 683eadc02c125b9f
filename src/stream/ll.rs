//! What the actor keeps of one track as LL-HLS: each part cut from the chunk flow
//! ([`crate::packaging::parts`]) packaged as a CMAF chunk right away, segments as their parts
//! joined, and an init segment of its own per codec configuration. Independent of the
//! per-segment fMP4 tracks (`rendition.rs`), so a part never waits for its segment.

use crate::packaging::fmp4::{
    self, AacConfig, AudioFrame, AudioTrack, AvcConfig, Demuxed, VideoTrack,
};
use crate::packaging::llhls::{LlSegment, Part};
use crate::packaging::parts::{PartCut, SegmentStart};
use crate::packaging::{InitSegment, LlTrackSnapshot};
use std::collections::VecDeque;
use std::sync::Arc;

/// Completes `segment`: its parts in a row are the whole segment.
fn join(segment: &mut LlSegment) {
    segment.complete = true;
}

/// When `fragment`'s first sample plays, UNIX ms: a segment's `PROGRAM-DATE-TIME` is its
/// own track's, so that each playlist's dates advance exactly by its durations (audio
/// segments are whole AAC frames and differ from the video's by a few ms; a player that
/// aligns playlists by date would otherwise shift the track at every slide of the window).
fn at(epoch_ms: u64, fragment: &fmp4::Fragment) -> u64 {
    let ms = u128::from(fragment.base_time) * 1000 / u128::from(fragment.timescale.max(1));
    epoch_ms.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Converts `ms` after the epoch to ticks of `timescale`.
fn ticks(ms_after_epoch: u64, timescale: u32) -> u64 {
    ms_after_epoch * u64::from(timescale) / 1000
}

/// The segment the audio track fills: as the video's first part opened it.
#[derive(Debug, Clone, Copy)]
struct AudioSegment {
    start: SegmentStart,
    /// 90 kHz PTS of its keyframe (where a new run's audio is placed from).
    video_pts: Option<u64>,
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
        /// Longest an audio part may last.
        part_target_ms: u32,
        /// The segment whose frames arrive now; `None` before the first.
        segment: Option<AudioSegment>,
        /// Frames of `segment` not yet in a part (fewer than a part's worth).
        carry: Vec<AudioFrame>,
        /// A discontinuity came and no audio run has started since (its segment may have
        /// had no audio at all).
        rerun: bool,
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
    /// The newest segment has all its parts: it is listed complete (joined) when the next
    /// one begins or the source stops, not with its last part. A player then never learns
    /// that a segment is complete while it still loads the part before the last: hls.js
    /// 1.7.4, told so, counts a segment whose buffered end is within 0.2 s of its end as
    /// buffered (`bufferPadding`) and never loads a shorter last part (it stalled ~5 s at
    /// such a boundary about once in five 30-second sessions).
    ended: Option<u64>,
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
            segment: None,
            carry: Vec::new(),
            rerun: false,
        })
    }

    fn new(packager: Packager) -> Self {
        LlTrack {
            packager,
            started: false,
            init: None,
            segments: VecDeque::new(),
            next_part: 0,
            ended: None,
        }
    }

    /// Packages part `cut` (demuxed as `demuxed`); `epoch_ms` is `tfdt` 0, `size` the
    /// picture size from the media info when the SPS does not say.
    pub(super) fn add(
        &mut self,
        cut: &PartCut,
        demuxed: &Demuxed,
        epoch_ms: u64,
        size: Option<(u32, u32)>,
    ) -> Result<(), fmp4::Fmp4Error> {
        if matches!(self.packager, Packager::Video { .. }) {
            self.add_video(cut, demuxed, epoch_ms, size)
        } else {
            self.add_audio(cut, demuxed, epoch_ms)
        }
    }

    /// A video part is a part of the stream's: a part of a segment whose first part is
    /// missing is skipped (a segment never starts without its keyframe).
    fn add_video(
        &mut self,
        cut: &PartCut,
        demuxed: &Demuxed,
        epoch_ms: u64,
        size: Option<(u32, u32)>,
    ) -> Result<(), fmp4::Fmp4Error> {
        let first = cut.index == 0;
        if first {
            // The last segment is settled even if this part cannot be packaged.
            self.settle_ended(cut.segment.sequence);
        }
        if !first && !self.filling(cut.segment.sequence) {
            return Ok(());
        }
        let result = self.video_part(cut, demuxed, epoch_ms, size);
        // A segment whose last part failed still ends with the parts it has (dropping it
        // would leave a hole in the numbering, and the playlist would start after it).
        if cut.last {
            self.end_segment(cut.segment.sequence);
        }
        result
    }

    fn video_part(
        &mut self,
        cut: &PartCut,
        demuxed: &Demuxed,
        epoch_ms: u64,
        size: Option<(u32, u32)>,
    ) -> Result<(), fmp4::Fmp4Error> {
        let first = cut.index == 0;
        let reconfigured = first && self.configure(demuxed, size)?;
        let new_run = first && (cut.segment.discontinuity || reconfigured || !self.started);
        let start = cut.segment.start_ms.saturating_sub(epoch_ms);
        let Packager::Video { track, .. } = &mut self.packager else {
            return Ok(());
        };
        let run_start = new_run.then(|| ticks(start, fmp4::VIDEO_TIMESCALE));
        let fragment = track.fragment(self.next_part, run_start, &demuxed.video)?;
        if first && !self.open_segment(cut.segment, reconfigured, at(epoch_ms, &fragment)) {
            return Ok(());
        }
        self.push_part(fragment, cut.independent);
        Ok(())
    }

    /// Each video part brings an audio part: its AAC frames, whole, as many as fit in the
    /// part target (the rest wait for the next part), and the segment's last video part
    /// brings all that is left, in more than one part where needed. So an audio part never
    /// exceeds the target, is published with the video of the same time, and the audio
    /// never falls behind the video by more than a segment's rounding, whatever the frame
    /// rate (24 fps video makes parts of exactly the target: 11.7 AAC frames arrive per
    /// part, 11 fit). A segment's audio begins with its first frame, in whichever video part
    /// that arrives.
    fn add_audio(
        &mut self,
        cut: &PartCut,
        demuxed: &Demuxed,
        epoch_ms: u64,
    ) -> Result<(), fmp4::Fmp4Error> {
        if cut.index == 0 {
            // The video began a segment: the audio's last one is settled, whenever its
            // own next one begins.
            self.settle_ended(cut.segment.sequence);
        }
        let Packager::Audio {
            segment,
            carry,
            part_target_ms,
            aac,
            rerun,
            ..
        } = &mut self.packager
        else {
            return Ok(());
        };
        if cut.index == 0 {
            if cut.segment.discontinuity {
                // Frames before a break are not placed after it, and the audio after it
                // starts a run, in whichever segment its first frame comes.
                carry.clear();
                *rerun = true;
            }
            *segment = Some(AudioSegment {
                start: cut.segment,
                video_pts: demuxed.video.first().map(|f| f.pts),
            });
        }
        let Some(current) = *segment else {
            return Ok(());
        };
        if current.start.sequence != cut.segment.sequence {
            // The first part of this segment was never seen (packaging failed).
            return Ok(());
        }
        let mut frames = std::mem::take(carry);
        frames.extend(demuxed.audio.iter().cloned());
        let rate = demuxed.aac.or(*aac).map_or(0, |a| a.sample_rate);
        let fit = (u64::from(*part_target_ms) * u64::from(rate)
            / (1000 * u64::from(fmp4::AAC_FRAME_SAMPLES)))
        .max(1) as usize;
        let mut result = Ok(());
        let mut parts = 0;
        while !frames.is_empty() && (parts == 0 || cut.last) {
            parts += 1;
            let rest = frames.split_off(fit.min(frames.len()));
            if let Err(e) = self.audio_part(current, demuxed, &frames, epoch_ms) {
                result = Err(e);
            }
            frames = rest;
        }
        if let Packager::Audio { carry, .. } = &mut self.packager {
            *carry = frames;
        }
        if cut.last {
            self.end_segment(cut.segment.sequence);
        }
        result
    }

    /// Packages `frames` of `current` as one audio part; the segment's first opens it.
    fn audio_part(
        &mut self,
        current: AudioSegment,
        demuxed: &Demuxed,
        frames: &[AudioFrame],
        epoch_ms: u64,
    ) -> Result<(), fmp4::Fmp4Error> {
        let opening = !self.filling(current.start.sequence);
        let reconfigured = opening && demuxed.aac.is_some() && self.configure(demuxed, None)?;
        let Packager::Audio {
            track, aac, rerun, ..
        } = &mut self.packager
        else {
            return Ok(());
        };
        let broke = std::mem::take(rerun);
        let new_run = opening && (broke || reconfigured || !self.started);
        if !opening && broke {
            // Not at a segment's first audio part: the run waits for the next segment.
            *rerun = true;
        }
        let rate = aac.map_or(0, |a| a.sample_rate);
        let run_start = match (new_run, frames.first(), current.video_pts) {
            (false, ..) => None,
            (true, Some(first), Some(video)) => {
                // The first frame's distance from the segment's keyframe, on the audio clock.
                let lead = fmp4::wrap_delta(first.pts, video) * i64::from(rate) / 90_000;
                let start = current.start.start_ms.saturating_sub(epoch_ms);
                Some(ticks(start, rate).saturating_add_signed(lead))
            }
            // A run cannot start without knowing where the segment's keyframe was.
            (true, ..) => return Ok(()),
        };
        let fragment = track.fragment(self.next_part, run_start, frames)?;
        let start = SegmentStart {
            discontinuity: new_run && self.started,
            ..current.start
        };
        if opening && !self.open_segment(start, reconfigured, at(epoch_ms, &fragment)) {
            return Ok(());
        }
        self.push_part(fragment, true);
        Ok(())
    }

    /// Whether the newest segment is `sequence`, still being filled.
    fn filling(&self, sequence: u64) -> bool {
        self.segments
            .back()
            .is_some_and(|s| s.sequence == sequence && !s.complete())
    }

    /// Opens segment `start`, its first sample at UNIX ms `start_ms`; false (nothing opened)
    /// before the first init segment. A segment left incomplete (its source broke off) is
    /// never listed, and one the segmenter numbered again (it dropped that segment: no
    /// duration, no keyframe in time) gives way to the new one, so a number is never listed
    /// twice.
    fn open_segment(&mut self, start: SegmentStart, reconfigured: bool, start_ms: u64) -> bool {
        let Some(init) = self.init.clone() else {
            return false;
        };
        self.settle_ended(start.sequence);
        while self
            .segments
            .back()
            .is_some_and(|s| !s.complete() || s.sequence >= start.sequence)
        {
            self.segments.pop_back();
        }
        self.started = true;
        self.segments.push_back(Arc::new(LlSegment {
            sequence: start.sequence,
            start_ms,
            discontinuity: start.discontinuity || reconfigured,
            parts: Vec::new(),
            complete: false,
            init,
        }));
        true
    }

    /// Appends a packaged part to the newest segment.
    fn push_part(&mut self, fragment: fmp4::Fragment, independent: bool) {
        let Some(segment) = self.segments.back_mut() else {
            return;
        };
        Arc::make_mut(segment).parts.push(Arc::new(Part {
            number: self.next_part,
            duration: fragment.duration as f64 / f64::from(fragment.timescale.max(1)),
            independent,
            data: fragment.data,
            muxed_audio: bytes::Bytes::new(),
        }));
        self.next_part += 1;
    }

    /// Segment `sequence` has all its parts: it is complete once the next one begins.
    fn end_segment(&mut self, sequence: u64) {
        if self
            .segments
            .back()
            .is_some_and(|s| s.sequence == sequence && !s.complete() && !s.parts.is_empty())
        {
            self.ended = Some(sequence);
        }
    }

    /// Segment `next` begins: the ended segment before it is complete; one numbered `next`
    /// or later was dropped by the segmenter (which numbers the new one the same) and
    /// goes, so that a name is never listed for two different segments.
    fn settle_ended(&mut self, next: u64) {
        match self.ended {
            Some(sequence) if sequence >= next => {
                self.ended = None;
                if self.segments.back().is_some_and(|s| s.sequence == sequence) {
                    self.segments.pop_back();
                }
            }
            _ => {
                let _ = self.complete_ended();
            }
        }
    }

    /// The source stopped and the segmenter's next segment is `next`: the ended segment is
    /// complete if the segmenter made it, and goes if not. True when anything changed.
    pub(super) fn settle_at_stop(&mut self, next: u64) -> bool {
        let had = self.ended.is_some();
        self.settle_ended(next);
        had
    }

    /// Lists the ended segment complete: its parts joined. True when there was one.
    fn complete_ended(&mut self) -> bool {
        let Some(sequence) = self.ended.take() else {
            return false;
        };
        if let Some(segment) = self.segments.back_mut()
            && segment.sequence == sequence
            && !segment.complete()
        {
            join(Arc::make_mut(segment));
            return true;
        }
        false
    }

    /// `cut` had no video: when it was its segment's last part, the segment has all the
    /// parts it will have.
    pub(super) fn close(&mut self, cut: &PartCut) {
        if cut.last {
            self.end_segment(cut.segment.sequence);
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
        snapshot(&self.segments, self.next_part, run, first_live)
    }

    /// Oldest first; only the last may be incomplete.
    pub(super) fn segments(&self) -> &VecDeque<Arc<LlSegment>> {
        &self.segments
    }

    /// The number the next part gets.
    pub(super) fn next_part(&self) -> u64 {
        self.next_part
    }

    /// The video's codec configuration and its picture size, once a part was made.
    pub(super) fn video_config(&self) -> Option<(&AvcConfig, u32, u32)> {
        match (&self.packager, &self.init) {
            (Packager::Video { avc: Some(avc), .. }, Some(init)) => {
                Some((avc, init.width, init.height))
            }
            _ => None,
        }
    }

    /// The audio's codec configuration and the version of its init segment, once a part was
    /// made.
    pub(super) fn audio_config(&self) -> Option<(AacConfig, u32)> {
        match (&self.packager, &self.init) {
            (Packager::Audio { aac: Some(aac), .. }, Some(init)) => Some((*aac, init.version)),
            _ => None,
        }
    }
}

/// A track's reader view: `segments` listed from `first_live` (the first sequence the TS
/// playlist lists), never across a hole in the numbering.
pub(super) fn snapshot(
    segments: &VecDeque<Arc<LlSegment>>,
    next_part: u64,
    run: u64,
    first_live: Option<u64>,
) -> LlTrackSnapshot {
    let segments: Vec<Arc<LlSegment>> = segments.iter().cloned().collect();
    let from = first_live.unwrap_or(u64::MAX);
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
        next_part,
        part_target_ms: 0,
        playlist: None,
        playlist_skip: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ll_test_media::*;
    use super::*;

    /// Audio of 24 fps video cut into parts of exactly 250 ms (8 per 2 s segment): 11.72
    /// AAC frames arrive per part while 11 fit; the audio keeps up, segment by segment.
    #[test]
    fn audio_parts_keep_up_with_video_parts_of_exactly_the_target() {
        let mut audio = LlTrack::audio(250);
        let frame_ticks = 1024.0 * 90_000.0 / 48_000.0;
        let mut next_frame = 0u64;
        for sequence in 0..10u64 {
            for index in 0..8u32 {
                let part_end = (sequence * 8 + u64::from(index) + 1) * 22_500;
                let from = next_frame;
                while (next_frame as f64 * frame_ticks) < part_end as f64 {
                    next_frame += 1;
                }
                let pts = (from..next_frame).map(|n| (n as f64 * frame_ticks) as u64);
                let d = demuxed(part_end - 22_500, pts);
                feed(&mut audio, &cut(sequence, index, index == 7), &d);
            }
            let seg = audio.segments.back().unwrap();
            assert_eq!(seg.sequence, sequence);
            assert!(
                !seg.complete(),
                "{sequence} is complete when the next begins"
            );
            if sequence > 0 {
                assert!(audio.segments[audio.segments.len() - 2].complete());
            }
            assert!(
                seg.parts.iter().all(|p| p.duration <= 0.250),
                "{:?}",
                seg.parts.iter().map(|p| p.duration).collect::<Vec<_>>()
            );
        }
        // Each segment's date is the previous one's plus its duration (to the ms), so a
        // player aligning playlists by date never shifts the track when the window slides.
        for pair in audio.segments.iter().collect::<Vec<_>>().windows(2) {
            let end = pair[0].start_ms as f64 + pair[0].duration() * 1000.0;
            assert!(
                (end - pair[1].start_ms as f64).abs() <= 1.0,
                "segment {} ends at {end}, {} starts at {}",
                pair[0].sequence,
                pair[1].sequence,
                pair[1].start_ms
            );
        }
        assert!(
            audio.complete_ended(),
            "the source stopped: the last is complete"
        );
        assert!(audio.segments.iter().all(|s| s.complete()));
        let published: f64 = audio
            .segments
            .iter()
            .flat_map(|s| s.parts.iter())
            .map(|p| p.duration)
            .sum();
        assert!(
            (published - 20.0).abs() < 0.05,
            "20 s of audio arrived, {published} s published"
        );
    }

    /// A segment whose first video part brings no audio frame still has its audio, opened
    /// by the first frame in a later part.
    #[test]
    fn audio_of_a_segment_may_begin_in_a_later_part() {
        let mut audio = LlTrack::audio(250);
        let frames = |n: u64, count: u64| (n..n + count).map(|i| i * 1920);
        feed(&mut audio, &cut(0, 0, false), &demuxed(0, frames(0, 12)));
        feed(
            &mut audio,
            &cut(0, 1, true),
            &demuxed(22_500, frames(12, 11)),
        );
        feed(
            &mut audio,
            &cut(1, 0, false),
            &demuxed(45_000, frames(0, 0)),
        );
        feed(
            &mut audio,
            &cut(1, 1, true),
            &demuxed(67_500, frames(23, 24)),
        );
        let sequences: Vec<u64> = audio.segments.iter().map(|s| s.sequence).collect();
        assert_eq!(sequences, [0, 1]);
        assert!(audio.complete_ended());
        assert!(audio.segments.iter().all(|s| s.complete()));
        // Its date is its first frame's: right after segment 0's 23 frames (490.7 ms).
        assert_eq!(audio.segments[1].start_ms, 1_000_490);
        assert_eq!(audio.segments[1].parts.len(), 3, "11 + 11 + 2 frames");
    }

    /// The source stopped before the segmenter made the open segment (it numbers its next
    /// one the same): its parts go and nothing is listed complete under that number; when
    /// the segmenter did make it, it is complete.
    #[test]
    fn at_a_stop_only_segments_the_segmenter_made_are_complete() {
        let mut video = LlTrack::video();
        let d = |n: u64| demuxed(n * 22_500, std::iter::empty());
        feed(&mut video, &cut(0, 0, false), &d(0));
        feed(&mut video, &cut(0, 1, true), &d(1));
        feed(&mut video, &cut(1, 0, true), &d(2));
        assert!(video.settle_at_stop(1), "segment 1 was never made");
        let listed = |v: &LlTrack| -> Vec<(u64, bool)> {
            v.segments
                .iter()
                .map(|s| (s.sequence, s.complete()))
                .collect()
        };
        assert_eq!(listed(&video), [(0, true)]);
        feed(&mut video, &cut(1, 0, false), &d(3));
        feed(&mut video, &cut(1, 1, true), &d(4));
        assert!(video.settle_at_stop(2));
        assert_eq!(listed(&video), [(0, true), (1, true)]);
    }

    /// A source restart whose first segment brings no audio: the audio of the next one
    /// starts a run of its own, placed by its distance from that segment's keyframe and
    /// marked as a discontinuity (continuing the old run would put it a clock jump away).
    #[test]
    fn audio_after_a_break_without_audio_starts_a_run_of_its_own() {
        let mut audio = LlTrack::audio(250);
        let frames = |from: u64, n: u64| (0..n).map(move |i| from + i * 1920);
        feed(&mut audio, &cut(0, 0, false), &demuxed(0, frames(0, 11)));
        feed(
            &mut audio,
            &cut(0, 1, true),
            &demuxed(22_500, frames(21_120, 12)),
        );
        let mut restart = cut(1, 0, true);
        restart.segment.discontinuity = true;
        feed(
            &mut audio,
            &restart,
            &demuxed(9_000_000, std::iter::empty()),
        );
        // Segment 2 (2 s later): the first frame 10 ms after the keyframe.
        feed(
            &mut audio,
            &cut(2, 0, true),
            &demuxed(9_180_000, frames(9_180_900, 12)),
        );
        let last = audio.segments.back().unwrap();
        assert_eq!(last.sequence, 2);
        assert!(last.discontinuity);
        assert_eq!(last.start_ms, start(2).start_ms + 10);
    }

    /// The segmenter dropped a segment and numbered the next one the same: the number is
    /// listed once, with the new segment.
    #[test]
    fn a_renumbered_segment_replaces_the_dropped_one() {
        let mut video = LlTrack::video();
        let d = |n: u64| demuxed(n * 22_500, std::iter::empty());
        feed(&mut video, &cut(0, 0, false), &d(0));
        feed(&mut video, &cut(0, 1, true), &d(1));
        feed(&mut video, &cut(1, 0, true), &d(2));
        feed(&mut video, &cut(1, 0, false), &d(3));
        let sequences: Vec<u64> = video.segments.iter().map(|s| s.sequence).collect();
        assert_eq!(sequences, [0, 1]);
        assert_eq!(video.segments[1].parts.len(), 1);
        assert!(!video.segments[1].complete());
    }
}
