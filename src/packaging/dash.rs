//! The live DASH manifest (ISO/IEC 23009-1, isoff-live profile) of a snapshot: a dynamic MPD
//! with one AdaptationSet for video (a Representation per rendition) and one for audio, each
//! with a `SegmentTemplate` + `SegmentTimeline` built from the fMP4 fragments' own `tfdt`
//! and durations, so the timeline and the media agree exactly. Rendered per request because
//! `publishTime` and the `UTCTiming` URL (the request's host) change; pure text work.

use super::snapshot::{FragmentEntry, Snapshot, TrackSnapshot};
use crate::media::utc::Civil;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;

/// Renders the MPD at wall-clock `now_ms`; `None` until the first rendition has fragments.
/// `utc_timing_url` is where clients read the server's clock (ISO 8601 over HTTP).
pub fn mpd(snap: &Snapshot, now_ms: u64, utc_timing_url: &str) -> Option<String> {
    let video: Vec<(usize, &TrackSnapshot)> = snap
        .renditions
        .iter()
        .enumerate()
        .filter(|(_, r)| r.video.init.is_some() && !r.video.live.is_empty() && r.media.is_some())
        .map(|(i, r)| (i, &r.video))
        .collect();
    let (_, first) = video.first()?;
    // Only the segments every listed rendition has, so that any switch finds its segment.
    let common: BTreeSet<u64> = video
        .iter()
        .map(|(_, t)| t.live.iter().map(|f| f.sequence).collect::<BTreeSet<u64>>())
        .reduce(|a, b| a.intersection(&b).copied().collect())
        .unwrap_or_default();
    let listed: Vec<&Arc<FragmentEntry>> = first
        .live
        .iter()
        .filter(|f| common.contains(&f.sequence))
        .collect();
    let timeline = contiguous_tail(&listed);
    if timeline.is_empty() {
        return None;
    }
    let target_s = f64::from(snap.target_ms) / 1000.0;
    let depth_ms: u64 = timeline.iter().map(|f| u64::from(f.duration_ms)).sum();
    let longest = timeline.iter().map(|f| f.duration_ms).max().unwrap_or(0);
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
         type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" \
         minBufferTime=\"{}\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\" \
         maxSegmentDuration=\"{}\">",
        iso(snap.epoch_ms),
        iso(now_ms),
        duration(target_s),
        duration(target_s),
        duration(depth_ms as f64 / 1000.0),
        duration(3.0 * target_s),
        duration(f64::from(longest) / 1000.0),
    );
    out.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    let max_w = video
        .iter()
        .filter_map(|(i, _)| snap.renditions[*i].media.as_ref()?.video.as_ref())
        .map(|v| (v.width, v.height))
        .max()
        .unwrap_or((0, 0));
    let _ = writeln!(
        out,
        "    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" \
         startWithSAP=\"1\" maxWidth=\"{}\" maxHeight=\"{}\">",
        max_w.0, max_w.1
    );
    template(&mut out, &timeline);
    for (i, track) in &video {
        let Some(v) = snap.renditions[*i]
            .media
            .as_ref()
            .and_then(|m| m.video.as_ref())
        else {
            continue;
        };
        let _ = write!(
            out,
            "      <Representation id=\"v{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{}\" height=\"{}\" sar=\"1:1\"",
            i + 1,
            track.peak_bitrate.max(1),
            v.codec,
            v.width,
            v.height
        );
        if let Some((n, d)) = v.frame_rate {
            if d == 1 {
                let _ = write!(out, " frameRate=\"{n}\"");
            } else {
                let _ = write!(out, " frameRate=\"{n}/{d}\"");
            }
        }
        out.push_str("/>\n");
    }
    out.push_str("    </AdaptationSet>\n");
    let audio_info = snap.media().and_then(|m| m.audio.as_ref());
    if let (Some(track), Some(info)) = (&snap.audio, audio_info)
        && track.init.is_some()
    {
        let frags = contiguous_tail(&track.live.iter().collect::<Vec<_>>());
        if !frags.is_empty() {
            out.push_str(
                "    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" segmentAlignment=\"true\" \
                 startWithSAP=\"1\" lang=\"und\">\n",
            );
            template(&mut out, &frags);
            let _ = writeln!(
                out,
                "      <Representation id=\"a1\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"{}\">\n        \
                 <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>\n      \
                 </Representation>",
                track.peak_bitrate.max(1),
                info.codec,
                info.sample_rate,
                info.channels
            );
            out.push_str("    </AdaptationSet>\n");
        }
    }
    out.push_str("  </Period>\n");
    let _ = writeln!(
        out,
        "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"{}\"/>",
        xml_attr(utc_timing_url)
    );
    out.push_str("</MPD>\n");
    Some(out)
}

