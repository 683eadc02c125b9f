//! Elementary streams: H.264 Annex-B PES → AVCC access units, ADTS PES → raw AAC frames.

use super::ts::{Pes, Streams};
use super::{AAC_FRAME_SAMPLES, AacConfig, AudioFrame, AvcConfig, Demuxed, Fmp4Error, VideoSample};

/// 2^33: period of MPEG-TS timestamps.
const WRAP: i64 = 1 << 33;
/// Frame step assumed when no two access units carry timestamps (25 fps).
const DEFAULT_FRAME_TICKS: i64 = 3600;
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
/// Sample rates by ADTS sampling_frequency_index.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Unwraps 33-bit timestamps to the value nearest a reference (may be negative).
#[derive(Debug, Clone, Copy)]
struct Unwrapper {
    /// First timestamp of the segment, 0..2^33.
    reference: i64,
}

impl Unwrapper {
    fn unwrap(self, ts: u64) -> i64 {
        let ts = i64::try_from(ts & 0x1_ffff_ffff).unwrap_or(0);
        let mut diff = (ts - self.reference).rem_euclid(WRAP);
        if diff >= WRAP / 2 {
            diff -= WRAP;
        }
        self.reference + diff
    }
}

/// An access unit being collected; timestamps unwrapped, possibly negative.
#[derive(Debug, Default)]
struct AccessUnit {
    /// (pts, dts) from the PES that opened it; `None` if split off inside a PES.
    times: Option<(i64, i64)>,
    /// Any NAL (including dropped SPS/PPS/AUD) has been seen for this AU.
    has_nals: bool,
    keyframe: bool,
    data: Vec<u8>,
}

/// An access unit with its final (unwrapped, possibly negative) timestamps.
#[derive(Debug)]
struct TimedUnit {
    /// Presentation time, 90 kHz, unwrapped around the segment's first timestamp.
    pts: i64,
    /// Decode time, same clock as `pts`.
    dts: i64,
    /// Contains an IDR slice.
    keyframe: bool,
    /// AVCC NAL units.
    data: Vec<u8>,
}

/// Raw AAC frames of a segment with unwrapped PTS.
#[derive(Debug, Default)]
struct AacFrames {
    /// Config of the first ADTS header.
    config: Option<AacConfig>,
    /// (PTS as in [`TimedUnit::pts`], raw frame without ADTS header).
    frames: Vec<(i64, Vec<u8>)>,
}

/// Splits Annex-B bytes into NAL units (start codes and trailing zero bytes removed).
fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        // A byte above 1 at i + 2 rules out a start code at i, i + 1 and i + 2 (each needs
        // a 1 or a 0 there): most of the scan moves three bytes at a time.
        match data[i + 2] {
            2.. => i += 3,
            1 if data[i] == 0 && data[i + 1] == 0 => {
                starts.push(i + 3);
                i += 3;
            }
            _ => i += 1,
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        let mut nal = data.get(start..end).unwrap_or(&[]);
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            out.push(nal);
        }
    }
    out
}

/// Builds access units from video PES packets; captures the first SPS/PPS.
fn video_units(
    pes: &[Pes],
    clock: Unwrapper,
) -> (Vec<AccessUnit>, Option<Vec<u8>>, Option<Vec<u8>>) {
    let (mut sps, mut pps) = (None, None);
    let mut aus: Vec<AccessUnit> = Vec::new();
    for p in pes {
        if let (Some(pts), Some(dts)) = (p.pts, p.dts) {
            aus.push(AccessUnit {
                times: Some((clock.unwrap(pts), clock.unwrap(dts))),
                ..AccessUnit::default()
            });
        }
        for nal in nal_units(&p.payload) {
            let kind = nal[0] & 0x1f;
            let split = kind == NAL_AUD && aus.last().is_some_and(|au| au.has_nals);
            if split || aus.is_empty() {
                aus.push(AccessUnit::default());
            }
            let Some(au) = aus.last_mut() else { continue };
            au.has_nals = true;
            match kind {
                NAL_SPS if sps.is_none() && (4..=0xffff).contains(&nal.len()) => {
                    sps = Some(nal.to_vec());
                }
                NAL_PPS if pps.is_none() && nal.len() <= 0xffff => pps = Some(nal.to_vec()),
                NAL_SPS | NAL_PPS | NAL_AUD => {}
                _ => {
                    let Ok(len) = u32::try_from(nal.len()) else {
                        continue;
                    };
                    au.keyframe |= kind == NAL_IDR;
                    au.data.extend_from_slice(&len.to_be_bytes());
                    au.data.extend_from_slice(nal);
                }
            }
        }
    }
    (aus, sps, pps)
}

