//! Transcoding ladders end to end: a `fake://` contribution encoded into two renditions,
//! offered as HLS (TS and fMP4) and DASH, checked with ffprobe/ffmpeg, a box-level reading of
//! every fMP4 fragment, the JSON stats and the metrics; and `hw = "nvenc"` on a host without
//! NVENC refusing to start instead of falling back to the CPU.

mod common;

use common::mp4;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Two rungs small enough for a 2-core CI runner.
const LADDER: &str = "title = \"ladder\"\ninputs = [{ url = \"fake://fake\" }]\n\
    segment_duration = 2000\nsegment_count = 6\n\
    [transcoder]\nhw = \"cpu\"\npreset = \"ultrafast\"\n\
    [[transcoder.video]]\nbitrate = \"800k\"\nsize = \"640x360\"\n\
    [[transcoder.video]]\nbitrate = \"300k\"\nsize = \"320x180\"\n\
    [transcoder.audio]\nbitrate = \"96k\"\n";

/// Video renditions: (track, width, height, target bits/s).
const RUNGS: [(&str, u32, u32, f64); 2] =
    [("v1", 640, 360, 800_000.0), ("v2", 320, 180, 300_000.0)];

fn wait_ready(server: &Server, path: &str) -> String {
    let mut text = String::new();
    wait_until(Duration::from_secs(60), path, || {
        let r = get(&server.url(path));
        text = r.text();
        r.status == 200
    });
    text
}

/// ffprobe's `codec_type,width,height` lines for a URL.
fn probe_streams(url: &str) -> String {
    ffprobe_csv(url, &["-show_entries", "stream=codec_type,width,height"])
}

/// A fragment downloaded from an fMP4 playlist.
#[derive(Debug)]
struct Fetched {
    extinf: f64,
    bytes: Vec<u8>,
    info: mp4::FragmentInfo,
}