/// The newest run of consecutive sequence numbers: `$Number$` counts one per `S`, so a hole
/// in the numbers cannot be described in one timeline.
fn contiguous_tail<'a>(frags: &[&'a Arc<FragmentEntry>]) -> Vec<&'a Arc<FragmentEntry>> {
    let mut start = frags.len().saturating_sub(1);
    while start > 0 && frags[start - 1].sequence + 1 == frags[start].sequence {
        start -= 1;
    }
    frags.get(start..).map(<[_]>::to_vec).unwrap_or_default()
}

/// `SegmentTemplate` with its timeline; `t` is written whenever a fragment does not start
/// where the previous one ended (a source restart), repeats are folded into `r`.
fn template(out: &mut String, frags: &[&Arc<FragmentEntry>]) {
    let Some(first) = frags.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "      <SegmentTemplate timescale=\"{}\" initialization=\"tracks-$RepresentationID$/init.mp4\" \
         media=\"tracks-$RepresentationID$/$Number$.m4s\" startNumber=\"{}\">",
        first.timescale, first.sequence
    );
    out.push_str("        <SegmentTimeline>\n");
    // (t, d, r) runs
    let mut runs: Vec<(u64, u64, u32)> = Vec::new();
    let mut expected: Option<u64> = None;
    for f in frags {
        let contiguous = expected == Some(f.base_time);
        match runs.last_mut() {
            Some((_, d, r)) if contiguous && *d == f.duration => *r += 1,
            _ => runs.push((f.base_time, f.duration, 0)),
        }
        expected = Some(f.base_time + f.duration);
    }
    let mut end: Option<u64> = None;
    for (t, d, r) in runs {
        let _ = write!(out, "          <S");
        if end != Some(t) {
            let _ = write!(out, " t=\"{t}\"");
        }
        let _ = write!(out, " d=\"{d}\"");
        if r > 0 {
            let _ = write!(out, " r=\"{r}\"");
        }
        out.push_str("/>\n");
        end = Some(t + d * (u64::from(r) + 1));
    }
    out.push_str("        </SegmentTimeline>\n      </SegmentTemplate>\n");
}

/// `xs:dateTime` in UTC with milliseconds.
fn iso(ms: u64) -> String {
    Civil::from_unix_ms(ms).iso8601()
}

