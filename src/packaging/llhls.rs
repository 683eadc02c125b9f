//! Low-latency HLS media playlists (RFC 8216bis: `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-SERVER-CONTROL`, `EXT-X-SKIP`, `EXT-X-RENDITION-REPORT`) for one fMP4 track whose
//! segments are published part by part. Pure text from the track's parts and segments.
//!
//! Names: parts are numbered in one sequence per track for the life of the stream actor
//! (`ll-RUN-N.m4s`, `RUN` = the actor's start, UNIX ms), so the next part's name is known
//! before anyone knows whether it starts a segment; a finished segment is its parts joined
//! (`ll-RUN-sMSN.m4s`). Names never repeat, so both are immutable.

use super::hls::program_date_time;
use super::snapshot::InitSegment;
use bytes::Bytes;
use std::fmt::Write;
use std::sync::Arc;

/// One part: a CMAF chunk (`styp`+`moof`+`mdat`) of one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Per track, counting up from 0 for the actor's run.
    pub number: u64,
    /// Seconds (from the fragment's sample durations).
    pub duration: f64,
    /// Starts with a keyframe (always for audio).
    pub independent: bool,
    pub data: Bytes,
    /// A muxed part's audio (the audio fragments retagged to track 2), sent after `data`,
    /// which is then the video part's own bytes, shared with it; empty on a one-track part.
    pub muxed_audio: Bytes,
}

impl Part {
    /// Its bytes as sent, in pieces: `data`, then a muxed part's audio.
    pub fn pieces(&self) -> impl Iterator<Item = Bytes> + use<> {
        [self.data.clone(), self.muxed_audio.clone()]
            .into_iter()
            .filter(|piece| !piece.is_empty())
    }

    /// Its bytes in one piece (a muxed part's are copied together).
    pub fn joined(&self) -> Bytes {
        if self.muxed_audio.is_empty() {
            return self.data.clone();
        }
        [&self.data[..], &self.muxed_audio[..]].concat().into()
    }

    /// Bytes as sent.
    pub fn len(&self) -> usize {
        self.data.len() + self.muxed_audio.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One segment of an LL track: its parts so far, and once complete, all of them joined.
#[derive(Debug, Clone, PartialEq)]
pub struct LlSegment {
    /// Media sequence number (the same as the stream's TS and fMP4 segments).
    pub sequence: u64,
    /// UTC ms of its first sample on its own track's timeline (`EXT-X-PROGRAM-DATE-TIME`):
    /// the next segment's is this plus its duration.
    pub start_ms: u64,
    pub discontinuity: bool,
    pub parts: Vec<Arc<Part>>,
    /// All its parts are there (listed with `EXTINF`). The segment is served as its parts in
    /// a row: no joined copy is kept.
    pub complete: bool,
    /// The init segment its parts decode with (`version` names it).
    pub init: Arc<InitSegment>,
}

impl LlSegment {
    /// Seconds: the sum of its parts.
    pub fn duration(&self) -> f64 {
        self.parts.iter().map(|p| p.duration).sum()
    }

    pub fn complete(&self) -> bool {
        self.complete
    }
}

/// The newest part of another rendition, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Relative to this playlist (`../tracks-a1/index.ll.m3u8`).
    pub uri: String,
    pub last_msn: u64,
    pub last_part: u32,
}

/// Whether the client asked for a delta update (`_HLS_skip=YES` or `v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    No,
    Yes,
}

/// What a track's LL playlist is made of.
#[derive(Debug, Clone)]
pub struct LlMedia<'a> {
    /// Oldest first: complete segments, then at most one being cut (last).
    pub segments: &'a [Arc<LlSegment>],
    /// Configured segment duration and part target, ms.
    pub target_ms: u32,
    pub part_target_ms: u32,
    /// Discontinuities before the first segment listed.
    pub discontinuity_sequence: u64,
    /// The actor's run (part and segment names).
    pub run: u64,
    /// The number the next part will get (the preload hint).
    pub next_part: u64,
    pub reports: &'a [Report],
}