/// Polls the fMP4 playlist of each track for `secs` and downloads every fragment it lists.
fn collect_fragments(
    server: &Server,
    tracks: &[&str],
    secs: u64,
) -> BTreeMap<String, BTreeMap<u64, Fetched>> {
    let mut all: BTreeMap<String, BTreeMap<u64, Fetched>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        for track in tracks {
            let r = get(&server.url(&format!("/ladder/tracks-{track}/index.fmp4.m3u8")));
            assert_eq!(r.status, 200, "{track} playlist");
            let text = r.text();
            assert!(
                text.contains("#EXT-X-VERSION:7") && text.contains("#EXT-X-MAP:URI=\"init.mp4\"")
            );
            let p = Playlist::parse(&text);
            let got = all.entry((*track).to_owned()).or_default();
            for (i, (extinf, uri, _)) in p.segments.iter().enumerate() {
                let seq = p.media_sequence + i as u64;
                if got.contains_key(&seq) {
                    continue;
                }
                assert!(uri.ends_with(".m4s"), "{uri}");
                let r = get(&server.url(&format!("/ladder/tracks-{track}/{uri}")));
                assert_eq!(r.status, 200, "{uri}");
                assert_eq!(
                    r.header("content-type"),
                    if track.starts_with('a') {
                        "audio/mp4"
                    } else {
                        "video/mp4"
                    }
                );
                let info = mp4::fragment(&r.body);
                got.insert(
                    seq,
                    Fetched {
                        extinf: *extinf,
                        bytes: r.body,
                        info,
                    },
                );
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    all
}

#[test]
fn a_two_rung_ladder_in_hls_ts_fmp4_and_dash() {
    let server = Server::start(&[("ladder", LADDER)]);
    // The TS master lists both renditions with their real resolutions, frame rate and codecs.
    let mut master = String::new();
    wait_until(
        Duration::from_secs(60),
        "both renditions in the master",
        || {
            let r = get(&server.url("/ladder/index.m3u8"));
            master = r.text();
            r.status == 200 && master.matches("#EXT-X-STREAM-INF").count() == 2
        },
    );
    assert!(
        master.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\""),
        "{master}"
    );
    for (i, (_, w, h, _)) in RUNGS.iter().enumerate() {
        let line = master
            .lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
            .nth(i)
            .unwrap();
        for attr in [
            format!("RESOLUTION={w}x{h}"),
            "FRAME-RATE=25.000".into(),
            "AUDIO=\"audio\"".into(),
            "AVERAGE-BANDWIDTH=".into(),
        ] {
            assert!(line.contains(&attr), "{attr} in {line}");
        }
        assert!(
            line.contains("CODECS=\"avc1.") && line.contains("mp4a.40.2"),
            "{line}"
        );
        assert!(master.contains(&format!("tracks-v{}a1/mono.m3u8", i + 1)));
    }
    // Segment N is the same stretch of time in both renditions (aligned for ABR switching).
    let names = |track: &str| -> Vec<String> {
        let p =
            Playlist::parse(&get(&server.url(&format!("/ladder/tracks-{track}/mono.m3u8"))).text());
        p.segments.into_iter().map(|s| s.1).collect()
    };
    wait_ready(&server, "/ladder/index.mpd");
    server.wait_segments("ladder", 3, Duration::from_secs(30));
    let (a, b) = (names("v1a1"), names("v2a1"));
    let common = a.iter().filter(|n| b.contains(n)).count();
    assert!(
        common + 1 >= a.len().min(b.len()) && common >= 2,
        "{a:?} vs {b:?}"
    );

    // Real clients see both renditions in the HLS master and in the MPD.
    let ts = probe_streams(&server.url("/ladder/index.m3u8"));
    let dash = probe_streams(&server.url("/ladder/index.mpd"));
    for out in [&ts, &dash] {
        for (_, w, h, _) in RUNGS {
            assert!(out.contains(&format!("video,{w},{h}")), "{out}");
        }
        assert!(out.contains("audio"), "{out}");
    }
    let fmp4 = probe_streams(&server.url("/ladder/index.fmp4.m3u8"));
    assert!(
        fmp4.contains("video,640,360") && fmp4.contains("video,320,180"),
        "{fmp4}"
    );

    // 22 s of every fMP4 track, fragment by fragment.
    let tracks = ["v1", "v2", "a1"];
    let all = collect_fragments(&server, &tracks, 24);
    let mut timescales = BTreeMap::new();
    for track in tracks {
        let init = get(&server.url(&format!("/ladder/tracks-{track}/init.mp4")));
        assert_eq!(init.status, 200);
        timescales.insert(track, mp4::init_timescale(&init.body));
    }
    assert_eq!(timescales["v1"], 90_000);
    assert_eq!(timescales["a1"], 48_000);
    for track in tracks {
        let frags = &all[track];
        assert!(frags.len() >= 10, "{track}: {} fragments", frags.len());
        let seqs: Vec<u64> = frags.keys().copied().collect();
        for pair in seqs.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "{track}: consecutive media sequences");
        }
        for (seq, f) in frags {
            let next = frags.get(&(seq + 1));
            assert!(
                f.info.sync[0],
                "{track} fragment {seq} starts on a sync sample"
            );
            if track.starts_with('v') {
                assert_eq!(
                    f.info.sync.iter().filter(|s| **s).count(),
                    1,
                    "one keyframe per fragment"
                );
                assert!(
                    (48..=52).contains(&f.info.durations.len()),
                    "{track} {seq}: 2 s of 25 fps"
                );
            }
            if let Some(n) = next {
                assert_eq!(n.info.sequence, f.info.sequence + 1, "{track} mfhd");
                assert_eq!(
                    n.info.base_time,
                    f.info.base_time + f.info.duration(),
                    "{track}: tfdt of {} continues {seq}",
                    seq + 1
                );
            }
            let seconds = f.info.duration() as f64 / f64::from(timescales[track]);
            assert!(
                (seconds - f.extinf).abs() < 0.05,
                "{track} {seq}: {seconds} vs EXTINF {}",
                f.extinf
            );
        }
    }
    // Renditions share their timeline: the same segment starts at the same tfdt.
    for (seq, f) in &all["v1"] {
        if let Some(g) = all["v2"].get(seq) {
            assert_eq!(f.info.base_time, g.info.base_time, "v1/v2 tfdt of {seq}");
        }
    }
    // Each rendition's video bitrate over at least 20 s is within ±20 % of its target.
    for (track, _, _, target) in RUNGS {
        let frags = &all[track];
        let secs: f64 = frags.values().map(|f| f.extinf).sum();
        let bits: f64 = frags.values().map(|f| f.info.mdat_len as f64 * 8.0).sum();
        assert!(secs >= 20.0, "{track}: only {secs} s collected");
        let rate = bits / secs;
        println!("{track}: {rate:.0} bit/s of video over {secs:.1} s (target {target})");
        assert!(
            (rate - target).abs() <= 0.2 * target,
            "{track}: {rate:.0} bit/s over {secs:.1} s, target {target}"
        );
    }
    // init + fragments decode cleanly, frame for frame.
    for track in ["v2", "a1"] {
        let mut file = get(&server.url(&format!("/ladder/tracks-{track}/init.mp4"))).body;
        let mut samples = 0;
        for f in all[track].values() {
            file.extend_from_slice(&f.bytes);
            samples += f.info.durations.len();
        }
        let path = server.dir.path().join(format!("{track}.mp4"));
        std::fs::write(&path, &file).unwrap();
        let p = path.to_str().unwrap();
        let out = run_with_timeout(
            60,
            "ffmpeg",
            &["-nostdin", "-v", "error", "-i", p, "-f", "null", "-"],
        );
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{track}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let count = ffprobe_csv(
            p,
            &["-count_packets", "-show_entries", "stream=nb_read_packets"],
        );
        let n: usize = count.trim().parse().unwrap();
        assert_eq!(n, samples, "{track}: every sample readable");
    }
    // DASH $Number$ names the same fragments as the HLS paths.
    let mpd = get(&server.url("/ladder/index.mpd")).text();
    assert!(
        mpd.contains("type=\"dynamic\"") && mpd.contains("<SegmentTimeline>"),
        "{mpd}"
    );
    assert!(mpd.contains("urn:mpeg:dash:utc:http-iso:2014"), "{mpd}");
    let time = get(&server.url("/time"));
    assert_eq!(time.status, 200);
    assert!(
        time.text().ends_with('Z') && time.text().len() == 24,
        "{}",
        time.text()
    );
    let start: u64 = mpd
        .split("startNumber=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let by_number = get(&server.url(&format!("/ladder/tracks-v2/{}.m4s", start + 2)));
    assert_eq!(by_number.status, 200);
    if let Some(f) = all["v2"].get(&(start + 2)) {
        assert_eq!(by_number.body, f.bytes, "same fragment under both names");
    }

    // The operator sees where the transcoder runs: log, JSON and a metric label.
    let log = server.log_text();
    assert!(
        log.contains("transcoder requested=\"cpu\" hw=\"cpu\" decoder=avdec_h264 encoder=x264enc renditions=2"),
        "{log}"
    );
    let v = stream_json(&server, "ladder");
    let t = &v["stats"]["transcoder"];
    assert_eq!(t["hw"], "cpu", "{v}");
    assert_eq!(t["encoder"], "x264enc");
    assert_eq!(t["renditions"], 2);
    let tracks = v["stats"]["media_info"]["tracks"].as_array().unwrap();
    assert_eq!(
        tracks.iter().filter(|t| t["content"] == "video").count(),
        2,
        "{v}"
    );
    let scrape = server.scrape();
    assert_eq!(
        metric(
            &scrape,
            "flussonic_stream_transcoder_info",
            "name=\"ladder\",hw=\"cpu\",decoder=\"avdec_h264\",encoder=\"x264enc\""
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "flussonic_stream_transcoder_up", "name=\"ladder\""),
        Some(1.0)
    );
}