/// Gives AUs split off inside a PES timestamps one frame step after their predecessor; drops
/// empty AUs and those before the first timestamp.
fn timed_units(aus: Vec<AccessUnit>) -> Vec<TimedUnit> {
    let mut out = Vec::with_capacity(aus.len());
    let mut step = DEFAULT_FRAME_TICKS;
    let mut last: Option<(i64, i64)> = None;
    for au in aus {
        let times = match (au.times, last) {
            (Some((pts, dts)), prev) => {
                if let Some((_, prev_dts)) = prev {
                    let d = dts.saturating_sub(prev_dts);
                    if d > 0 {
                        step = d;
                    }
                }
                (pts, dts)
            }
            (None, Some((pts, dts))) => (pts.saturating_add(step), dts.saturating_add(step)),
            (None, None) => continue,
        };
        last = Some(times);
        if !au.data.is_empty() {
            out.push(TimedUnit {
                pts: times.0,
                dts: times.1,
                keyframe: au.keyframe,
                data: au.data,
            });
        }
    }
    out
}

/// One parsed ADTS header.
#[derive(Debug, Clone, Copy)]
struct Adts {
    config: AacConfig,
    header_len: usize,
    frame_len: usize,
}

fn parse_adts(b: &[u8]) -> Result<Adts, Fmp4Error> {
    let [b0, b1, b2, b3, b4, b5, b6, ..] = *b else {
        return Err(Fmp4Error::BadAdts("header truncated"));
    };
    if b0 != 0xff || b1 & 0xf0 != 0xf0 {
        return Err(Fmp4Error::BadAdts("no syncword"));
    }
    let header_len = if b1 & 1 != 0 { 7 } else { 9 };
    let sampling_index = (b2 >> 2) & 0x0f;
    let sample_rate = *SAMPLE_RATES
        .get(usize::from(sampling_index))
        .ok_or(Fmp4Error::BadAdts("reserved sampling frequency index"))?;
    let frame_len = usize::from(b3 & 3) << 11 | usize::from(b4) << 3 | usize::from(b5 >> 5);
    if frame_len < header_len || frame_len > b.len() {
        return Err(Fmp4Error::BadAdts("frame length out of range"));
    }
    if b6 & 3 != 0 {
        return Err(Fmp4Error::BadAdts("more than one raw data block per frame"));
    }
    Ok(Adts {
        config: AacConfig {
            object_type: (b2 >> 6) + 1,
            sample_rate,
            sampling_index,
            channels: ((b2 & 1) << 2) | (b3 >> 6),
        },
        header_len,
        frame_len,
    })
}

/// 90 kHz ticks of `frames` AAC frames at `rate`, rounded.
fn frame_ticks(frames: u64, rate: u32) -> i64 {
    let num = u128::from(frames) * u128::from(AAC_FRAME_SAMPLES) * 90_000;
    let rate = u128::from(rate.max(1));
    i64::try_from((num + rate / 2) / rate).unwrap_or(i64::MAX)
}

