//! Cuts the muxed chunk flow into keyframe-aligned segments and gives each its wall-clock start.

use super::fmp4::{self, AvcConfig};
use crate::media::{Chunk, Segment};
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// A segment is cut at the first keyframe once this share of the target has passed, so a
/// GOP that equals the target (with timestamp rounding) still cuts at every keyframe.
pub const CUT_AT_PERCENT: u128 = 90;
/// A segment still without a keyframe after this many targets is dropped (memory bound).
const MAX_TARGETS_WITHOUT_KEYFRAME: u32 = 10;
/// A timestamp jump larger than this many targets is a discontinuity (source restarted).
const JUMP_TARGETS: u32 = 5;

#[derive(Debug)]
struct Building {
    start_pts: Duration,
    /// Wall-clock start in ms; equals the previous segment's end within one run.
    start_ms: u64,
    data: BytesMut,
    discontinuity: bool,
}

/// Turns [`Chunk`]s into [`Segment`]s.
///
/// Within one run of the source, start times are derived from one anchor (first keyframe's
/// PTS ↔ wall clock), so consecutive segments tile time exactly: `start[n+1] = start[n] + dur[n]`.
#[derive(Debug)]
pub struct Segmenter {
    target: Duration,
    /// `Some` once a keyframe has opened a segment; chunks before that are discarded.
    building: Option<Building>,
    /// (PTS, UTC ms) of the first keyframe of the current run.
    anchor: Option<(Duration, u64)>,
    /// End of the last emitted segment in UTC ms; a new run never starts before it.
    last_end_ms: u64,
    /// Sequence number the next emitted segment gets.
    next_sequence: u64,
    /// The next segment opened starts a new run after a break.
    pending_discontinuity: bool,
    /// Last PTS seen in this run and the smallest positive step between two PTS (≈ a frame).
    last_pts: Option<Duration>,
    min_step: Option<Duration>,
    /// Chunks thrown away because no keyframe had opened a segment yet.
    pub discarded_chunks: u64,
    /// (start PTS, end PTS) of the last segment emitted: where the other renditions of a
    /// ladder cut theirs.
    last_cut: Option<(Duration, Duration)>,
    /// A run ended (timestamp jump or [`Segmenter::break_run`]) since [`Segmenter::take_break`]
    /// was last called.
    broke: bool,
    /// H.264 parameter sets of the last keyframe seen. A keyframe with other ones (an encoder
    /// restarted at another size) cuts the segment at once: players set up their decoder per
    /// segment and cannot decode the old pictures with the new configuration or the reverse.
    params: Option<AvcConfig>,
    /// Bytes of the last segment emitted (0 before the first): what the next one reserves.
    last_size: usize,
}

impl Segmenter {
    pub fn new(target: Duration) -> Self {
        Segmenter {
            target,
            building: None,
            anchor: None,
            last_end_ms: 0,
            next_sequence: 0,
            pending_discontinuity: false,
            last_pts: None,
            min_step: None,
            discarded_chunks: 0,
            last_cut: None,
            broke: false,
            params: None,
            last_size: 0,
        }
    }

    /// Continues the numbering of a segmenter that came before (a stream restarted by a
    /// configuration change): the next segment gets `next_sequence`, starts no earlier than
    /// `last_end_ms` and is a discontinuity.
    pub fn resume(&mut self, next_sequence: u64, last_end_ms: u64) {
        self.next_sequence = next_sequence;
        self.last_end_ms = last_end_ms;
        self.pending_discontinuity = true;
    }

    /// (sequence of the next segment, UTC ms where the last one ended).
    pub fn position(&self) -> (u64, u64) {
        (self.next_sequence, self.last_end_ms)
    }

    /// True once after the run ended (by a timestamp jump or [`Segmenter::break_run`]): the
    /// segment just returned, if any, was the last of its run.
    pub fn take_break(&mut self) -> bool {
        std::mem::take(&mut self.broke)
    }