#[test]
fn nvenc_required_runs_on_nvenc_or_fails_that_stream_only() {
    // GStreamer registers nvh264enc only where NVENC can open a session.
    let nvenc = run_with_timeout(20, "gst-inspect-1.0", &["--exists", "nvh264enc"])
        .status
        .success();
    let gpu = "inputs = [{ url = \"fake://fake\" }]\n[transcoder]\nhw = \"nvenc\"\n\
               [[transcoder.video]]\nbitrate = \"500k\"\nsize = \"320x180\"\n";
    let server = Server::start(&[
        ("gpu", gpu),
        ("plain", "inputs = [{ url = \"fake://fake\" }]\n"),
    ]);
    server.wait_segments("plain", 3, Duration::from_secs(40));
    if nvenc {
        eprintln!("nvh264enc present: testing the NVENC path");
        server.wait_segments("gpu", 3, Duration::from_secs(60));
        let v = stream_json(&server, "gpu");
        assert_eq!(v["stats"]["transcoder"]["hw"], "nvenc", "{v}");
        assert_eq!(v["stats"]["transcoder"]["encoder"], "nvh264enc", "{v}");
        let scrape = server.scrape();
        assert_eq!(
            metric(&scrape, "flussonic_stream_transcoder_up", "name=\"gpu\""),
            Some(1.0),
            "{scrape}"
        );
        let out = ffmpeg_decode(&server.url("/gpu/index.m3u8"), 4, 60);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("no nvh264enc: testing the refusal path");
        refuses_without_nvenc(&server);
    }
    // The pass-through stream is untouched, and has fMP4 and DASH too.
    assert_eq!(get(&server.url("/plain/index.m3u8")).status, 200);
    wait_ready(&server, "/plain/index.fmp4.m3u8");
    wait_ready(&server, "/plain/index.mpd");
}

