//! Stateful per-track packagers: samples of one segment in, one timed fragment out.

use super::boxes::{self, SAMPLE_NON_SYNC, SAMPLE_SYNC, TrunSample};
use super::{AAC_FRAME_SAMPLES, AudioFrame, Fmp4Error, VIDEO_TIMESCALE, VideoSample};
use bytes::Bytes;

/// Period of MPEG-TS timestamps.
const WRAP: u64 = 1 << 33;
/// Duration of a lone sample when nothing better is known (25 fps).
const DEFAULT_FRAME_TICKS: u32 = 3600;

/// One finished fragment and where it sits on its track's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// `styp` + `moof` + `mdat`.
    pub data: Bytes,
    /// `mfhd` sequence_number (never 0).
    pub sequence: u32,
    /// `tfdt` baseMediaDecodeTime, in `timescale` units.
    pub base_time: u64,
    /// Sum of the sample durations, in `timescale` units.
    pub duration: u64,
    /// Track timescale: [`VIDEO_TIMESCALE`] or the audio sample rate.
    pub timescale: u32,
    /// Number of samples.
    pub samples: u32,
}

/// `mfhd` sequence number for a media sequence number: 1..=u32::MAX, counting up with it.
fn mfhd_sequence(sequence: u64) -> u32 {
    u32::try_from(sequence % u64::from(u32::MAX)).map_or(1, |s| s + 1)
}

/// `cur - prev` for 33-bit timestamps, taking the shorter way round the wrap.
pub fn wrap_delta(cur: u64, prev: u64) -> i64 {
    let d = (cur % WRAP).wrapping_sub(prev % WRAP) % WRAP;
    let d = i64::try_from(d).unwrap_or(0);
    if d >= 1 << 32 { d - (1 << 33) } else { d }
}

fn add_signed(base: u64, delta: i64) -> u64 {
    base.saturating_add_signed(delta)
}

/// Where the previous video fragment sat.
#[derive(Debug, Clone, Copy)]
struct VideoPrevious {
    /// Its `tfdt` (90 kHz).
    base_time: u64,
    /// DTS of its first sample as demuxed (compared modulo 2^33).
    first_dts: u64,
    /// Sum of its sample durations.
    duration: u64,
}

/// Stateful packager of one video rendition: turns each demuxed segment into a fragment
/// whose `tfdt` continues the previous one.
#[derive(Debug, Default)]
pub struct VideoTrack {
    /// The last fragment emitted; `None` before the first.
    previous: Option<VideoPrevious>,
    /// Last real sample duration seen (> 0); lasts a fragment's final sample when it is alone.
    frame_duration: Option<u32>,
    /// PTS − DTS of the first sample of the run (the B-frame reorder delay), taken off every
    /// composition offset so that the run's first picture is presented at its `tfdt`: the
    /// fragment's earliest presentation time is then its `tfdt`, as the MPD timeline and
    /// HLS players assume (no hole at the start). Constant within a run.
    composition_shift: i64,
}