    /// The segment being filled: the sequence number it will get, its start and whether it
    /// follows a break (`None` before a keyframe opened one).
    pub fn building(&self) -> Option<super::parts::SegmentStart> {
        self.building.as_ref().map(|b| super::parts::SegmentStart {
            sequence: self.next_sequence,
            start_ms: b.start_ms,
            discontinuity: b.discontinuity,
        })
    }

    /// PTS range of the last segment emitted (`start..end`).
    pub fn last_cut(&self) -> Option<(Duration, Duration)> {
        self.last_cut
    }

    /// Adds one chunk; returns the segment it closed, if any. `now_ms` is the wall clock.
    pub fn push(&mut self, chunk: &Chunk, now_ms: u64) -> Option<Segment> {
        let mut closed = None;
        if let Some(pts) = chunk.pts {
            if let Some(last) = self.last_pts {
                let limit = self.target * JUMP_TARGETS;
                if pts + limit < last || pts > last + limit {
                    closed = self.break_run();
                } else if pts > last {
                    let step = pts - last;
                    self.min_step = Some(self.min_step.map_or(step, |m| m.min(step)));
                }
            }
            self.last_pts = Some(pts);
        }
        let reconfigured = chunk.keyframe && self.reconfigured_by(chunk);
        match (&mut self.building, chunk.pts) {
            (Some(b), Some(pts)) if chunk.keyframe => {
                let elapsed = pts.saturating_sub(b.start_pts);
                if reconfigured && !elapsed.is_zero()
                    || elapsed.as_nanos() * 100 >= self.target.as_nanos() * CUT_AT_PERCENT
                {
                    let done = self.finish(pts);
                    self.open(pts, now_ms, &chunk.data);
                    return done;
                }
                b.data.extend_from_slice(&chunk.data);
            }
            (Some(b), pts) => {
                if let Some(pts) = pts
                    && pts.saturating_sub(b.start_pts) > self.target * MAX_TARGETS_WITHOUT_KEYFRAME
                {
                    self.discarded_chunks += 1;
                    self.building = None;
                    self.pending_discontinuity = true;
                    return closed;
                }
                b.data.extend_from_slice(&chunk.data);
            }
            (None, Some(pts)) if chunk.keyframe => self.open(pts, now_ms, &chunk.data),
            (None, _) => self.discarded_chunks += 1,
        }
        closed
    }

    /// Notes the parameter sets of keyframe `chunk`; true when they differ from the last ones.
    /// A chunk whose parameter sets cannot be read changes nothing.
    fn reconfigured_by(&mut self, chunk: &Chunk) -> bool {
        let Some(params) = fmp4::parameter_sets(&chunk.data) else {
            return false;
        };
        let changed = self.params.as_ref().is_some_and(|old| *old != params);
        self.params = Some(params);
        changed
    }

    /// The source stopped or restarted: closes the open segment with an estimated end and makes
    /// the next segment a discontinuity with a fresh anchor.
    pub fn break_run(&mut self) -> Option<Segment> {
        let done = self.building.as_ref().and_then(|b| {
            let last = self.last_pts?;
            let end = last + self.min_step.unwrap_or_default();
            (end > b.start_pts).then_some(end)
        });
        let segment = match done {
            Some(end) => self.finish(end),
            None => None,
        };
        self.building = None;
        self.anchor = None;
        self.last_pts = None;
        self.min_step = None;
        self.pending_discontinuity = true;
        self.broke = true;
        segment
    }

    fn open(&mut self, pts: Duration, now_ms: u64, data: &[u8]) {
        let start_ms = match self.anchor {
            Some((anchor_pts, anchor_ms)) => anchor_ms + millis(pts.saturating_sub(anchor_pts)),
            None => {
                let start = now_ms.max(self.last_end_ms);
                self.anchor = Some((pts, start));
                start
            }
        };
        // About the last segment's size (a segment lives a minute in the window and grace
        // period, so its spare capacity is memory held for nothing; `exact` trims what is
        // left). Before the first, a keyframe's worth: the buffer grows by doubling.
        let reserve = if self.last_size > 0 {
            self.last_size + self.last_size / 8
        } else {
            data.len() * 4
        };
        let mut buf = BytesMut::with_capacity(reserve.max(data.len()));
        buf.extend_from_slice(data);
        self.building = Some(Building {
            start_pts: pts,
            start_ms,
            data: buf,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
        });
    }

