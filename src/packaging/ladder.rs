//! Cuts every rendition of a ladder at the same instants. The first rendition's [`Segmenter`]
//! decides where segments end; the others cut their own chunk flow at the same PTS (their
//! keyframes are aligned by the encoders) and take the leader's sequence number, start time
//! and duration, so that segment N is the same stretch of time in every rendition: what ABR
//! switching in HLS and DASH needs. A follower may run ahead of or behind the leader; its
//! chunks wait in a bounded queue until the leader's cut and the follower's own keyframe at
//! that cut have both been seen.

use super::Segmenter;
use crate::media::{Chunk, Segment};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::time::Duration;

/// Two chunks whose PTS differ by less than this are the same instant (mpegtsmux of two
/// renditions of one pipeline stamps the same running time; this absorbs rounding).
pub const SAME_INSTANT: Duration = Duration::from_millis(20);
/// A follower keeps at most this many targets of chunks waiting for the leader.
const MAX_WAIT_TARGETS: u32 = 6;

/// Where the leader cut one segment.
#[derive(Debug, Clone)]
struct Cut {
    /// The leader's run this cut belongs to (counts breaks).
    run: u64,
    start_pts: Duration,
    /// `None` when the run broke without a known end: the follower takes what it has.
    end_pts: Option<Duration>,
    /// The last cut of its run: complete it with the chunks at hand instead of waiting for a
    /// chunk past its end, which the old run will never deliver.
    last_of_run: bool,
    sequence: u64,
    start_ms: u64,
    duration_ms: u32,
    discontinuity: bool,
}

/// One non-leading rendition.
#[derive(Debug, Default)]
struct Follower {
    /// Chunks not yet in a segment with the run they belong to, in arrival order.
    chunks: VecDeque<(u64, Chunk)>,
    /// Cuts of the leader this rendition has not completed yet, oldest first.
    pending: VecDeque<Cut>,
    /// The run incoming chunks belong to: the leader's run numbering, advanced by a
    /// [`LadderSegmenter::break_run`] or by this rendition's own timeline going back.
    run: u64,
    /// Highest PTS seen in the current run.
    newest: Option<Duration>,
    /// Segments whose first chunk was not a keyframe (misaligned encoders).
    misaligned: u64,
    /// Chunks dropped because the leader fell too far behind.
    overflowed: u64,
}

/// Segmenter of a whole ladder; a ladder of one is just its leader.
#[derive(Debug)]
pub struct LadderSegmenter {
    leader: Segmenter,
    /// The leader's current run (incremented at every break).
    run: u64,
    followers: Vec<Follower>,
    target: Duration,
}

impl LadderSegmenter {
    /// `renditions` ≥ 1 segmenters cutting at `target` durations.
    pub fn new(target: Duration, renditions: usize) -> Self {
        LadderSegmenter {
            leader: Segmenter::new(target),
            run: 0,
            followers: (1..renditions.max(1))
                .map(|_| Follower::default())
                .collect(),
            target,
        }
    }

    /// Adds one chunk of rendition `chunk.rendition`; returns the segments completed by it
    /// as `(rendition, segment)`. Chunks of an unknown rendition are ignored.
    pub fn push(&mut self, chunk: &Chunk, now_ms: u64) -> Vec<(usize, Segment)> {
        let mut out = Vec::new();
        if chunk.rendition == 0 {
            let segment = self.leader.push(chunk, now_ms);
            // A timestamp jump ends the leader's run inside `push`; the followers see the
            // same jump in their own chunks and start their new run themselves.
            let broke = self.leader.take_break();
            self.lead(segment, broke, &mut out);
        } else if let Some(f) = self.followers.get_mut(chunk.rendition - 1) {
            f.push(chunk.clone(), self.target);
            f.complete(chunk.rendition, &mut out);
        }
        out
    }

    /// The source stopped: closes every rendition's open segment. Nothing of the next run
    /// has arrived yet, so every follower starts it now.
    pub fn break_run(&mut self) -> Vec<(usize, Segment)> {
        let mut out = Vec::new();
        let segment = self.leader.break_run();
        self.leader.take_break();
        self.lead(segment, true, &mut out);
        for f in &mut self.followers {
            f.run = self.run;
            f.newest = None;
            f.chunks.clear();
        }
        out
    }

    /// See [`Segmenter::resume`]; the other renditions follow the leader's numbering.
    pub fn resume(&mut self, next_sequence: u64, last_end_ms: u64) {
        self.leader.resume(next_sequence, last_end_ms);
    }

    /// See [`Segmenter::building`] (the first rendition's).
    pub fn building(&self) -> Option<super::parts::SegmentStart> {
        self.leader.building()
    }