/// Name of part `number` of run `run`.
pub fn part_name(run: u64, number: u64) -> String {
    format!("ll-{run}-{number}.m4s")
}

/// Name of init segment `version` of run `run`.
pub fn init_name(run: u64, version: u32) -> String {
    format!("ll-{run}-i{version}.mp4")
}

/// Name of the joined segment `sequence` of run `run`.
pub fn segment_name(run: u64, sequence: u64) -> String {
    format!("ll-{run}-s{sequence}.m4s")
}

/// Parses `ll-RUN-N.m4s` (a part), `ll-RUN-sMSN.m4s` (a segment) or `ll-RUN-iV.mp4` (an
/// init segment).
pub fn parse_name(name: &str) -> Option<LlName> {
    if let Some(rest) = name
        .strip_prefix("ll-")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        let (run, version) = rest.split_once("-i")?;
        return Some(LlName::Init {
            run: digits(run)?,
            version: u32::try_from(digits(version)?).ok()?,
        });
    }
    let rest = name.strip_prefix("ll-")?.strip_suffix(".m4s")?;
    let (run, what) = rest.split_once('-')?;
    let run = digits(run)?;
    match what.strip_prefix('s') {
        Some(msn) => Some(LlName::Segment {
            run,
            sequence: digits(msn)?,
        }),
        None => Some(LlName::Part {
            run,
            number: digits(what)?,
        }),
    }
}

fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// An LL resource name, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlName {
    Init { run: u64, version: u32 },
    Part { run: u64, number: u64 },
    Segment { run: u64, sequence: u64 },
}

/// `PART-HOLD-BACK` in parts: players stay this many part targets behind the newest part
/// (the specification's minimum is 2, its advice 3).
pub const PART_HOLD_BACK_PARTS: u32 = 3;
/// `CAN-SKIP-UNTIL` in target durations (the specification's minimum).
pub const SKIP_UNTIL_TARGETS: u32 = 6;
/// Parts are listed for the segments of this many target durations at the live end.
pub const PARTS_LISTED_TARGETS: u32 = 3;

/// The playlist text. With [`Skip::Yes`], segments older than `CAN-SKIP-UNTIL` from the end
/// are replaced by `EXT-X-SKIP`.
pub fn media_playlist(p: &LlMedia<'_>, skip: Skip) -> String {
    let target_s = p
        .target_ms
        .div_ceil(1000)
        .max(
            p.segments
                .iter()
                .filter(|s| s.complete())
                .map(|s| s.duration().round() as u32)
                .max()
                .unwrap_or(0),
        )
        .max(1);
    let part_target = f64::from(p.part_target_ms) / 1000.0;
    let skip_until = f64::from(target_s * SKIP_UNTIL_TARGETS);
    let mut out = String::with_capacity(512 + p.segments.len() * 400);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target_s}");
    out.push_str("#EXT-X-VERSION:9\n");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},CAN-SKIP-UNTIL={skip_until:.1}",
        part_target * f64::from(PART_HOLD_BACK_PARTS)
    );
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
    let first = p.segments.first().map_or(0, |s| s.sequence);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
    if p.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            p.discontinuity_sequence
        );
    }
    // Where each segment ends, counted back from the end of the playlist.
    let total: f64 = p.segments.iter().map(|s| s.duration()).sum();
    let mut ends_before_end = Vec::with_capacity(p.segments.len());
    let mut elapsed = 0.0;
    for s in p.segments {
        elapsed += s.duration();
        ends_before_end.push(total - elapsed);
    }
    let skipped = match skip {
        Skip::No => 0,
        Skip::Yes => p
            .segments
            .iter()
            .zip(&ends_before_end)
            .take_while(|(s, before_end)| s.complete() && **before_end >= skip_until)
            .count(),
    };
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let parts_from = total - f64::from(target_s * PARTS_LISTED_TARGETS);
    let mut start = 0.0;
    for (i, s) in p.segments.iter().enumerate() {
        let begins = start;
        start += s.duration();
        if i < skipped {
            continue;
        }
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if i == skipped || s.init.version != p.segments[i - 1].init.version {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}\"",
                init_name(p.run, s.init.version)
            );
        }
        if i == skipped || s.discontinuity {
            program_date_time(&mut out, s.start_ms);
        }
        if !s.complete() || begins + s.duration() > parts_from {
            for part in &s.parts {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={:.3},URI=\"{}\"",
                    part.duration,
                    part_name(p.run, part.number)
                );
                out.push_str(if part.independent {
                    ",INDEPENDENT=YES\n"
                } else {
                    "\n"
                });
            }
        }
        if s.complete() {
            let _ = writeln!(out, "#EXTINF:{:.3},", s.duration());
            let _ = writeln!(out, "{}", segment_name(p.run, s.sequence));
        }
    }
    let _ = writeln!(
        out,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
        part_name(p.run, p.next_part)
    );
    for r in p.reports {
        let _ = writeln!(
            out,
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
            r.uri, r.last_msn, r.last_part
        );
    }
    out
}