/// `hw = "nvenc"` on a host without NVENC: that stream alone fails, said once, never served
/// from a silent CPU fallback.
fn refuses_without_nvenc(server: &Server) {
    assert_eq!(get(&server.url("/gpu/index.m3u8")).status, 503);
    assert_eq!(get(&server.url("/gpu/index.mpd")).status, 503);
    let log = server.log_text();
    let refusals = log.matches("transcoder cannot start").count();
    assert_eq!(refusals, 1, "logged once, not per retry:\n{log}");
    assert!(log.contains("refusing to fall back to the CPU"), "{log}");
    let v = stream_json(server, "gpu");
    assert_eq!(v["stats"]["transcoder"]["hw"], "none", "{v}");
    assert!(
        v["stats"]["transcoder"]["error"]
            .as_str()
            .unwrap()
            .contains("nvh264enc"),
        "{v}"
    );
    let scrape = server.scrape();
    assert_eq!(
        metric(
            &scrape,
            "flussonic_stream_transcoder_info",
            "name=\"gpu\",hw=\"none\",decoder=\"\",encoder=\"\""
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "flussonic_stream_transcoder_up", "name=\"gpu\""),
        Some(0.0),
        "{scrape}"
    );
    assert!(
        metric(&scrape, "flussonic_stream_retry_count", "name=\"gpu\"").unwrap_or(0.0) >= 1.0,
        "counted as a failing source"
    );
}