    /// See [`Segmenter::position`].
    pub fn position(&self) -> (u64, u64) {
        self.leader.position()
    }

    /// Misaligned segments and overflowed chunks of all followers (for logs and tests).
    pub fn follower_problems(&self) -> (u64, u64) {
        self.followers
            .iter()
            .fold((0, 0), |(m, o), f| (m + f.misaligned, o + f.overflowed))
    }

    /// Hands the leader's new segment (if any) to the followers as a cut; `broke`: the
    /// leader's run ended with it.
    fn lead(&mut self, segment: Option<Segment>, broke: bool, out: &mut Vec<(usize, Segment)>) {
        let run = self.run;
        let cut = segment.as_ref().and_then(|segment| {
            let (start_pts, end_pts) = self.leader.last_cut()?;
            Some(Cut {
                run,
                start_pts,
                end_pts: (!broke).then_some(end_pts),
                last_of_run: broke,
                sequence: segment.sequence,
                start_ms: segment.start_ms,
                duration_ms: segment.duration_ms,
                discontinuity: segment.discontinuity,
            })
        });
        for (i, f) in self.followers.iter_mut().enumerate() {
            if let Some(cut) = &cut {
                f.pending.push_back(cut.clone());
            }
            if broke {
                f.pending
                    .iter_mut()
                    .filter(|c| c.run == run)
                    .for_each(|c| c.last_of_run = true);
            }
            f.complete(i + 1, out);
        }
        if broke {
            self.run += 1;
        }
        if let Some(segment) = segment {
            out.push((0, segment));
        }
        // Leader first, then the renditions in order.
        out.sort_by_key(|(r, s)| (s.sequence, *r));
    }
}

/// Whether chunk `c` lies before the cut point `at`. Keyframe chunks are matched with a
/// tolerance (the same instant in two muxers); audio and other chunks strictly, so that they
/// fall on the same side as in the leader's segments.
fn before(c: &Chunk, at: Duration) -> bool {
    match c.pts {
        Some(p) if c.keyframe => p + SAME_INSTANT < at,
        Some(p) => p < at,
        None => true,
    }
}

impl Follower {
    fn push(&mut self, chunk: Chunk, target: Duration) {
        if let (Some(pts), Some(newest)) = (chunk.pts, self.newest)
            && pts + target * 5 < newest
        {
            // The timeline went back: a new run, as the leader will find too.
            self.run += 1;
            self.newest = None;
        }
        if let Some(pts) = chunk.pts {
            self.newest = Some(self.newest.map_or(pts, |n| n.max(pts)));
        }
        self.chunks.push_back((self.run, chunk));
        // Bound the wait: keep only the newest MAX_WAIT_TARGETS targets of this run's chunks
        // (and nothing of older runs once that much of the new one has arrived).
        if let Some(newest) = self.newest {
            let run = self.run;
            while self.chunks.front().is_some_and(|(r, c)| {
                *r < run && c.pts.is_some() && newest > target * MAX_WAIT_TARGETS
                    || *r == run
                        && c.pts
                            .is_some_and(|p| p + target * MAX_WAIT_TARGETS < newest)
            }) {
                self.chunks.pop_front();
                self.overflowed += 1;
            }
        }
    }

    /// Whether every chunk of `cut` has arrived.
    fn ready(&self, cut: &Cut) -> bool {
        if cut.last_of_run || cut.run < self.run {
            return true;
        }
        match cut.end_pts {
            _ if cut.run > self.run => false,
            None => true,
            Some(end) => self.newest.is_some_and(|n| n + SAME_INSTANT >= end),
        }
    }