    fn finish(&mut self, end_pts: Duration) -> Option<Segment> {
        let b = self.building.take()?;
        let end_ms = match self.anchor {
            Some((anchor_pts, anchor_ms)) => anchor_ms + millis(end_pts.saturating_sub(anchor_pts)),
            None => b.start_ms + millis(end_pts.saturating_sub(b.start_pts)),
        };
        let duration_ms = u32::try_from(end_ms.saturating_sub(b.start_ms)).ok()?;
        if duration_ms == 0 {
            return None;
        }
        self.last_end_ms = end_ms;
        self.last_cut = Some((b.start_pts, end_pts));
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.last_size = b.data.len();
        Some(Segment {
            sequence,
            start_ms: b.start_ms,
            duration_ms,
            discontinuity: b.discontinuity,
            data: exact(b.data),
        })
    }
}

/// `data` frozen; copied into an allocation of its own size when more than an eighth of its
/// capacity would be held unused (a copy of a segment every segment duration costs far less
/// than keeping the slack of every segment in the window).
fn exact(data: BytesMut) -> Bytes {
    if data.capacity() - data.len() > data.len() / 8 {
        Bytes::copy_from_slice(&data)
    } else {
        data.freeze()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment reserves about the last one's size, not a multiple of its keyframe (2.7 MB
    /// held for a 720p keyframe of 40 KB before), and keeps no more than an eighth spare.
    #[test]
    fn a_segment_holds_about_its_own_size() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        let done = run(&mut seg, 0, 51, 50, 1_700_000_000_000);
        assert_eq!(done.len(), 1);
        let size = done[0].data.len();
        assert_eq!(size, 50 * 188);
        let building = seg.building.as_ref().unwrap();
        assert!(
            building.data.capacity() <= size + size / 8 + 188,
            "{} reserved after a segment of {size}",
            building.data.capacity()
        );
        // Slack beyond an eighth is copied away; a snug buffer is frozen as it is.
        let mut loose = BytesMut::with_capacity(64 * 1024);
        loose.extend_from_slice(&[7; 1000]);
        let at = loose.as_ptr();
        let trimmed = exact(loose);
        assert_eq!(&trimmed[..], &[7; 1000][..]);
        assert_ne!(trimmed.as_ptr(), at, "copied into its own allocation");
        let mut snug = BytesMut::with_capacity(1100);
        snug.extend_from_slice(&[7; 1000]);
        let at = snug.as_ptr();
        assert_eq!(exact(snug).as_ptr(), at, "frozen in place");
    }

    fn chunk(ms: u64, keyframe: bool) -> Chunk {
        Chunk {
            data: Bytes::from(vec![if keyframe { 1 } else { 0 }; 188]),
            pts: Some(Duration::from_millis(ms)),
            keyframe,
            rendition: 0,
        }
    }

    /// Feeds 25 fps video with a keyframe every `gop` frames; returns the segments.
    fn run(seg: &mut Segmenter, from_ms: u64, frames: u64, gop: u64, wall: u64) -> Vec<Segment> {
        (0..frames)
            .filter_map(|i| seg.push(&chunk(from_ms + i * 40, i % gop == 0), wall + i * 40))
            .collect()
    }

    #[test]
    fn cuts_at_keyframes_and_tiles_time() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        let out = run(&mut seg, 1000, 50 * 4 + 1, 50, 1_700_000_000_000);
        assert_eq!(out.len(), 4);
        for (i, s) in out.iter().enumerate() {
            assert_eq!(s.sequence, i as u64);
            assert_eq!(s.duration_ms, 2000);
            assert_eq!(s.start_ms, 1_700_000_000_000 + 2000 * i as u64);
            assert_eq!(s.data.len(), 50 * 188);
            assert_eq!(s.data[0], 1, "segment starts with the keyframe chunk");
            assert!(!s.discontinuity);
        }
    }

    #[test]
    fn short_gops_are_grouped_up_to_the_target() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        // keyframe every 0.8 s: cuts when ≥1.8 s passed → at 2.4 s
        let out = run(&mut seg, 0, 20 * 6 + 1, 20, 0);
        assert_eq!(
            out.iter().map(|s| s.duration_ms).collect::<Vec<_>>(),
            [2400, 2400]
        );
    }

    #[test]
    fn leading_chunks_before_a_keyframe_are_discarded() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        assert!(seg.push(&chunk(0, false), 0).is_none());
        assert!(seg.push(&chunk(40, false), 40).is_none());
        assert_eq!(seg.discarded_chunks, 2);
        let out = run(&mut seg, 80, 51, 50, 80);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start_ms, 80);
    }

    #[test]
    fn restart_closes_the_partial_segment_and_marks_a_discontinuity() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        let first = run(&mut seg, 0, 75, 50, 10_000);
        assert_eq!(first.len(), 1);
        // 25 frames of the second segment, then the source dies.
        let partial = seg.break_run().expect("partial segment");
        assert_eq!(partial.start_ms, 12_000);
        assert_eq!(partial.duration_ms, 1000);
        // The new run starts at PTS 0 again, a little later on the wall clock.
        let second = run(&mut seg, 0, 51, 50, 14_500);
        assert_eq!(second.len(), 1);
        assert!(second[0].discontinuity);
        assert_eq!(second[0].start_ms, 14_500);
        assert_eq!(second[0].sequence, 2);
    }

    #[test]
    fn a_new_run_never_starts_before_the_last_end() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        run(&mut seg, 0, 51, 50, 10_000);
        // the one-frame partial segment from 12_000 closes at 12_040
        assert_eq!(seg.break_run().map(|s| s.duration_ms), Some(40));
        let out = run(&mut seg, 0, 51, 50, 9_000); // wall clock stepped back
        assert_eq!(out[0].start_ms, 12_040);
    }

    /// A keyframe chunk of real `mpegtsmux` output; `level` rewrites the SPS's level_idc.
    fn keyframe_with_level(ms: u64, level: Option<u8>) -> Chunk {
        let mut data = include_bytes!("../../tests/fixtures/fmp4/seg0.ts").to_vec();
        if let Some(level) = level {
            let sps = data
                .windows(5)
                .position(|w| w == [0, 0, 0, 1, 0x67])
                .expect("SPS in the fixture");
            data[sps + 7] = level;
        }
        Chunk {
            data: Bytes::from(data),
            pts: Some(Duration::from_millis(ms)),
            keyframe: true,
            rendition: 0,
        }
    }

    #[test]
    fn new_parameter_sets_cut_at_once() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        assert!(seg.push(&keyframe_with_level(0, None), 0).is_none());
        for i in 1..10 {
            assert!(seg.push(&chunk(i * 40, false), i * 40).is_none());
        }
        // 0.4 s into the segment the encoder restarts at another level: cut there.
        let cut = seg.push(&keyframe_with_level(400, Some(0x29)), 400);
        assert_eq!(cut.map(|s| s.duration_ms), Some(400));
        // The same new parameter sets again do not cut before the target.
        assert!(
            seg.push(&keyframe_with_level(800, Some(0x29)), 800)
                .is_none()
        );
        // Back to the old ones: cut again.
        let cut = seg.push(&keyframe_with_level(1200, None), 1200);
        assert_eq!(cut.map(|s| s.duration_ms), Some(800));
    }

    #[test]
    fn timestamp_jump_is_a_discontinuity() {
        let mut seg = Segmenter::new(Duration::from_secs(2));
        run(&mut seg, 100_000, 60, 50, 0);
        // jump back to 0 without a restart message
        let out = run(&mut seg, 0, 101, 50, 5_000);
        assert!(out.iter().any(|s| s.discontinuity));
    }
}
