//! The archive index of one stream: every recorded segment by start time, with the figures
//! Flussonic's `dvr_info` reports. Pure data; the recorder fills it, HTTP reads it.

use std::collections::BTreeMap;

/// A gap longer than this between one segment's end and the next start is a break.
pub const GAP_MS: u64 = 1000;

/// One archived segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub start_ms: u64,
    pub duration_ms: u32,
    /// Bytes on disk.
    pub size: u64,
    /// Does not continue the previous segment (source restart, server restart).
    pub discontinuity: bool,
    /// Ordinal in this archive, strictly increasing; the HLS media sequence of archive
    /// playlists, so a segment keeps its number across playlist reloads.
    pub seq: u64,
}

impl Entry {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + u64::from(self.duration_ms)
    }

    /// Relative path under the stream's archive folder (and in URLs).
    pub fn path(&self) -> String {
        crate::media::segment_path(self.start_ms, self.duration_ms)
    }
}

/// A continuous recorded span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ms: u64,
    pub duration_ms: u64,
}

/// Segments of one stream, oldest first, with running totals.
#[derive(Debug, Default, Clone)]
pub struct ArchiveIndex {
    entries: BTreeMap<u64, Entry>,
    /// Σ size of `entries`.
    bytes: u64,
    /// Σ duration of `entries`, ms.
    duration_ms: u64,
    next_seq: u64,
}

