//! Test media for the LL-HLS track tests: segment starts, part cuts and demuxed parts of a
//! 2 s-segment stream whose `tfdt` 0 is UNIX ms 1 000 000.

use super::ll::LlTrack;
use crate::packaging::fmp4::{AacConfig, AudioFrame, AvcConfig, Demuxed, VideoSample};
use crate::packaging::parts::{PartCut, SegmentStart};

pub(super) const AAC: AacConfig = AacConfig {
    object_type: 2,
    sample_rate: 48_000,
    sampling_index: 3,
    channels: 2,
};

/// Packages `cut` into `track` (tfdt 0 at UNIX ms 1 000 000).
pub(super) fn feed(track: &mut LlTrack, cut: &PartCut, demuxed: &Demuxed) {
    track.add(cut, demuxed, 1_000_000, None).unwrap();
}

pub(super) fn start(sequence: u64) -> SegmentStart {
    SegmentStart {
        sequence,
        start_ms: 1_000_000 + sequence * 2000,
        discontinuity: false,
    }
}

pub(super) fn cut(sequence: u64, index: u32, last: bool) -> PartCut {
    PartCut {
        segment: start(sequence),
        index,
        independent: index == 0,
        last,
        ts: bytes::Bytes::new(),
    }
}

/// A part's demuxed content: one picture at `video_pts`, AAC frames at `audio_pts`.
pub(super) fn demuxed(video_pts: u64, audio_pts: impl Iterator<Item = u64>) -> Demuxed {
    Demuxed {
        avc: Some(AvcConfig {
            sps: vec![0x67, 0x64, 0x00, 0x1f],
            pps: vec![0x68, 0xee],
        }),
        video: vec![VideoSample {
            dts: video_pts,
            pts: video_pts,
            keyframe: true,
            data: vec![0, 0, 0, 1, 0x65],
        }],
        aac: Some(AAC),
        audio: audio_pts
            .map(|pts| AudioFrame {
                pts,
                data: vec![0x21; 8],
            })
            .collect(),
    }
}