/// The newest part of `segments` as (media sequence number, part index): what a rendition
/// report and a blocking request compare with. `None` without any part.
pub fn last_part(segments: &[Arc<LlSegment>]) -> Option<(u64, u32)> {
    let s = segments.iter().rev().find(|s| !s.parts.is_empty())?;
    Some((
        s.sequence,
        u32::try_from(s.parts.len() - 1).unwrap_or(u32::MAX),
    ))
}

/// Whether `segments` already hold what a blocking request waits for: segment `msn` whole
/// (no `part`), or its part `part` (or anything later).
pub fn has(segments: &[Arc<LlSegment>], msn: u64, part: Option<u32>) -> bool {
    segments.iter().rev().any(|s| match part {
        None => s.sequence >= msn && s.complete(),
        Some(part) => {
            s.sequence > msn && !s.parts.is_empty()
                || s.sequence == msn && (s.complete() || s.parts.len() > part as usize)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u64, duration: f64, independent: bool) -> Arc<Part> {
        Arc::new(Part {
            number,
            duration,
            independent,
            data: Bytes::from_static(b"p"),
            muxed_audio: Bytes::new(),
        })
    }

    /// Segments 10.. of 1 s (4 parts of 0.25 s each), the last one still being cut with
    /// `open_parts` parts.
    fn segments(complete: u64, open_parts: u64) -> Vec<Arc<LlSegment>> {
        let mut out = Vec::new();
        let mut number = 0;
        for i in 0..=complete {
            let n = if i == complete { open_parts } else { 4 };
            if n == 0 {
                break;
            }
            let parts: Vec<_> = (0..n)
                .map(|k| {
                    number += 1;
                    part(number - 1, 0.25, k == 0)
                })
                .collect();
            out.push(Arc::new(LlSegment {
                sequence: 10 + i,
                start_ms: 1_795_305_600_000 + i * 1000,
                discontinuity: false,
                complete: i < complete,
                init: Arc::default(),
                parts,
            }));
        }
        out
    }

    fn media<'a>(segs: &'a [Arc<LlSegment>], reports: &'a [Report]) -> LlMedia<'a> {
        let next_part = segs.iter().map(|s| s.parts.len() as u64).sum();
        LlMedia {
            segments: segs,
            target_ms: 1000,
            part_target_ms: 250,
            discontinuity_sequence: 0,
            run: 7,
            next_part,
            reports,
        }
    }

    #[test]
    fn the_playlist_lists_recent_parts_a_hint_and_reports() {
        let segs = segments(4, 2);
        let reports = [Report {
            uri: "../tracks-a1/index.ll.m3u8".into(),
            last_msn: 14,
            last_part: 1,
        }];
        let text = media_playlist(&media(&segs, &reports), Skip::No);
        let expected = "#EXTM3U
#EXT-X-TARGETDURATION:1
#EXT-X-VERSION:9
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.750,CAN-SKIP-UNTIL=6.0
#EXT-X-PART-INF:PART-TARGET=0.250
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-MAP:URI=\"ll-7-i0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T00:00:00.000Z
#EXTINF:1.000,
ll-7-s10.m4s
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-4.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-5.m4s\"
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-6.m4s\"
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-7.m4s\"
#EXTINF:1.000,
ll-7-s11.m4s
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-8.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-9.m4s\"
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-10.m4s\"
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-11.m4s\"
#EXTINF:1.000,
ll-7-s12.m4s
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-12.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-13.m4s\"
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-14.m4s\"
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-15.m4s\"
#EXTINF:1.000,
ll-7-s13.m4s
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-16.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.250,URI=\"ll-7-17.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"ll-7-18.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../tracks-a1/index.ll.m3u8\",LAST-MSN=14,LAST-PART=1
";
        assert_eq!(text, expected);
    }

    #[test]
    fn hold_back_and_skip_follow_the_specification() {
        let segs = segments(12, 1);
        let text = media_playlist(&media(&segs, &[]), Skip::No);
        let control = text
            .lines()
            .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
            .unwrap();
        let attr = |name: &str| -> f64 {
            control
                .split([':', ','])
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(attr("PART-HOLD-BACK") >= 3.0 * 0.25);
        assert!(attr("CAN-SKIP-UNTIL") >= 6.0 * 1.0);
        // A delta update: the 12 complete seconds minus the last 6 are skipped.
        let delta = media_playlist(&media(&segs, &[]), Skip::Yes);
        assert!(
            delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n"),
            "{delta}"
        );
        assert!(!delta.contains("ll-7-s15.m4s") && delta.contains("ll-7-s16.m4s"));
        let (before, after) = delta.split_once("#EXT-X-SKIP").unwrap();
        assert!(before.contains("#EXT-X-MEDIA-SEQUENCE:10\n"), "{delta}");
        assert!(
            after.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-22T00:00:06.000Z"),
            "the first listed segment is dated: {delta}"
        );
        // Parts only for the last three target durations; every segment's first part is
        // independent; parts are in order.
        let numbers: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
            .map(|l| {
                let uri = l.split("URI=\"ll-7-").nth(1).unwrap();
                uri.split('.').next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(numbers, (36..=48).collect::<Vec<_>>(), "{text}");
        for l in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
            let n: u64 = l
                .split("ll-7-")
                .nth(1)
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(l.ends_with("INDEPENDENT=YES"), n.is_multiple_of(4), "{l}");
        }
    }

    #[test]
    fn blocking_targets_and_reports_are_read_from_the_parts() {
        let segs = segments(3, 2);
        assert_eq!(last_part(&segs), Some((13, 1)));
        assert!(has(&segs, 12, None) && has(&segs, 12, Some(3)));
        assert!(has(&segs, 13, Some(1)) && !has(&segs, 13, Some(2)));
        assert!(!has(&segs, 13, None), "segment 13 is not complete");
        assert!(!has(&segs, 14, Some(0)));
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name(&part_name(7, 12)),
            Some(LlName::Part { run: 7, number: 12 })
        );
        assert_eq!(
            parse_name(&segment_name(7, 3)),
            Some(LlName::Segment {
                run: 7,
                sequence: 3
            })
        );
        assert_eq!(
            parse_name(&init_name(7, 2)),
            Some(LlName::Init { run: 7, version: 2 })
        );
        assert_eq!(parse_name("ll-7-x.m4s"), None);
        assert_eq!(parse_name("ll--1.m4s"), None);
        assert_eq!(parse_name("ll-7-1.ts"), None);
    }
}
