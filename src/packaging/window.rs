//! The live window: the last `segment_count` segments, plus recently dropped ones kept for a
//! grace period because players that loaded an older playlist may still fetch them.

use super::{RenditionSnapshot, hls};
use crate::media::{MediaInfo, Segment};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug)]
struct Retired {
    segment: Arc<Segment>,
    /// Monotonic ms after which nothing may still reference it.
    free_at_ms: u64,
}

/// Sliding window of segments for one stream.
#[derive(Debug)]
pub struct Window {
    /// Segments in the live playlist; never more than `capacity`, oldest first.
    live: VecDeque<Arc<Segment>>,
    capacity: usize,
    /// Dropped from the playlist but still served, oldest first.
    retired: VecDeque<Retired>,
    /// Count of discontinuity tags that have slid out of the playlist.
    discontinuity_sequence: u64,
    /// Configured segment duration; `EXT-X-TARGETDURATION` is never below it.
    target_ms: u32,
}

impl Window {
    pub fn new(capacity: usize, target_ms: u32) -> Self {
        Window {
            live: VecDeque::with_capacity(capacity + 1),
            capacity: capacity.max(1),
            retired: VecDeque::new(),
            discontinuity_sequence: 0,
            target_ms,
        }
    }

    /// Continues the numbering of a window that came before (a stream restarted by a
    /// configuration change): discontinuity tags already counted are not counted again.
    pub fn resume(&mut self, discontinuity_sequence: u64) {
        self.discontinuity_sequence = discontinuity_sequence;
    }

    /// Changes the playlist length at run time (`segment_count`): a shorter window retires
    /// its oldest segments (still served for their grace period), a longer one fills up.
    pub fn set_capacity(&mut self, capacity: usize, now_ms: u64) {
        self.capacity = capacity.max(1);
        self.retire_beyond(self.capacity, now_ms);
    }

    /// Discontinuity tags so far, slid out or still listed: where a window that continues
    /// this one starts counting.
    pub fn discontinuities(&self) -> u64 {
        self.discontinuity_sequence + self.live.iter().filter(|s| s.discontinuity).count() as u64
    }

    /// Appends a finished segment at monotonic time `now_ms`, sliding the window.
    ///
    /// A segment leaving the playlist stays fetchable for its own duration plus the duration of
    /// the playlist that last listed it (RFC 8216 §6.2.2), then it is freed.
    ///
    /// A segment whose sequence does not follow the last one (a rendition lost one) retires
    /// the whole window first: a media playlist numbers its segments from the first, so a
    /// hole inside it would misnumber every later segment.
    pub fn push(&mut self, segment: Arc<Segment>, now_ms: u64) {
        let gap = self
            .live
            .back()
            .is_some_and(|last| segment.sequence != last.sequence + 1);
        let keep = if gap { 0 } else { self.capacity };
        self.retire_beyond(keep, now_ms);
        self.live.push_back(segment);
        self.retire_beyond(self.capacity, now_ms);
        self.expire(now_ms);
    }

    /// Moves the oldest live segments to the retired list until at most `keep` remain.
    fn retire_beyond(&mut self, keep: usize, now_ms: u64) {
        while self.live.len() > keep {
            let Some(old) = self.live.pop_front() else {
                break;
            };
            if old.discontinuity {
                self.discontinuity_sequence += 1;
            }
            let playlist_ms: u64 = self.live.iter().map(|s| u64::from(s.duration_ms)).sum();
            let free_at_ms = now_ms + u64::from(old.duration_ms) + playlist_ms;
            self.retired.push_back(Retired {
                segment: old,
                free_at_ms,
            });
        }
    }

