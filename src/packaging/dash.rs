//! The live DASH manifest (ISO/IEC 23009-1, isoff-live profile) of a snapshot: a dynamic MPD
//! with one AdaptationSet for video (a Representation per rendition) and one for audio, each
//! with a `SegmentTemplate` + `SegmentTimeline` built from the fMP4 fragments' own `tfdt`
//! and durations, so the timeline and the media agree exactly. Rendered per request because
//! `publishTime` and the `UTCTiming` URL (the request's host) change; pure text work.

use super::snapshot::{
    FragmentEntry, InitSegment, Snapshot, TrackSnapshot, consecutive_tail, init_name,
};
use crate::media::VideoInfo;
use crate::media::utc::Civil;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;

/// Renders the MPD at wall-clock `now_ms`; `None` until the first rendition has fragments.
/// `utc_timing_url` is where clients read the server's clock (ISO 8601 over HTTP).
pub fn mpd(snap: &Snapshot, now_ms: u64, utc_timing_url: &str) -> Option<String> {
    let video: Vec<VideoTrack<'_>> = snap
        .renditions
        .iter()
        .enumerate()
        .filter(|(_, r)| r.video.init.is_some() && !r.video.live.is_empty())
        .filter_map(|(i, r)| {
            Some(VideoTrack {
                id: i + 1,
                info: r.media.as_ref()?.video.as_ref()?,
                track: &r.video,
            })
        })
        .collect();
    let first = video.first()?;
    // Only the segments every listed rendition has, so that any switch finds its segment.
    let common: BTreeSet<u64> = video
        .iter()
        .map(|v| {
            v.track
                .live
                .iter()
                .map(|f| f.sequence)
                .collect::<BTreeSet<u64>>()
        })
        .reduce(|a, b| a.intersection(&b).copied().collect())
        .unwrap_or_default();
    let listed: Vec<&Arc<FragmentEntry>> = first
        .track
        .live
        .iter()
        .filter(|f| common.contains(&f.sequence))
        .collect();
    let timeline = consecutive_tail(&listed, |f| f.sequence).to_vec();
    if timeline.is_empty() {
        return None;
    }
    let audio_info = snap.media().and_then(|m| m.audio.as_ref());
    let audio: Vec<&Arc<FragmentEntry>> = match (&snap.audio, audio_info) {
        (Some(track), Some(_)) if track.init.is_some() => {
            consecutive_tail(&track.live, |f| f.sequence)
                .iter()
                .collect()
        }
        _ => Vec::new(),
    };
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
    let periods = periods(&video, &timeline, &audio);
    for (n, period) in periods.iter().enumerate() {
        let last = n + 1 == periods.len();
        render_period(&mut out, snap, &video, period, last);
    }
    let _ = writeln!(
        out,
        "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"{}\"/>",
        xml_attr(utc_timing_url)
    );
    out.push_str("</MPD>\n");
    Some(out)
}

/// A rendition listed in the MPD.
struct VideoTrack<'a> {
    /// 1-based: `v1` is the best.
    id: usize,
    /// Current media information (frame rate; size and codec when the init lacks them).
    info: &'a VideoInfo,
    track: &'a TrackSnapshot,
}

/// A stretch of the timeline in which no track changes its init segment: one DASH Period.
struct Period<'a> {
    /// The init segment of each video track (in `video` order), then of audio if any.
    inits: Vec<Arc<InitSegment>>,
    /// The first rendition's fragments, which give every video track's timeline.
    video: Vec<&'a Arc<FragmentEntry>>,
    audio: Vec<&'a Arc<FragmentEntry>>,
}

impl Period<'_> {
    /// Stable across MPD updates and unique over the stream's life: track versions only grow.
    fn id(&self) -> String {
        let versions: Vec<String> = self.inits.iter().map(|i| i.version.to_string()).collect();
        versions.join(".")
    }

    /// Wall-clock ms at which the period begins; `None` for the first configuration of every
    /// track, which begins at the availability start (Period start 0, no time offset).
    fn start_ms(&self) -> Option<u64> {
        self.inits
            .iter()
            .any(|i| i.version > 0)
            .then(|| self.inits.iter().map(|i| i.since_ms).max().unwrap_or(0))
    }
}