/// `xs:duration` in seconds (`PT2.000S`).
fn duration(seconds: f64) -> String {
    format!("PT{seconds:.3}S")
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AudioInfo, MediaInfo, VideoInfo};
    use crate::packaging::RenditionSnapshot;
    use bytes::Bytes;

    fn frag(sequence: u64, base_time: u64, duration: u64, timescale: u32) -> Arc<FragmentEntry> {
        Arc::new(FragmentEntry {
            sequence,
            start_ms: 1_700_000_000_000 + sequence * 2000,
            duration_ms: 2000,
            discontinuity: false,
            data: Bytes::from_static(b"x"),
            base_time,
            duration,
            timescale,
            init: Bytes::new(),
            init_version: 0,
        })
    }

    fn track(frags: Vec<Arc<FragmentEntry>>, peak: u64) -> TrackSnapshot {
        TrackSnapshot {
            init: Some(Bytes::from_static(b"init")),
            live: frags,
            peak_bitrate: peak,
            ..Default::default()
        }
    }

    fn rendition(w: u32, h: u32, frags: Vec<Arc<FragmentEntry>>, peak: u64) -> RenditionSnapshot {
        RenditionSnapshot {
            media: Some(MediaInfo {
                video: Some(VideoInfo {
                    codec: "avc1.4d401e".into(),
                    width: w,
                    height: h,
                    frame_rate: Some((25, 1)),
                }),
                audio: Some(AudioInfo {
                    codec: "mp4a.40.2".into(),
                    channels: 2,
                    sample_rate: 48000,
                }),
            }),
            video: track(frags, peak),
            ..Default::default()
        }
    }

    #[test]
    fn two_renditions_and_audio_exact_text() {
        let v = |seqs: &[u64]| -> Vec<Arc<FragmentEntry>> {
            seqs.iter()
                .map(|&s| frag(s, (s - 10) * 180_000 + 900_000, 180_000, 90_000))
                .collect()
        };
        let snap = Snapshot {
            // rendition 2 lacks segment 13 yet: the timeline stops at 12
            renditions: vec![
                rendition(640, 360, v(&[10, 11, 12, 13]), 900_000),
                rendition(320, 180, v(&[10, 11, 12]), 350_000),
            ],
            audio: Some(track(
                (10..14)
                    .map(|s| frag(s, (s - 10) * 96_256, 96_256, 48_000))
                    .collect(),
                130_000,
            )),
            epoch_ms: 1_700_000_000_000,
            target_ms: 2000,
            ..Default::default()
        };
        let text = mpd(&snap, 1_700_000_030_000, "http://h:80/time").unwrap();
        assert_eq!(
            text,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="2023-11-14T22:13:20.000Z" publishTime="2023-11-14T22:13:50.000Z" minimumUpdatePeriod="PT2.000S" minBufferTime="PT2.000S" timeShiftBufferDepth="PT6.000S" suggestedPresentationDelay="PT6.000S" maxSegmentDuration="PT2.000S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1" maxWidth="640" maxHeight="360">
      <SegmentTemplate timescale="90000" initialization="tracks-$RepresentationID$/init.mp4" media="tracks-$RepresentationID$/$Number$.m4s" startNumber="10">
        <SegmentTimeline>
          <S t="900000" d="180000" r="2"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="v1" bandwidth="900000" codecs="avc1.4d401e" width="640" height="360" sar="1:1" frameRate="25"/>
      <Representation id="v2" bandwidth="350000" codecs="avc1.4d401e" width="320" height="180" sar="1:1" frameRate="25"/>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" segmentAlignment="true" startWithSAP="1" lang="und">
      <SegmentTemplate timescale="48000" initialization="tracks-$RepresentationID$/init.mp4" media="tracks-$RepresentationID$/$Number$.m4s" startNumber="10">
        <SegmentTimeline>
          <S t="0" d="96256" r="3"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="a1" bandwidth="130000" codecs="mp4a.40.2" audioSamplingRate="48000">
        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
      </Representation>
    </AdaptationSet>
  </Period>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="http://h:80/time"/>
</MPD>
"#
        );
    }

    #[test]
    fn gaps_in_time_get_t_and_holes_in_numbers_restart_the_timeline() {
        let frags = [
            frag(1, 0, 180_000, 90_000),
            frag(2, 180_000, 180_000, 90_000),
            frag(3, 900_000, 90_000, 90_000), // restart later: explicit t
            frag(4, 990_000, 180_000, 90_000),
        ];
        let mut out = String::new();
        template(&mut out, &frags.iter().collect::<Vec<_>>());
        assert!(out.contains(
            "<S t=\"0\" d=\"180000\" r=\"1\"/>\n          <S t=\"900000\" d=\"90000\"/>\n          <S d=\"180000\"/>"
        ), "{out}");
        let holes = [frag(1, 0, 1, 1), frag(3, 2, 1, 1), frag(4, 3, 1, 1)];
        let tail = contiguous_tail(&holes.iter().collect::<Vec<_>>());
        assert_eq!(tail.iter().map(|f| f.sequence).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn nothing_before_the_first_fragment() {
        assert!(mpd(&Snapshot::default(), 0, "/time").is_none());
    }
}