    /// Frees retired segments whose grace period has passed; true when any was freed.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let before = self.retired.len();
        while self.retired.front().is_some_and(|r| r.free_at_ms <= now_ms) {
            self.retired.pop_front();
        }
        self.retired.len() != before
    }

    pub fn live(&self) -> impl ExactSizeIterator<Item = &Arc<Segment>> {
        self.live.iter()
    }

    /// Configured segment duration, ms.
    pub fn target_ms(&self) -> u32 {
        self.target_ms
    }

    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// The discontinuity sequence of a playlist that starts at segment `sequence` of this
    /// window: the tags before it (slid out, or on live segments before it) are counted.
    pub fn discontinuities_before(&self, sequence: u64) -> u64 {
        let live = self
            .live
            .iter()
            .filter(|s| s.sequence < sequence && s.discontinuity)
            .count();
        self.discontinuity_sequence + live as u64
    }

    /// Sequence of the oldest segment still served (live or retired).
    pub fn oldest_sequence(&self) -> Option<u64> {
        self.retired
            .front()
            .map(|r| r.segment.sequence)
            .or_else(|| self.live.front().map(|s| s.sequence))
    }

    /// Sequence of the newest segment.
    pub fn last_sequence(&self) -> Option<u64> {
        self.live.back().map(|s| s.sequence)
    }

    /// Sequence of the oldest segment in the live playlist.
    pub fn first_live_sequence(&self) -> Option<u64> {
        self.live.front().map(|s| s.sequence)
    }

    /// An immutable view of the TS side for HTTP readers, its playlist rendered once here
    /// (the fMP4 track is filled in by the caller).
    pub fn rendition(&self, media: Option<&MediaInfo>) -> RenditionSnapshot {
        let live: Vec<Arc<Segment>> = self.live.iter().cloned().collect();
        let media_playlist = (!live.is_empty()).then(|| {
            hls::media_playlist(&live, self.target_ms, self.discontinuity_sequence).into()
        });
        RenditionSnapshot {
            media: media.cloned(),
            retired: self.retired.iter().map(|r| r.segment.clone()).collect(),
            live,
            media_playlist,
            video: Default::default(),
            ll_muxed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn segment(sequence: u64, discontinuity: bool) -> Segment {
        Segment {
            sequence,
            start_ms: 1_000_000 + sequence * 2000,
            duration_ms: 2000,
            discontinuity,
            data: Bytes::from_static(&[0x47; 188]),
        }
    }

    #[test]
    fn slides_and_keeps_dropped_segments_for_the_grace_period() {
        let mut w = Window::new(3, 2000);
        for seq in 0..5 {
            w.push(Arc::new(segment(seq, false)), seq * 2000);
        }
        let live: Vec<u64> = w.live().map(|s| s.sequence).collect();
        assert_eq!(live, [2, 3, 4]);
        let snap = w.rendition(None);
        let retired: Vec<u64> = snap.retired.iter().map(|s| s.sequence).collect();
        assert_eq!(retired, [0, 1]);
        // Segment 0 left at t=6000 with a 6 s playlist behind it: freed at 6000+2000+6000.
        w.expire(13_999);
        assert_eq!(w.rendition(None).retired.len(), 2);
        w.expire(14_000);
        let retired: Vec<u64> = w
            .rendition(None)
            .retired
            .iter()
            .map(|s| s.sequence)
            .collect();
        assert_eq!(retired, [1]);
        w.expire(16_000);
        assert!(w.rendition(None).retired.is_empty());
    }

    #[test]
    fn discontinuity_sequence_counts_tags_that_slid_out() {
        let mut w = Window::new(2, 2000);
        w.push(Arc::new(segment(0, false)), 0);
        w.push(Arc::new(segment(1, true)), 0);
        w.push(Arc::new(segment(2, false)), 0);
        assert_eq!(w.discontinuity_sequence(), 0);
        w.push(Arc::new(segment(3, false)), 0);
        assert_eq!(w.discontinuity_sequence(), 1);
    }

    #[test]
    fn a_hole_in_the_sequence_restarts_the_window() {
        let mut w = Window::new(4, 2000);
        for seq in [0, 1, 2] {
            w.push(Arc::new(segment(seq, false)), 0);
        }
        w.push(Arc::new(segment(4, true)), 0);
        let live: Vec<u64> = w.live().map(|s| s.sequence).collect();
        assert_eq!(live, [4], "3 is missing: the playlist restarts at 4");
        let text = w.rendition(None).media_playlist.unwrap();
        assert!(
            std::str::from_utf8(&text)
                .unwrap()
                .contains("#EXT-X-MEDIA-SEQUENCE:4\n")
        );
        assert_eq!(
            w.oldest_sequence(),
            Some(0),
            "the older ones are still served"
        );
        w.push(Arc::new(segment(5, false)), 0);
        assert_eq!(w.live().count(), 2);
    }

    #[test]
    fn capacity_changes_at_run_time_and_numbering_resumes() {
        let mut w = Window::new(4, 2000);
        for seq in 0..4 {
            w.push(Arc::new(segment(seq, seq == 1)), 0);
        }
        w.set_capacity(2, 0);
        let live: Vec<u64> = w.live().map(|s| s.sequence).collect();
        assert_eq!(live, [2, 3]);
        assert_eq!(
            w.oldest_sequence(),
            Some(0),
            "shortening keeps the grace period"
        );
        assert_eq!(w.discontinuities(), 1);
        w.set_capacity(3, 0);
        w.push(Arc::new(segment(4, false)), 0);
        assert_eq!(w.live().count(), 3);
        let mut next = Window::new(3, 2000);
        next.resume(w.discontinuities());
        next.push(Arc::new(segment(5, true)), 0);
        let text = next.rendition(None).media_playlist.unwrap();
        let text = std::str::from_utf8(&text).unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
    }

    #[test]
    fn empty_window_has_no_playlists() {
        let w = Window::new(3, 2000);
        let snap = w.rendition(None);
        assert!(snap.media_playlist.is_none());
    }
}