/// Splits audio PES packets into raw AAC frames; frame k of a PES is k frames after its PTS.
fn audio_frames(pes: &[Pes], clock: Unwrapper) -> Result<AacFrames, Fmp4Error> {
    let mut config: Option<AacConfig> = None;
    let mut out = Vec::new();
    // (PTS of the last PES that had one, frames since then)
    let mut base: Option<(i64, u64)> = None;
    for p in pes {
        if let Some(pts) = p.pts {
            base = Some((clock.unwrap(pts), 0));
        }
        let mut rest = p.payload.as_slice();
        while !rest.is_empty() {
            let adts = parse_adts(rest)?;
            let cfg = *config.get_or_insert(adts.config);
            let raw = rest.get(adts.header_len..adts.frame_len).unwrap_or(&[]);
            rest = rest.get(adts.frame_len..).unwrap_or(&[]);
            if let Some((pts, count)) = &mut base {
                let at = pts.saturating_add(frame_ticks(*count, cfg.sample_rate));
                *count += 1;
                out.push((at, raw.to_vec()));
            }
        }
    }
    Ok(AacFrames {
        config,
        frames: out,
    })
}

/// Turns the PES packets of one segment into samples with unwrapped timestamps.
pub(super) fn assemble(streams: &Streams) -> Result<Demuxed, Fmp4Error> {
    let first = streams
        .video
        .iter()
        .chain(streams.audio.iter().flatten())
        .find_map(|p| p.dts);
    let clock = Unwrapper {
        reference: first.map_or(0, |t| i64::try_from(t & 0x1_ffff_ffff).unwrap_or(0)),
    };
    let (aus, sps, pps) = video_units(&streams.video, clock);
    let video = timed_units(aus);
    let AacFrames {
        config: aac,
        frames: audio,
    } = match &streams.audio {
        Some(pes) => audio_frames(pes, clock)?,
        None => AacFrames::default(),
    };
    // A segment that straddles a wrap near zero may unwrap below 0: shift it by one period.
    let min = video
        .iter()
        .map(|v| v.dts.min(v.pts))
        .chain(audio.iter().map(|a| a.0))
        .min()
        .unwrap_or(0);
    let shift = if min < 0 { WRAP } else { 0 };
    let to_u64 = |t: i64| u64::try_from(t.saturating_add(shift)).unwrap_or(0);
    Ok(Demuxed {
        avc: sps.zip(pps).map(|(sps, pps)| AvcConfig { sps, pps }),
        video: video
            .into_iter()
            .map(|v| VideoSample {
                dts: to_u64(v.dts),
                pts: to_u64(v.pts),
                keyframe: v.keyframe,
                data: v.data,
            })
            .collect(),
        aac: aac.filter(|_| !audio.is_empty()),
        audio: audio
            .into_iter()
            .map(|(pts, data)| AudioFrame {
                pts: to_u64(pts),
                data,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The skipping scan finds the same NAL units as looking at every byte, on bytes full
    /// of zeros and ones (start codes of 3 and 4 bytes, back to back, at both ends).
    #[test]
    fn nal_units_equal_a_byte_by_byte_scan() {
        fn naive(data: &[u8]) -> Vec<&[u8]> {
            let starts: Vec<usize> = (0..data.len().saturating_sub(2))
                .filter(|&i| data[i..i + 3] == [0, 0, 1])
                .map(|i| i + 3)
                .collect();
            // Overlapping matches cannot happen (0 0 1 0 0 1 is two), so this is exact.
            let mut out = Vec::new();
            for (n, &start) in starts.iter().enumerate() {
                let end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
                let mut nal = &data[start..end.max(start)];
                while let [rest @ .., 0] = nal {
                    nal = rest;
                }
                if !nal.is_empty() {
                    out.push(nal);
                }
            }
            out
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    [0, 0, 0, 1, 2, 0x65, 0xff][(x % 7) as usize]
                })
                .collect();
            assert_eq!(nal_units(&data), naive(&data), "{data:?}");
        }
        assert_eq!(
            nal_units(&[0, 0, 0, 1, 9, 0, 0, 1, 0x65, 7, 0, 0, 1]),
            [&[9][..], &[0x65, 7][..]]
        );
    }

    fn pes(pts: Option<u64>, payload: &[u8]) -> Pes {
        Pes {
            pts,
            dts: pts,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn unwraps_across_33_bits() {
        let c = Unwrapper {
            reference: WRAP - 100,
        };
        assert_eq!(c.unwrap(50), WRAP + 50);
        assert_eq!(c.unwrap((WRAP - 200) as u64), WRAP - 200);
    }

    #[test]
    fn wrap_inside_segment_stays_monotonic() {
        let au = |t: u64, nal: u8| pes(Some(t), &[0, 0, 0, 1, nal, 0x88]);
        let streams = Streams {
            video: vec![au((WRAP - 3600) as u64, 5), au(0, 1), au(3600, 1)],
            audio: None,
        };
        let d = assemble(&streams).unwrap();
        let dts: Vec<u64> = d.video.iter().map(|v| v.dts).collect();
        assert_eq!(
            dts,
            [(WRAP - 3600) as u64, WRAP as u64, (WRAP + 3600) as u64]
        );
        assert!(d.video[0].keyframe && !d.video[1].keyframe);
    }

    #[test]
    fn splits_on_aud_and_strips_parameter_sets() {
        let payload = [
            &[0, 0, 0, 1, 9, 0xf0][..],
            &[0, 0, 1, 7, 0x64, 0, 0x1f, 0xac],
            &[0, 0, 1, 8, 0xee, 0x3c, 0x80],
            &[0, 0, 1, 5, 0x88, 0x84, 0, 0],
            &[0, 0, 0, 1, 9, 0xf0],
            &[0, 0, 1, 1, 0x9a],
        ]
        .concat();
        let streams = Streams {
            video: vec![pes(Some(1000), &payload)],
            audio: None,
        };
        let d = assemble(&streams).unwrap();
        assert_eq!(d.video.len(), 2);
        assert_eq!(d.video[0].data, [0, 0, 0, 3, 5, 0x88, 0x84]);
        assert!(d.video[0].keyframe);
        assert_eq!(
            (d.video[1].dts, d.video[1].data.as_slice()),
            (4600, &[0, 0, 0, 2, 1, 0x9a][..])
        );
        let avc = d.avc.unwrap();
        assert_eq!(
            (avc.sps.as_slice(), avc.pps.as_slice()),
            (&[7, 0x64, 0, 0x1f, 0xac][..], &[8, 0xee, 0x3c, 0x80][..])
        );
    }

    #[test]
    fn several_adts_frames_per_pes() {
        // AAC-LC, 44.1 kHz (index 4), stereo, 7-byte header, 3 payload bytes.
        let frame = [0xff, 0xf1, 0x50, 0x80, 0x01, 0x5f, 0xfc, 1, 2, 3];
        let two = [frame, frame].concat();
        let streams = Streams {
            video: vec![],
            audio: Some(vec![pes(Some(0), &two), pes(None, &frame)]),
        };
        let d = assemble(&streams).unwrap();
        let aac = d.aac.unwrap();
        assert_eq!(
            (aac.object_type, aac.sample_rate, aac.channels),
            (2, 44100, 2)
        );
        let pts: Vec<u64> = d.audio.iter().map(|a| a.pts).collect();
        assert_eq!(pts, [0, 2090, 4180]);
        assert_eq!(d.audio[0].data, [1, 2, 3]);
    }

    #[test]
    fn bad_adts_is_an_error() {
        let streams = Streams {
            video: vec![],
            audio: Some(vec![pes(Some(0), &[0xff, 0xf1, 0x50])]),
        };
        assert!(matches!(assemble(&streams), Err(Fmp4Error::BadAdts(_))));
        let long = [0xff, 0xf1, 0x50, 0x80, 0x04, 0x1f, 0xfc, 1, 2, 3];
        let streams = Streams {
            video: vec![],
            audio: Some(vec![pes(Some(0), &long)]),
        };
        assert!(matches!(assemble(&streams), Err(Fmp4Error::BadAdts(_))));
    }
}
