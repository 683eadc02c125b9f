//! FLV tags from the stream's MPEG-TS chunks, for an RTMP push: H.264 as AVC (sequence
//! header, then NAL units with 4-byte lengths) and AAC (AudioSpecificConfig, then raw frames),
//! on one millisecond clock that runs on without a jump when the source restarts. Pure data.

use super::fmp4::{self, AacConfig, AvcConfig, Fmp4Error};
use bytes::Bytes;

/// One FLV tag body (what an RTMP video or audio message carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvTag {
    Video {
        /// Decode time, ms.
        ms: u32,
        body: Bytes,
        /// An IDR picture or the sequence header: where a receiver can start.
        keyframe: bool,
    },
    Audio {
        ms: u32,
        body: Bytes,
    },
}

impl FlvTag {
    pub fn ms(&self) -> u32 {
        match self {
            FlvTag::Video { ms, .. } | FlvTag::Audio { ms, .. } => *ms,
        }
    }
}

const TS_PACKET: usize = 188;
/// 33-bit PTS/DTS.
const WRAP: i64 = 1 << 33;
/// A step of the source clock larger than this (or backwards by more) is a new timeline.
const JUMP_90K: i64 = 2 * 90_000;

/// Turns 90 kHz source times into a continuous millisecond clock starting at 0.
#[derive(Debug, Default)]
struct Clock {
    /// Last raw 33-bit time and its unwrapped value.
    last: Option<(u64, i64)>,
    /// Unwrapped 90 kHz time that is 0 ms... shifted on each new timeline.
    base: i64,
    /// Last ms handed out.
    last_ms: i64,
}

impl Clock {
    fn ms(&mut self, raw: u64) -> u32 {
        let raw = raw & (WRAP as u64 - 1);
        let unwrapped = match self.last {
            None => {
                self.base = raw as i64;
                raw as i64
            }
            Some((last_raw, last)) => {
                let mut delta = (raw as i64 - last_raw as i64).rem_euclid(WRAP);
                if delta > WRAP / 2 {
                    delta -= WRAP;
                }
                let t = last + delta;
                if delta.abs() > JUMP_90K {
                    // A new timeline goes on a frame after where the old one stopped.
                    self.base = t - (self.last_ms + 20) * 90;
                }
                t
            }
        };
        self.last = Some((raw, unwrapped));
        let ms = ((unwrapped - self.base) / 90).max(0);
        self.last_ms = self.last_ms.max(ms);
        // RTMP timestamps wrap at 2^32 ms (49.7 days).
        (ms as u64 & 0xffff_ffff) as u32
    }
}

/// The FLV side of one RTMP push.
#[derive(Debug, Default)]
pub struct FlvMuxer {
    /// PAT/PMT packets of the latest keyframe chunk: prefixed to every chunk to demux it.
    psi: Vec<u8>,
    /// Configurations already sent as sequence headers.
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    clock: Clock,
}

impl FlvMuxer {
    pub fn new() -> Self {
        FlvMuxer::default()
    }

    /// Whether a keyframe chunk has been seen (nothing is sent before one).
    pub fn started(&self) -> bool {
        !self.psi.is_empty()
    }

    /// After lost chunks: wait for the next keyframe chunk before sending again.
    pub fn restart(&mut self) {
        self.psi.clear();
    }

    /// The tags of one chunk (one access unit of muxed TS), sequence headers first when the
    /// codec configuration is new.
    pub fn push(&mut self, chunk: &[u8], keyframe: bool) -> Result<Vec<FlvTag>, Fmp4Error> {
        if keyframe {
            self.psi = leading_psi(chunk);
        }
        if self.psi.is_empty() {
            return Ok(Vec::new());
        }
        let demuxed = if keyframe {
            fmp4::demux(chunk)?
        } else {
            let mut ts = Vec::with_capacity(self.psi.len() + chunk.len());
            ts.extend_from_slice(&self.psi);
            ts.extend_from_slice(chunk);
            fmp4::demux(&ts)?
        };
        let mut tags = Vec::new();
        if let Some(avc) = demuxed
            .avc
            .as_ref()
            .filter(|a| self.avc.as_ref() != Some(*a))
        {
            let mut body = vec![0x17, 0x00, 0, 0, 0];
            body.extend_from_slice(&fmp4::avc_config_record(avc));
            let ms = demuxed.video.first().map_or(0, |v| self.clock.ms(v.dts));
            tags.push(FlvTag::Video {
                ms,
                body: body.into(),
                keyframe: true,
            });
            self.avc = Some(avc.clone());
        }
        if let Some(aac) = demuxed.aac.filter(|a| self.aac != Some(*a)) {
            let asc = aac.audio_specific_config();
            let ms = demuxed.audio.first().map_or(0, |a| self.clock.ms(a.pts));
            tags.push(FlvTag::Audio {
                ms,
                body: Bytes::from(vec![aac_header(&aac), 0x00, asc[0], asc[1]]),
            });
            self.aac = Some(aac);
        }
        for v in &demuxed.video {
            if self.avc.is_none() {
                break;
            }
            let ms = self.clock.ms(v.dts);
            let cts = i32::try_from((v.pts as i64 - v.dts as i64) / 90).unwrap_or(0);
            let mut body = Vec::with_capacity(5 + v.data.len());
            body.push(if v.keyframe { 0x17 } else { 0x27 });
            body.push(0x01);
            body.extend_from_slice(&cts.to_be_bytes()[1..]);
            body.extend_from_slice(&v.data);
            tags.push(FlvTag::Video {
                ms,
                body: body.into(),
                keyframe: v.keyframe,
            });
        }
        if let Some(aac) = self.aac {
            for a in &demuxed.audio {
                let ms = self.clock.ms(a.pts);
                let mut body = Vec::with_capacity(2 + a.data.len());
                body.extend_from_slice(&[aac_header(&aac), 0x01]);
                body.extend_from_slice(&a.data);
                tags.push(FlvTag::Audio {
                    ms,
                    body: body.into(),
                });
            }
        }
        Ok(tags)
    }
}

