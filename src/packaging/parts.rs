//! Cuts the chunk flow of a rendition into LL-HLS parts as the chunks arrive: each segment
//! (as the [`super::Segmenter`] opens it) is divided into parts of at most the part target,
//! at access-unit boundaries (a chunk is one access unit), the first part of every segment
//! starting with its keyframe. Pure: chunks and segment starts in, TS byte ranges out; the
//! stream actor turns each into fMP4 fragments.

use crate::media::Chunk;
use bytes::{Bytes, BytesMut};
use std::time::Duration;

const TS_PACKET: usize = 188;

/// The segment a chunk opens, as the segmenter numbered and timed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStart {
    pub sequence: u64,
    pub start_ms: u64,
    pub discontinuity: bool,
}

/// One finished part: the TS packets of its access units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCut {
    /// The segment it belongs to.
    pub segment: SegmentStart,
    /// Position in its segment (0 for the first).
    pub index: u32,
    /// Starts with a keyframe (every segment's first part does).
    pub independent: bool,
    /// The last part of its segment.
    pub last: bool,
    /// TS packets to demux: the segment's PAT and PMT first (for parts after the first, so
    /// that each part can be demuxed on its own), then the part's own packets.
    pub ts: Bytes,
}

#[derive(Debug)]
struct Open {
    segment: SegmentStart,
    index: u32,
    independent: bool,
    start_pts: Duration,
    data: BytesMut,
}

/// Cuts one rendition's chunks into parts.
#[derive(Debug)]
pub struct PartCutter {
    /// Longest a part may last.
    target: Duration,
    /// Duration of one video frame (a part ending at a chunk lasts until the next frame).
    frame: Duration,
    /// The part being filled; `None` before a segment opens and after one is abandoned.
    open: Option<Open>,
    /// PAT + PMT at the start of the current segment (its first two packets).
    psi: Bytes,
}

impl PartCutter {
    /// Parts of at most `target`, for video of `frame` per picture.
    pub fn new(target: Duration, frame: Duration) -> Self {
        PartCutter {
            target,
            frame,
            open: None,
            psi: Bytes::new(),
        }
    }

    /// The video's frame duration changed (from the stream's media info).
    pub fn set_frame(&mut self, frame: Duration) {
        if !frame.is_zero() {
            self.frame = frame;
        }
    }

    /// Adds one chunk. `opens` is `Some` when the segmenter opened a segment with this chunk
    /// (the chunk is that segment's keyframe). Returns the part it completed, if any.
    pub fn push(&mut self, chunk: &Chunk, opens: Option<SegmentStart>) -> Option<PartCut> {
        if let Some(segment) = opens {
            let done = self.finish();
            self.psi = psi(&chunk.data);
            self.open = Some(Open {
                segment,
                index: 0,
                independent: true,
                start_pts: chunk.pts.unwrap_or_default(),
                data: BytesMut::from(&chunk.data[..]),
            });
            return done;
        }
        let open = self.open.as_mut()?;
        let starts_part = chunk.pts.is_some_and(|pts| {
            pts.saturating_sub(open.start_pts) + self.frame > self.target && !open.data.is_empty()
        });
        if !starts_part {
            open.data.extend_from_slice(&chunk.data);
            return None;
        }
        let next = Open {
            segment: open.segment,
            index: open.index + 1,
            independent: chunk.keyframe,
            start_pts: chunk.pts.unwrap_or(open.start_pts),
            data: BytesMut::from(&chunk.data[..]),
        };
        let done = std::mem::replace(open, next);
        Some(self.cut(done, false))
    }

    /// Ends the current segment's last part (the source stopped; the segmenter closed the
    /// segment without a next keyframe).
    pub fn finish(&mut self) -> Option<PartCut> {
        let open = self.open.take()?;
        Some(self.cut(open, true))
    }

    /// Drops the part being filled: its segment will never be completed.
    pub fn abandon(&mut self) {
        self.open = None;
    }

    /// The segment whose parts are being cut.
    pub fn segment(&self) -> Option<SegmentStart> {
        self.open.as_ref().map(|o| o.segment)
    }