/// Splits the timeline (and audio) where any track's init segment changes: players load an
/// init segment per Period, so a new codec configuration needs a new Period.
fn periods<'a>(
    video: &[VideoTrack<'_>],
    timeline: &[&'a Arc<FragmentEntry>],
    audio: &[&'a Arc<FragmentEntry>],
) -> Vec<Period<'a>> {
    let mut periods: Vec<Period<'a>> = Vec::new();
    // Audio decodes with the init of its newest fragment up to each segment (both sorted).
    let mut audio_at = 0;
    for f in timeline {
        let mut inits: Vec<Arc<InitSegment>> = video
            .iter()
            .filter_map(|v| v.track.by_number(f.sequence).map(|g| g.init.clone()))
            .collect();
        while audio
            .get(audio_at + 1)
            .is_some_and(|a| a.sequence <= f.sequence)
        {
            audio_at += 1;
        }
        inits.extend(audio.get(audio_at).map(|a| a.init.clone()));
        match periods.last_mut() {
            Some(p) if same_versions(&p.inits, &inits) => p.video.push(f),
            _ => periods.push(Period {
                inits,
                video: vec![f],
                audio: Vec::new(),
            }),
        }
    }
    // Each audio fragment goes to the period that starts at or before it, when it decodes
    // with that period's audio init.
    for a in audio {
        let at = periods
            .iter()
            .rposition(|p| p.video.first().is_some_and(|v| v.sequence <= a.sequence))
            .unwrap_or(0);
        if let Some(p) = periods.get_mut(at)
            && p.inits.last().is_some_and(|i| i.version == a.init.version)
        {
            p.audio.push(a);
        }
    }
    periods
}

/// Init versions identify a track's init segments.
fn same_versions(a: &[Arc<InitSegment>], b: &[Arc<InitSegment>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.version == y.version)
}

fn render_period(
    out: &mut String,
    snap: &Snapshot,
    video: &[VideoTrack<'_>],
    period: &Period<'_>,
    last: bool,
) {
    // Where the period starts after the availability start; `None`: at it, no offset.
    let offset_ms = period.start_ms().map(|ms| ms.saturating_sub(snap.epoch_ms));
    let _ = writeln!(
        out,
        "  <Period id=\"{}\" start=\"{}\">",
        period.id(),
        offset_ms.map_or("PT0S".to_owned(), |ms| duration(ms as f64 / 1000.0))
    );
    let video_inits = &period.inits[..video.len().min(period.inits.len())];
    let size = |v: &VideoTrack<'_>, init: &InitSegment| {
        if init.width > 0 && init.height > 0 {
            (init.width, init.height)
        } else {
            (v.info.width, v.info.height)
        }
    };
    let max = video
        .iter()
        .zip(video_inits)
        .map(|(v, i)| size(v, i))
        .max()
        .unwrap_or((0, 0));
    let _ = writeln!(
        out,
        "    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" \
         startWithSAP=\"1\" maxWidth=\"{}\" maxHeight=\"{}\">",
        max.0, max.1
    );
    // One template for the set when every rendition decodes with the same init version.
    let shared = video_inits
        .first()
        .map(|i| i.version)
        .filter(|v| video_inits.iter().all(|i| i.version == *v));
    if let Some(version) = shared {
        template(out, &period.video, version, offset_ms);
    }
    for (v, init) in video.iter().zip(video_inits) {
        let (w, h) = size(v, init);
        let codec = if init.codec.is_empty() {
            &v.info.codec
        } else {
            &init.codec
        };
        let _ = write!(
            out,
            "      <Representation id=\"v{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{}\" height=\"{}\" sar=\"1:1\"",
            v.id,
            v.track.peak_bitrate.max(1),
            codec,
            w,
            h
        );
        // The frame rate is known for the current configuration only.
        if let (true, Some((n, d))) = (last, v.info.frame_rate) {
            if d == 1 {
                let _ = write!(out, " frameRate=\"{n}\"");
            } else {
                let _ = write!(out, " frameRate=\"{n}/{d}\"");
            }
        }
        if shared.is_some() {
            out.push_str("/>\n");
        } else {
            out.push_str(">\n");
            template(out, &period.video, init.version, offset_ms);
            out.push_str("      </Representation>\n");
        }
    }
    out.push_str("    </AdaptationSet>\n");
    if let (Some(track), Some(init), false) = (
        snap.audio.as_ref(),
        period.inits.get(video.len()),
        period.audio.is_empty(),
    ) {
        out.push_str(
            "    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" segmentAlignment=\"true\" \
             startWithSAP=\"1\" lang=\"und\">\n",
        );
        template(out, &period.audio, init.version, offset_ms);
        let _ = writeln!(
            out,
            "      <Representation id=\"a1\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"{}\">\n        \
             <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>\n      \
             </Representation>",
            track.peak_bitrate.max(1),
            init.codec,
            init.sample_rate,
            init.channels
        );
        out.push_str("    </AdaptationSet>\n");
    }
    out.push_str("  </Period>\n");
}

/// `SegmentTemplate` with its timeline; `t` is written whenever a fragment does not start
/// where the previous one ended (a source restart), repeats are folded into `r`.
/// `init_version` names the init segment; `period_offset_ms` (a Period after the first
/// configuration) becomes the `presentationTimeOffset`, as the `t` values stay the track's own.
fn template(
    out: &mut String,
    frags: &[&Arc<FragmentEntry>],
    init_version: u32,
    period_offset_ms: Option<u64>,
) {
    let Some(first) = frags.first() else {
        return;
    };
    let _ = write!(
        out,
        "      <SegmentTemplate timescale=\"{}\" initialization=\"tracks-$RepresentationID$/{}\" \
         media=\"tracks-$RepresentationID$/$Number$.m4s\" startNumber=\"{}\"",
        first.timescale,
        init_name(init_version),
        first.sequence
    );
    if let Some(ms) = period_offset_ms {
        let _ = write!(
            out,
            " presentationTimeOffset=\"{}\"",
            ms * u64::from(first.timescale) / 1000
        );
    }
    out.push_str(">\n");
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

    const EPOCH: u64 = 1_700_000_000_000;

    fn frag(sequence: u64, base_time: u64, duration: u64, timescale: u32) -> Arc<FragmentEntry> {
        let init = if timescale == 90_000 {
            Arc::new(InitSegment::default())
        } else {
            audio_init(0, EPOCH)
        };
        frag_with(&init, sequence, base_time, duration, timescale)
    }

    fn frag_with(
        init: &Arc<InitSegment>,
        sequence: u64,
        base_time: u64,
        duration: u64,
        timescale: u32,
    ) -> Arc<FragmentEntry> {
        Arc::new(FragmentEntry {
            sequence,
            start_ms: EPOCH + sequence * 2000,
            duration_ms: 2000,
            discontinuity: false,
            data: Bytes::from_static(b"x"),
            base_time,
            duration,
            timescale,
            init: init.clone(),
        })
    }

    fn video_init(version: u32, w: u32, h: u32, since_ms: u64) -> Arc<InitSegment> {
        Arc::new(InitSegment {
            data: Bytes::from(vec![version as u8]),
            version,
            codec: format!("avc1.64{w:04x}"),
            width: w,
            height: h,
            since_ms,
            ..InitSegment::default()
        })
    }

    fn audio_init(version: u32, since_ms: u64) -> Arc<InitSegment> {
        Arc::new(InitSegment {
            version,
            codec: "mp4a.40.2".into(),
            sample_rate: 48_000,
            channels: 2,
            since_ms,
            ..InitSegment::default()
        })
    }

    fn track(frags: Vec<Arc<FragmentEntry>>, peak: u64) -> TrackSnapshot {
        TrackSnapshot {
            init: frags.last().map(|f| f.init.clone()),
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
            epoch_ms: EPOCH,
            target_ms: 2000,
            ..Default::default()
        };
        let text = mpd(&snap, 1_700_000_030_000, "http://h:80/time").unwrap();
        assert_eq!(
            text,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="2023-11-14T22:13:20.000Z" publishTime="2023-11-14T22:13:50.000Z" minimumUpdatePeriod="PT2.000S" minBufferTime="PT2.000S" timeShiftBufferDepth="PT6.000S" suggestedPresentationDelay="PT6.000S" maxSegmentDuration="PT2.000S">
  <Period id="0.0.0" start="PT0S">
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
        template(&mut out, &frags.iter().collect::<Vec<_>>(), 0, None);
        assert!(out.contains(
            "<S t=\"0\" d=\"180000\" r=\"1\"/>\n          <S t=\"900000\" d=\"90000\"/>\n          <S d=\"180000\"/>"
        ), "{out}");
        let holes = [frag(1, 0, 1, 1), frag(3, 2, 1, 1), frag(4, 3, 1, 1)];
        let tail = consecutive_tail(&holes, |f| f.sequence);
        assert_eq!(tail.iter().map(|f| f.sequence).collect::<Vec<_>>(), [3, 4]);
    }

    /// Segments 10..=15 of 2 s; the source changes its picture from segment 13 on.
    fn resolution_change(ladder_follows: bool) -> Snapshot {
        let at13 = EPOCH + 26_000;
        let (a, b) = (
            video_init(0, 640, 360, EPOCH),
            video_init(1, 1280, 720, at13),
        );
        let (c, d) = (
            video_init(0, 320, 180, EPOCH),
            video_init(1, 480, 270, at13),
        );
        let v = |old: &Arc<InitSegment>, new: &Arc<InitSegment>| -> Vec<Arc<FragmentEntry>> {
            (10..16)
                .map(|s| {
                    frag_with(
                        if s < 13 { old } else { new },
                        s,
                        s * 180_000,
                        180_000,
                        90_000,
                    )
                })
                .collect()
        };
        let mut renditions = vec![rendition(1280, 720, v(&a, &b), 900_000)];
        if ladder_follows {
            renditions.push(rendition(480, 270, v(&c, &d), 300_000));
        } else {
            renditions.push(rendition(320, 180, v(&c, &c), 300_000));
        }
        let audio = audio_init(0, EPOCH);
        Snapshot {
            renditions,
            audio: Some(track(
                (10..16)
                    .map(|s| frag_with(&audio, s, s * 96_000, 96_000, 48_000))
                    .collect(),
                130_000,
            )),
            epoch_ms: EPOCH,
            target_ms: 2000,
            ..Default::default()
        }
    }

    #[test]
    fn a_new_codec_configuration_starts_a_new_period() {
        let text = mpd(&resolution_change(true), EPOCH + 40_000, "/time").unwrap();
        let periods: Vec<&str> = text.split("<Period ").skip(1).collect();
        assert_eq!(periods.len(), 2, "{text}");
        let (old, new) = (periods[0], periods[1]);
        assert!(old.starts_with(r#"id="0.0.0" start="PT0S">"#), "{old}");
        assert!(
            old.contains(r#"initialization="tracks-$RepresentationID$/init.mp4" media="tracks-$RepresentationID$/$Number$.m4s" startNumber="10">"#),
            "{old}"
        );
        assert!(
            old.contains(r#"<S t="1800000" d="180000" r="2"/>"#),
            "{old}"
        );
        assert!(
            old.contains(r#"codecs="avc1.640280" width="640" height="360""#),
            "{old}"
        );
        assert!(
            !old.contains("frameRate"),
            "only the current period knows it: {old}"
        );
        assert!(
            old.contains(r#"<S t="960000" d="96000" r="2"/>"#),
            "audio 10..=12: {old}"
        );
        assert!(new.starts_with(r#"id="1.1.0" start="PT26.000S">"#), "{new}");
        assert!(
            new.contains(r#"initialization="tracks-$RepresentationID$/init-1.mp4" media="tracks-$RepresentationID$/$Number$.m4s" startNumber="13" presentationTimeOffset="2340000">"#),
            "{new}"
        );
        assert!(
            new.contains(r#"<S t="2340000" d="180000" r="2"/>"#),
            "{new}"
        );
        assert!(
            new.contains(r#"width="1280" height="720" sar="1:1" frameRate="25""#),
            "{new}"
        );
        assert!(new.contains(r#"width="480" height="270""#), "{new}");
        assert!(new.contains(r#"maxWidth="1280" maxHeight="720""#), "{new}");
        // Audio did not change, but a Period carries every track; its offset is in 48 kHz.
        assert!(
            new.contains(r#"initialization="tracks-$RepresentationID$/init.mp4" media="tracks-$RepresentationID$/$Number$.m4s" startNumber="13" presentationTimeOffset="1248000">"#),
            "{new}"
        );
        assert!(new.contains(r#"<S t="1248000" d="96000" r="2"/>"#), "{new}");
    }

    #[test]
    fn renditions_on_different_init_versions_get_their_own_templates() {
        let text = mpd(&resolution_change(false), EPOCH + 40_000, "/time").unwrap();
        let new = text.split("<Period ").nth(2).unwrap();
        assert!(new.starts_with(r#"id="1.0.0" start="PT26.000S">"#), "{new}");
        let reps: Vec<&str> = new.split("<Representation ").skip(1).collect();
        assert!(reps[0].starts_with(r#"id="v1""#), "{new}");
        assert!(
            reps[0].contains("tracks-$RepresentationID$/init-1.mp4"),
            "{new}"
        );
        assert!(reps[1].starts_with(r#"id="v2""#), "{new}");
        assert!(
            reps[1].contains("tracks-$RepresentationID$/init.mp4"),
            "{new}"
        );
        assert!(reps[1].contains("</Representation>"), "{new}");
    }

    #[test]
    fn nothing_before_the_first_fragment() {
        assert!(mpd(&Snapshot::default(), 0, "/time").is_none());
    }
}