impl ArchiveIndex {
    /// Adds a segment (replacing one with the same start); returns it with its ordinal.
    pub fn insert(
        &mut self,
        start_ms: u64,
        duration_ms: u32,
        size: u64,
        discontinuity: bool,
    ) -> Entry {
        let entry = Entry {
            start_ms,
            duration_ms,
            size,
            discontinuity,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if let Some(old) = self.entries.insert(start_ms, entry) {
            self.bytes -= old.size;
            self.duration_ms -= u64::from(old.duration_ms);
        }
        self.bytes += size;
        self.duration_ms += u64::from(duration_ms);
        entry
    }

    /// An index of segments given as (start_ms, duration_ms, size, discontinuity) in start
    /// order (a repeated start: the last one counts), numbered from 0, built in one pass.
    pub fn from_sorted(segments: &[(u64, u32, u64, bool)]) -> Self {
        let mut index = ArchiveIndex::default();
        let mut kept: Vec<(u64, Entry)> = Vec::with_capacity(segments.len());
        for (seq, &(start_ms, duration_ms, size, discontinuity)) in segments.iter().enumerate() {
            let entry = Entry {
                start_ms,
                duration_ms,
                size,
                discontinuity,
                seq: seq as u64,
            };
            match kept.last_mut() {
                Some(last) if last.0 == start_ms => *last = (start_ms, entry),
                _ => kept.push((start_ms, entry)),
            }
        }
        index.next_seq = segments.len() as u64;
        index.bytes = kept.iter().map(|(_, e)| e.size).sum();
        index.duration_ms = kept.iter().map(|(_, e)| u64::from(e.duration_ms)).sum();
        index.entries = kept.into_iter().collect();
        index
    }

    pub fn remove(&mut self, start_ms: u64) -> Option<Entry> {
        let e = self.entries.remove(&start_ms)?;
        self.bytes -= e.size;
        self.duration_ms -= u64::from(e.duration_ms);
        Some(e)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn first(&self) -> Option<&Entry> {
        self.entries.values().next()
    }

    pub fn last(&self) -> Option<&Entry> {
        self.entries.values().next_back()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.entries.values()
    }

    /// Archive bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Recorded time without gaps, ms (Flussonic's `duration`).
    pub fn duration_ms(&self) -> u64 {
        self.duration_ms
    }

    /// First start to last end, ms (Flussonic's `depth`).
    pub fn depth_ms(&self) -> u64 {
        match (self.first(), self.last()) {
            (Some(a), Some(b)) => b.end_ms() - a.start_ms,
            _ => 0,
        }
    }

    /// The segment a URL names: start second and exact duration.
    pub fn find(&self, start_second_ms: u64, duration_ms: u32) -> Option<&Entry> {
        self.entries
            .range(start_second_ms..start_second_ms + 1000)
            .map(|(_, e)| e)
            .find(|e| e.duration_ms == duration_ms)
    }

    /// Segments starting in `[from_ms, to_ms)` (Flussonic: the first is not earlier than
    /// `from`, the last starts before `from + duration`).
    pub fn select(&self, from_ms: u64, to_ms: u64) -> Vec<Entry> {
        if to_ms <= from_ms {
            return Vec::new();
        }
        self.entries
            .range(from_ms..to_ms)
            .map(|(_, e)| *e)
            .collect()
    }

    /// Continuous spans: a new span starts at a discontinuity or after a gap over [`GAP_MS`].
    pub fn ranges(&self) -> Vec<Range> {
        let mut out: Vec<Range> = Vec::new();
        let mut prev_end = None;
        for e in self.entries.values() {
            let continues =
                prev_end.is_some_and(|end| !e.discontinuity && e.start_ms <= end + GAP_MS);
            match out.last_mut() {
                Some(r) if continues => r.duration_ms = e.end_ms() - r.from_ms,
                _ => out.push(Range {
                    from_ms: e.start_ms,
                    duration_ms: u64::from(e.duration_ms),
                }),
            }
            prev_end = Some(e.end_ms());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built in one pass equals built one insert at a time: same entries, numbers, totals.
    #[test]
    fn from_sorted_equals_inserts() {
        let segments = [
            (1000, 2000, 10, true),
            (3000, 2000, 20, false),
            (3000, 2500, 25, false), // the same start again: the last one counts
            (9000, 2000, 30, true),
        ];
        let mut inserted = ArchiveIndex::default();
        for &(start, duration, size, disc) in &segments {
            inserted.insert(start, duration, size, disc);
        }
        let built = ArchiveIndex::from_sorted(&segments);
        assert_eq!(
            built.iter().collect::<Vec<_>>(),
            inserted.iter().collect::<Vec<_>>()
        );
        assert_eq!(built.bytes(), inserted.bytes());
        assert_eq!(built.duration_ms(), inserted.duration_ms());
        assert_eq!(built.next_seq, inserted.next_seq);
        assert_eq!(built.len(), 3);
    }

    fn index(starts: &[(u64, u32, bool)]) -> ArchiveIndex {
        let mut i = ArchiveIndex::default();
        for &(s, d, disc) in starts {
            i.insert(s, d, 1000, disc);
        }
        i
    }

    #[test]
    fn totals_ranges_and_gaps() {
        // 0-2 s, 2-4 s, gap, 10-12 s; then a restart right after (discontinuity).
        let i = index(&[
            (0, 2000, false),
            (2000, 2000, false),
            (10_000, 2000, false),
            (12_000, 2000, true),
        ]);
        assert_eq!(i.bytes(), 4000);
        assert_eq!(i.duration_ms(), 8000);
        assert_eq!(i.depth_ms(), 14_000);
        assert_eq!(
            i.ranges(),
            [
                Range {
                    from_ms: 0,
                    duration_ms: 4000
                },
                Range {
                    from_ms: 10_000,
                    duration_ms: 2000
                },
                Range {
                    from_ms: 12_000,
                    duration_ms: 2000
                },
            ]
        );
    }

    #[test]
    fn select_and_find() {
        let i = index(&[
            (1_000_000, 2000, false),
            (1_002_000, 2000, false),
            (1_004_000, 2000, false),
        ]);
        let sel: Vec<u64> = i
            .select(1_001_000, 1_005_000)
            .iter()
            .map(|e| e.start_ms)
            .collect();
        assert_eq!(sel, [1_002_000, 1_004_000]);
        assert!(i.select(5, 5).is_empty());
        assert_eq!(i.find(1_002_000, 2000).map(|e| e.seq), Some(1));
        assert!(i.find(1_002_000, 2001).is_none());
    }

    #[test]
    fn remove_keeps_totals() {
        let mut i = index(&[(0, 2000, false), (2000, 2000, false)]);
        i.remove(0);
        assert_eq!((i.bytes(), i.duration_ms(), i.len()), (1000, 2000, 1));
        assert_eq!(
            i.first().map(|e| e.seq),
            Some(1),
            "ordinals survive deletion"
        );
    }
}