/// FLV's audio tag header byte for AAC: format 10, 44 kHz, 16-bit, stereo (the flags FLV
/// requires for AAC; the AudioSpecificConfig says what the audio really is).
fn aac_header(_aac: &AacConfig) -> u8 {
    0xaf
}

/// The packets before the first PES start: the PAT/PMT the muxer repeats at each keyframe.
fn leading_psi(chunk: &[u8]) -> Vec<u8> {
    let mut psi = Vec::new();
    for packet in chunk.chunks_exact(TS_PACKET) {
        let unit_start = packet[1] & 0x40 != 0;
        let payload_at = match packet[3] & 0x30 {
            0x10 => 4,
            0x30 => 5 + usize::from(packet[4]),
            _ => TS_PACKET,
        };
        let pes = unit_start && packet.get(payload_at..payload_at + 3) == Some(&[0, 0, 1][..]);
        if pes {
            break;
        }
        psi.extend_from_slice(packet);
    }
    psi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_unwraps_and_bridges_a_new_timeline() {
        let mut c = Clock::default();
        assert_eq!(c.ms(WRAP as u64 - 90_000), 0);
        // Across the 33-bit wrap.
        assert_eq!(c.ms(90_000), 2000);
        assert_eq!(c.ms(90_000 + 3600), 2040);
        // The source restarts elsewhere: the clock goes on 20 ms later.
        assert_eq!(c.ms(5_000_000), 2060);
        assert_eq!(c.ms(5_003_600), 2100);
        // And back.
        assert_eq!(c.ms(100), 2120);
    }

    const SEGMENTS: [&[u8]; 3] = [
        include_bytes!("../../tests/fixtures/fmp4/seg0.ts"),
        include_bytes!("../../tests/fixtures/fmp4/seg1.ts"),
        include_bytes!("../../tests/fixtures/fmp4/seg2.ts"),
    ];

    #[test]
    fn segments_become_headers_then_every_frame_on_one_clock() {
        let mut flv = FlvMuxer::new();
        let mut tags = Vec::new();
        for seg in SEGMENTS {
            tags.extend(flv.push(seg, true).unwrap());
        }
        // Sequence headers once, first; then 75 pictures and 142 AAC frames (ffprobe's count).
        assert!(
            matches!(&tags[0], FlvTag::Video { body, keyframe: true, .. } if body[..2] == [0x17, 0x00])
        );
        assert!(
            matches!(&tags[1], FlvTag::Audio { body, .. } if body[..2] == [0xaf, 0x00] && body.len() == 4)
        );
        let video: Vec<&FlvTag> = tags[2..]
            .iter()
            .filter(|t| matches!(t, FlvTag::Video { .. }))
            .collect();
        let audio = tags[2..].len() - video.len();
        assert_eq!((video.len(), audio), (75, 142));
        let keys = video
            .iter()
            .filter(|t| matches!(t, FlvTag::Video { keyframe: true, body, .. } if body[0] == 0x17))
            .count();
        assert_eq!(keys, 3);
        // 25 fps: decode times 40 ms apart, from 0.
        let ms: Vec<u32> = video.iter().map(|t| t.ms()).collect();
        assert!(ms.windows(2).all(|w| w[1] == w[0] + 40), "{ms:?}");
        assert!(ms[0] < 100);
        // B-frames: some composition offsets are not zero.
        assert!(
            video
                .iter()
                .any(|t| matches!(t, FlvTag::Video { body, .. } if body[2..5] != [0, 0, 0]))
        );
    }

    #[test]
    fn nothing_is_sent_before_a_keyframe_chunk() {
        let mut flv = FlvMuxer::new();
        assert!(flv.push(SEGMENTS[0], false).unwrap().is_empty());
        assert!(!flv.started());
        assert!(!flv.push(SEGMENTS[0], true).unwrap().is_empty());
        flv.restart();
        assert!(flv.push(SEGMENTS[1], false).unwrap().is_empty());
    }
}