    fn cut(&self, open: Open, last: bool) -> PartCut {
        let ts = if open.index == 0 || self.psi.is_empty() {
            open.data.freeze()
        } else {
            let mut ts = BytesMut::with_capacity(self.psi.len() + open.data.len());
            ts.extend_from_slice(&self.psi);
            ts.extend_from_slice(&open.data);
            ts.freeze()
        };
        PartCut {
            segment: open.segment,
            index: open.index,
            independent: open.independent,
            last,
            ts,
        }
    }
}

/// The PAT and PMT packets a keyframe chunk starts with (empty when it does not).
fn psi(data: &[u8]) -> Bytes {
    let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    if data.len() >= 2 * TS_PACKET && data[0] == 0x47 && pid(data) == 0 {
        Bytes::copy_from_slice(&data[..2 * TS_PACKET])
    } else {
        Bytes::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; TS_PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p
    }

    /// A keyframe chunk (PAT, PMT, video) or a plain one (video) at `ms`.
    fn chunk(ms: u64, keyframe: bool) -> Chunk {
        let mut data = Vec::new();
        if keyframe {
            data.extend(packet(0, 0));
            data.extend(packet(0x1000, 1));
        }
        data.extend(packet(0x100, ms as u8));
        Chunk {
            data: data.into(),
            pts: Some(Duration::from_millis(ms)),
            keyframe,
            rendition: 0,
        }
    }

    fn start(sequence: u64) -> SegmentStart {
        SegmentStart {
            sequence,
            start_ms: 1_000 * sequence,
            discontinuity: false,
        }
    }

    #[test]
    fn parts_last_at_most_the_target_and_the_first_is_independent() {
        let mut cutter = PartCutter::new(Duration::from_millis(250), Duration::from_millis(40));
        let mut parts = Vec::new();
        // 25 fps, a keyframe (and a new segment) every second.
        for i in 0..75u64 {
            let key = i % 25 == 0;
            let opens = key.then(|| start(i / 25));
            parts.extend(cutter.push(&chunk(i * 40, key), opens));
        }
        parts.extend(cutter.finish());
        // Each second: parts of 6 frames (240 ms) and a last one of 1 frame.
        let of_first: Vec<(u32, bool, bool, usize)> = parts
            .iter()
            .filter(|p| p.segment.sequence == 0)
            .map(|p| (p.index, p.independent, p.last, p.ts.len() / TS_PACKET))
            .collect();
        assert_eq!(
            of_first,
            [
                (0, true, false, 2 + 6),
                (1, false, false, 2 + 6),
                (2, false, false, 2 + 6),
                (3, false, false, 2 + 6),
                (4, false, true, 2 + 1),
            ],
            "the first part carries its own PAT/PMT; later ones get the segment's"
        );
        assert_eq!(parts.iter().filter(|p| p.last).count(), 3);
        for p in &parts {
            assert_eq!(p.ts[0], 0x47);
            assert_eq!(&p.ts[1..3], &[0, 0], "every part starts with the PAT");
        }
    }

    #[test]
    fn a_keyframe_inside_a_segment_makes_an_independent_part() {
        let mut cutter = PartCutter::new(Duration::from_millis(200), Duration::from_millis(40));
        let mut parts = Vec::new();
        for i in 0..20u64 {
            // A keyframe every 10 frames, but the segment only opens at frame 0.
            let key = i % 10 == 0;
            let opens = (i == 0).then(|| start(0));
            parts.extend(cutter.push(&chunk(i * 40, key), opens));
        }
        let independent: Vec<u32> = parts
            .iter()
            .filter(|p| p.independent)
            .map(|p| p.index)
            .collect();
        assert_eq!(independent, [0, 2], "{parts:?}");
    }

    #[test]
    fn nothing_before_a_segment_opens_and_nothing_after_it_is_abandoned() {
        let mut cutter = PartCutter::new(Duration::from_millis(250), Duration::from_millis(40));
        assert_eq!(cutter.push(&chunk(0, false), None), None);
        assert_eq!(cutter.push(&chunk(40, true), Some(start(7))), None);
        assert_eq!(cutter.segment(), Some(start(7)));
        cutter.abandon();
        assert_eq!(cutter.finish(), None);
        assert_eq!(cutter.push(&chunk(80, false), None), None);
    }
}
