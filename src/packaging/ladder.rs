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
const SAME_INSTANT: Duration = Duration::from_millis(20);
/// A follower keeps at most this many targets of chunks waiting for the leader.
const MAX_WAIT_TARGETS: u32 = 6;

/// Where the leader cut one segment.
#[derive(Debug, Clone)]
struct Cut {
    start_pts: Duration,
    /// `None` when the run broke: the follower takes whatever it has.
    end_pts: Option<Duration>,
    sequence: u64,
    start_ms: u64,
    duration_ms: u32,
    discontinuity: bool,
}

/// One non-leading rendition.
#[derive(Debug, Default)]
struct Follower {
    /// Chunks not yet in a segment, in arrival order.
    chunks: VecDeque<Chunk>,
    /// Cuts of the leader this rendition has not completed yet, oldest first.
    pending: VecDeque<Cut>,
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
    followers: Vec<Follower>,
    target: Duration,
}

impl LadderSegmenter {
    /// `renditions` ≥ 1 segmenters cutting at `target` durations.
    pub fn new(target: Duration, renditions: usize) -> Self {
        LadderSegmenter {
            leader: Segmenter::new(target),
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
            if let Some(segment) = self.leader.push(chunk, now_ms) {
                self.lead(segment, false, &mut out);
            }
        } else if let Some(f) = self.followers.get_mut(chunk.rendition - 1) {
            f.push(chunk.clone(), self.target);
            f.complete(chunk.rendition, &mut out);
        }
        out
    }

    /// The source stopped: closes every rendition's open segment.
    pub fn break_run(&mut self) -> Vec<(usize, Segment)> {
        let mut out = Vec::new();
        match self.leader.break_run() {
            Some(segment) => self.lead(segment, true, &mut out),
            None => {
                for f in &mut self.followers {
                    f.chunks.clear();
                    f.newest = None;
                }
            }
        }
        out
    }

    /// Misaligned segments and overflowed chunks of all followers (for logs and tests).
    pub fn follower_problems(&self) -> (u64, u64) {
        self.followers
            .iter()
            .fold((0, 0), |(m, o), f| (m + f.misaligned, o + f.overflowed))
    }

    fn lead(&mut self, segment: Segment, broke: bool, out: &mut Vec<(usize, Segment)>) {
        if let Some((start_pts, end_pts)) = self.leader.last_cut() {
            let cut = Cut {
                start_pts,
                end_pts: (!broke).then_some(end_pts),
                sequence: segment.sequence,
                start_ms: segment.start_ms,
                duration_ms: segment.duration_ms,
                discontinuity: segment.discontinuity,
            };
            for (i, f) in self.followers.iter_mut().enumerate() {
                f.pending.push_back(cut.clone());
                f.complete(i + 1, out);
                if broke {
                    f.newest = None;
                }
            }
        }
        out.push((0, segment));
        // Leader first, then the renditions in order.
        out.sort_by_key(|(r, s)| (s.sequence, *r));
    }
}

impl Follower {
    fn push(&mut self, chunk: Chunk, target: Duration) {
        if let (Some(pts), Some(newest)) = (chunk.pts, self.newest)
            && pts + target * 5 < newest
        {
            // The timeline went back (a restart the leader will see too): what waits is
            // complete as far as this run goes.
            self.newest = None;
        }
        if let Some(pts) = chunk.pts {
            self.newest = Some(self.newest.map_or(pts, |n| n.max(pts)));
        }
        self.chunks.push_back(chunk);
        // Bound the wait: keep only the newest MAX_WAIT_TARGETS targets of chunks.
        if let Some(newest) = self.newest {
            while self.chunks.front().is_some_and(|c| {
                c.pts
                    .is_some_and(|p| p + target * MAX_WAIT_TARGETS < newest)
            }) {
                self.chunks.pop_front();
                self.overflowed += 1;
            }
        }
    }

    /// Emits every pending cut this rendition has all the chunks of.
    fn complete(&mut self, rendition: usize, out: &mut Vec<(usize, Segment)>) {
        while let Some(cut) = self.pending.front() {
            let ready = match cut.end_pts {
                None => true,
                Some(end) => self.newest.is_some_and(|n| n + SAME_INSTANT >= end),
            };
            if !ready {
                return;
            }
            let Some(cut) = self.pending.pop_front() else {
                return;
            };
            // Drop what precedes the cut's start (pre-roll, or a leader that skipped ahead).
            while self
                .chunks
                .front()
                .is_some_and(|c| c.pts.is_none_or(|p| p + SAME_INSTANT < cut.start_pts))
            {
                self.chunks.pop_front();
            }
            let mut data = BytesMut::new();
            let mut first_keyframe = None;
            while let Some(c) = self.chunks.front() {
                if let (Some(end), Some(p)) = (cut.end_pts, c.pts)
                    && p + SAME_INSTANT >= end
                {
                    break;
                }
                let Some(c) = self.chunks.pop_front() else {
                    break;
                };
                first_keyframe.get_or_insert(c.keyframe);
                data.extend_from_slice(&c.data);
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