#[test]
fn the_archive_records_and_plays_back_every_rendition() {
    let ladder = |extra: &str| {
        format!(
            "inputs = [{{ url = \"fake://fake\" }}]\n[transcoder]\nhw = \"cpu\"\npreset = \"ultrafast\"\n\
             [[transcoder.video]]\nbitrate = \"300k\"\nsize = \"320x180\"\n\
             [[transcoder.video]]\nbitrate = \"120k\"\nsize = \"160x90\"\n[dvr]\nexpiration = \"1h\"\n{extra}"
        )
    };
    let server = Server::start(&[("all", &ladder("")), ("low", &ladder("renditions = [2]\n"))]);
    let status = |stream: &str| -> serde_json::Value {
        let r = get(&server.url(&format!("/{stream}/recording_status.json")));
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    let mut st = serde_json::Value::Null;
    wait_until(Duration::from_secs(60), "10 s recorded", || {
        st = status("all");
        st["duration"].as_u64().unwrap_or(0) >= 10
            && status("low")["duration"].as_u64().unwrap_or(0) >= 10
    });
    let from = st["from"].as_u64().unwrap() + 1;

    // Without a selector, a ladder's archive playlist is a master over its renditions.
    let master = get(&server.url(&format!("/all/archive-{from}-8.m3u8")));
    assert_eq!(master.status, 200);
    let text = master.text();
    for (i, (w, h)) in [(320, 180), (160, 90)].iter().enumerate() {
        let uri = format!("tracks-v{}a1/archive-{from}-8.m3u8", i + 1);
        assert!(text.contains(&uri), "{text}");
        assert!(text.contains(&format!("RESOLUTION={w}x{h}")), "{text}");
        let media = get(&server.url(&format!("/all/{uri}")));
        assert_eq!(media.status, 200, "{uri}");
        let p = Playlist::parse(&media.text());
        assert!(media.text().contains("#EXT-X-ENDLIST"));
        assert!(p.segments.len() >= 3, "{uri}: {:?}", p.segments);
        // Each archived segment is that rendition's picture.
        let seg = server.url(&format!("/all/tracks-v{}a1/{}", i + 1, p.segments[0].1));
        let probe = ffprobe_csv(
            &seg,
            &[
                "-select_streams",
                "v",
                "-show_entries",
                "stream=width,height",
            ],
        );
        let first = probe.lines().next().unwrap_or("").to_owned();
        assert_eq!(first, format!("{w},{h}"), "{seg}");
    }
    let out = ffmpeg_decode(&server.url(&format!("/all/archive-{from}-8.m3u8")), 6, 60);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // On disk: the first rendition where a pass-through stream records, the others beside it.
    let root = server.dir.path().join("dvr/all");
    assert!(root.join("tracks-v2a1").is_dir());
    let year = chrono_year();
    assert!(root.join(&year).is_dir() && root.join("tracks-v2a1").join(&year).is_dir());

    // A configured subset: only rendition 2 of "low" is recorded.
    assert!(!server.dir.path().join("dvr/low").join(&year).exists());
    assert!(
        server
            .dir
            .path()
            .join("dvr/low/tracks-v2a1")
            .join(&year)
            .is_dir()
    );
    let only = get(&server.url(&format!("/low/archive-{from}-8.m3u8"))).text();
    // Only rendition 2 records: the playlist is a master naming it, so that its relative
    // paths reach rendition 2 (and not rendition 1's live segments of the same names).
    assert_eq!(only.matches("#EXT-X-STREAM-INF").count(), 1, "{only}");
    assert!(
        only.contains(&format!("tracks-v2a1/archive-{from}-8.m3u8")),
        "{only}"
    );
    // Status reports the recording rendition.
    let status = get(&server.url("/low/recording_status.json"));
    assert_eq!(status.status, 200);
    assert_eq!(
        get(&server.url(&format!("/low/tracks-v1a1/archive-{from}-8.m3u8"))).status,
        404
    );
    assert_eq!(
        get(&server.url(&format!("/low/tracks-v2a1/archive-{from}-8.m3u8"))).status,
        200
    );
}

/// The current UTC year, as the archive's top folder names it.
fn chrono_year() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