    /// Emits every pending cut this rendition has all the chunks of.
    fn complete(&mut self, rendition: usize, out: &mut Vec<(usize, Segment)>) {
        while let Some(cut) = self.pending.front() {
            if !self.ready(cut) {
                return;
            }
            let Some(cut) = self.pending.pop_front() else {
                return;
            };
            // Drop chunks of older runs and what precedes the cut's start (pre-roll, or a
            // leader that skipped ahead).
            while self
                .chunks
                .front()
                .is_some_and(|(r, c)| *r < cut.run || *r == cut.run && before(c, cut.start_pts))
            {
                self.chunks.pop_front();
            }
            let mut data = BytesMut::new();
            let mut first_keyframe = None;
            while let Some((r, c)) = self.chunks.front() {
                if *r != cut.run || cut.end_pts.is_some_and(|end| !before(c, end)) {
                    break;
                }
                first_keyframe.get_or_insert(c.keyframe);
                data.extend_from_slice(&c.data);
                self.chunks.pop_front();
            }
            if data.is_empty() {
                continue;
            }
            if first_keyframe == Some(false) {
                self.misaligned += 1;
            }
            out.push((
                rendition,
                Segment {
                    sequence: cut.sequence,
                    start_ms: cut.start_ms,
                    duration_ms: cut.duration_ms,
                    discontinuity: cut.discontinuity,
                    data: data.freeze(),
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn chunk(rendition: usize, ms: u64, keyframe: bool) -> Chunk {
        Chunk {
            data: Bytes::from(vec![rendition as u8; 188]),
            pts: Some(Duration::from_millis(ms)),
            keyframe,
            rendition,
        }
    }

    /// 25 fps, keyframe every 50 frames, rendition 1 arriving `lag` frames after rendition 0.
    fn feed(l: &mut LadderSegmenter, frames: u64, lag: u64) -> Vec<(usize, Segment)> {
        let mut out = Vec::new();
        for i in 0..frames + lag {
            if i < frames {
                out.extend(l.push(&chunk(0, i * 40, i.is_multiple_of(50)), 1_000 + i * 40));
            }
            if i >= lag {
                let j = i - lag;
                out.extend(l.push(&chunk(1, j * 40, j.is_multiple_of(50)), 1_000 + i * 40));
            }
        }
        out
    }

    fn check_aligned(out: &[(usize, Segment)], segments: usize) {
        let of = |r: usize| -> Vec<&Segment> {
            out.iter()
                .filter(|(x, _)| *x == r)
                .map(|(_, s)| s)
                .collect()
        };
        let (a, b) = (of(0), of(1));
        assert_eq!(a.len(), segments);
        assert_eq!(b.len(), segments);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (x.sequence, x.start_ms, x.duration_ms),
                (y.sequence, y.start_ms, y.duration_ms)
            );
            assert_eq!(y.data.len(), 50 * 188, "a whole GOP of rendition 1");
            assert_eq!(y.data[0], 1);
        }
    }

    #[test]
    fn followers_cut_where_the_leader_cuts() {
        for lag in [0, 7, 60] {
            let mut l = LadderSegmenter::new(Duration::from_secs(2), 2);
            let out = feed(&mut l, 50 * 4 + 1, lag);
            check_aligned(&out, 4);
            assert_eq!(l.follower_problems(), (0, 0), "lag {lag}");
        }
    }

    #[test]
    fn a_follower_ahead_of_the_leader_waits_for_its_cut() {
        let mut l = LadderSegmenter::new(Duration::from_secs(2), 2);
        let mut out = Vec::new();
        // Rendition 1 delivers 3 GOPs before rendition 0 delivers anything.
        for j in 0..151 {
            out.extend(l.push(&chunk(1, j * 40, j.is_multiple_of(50)), 0));
        }
        assert!(out.is_empty());
        for i in 0..151 {
            out.extend(l.push(&chunk(0, i * 40, i.is_multiple_of(50)), 0));
        }
        check_aligned(&out, 3);
    }

    #[test]
    fn a_break_closes_every_rendition() {
        let mut l = LadderSegmenter::new(Duration::from_secs(2), 2);
        let mut out = feed(&mut l, 75, 0);
        out.extend(l.break_run());
        let tail: Vec<_> = out.iter().filter(|(_, s)| s.sequence == 1).collect();
        assert_eq!(tail.len(), 2, "partial segment in both renditions");
        assert!(tail.iter().all(|(_, s)| s.data.len() == 25 * 188));
    }

    /// 25 fps video with a keyframe every 50 frames plus 48 kHz AAC frames (21.33 ms), as
    /// mpegtsmux interleaves them, for both renditions; rendition 1 lags `lag` chunks.
    fn feed_av(
        l: &mut LadderSegmenter,
        from_ms: u64,
        ms: u64,
        lag: usize,
    ) -> Vec<(usize, Segment)> {
        let mut flow: Vec<(u64, bool, bool)> = Vec::new(); // (pts µs, video, keyframe)
        let mut v = 0;
        while v * 40 < ms {
            flow.push(((from_ms + v * 40) * 1000, true, v % 50 == 0));
            v += 1;
        }
        let mut a = 0;
        while a * 21_333 < ms * 1000 {
            flow.push((from_ms * 1000 + a * 21_333, false, false));
            a += 1;
        }
        flow.sort_by_key(|f| f.0);
        let chunk_at = |r: usize, (us, video, key): (u64, bool, bool)| Chunk {
            data: Bytes::from(vec![if video { 0x47 } else { 0xAA }; 188]),
            pts: Some(Duration::from_micros(us)),
            keyframe: key,
            rendition: r,
        };
        let mut out = Vec::new();
        for i in 0..flow.len() + lag {
            if i < flow.len() {
                out.extend(l.push(&chunk_at(0, flow[i]), i as u64));
            }
            if i >= lag {
                out.extend(l.push(&chunk_at(1, flow[i - lag]), i as u64));
            }
        }
        out
    }

    #[test]
    fn audio_falls_on_the_same_side_of_each_cut_in_every_rendition() {
        for lag in [0, 5, 150] {
            let mut l = LadderSegmenter::new(Duration::from_secs(2), 2);
            let out = feed_av(&mut l, 0, 8_100, lag);
            let (a, b): (Vec<_>, Vec<_>) = out.iter().partition(|(r, _)| *r == 0);
            assert_eq!(a.len(), 4, "lag {lag}");
            assert_eq!(a.len(), b.len(), "lag {lag}");
            for ((_, x), (_, y)) in a.iter().zip(&b) {
                assert_eq!(x.sequence, y.sequence);
                assert_eq!(
                    x.data.len(),
                    y.data.len(),
                    "same chunks on each side, lag {lag}"
                );
                assert_eq!(
                    y.data[0], 0x47,
                    "rendition 2 starts with its keyframe, lag {lag}"
                );
            }
            assert_eq!(l.follower_problems(), (0, 0), "lag {lag}");
        }
    }

    #[test]
    fn a_follower_behind_at_a_restart_does_not_stall() {
        let mut l = LadderSegmenter::new(Duration::from_secs(2), 2);
        let t0 = 3_600_000; // an hour into the run
        let mut out = Vec::new();
        // The leader delivers 3 GOPs and the first frame of the 4th (two cuts made)…
        for i in 0..151u64 {
            out.extend(l.push(&chunk(0, t0 + i * 40, i.is_multiple_of(50)), 0));
        }
        // …but the follower's last 30 frames die with the pipeline.
        for j in 0..120u64 {
            out.extend(l.push(&chunk(1, t0 + j * 40, j.is_multiple_of(50)), 0));
        }
        out.extend(l.break_run());
        // The new run starts at PTS 0.
        for i in 0..201u64 {
            out.extend(l.push(&chunk(0, i * 40, i.is_multiple_of(50)), 0));
            out.extend(l.push(&chunk(1, i * 40, i.is_multiple_of(50)), 0));
        }
        let of = |r: usize| -> Vec<u64> {
            out.iter()
                .filter(|(x, _)| *x == r)
                .map(|(_, s)| s.sequence)
                .collect()
        };
        // Old run: 0, 1, 2 cut at keyframes, 3 (one frame) closed by the break; new run 4..=7.
        assert_eq!(of(0), [0, 1, 2, 3, 4, 5, 6, 7]);
        // Rendition 2 lost the end of 2 and all of 3 with its pipeline, and kept up after.
        assert_eq!(of(1), [0, 1, 2, 4, 5, 6, 7]);
        assert_eq!(
            l.follower_problems().0,
            0,
            "every segment starts on a keyframe"
        );
    }

    #[test]
    fn a_timestamp_jump_without_a_break_restarts_every_rendition() {
        let mut l = LadderSegmenter::new(Duration::from_secs(2), 2);
        feed_av(&mut l, 3_600_000, 10_100, 10);
        let after = feed_av(&mut l, 0, 8_100, 10);
        let n = |r: usize| after.iter().filter(|(x, _)| *x == r).count();
        assert!(n(1) >= 3 && n(1) + 1 >= n(0), "{} vs {}", n(1), n(0));
    }

    #[test]
    fn misaligned_keyframes_are_counted() {
        let mut l = LadderSegmenter::new(Duration::from_secs(2), 2);
        for i in 0..201u64 {
            l.push(&chunk(0, i * 40, i.is_multiple_of(50)), 0);
            // rendition 1 has its keyframes 5 frames late
            l.push(&chunk(1, i * 40, i % 50 == 5), 0);
        }
        assert!(l.follower_problems().0 > 0);
    }

    #[test]
    fn a_single_rendition_is_the_plain_segmenter() {
        let mut l = LadderSegmenter::new(Duration::from_secs(2), 1);
        let out: Vec<_> = (0..101u64)
            .flat_map(|i| l.push(&chunk(0, i * 40, i.is_multiple_of(50)), 0))
            .collect();
        assert_eq!(out.len(), 2);
        assert!(
            l.push(&chunk(3, 0, true), 0).is_empty(),
            "unknown rendition"
        );
    }
}