impl VideoTrack {
    /// A track that has emitted nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Packages one segment's samples (decode order, first one a keyframe).
    ///
    /// `sequence` is the segment's media sequence number. `run_start` = `Some(tfdt)` starts a
    /// new run (first segment, source restart) at that decode time; `None` continues: `tfdt` =
    /// previous `tfdt` + (first DTS − previous first DTS), 33-bit wrap unwrapped. If that delta
    /// is not positive, the fragment follows the previous one directly. Without any previous
    /// fragment, `None` puts the first sample at its own DTS.
    pub fn fragment(
        &mut self,
        sequence: u64,
        run_start: Option<u64>,
        video: &[VideoSample],
    ) -> Result<Fragment, Fmp4Error> {
        let first = video.first().ok_or(Fmp4Error::NoSamples)?;
        // Decode times as written: the source's, except that a DTS not after the previous one
        // (a source hiccup) is moved one tick after it; the composition offsets below keep
        // every picture's PTS.
        let mut decode = Vec::with_capacity(video.len());
        let mut durations = Vec::with_capacity(video.len());
        decode.push(first.dts);
        for (index, s) in video.iter().enumerate().skip(1) {
            let previous = decode[index - 1];
            let dts = s.dts.max(previous + 1);
            let duration =
                u32::try_from(dts - previous).map_err(|_| Fmp4Error::BadTimestamps { index })?;
            durations.push(duration);
            decode.push(dts);
        }
        let last = durations
            .last()
            .copied()
            .or(self.frame_duration)
            .unwrap_or(DEFAULT_FRAME_TICKS);
        durations.push(last);
        if run_start.is_some() || self.previous.is_none() {
            self.composition_shift = i64::try_from(i128::from(first.pts) - i128::from(first.dts))
                .unwrap_or(0)
                .max(0);
        }
        let mut samples = Vec::with_capacity(video.len());
        for (index, ((s, &duration), &dts)) in video.iter().zip(&durations).zip(&decode).enumerate()
        {
            let cto = i64::try_from(i128::from(s.pts) - i128::from(dts)).ok();
            let cto = cto
                .map(|c| c - self.composition_shift)
                .and_then(|c| i32::try_from(c).ok());
            samples.push(TrunSample {
                duration,
                size: u32::try_from(s.data.len()).map_err(|_| Fmp4Error::TooLarge)?,
                flags: if s.keyframe {
                    SAMPLE_SYNC
                } else {
                    SAMPLE_NON_SYNC
                },
                cto: cto.ok_or(Fmp4Error::CompositionOffset { index })?,
            });
        }
        let base_time = match (run_start, self.previous) {
            (Some(start), _) => start,
            (None, Some(prev)) => match wrap_delta(first.dts, prev.first_dts) {
                d if d > 0 => add_signed(prev.base_time, d),
                _ => prev.base_time.saturating_add(prev.duration),
            },
            (None, None) => first.dts,
        };
        let duration = durations.iter().map(|&d| u64::from(d)).sum();
        let payloads: Vec<&[u8]> = video.iter().map(|s| s.data.as_slice()).collect();
        let sequence = mfhd_sequence(sequence);
        let data = boxes::fragment(sequence, base_time, true, &samples, &payloads)?;
        self.previous = Some(VideoPrevious {
            base_time,
            first_dts: first.dts,
            duration,
        });
        self.frame_duration = Some(last);
        Ok(Fragment {
            data: Bytes::from(data),
            sequence,
            base_time,
            duration,
            timescale: VIDEO_TIMESCALE,
            samples: u32::try_from(samples.len()).map_err(|_| Fmp4Error::TooLarge)?,
        })
    }
}

/// Audio timeline state between fragments.
#[derive(Debug, Clone, Copy)]
struct AudioTimeline {
    /// 90 kHz PTS of the previous fragment's first frame.
    first_pts: u64,
    /// Where that PTS falls on the track timeline (sample units) by the PTS clock; differs
    /// from that fragment's `tfdt` by the snapping error (< 1.5 frames unless audio overlapped).
    ideal: i128,
    /// `tfdt` + duration of the previous fragment.
    next_base: u64,
    /// 90 kHz PTS of the previous fragment's last frame.
    last_pts: u64,
}

/// Stateful packager of one AAC rendition; timescale = sample rate, every frame lasts 1024.
///
/// Within a run `tfdt` is snapped to whole frames so consecutive fragments are exactly
/// continuous (`tfdt[n+1] == tfdt[n] + duration[n]`) while audio has no real gap; a real gap
/// (> 1.5 frames against the PTS clock) is kept, rounded to whole frames, both between and
/// inside fragments.
#[derive(Debug)]
pub struct AudioTrack {
    /// Track timescale in Hz (from the AAC config).
    sample_rate: u32,
    /// `None` before the first fragment.
    timeline: Option<AudioTimeline>,
}

impl AudioTrack {
    /// A track for AAC at `sample_rate` Hz that has emitted nothing yet.
    pub fn new(sample_rate: u32) -> Self {
        AudioTrack {
            sample_rate,
            timeline: None,
        }
    }

    /// 90 kHz ticks → samples, rounded to nearest.
    fn to_samples(&self, ticks: i64) -> i128 {
        let num = i128::from(ticks) * i128::from(self.sample_rate);
        (num + if num >= 0 { 45_000 } else { -45_000 }) / 90_000
    }

    /// Packages one segment's AAC frames. `run_start` (sample-rate units) starts a new run;
    /// `None` continues, or without any previous fragment puts the first frame at its PTS.
    pub fn fragment(
        &mut self,
        sequence: u64,
        run_start: Option<u64>,
        audio: &[AudioFrame],
    ) -> Result<Fragment, Fmp4Error> {
        if self.sample_rate == 0 {
            return Err(Fmp4Error::BadSampleRate(self.sample_rate));
        }
        // A frame stamped before the one it follows (a demuxer's first frame of a restarted
        // source, before it re-based its clock) has no place on the timeline: dropped, or it
        // would stretch its neighbour over the whole jump.
        let mut last = match (run_start, self.timeline) {
            (None, Some(prev)) => Some(prev.last_pts),
            _ => None,
        };
        let audio: Vec<&AudioFrame> = audio
            .iter()
            .filter(|f| {
                let keep = last.is_none_or(|l| wrap_delta(f.pts, l) > 0);
                if keep {
                    last = Some(f.pts);
                }
                keep
            })
            .collect();
        let first = *audio.first().ok_or(Fmp4Error::NoSamples)?;
        let frame = i128::from(AAC_FRAME_SAMPLES);
        let gap_limit = frame * 3 / 2;
        let mut samples = Vec::with_capacity(audio.len());
        for (index, s) in audio.iter().enumerate() {
            let duration = match audio.get(index + 1) {
                Some(next) => {
                    let step = self.to_samples(wrap_delta(next.pts, s.pts));
                    let frames = if step > gap_limit {
                        (step + frame / 2) / frame
                    } else {
                        1
                    };
                    u32::try_from(frames * frame)
                        .map_err(|_| Fmp4Error::BadTimestamps { index: index + 1 })?
                }
                None => AAC_FRAME_SAMPLES,
            };
            samples.push(TrunSample {
                duration,
                size: u32::try_from(s.data.len()).map_err(|_| Fmp4Error::TooLarge)?,
                flags: SAMPLE_SYNC,
                cto: 0,
            });
        }
        let (base_time, ideal) = match (run_start, self.timeline) {
            (Some(start), _) => (start, i128::from(start)),
            (None, Some(prev)) => {
                let ideal = prev.ideal + self.to_samples(wrap_delta(first.pts, prev.first_pts));
                let ahead = ideal - i128::from(prev.next_base);
                let base = if ahead > gap_limit {
                    let gap = u64::try_from((ahead + frame / 2) / frame * frame).unwrap_or(0);
                    prev.next_base.saturating_add(gap)
                } else {
                    prev.next_base
                };
                (base, ideal)
            }
            (None, None) => {
                let start = u64::try_from(self.to_samples(i64::try_from(first.pts).unwrap_or(0)));
                let start = start.unwrap_or(0);
                (start, i128::from(start))
            }
        };
        let duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
        let payloads: Vec<&[u8]> = audio.iter().map(|f| f.data.as_slice()).collect();
        let sequence = mfhd_sequence(sequence);
        let data = boxes::fragment(sequence, base_time, false, &samples, &payloads)?;
        self.timeline = Some(AudioTimeline {
            first_pts: first.pts,
            ideal,
            next_base: base_time.saturating_add(duration),
            last_pts: audio.last().map_or(first.pts, |f| f.pts),
        });
        Ok(Fragment {
            data: Bytes::from(data),
            sequence,
            base_time,
            duration,
            timescale: self.sample_rate,
            samples: u32::try_from(samples.len()).map_err(|_| Fmp4Error::TooLarge)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(dts: u64, pts: u64, keyframe: bool) -> VideoSample {
        VideoSample {
            dts,
            pts,
            keyframe,
            data: vec![0, 0, 0, 1, 0x65],
        }
    }

    fn af(pts: u64) -> AudioFrame {
        AudioFrame {
            pts,
            data: vec![0x21, 0x10],
        }
    }

    #[test]
    fn sequence_numbers_are_never_zero() {
        assert_eq!(mfhd_sequence(0), 1);
        assert_eq!(mfhd_sequence(41), 42);
        assert_eq!(mfhd_sequence(u64::from(u32::MAX) - 1), u32::MAX);
        assert_eq!(mfhd_sequence(u64::from(u32::MAX)), 1);
        assert_eq!(
            mfhd_sequence(u64::MAX),
            mfhd_sequence(u64::MAX % u64::from(u32::MAX))
        );
    }

    #[test]
    fn wrap_delta_takes_short_way() {
        assert_eq!(wrap_delta(100, WRAP - 100), 200);
        assert_eq!(wrap_delta(WRAP - 100, 100), -200);
        assert_eq!(wrap_delta(WRAP + 5, 3), 2);
    }

    #[test]
    fn video_follows_dts_across_wrap_and_run_start_resets() {
        let mut t = VideoTrack::new();
        let seg = |d: u64| {
            [
                vs(d % WRAP, d % WRAP, true),
                vs((d + 3600) % WRAP, (d + 3600) % WRAP, false),
            ]
        };
        let a = t.fragment(0, Some(1000), &seg(WRAP - 7200)).unwrap();
        assert_eq!((a.base_time, a.duration, a.sequence), (1000, 7200, 1));
        let b = t.fragment(1, None, &seg(WRAP)).unwrap();
        assert_eq!(b.base_time, a.base_time + a.duration);
        let c = t.fragment(2, Some(5), &seg(50_000)).unwrap();
        assert_eq!((c.base_time, c.sequence), (5, 3));
        // DTS going backwards without a new run: follow on directly.
        let d = t.fragment(3, None, &seg(10)).unwrap();
        assert_eq!(d.base_time, c.base_time + c.duration);
    }

    #[test]
    fn video_rejects_bad_timestamps() {
        let mut t = VideoTrack::new();
        assert!(matches!(
            t.fragment(0, None, &[]),
            Err(Fmp4Error::NoSamples)
        ));
        let far = [vs(100, 100, true), vs(100 + (1 << 32), 100, false)];
        assert!(matches!(
            t.fragment(0, None, &far),
            Err(Fmp4Error::BadTimestamps { index: 1 })
        ));
        let cto = [vs(0, u64::MAX, true)];
        assert!(matches!(
            t.fragment(0, None, &cto),
            Err(Fmp4Error::CompositionOffset { index: 0 })
        ));
        let neg = t.fragment(0, None, &[vs(7200, 3600, true)]).unwrap();
        assert_eq!(neg.samples, 1);
    }

    /// Composition offsets of the first `trun` in `fragment`.
    fn trun_ctos(fragment: &[u8]) -> Vec<i32> {
        let at = fragment
            .windows(4)
            .position(|w| w == b"trun")
            .expect("a trun")
            + 4;
        let be = |i: usize| u32::from_be_bytes(fragment[i..i + 4].try_into().unwrap());
        let flags = be(at) & 0xff_ffff;
        let count = be(at + 4) as usize;
        let mut entry = at + 8;
        entry += 4 * usize::from(flags & 0x1 != 0) + 4 * usize::from(flags & 0x4 != 0);
        let stride = 4 * (flags & 0xf00).count_ones() as usize;
        assert_ne!(flags & 0x800, 0, "offsets present");
        (0..count)
            .map(|i| be(entry + i * stride + stride - 4) as i32)
            .collect()
    }

    #[test]
    fn a_decode_time_going_back_is_moved_after_the_previous_keeping_the_pts() {
        let mut t = VideoTrack::new();
        // the third picture's DTS steps back 10 ms (a source hiccup)
        let video = [
            vs(9000, 9000, true),
            vs(12_600, 12_600, false),
            vs(11_700, 16_200, false),
            vs(19_800, 19_800, false),
        ];
        let f = t.fragment(0, Some(0), &video).unwrap();
        assert_eq!(f.samples, 4);
        // decode times 9000, 12600, 12601, 19800: durations 3600, 1, 7199, last 7199
        assert_eq!(f.duration, 3600 + 1 + 7199 + 7199);
        let ctos = trun_ctos(&f.data);
        // PTS − written DTS: 0, 0, 16200 − 12601, 0
        assert_eq!(ctos, [0, 0, 3599, 0]);
    }

    #[test]
    fn an_audio_frame_stamped_back_in_time_is_dropped() {
        let mut t = AudioTrack::new(48_000);
        let ticks = |k: u64| 900_000 + k * 1920;
        let mut frames: Vec<AudioFrame> = (0..5).map(|k| af(ticks(k))).collect();
        // a restarted source's first frame, 9 s early, then the clock goes on
        frames.push(af(ticks(5) - 810_000));
        frames.extend((5..10).map(|k| af(ticks(k))));
        let a = t.fragment(0, Some(0), &frames).unwrap();
        assert_eq!(a.duration, 10 * 1024, "not stretched over the jump");
        // across fragments too
        let b = t
            .fragment(1, None, &[af(ticks(3)), af(ticks(10)), af(ticks(11))])
            .unwrap();
        assert_eq!((b.base_time, b.duration), (10 * 1024, 2 * 1024));
    }

    #[test]
    fn audio_snaps_jitter_and_keeps_real_gaps() {
        let mut t = AudioTrack::new(48_000);
        let ticks = |k: u64| k * 1920; // 1024 samples at 48 kHz = 1920 ticks
        let seg = |from: u64, n: u64, jitter: u64| {
            (from..from + n)
                .map(|k| af(ticks(k) + jitter))
                .collect::<Vec<_>>()
        };
        let a = t.fragment(0, Some(0), &seg(0, 10, 0)).unwrap();
        assert_eq!((a.base_time, a.duration, a.timescale), (0, 10_240, 48_000));
        let b = t.fragment(1, None, &seg(10, 10, 1)).unwrap();
        assert_eq!(b.base_time, 10_240);
        // Three frames missing between fragments: kept as a gap.
        let c = t.fragment(2, None, &seg(23, 10, 0)).unwrap();
        assert_eq!(c.base_time, 23 * 1024);
        // A gap inside a fragment lengthens the frame before it.
        let mut inner = seg(33, 2, 0);
        inner.extend(seg(37, 1, 0));
        let d = t.fragment(3, None, &inner).unwrap();
        assert_eq!((d.base_time, d.duration), (33 * 1024, 5 * 1024));
        let e = t.fragment(4, Some(7), &seg(0, 1, 0)).unwrap();
        assert_eq!(e.base_time, 7);
        assert!(matches!(
            AudioTrack::new(0).fragment(0, None, &seg(0, 1, 0)),
            Err(Fmp4Error::BadSampleRate(0))
        ));
    }
}
