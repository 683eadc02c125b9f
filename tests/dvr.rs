//! DVR end to end: record a live `fake://` stream, play ranges back through Flussonic's
//! archive URLs with real clients, export TS/MP4 with `Range`, survive `kill -9`, apply
//! retention, and keep streaming when the archive's disk is full.

mod common;

use common::*;
use std::time::{Duration, SystemTime};

const DVR_STREAM: &str =
    "inputs = [{ url = \"fake://fake\" }]\nsegment_count = 4\n[dvr]\nexpiration = \"1h\"\n";

/// (Σ EXTINF, first PROGRAM-DATE-TIME → last one + its EXTINF) of an archive playlist, s.
fn archive_figures(playlist: &str) -> (f64, f64) {
    let mut sum = 0.0;
    let mut first_ms = None;
    let mut last_end_ms = 0.0;
    let mut pdt_ms = 0.0;
    for line in playlist.lines() {
        if let Some(t) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt_ms = utc_ms(t);
            first_ms.get_or_insert(pdt_ms);
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d: f64 = d
                .trim_end_matches(',')
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            sum += d;
            last_end_ms = pdt_ms + d * 1000.0;
        }
    }
    (sum, (last_end_ms - first_ms.expect("segments")) / 1000.0)
}

/// `recording_status.json` fields.
fn status(server: &Server, stream: &str) -> serde_json::Value {
    let r = get(&server.url(&format!("/{stream}/recording_status.json")));
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn wait_recorded(
    server: &Server,
    stream: &str,
    seconds: u64,
    timeout: Duration,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until(timeout, &format!("{seconds} s recorded"), || {
        last = status(server, stream);
        last["duration"].as_u64().unwrap_or(0) >= seconds
    });
    last
}

fn ffprobe_duration(url: &str) -> f64 {
    let out = ffprobe_csv(url, &["-show_entries", "format=duration"]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no duration for {url}: {out}"))
}

#[test]
fn record_play_back_and_export() {
    let server = Server::start(&[
        ("cam", DVR_STREAM),
        ("live", "inputs = [{ url = \"fake://fake\" }]\n"),
    ]);
    let st = wait_recorded(&server, "cam", 30, Duration::from_secs(60));
    let first = st["from"].as_u64().unwrap();
    let from = first + 4;

    // VOD playlist of 20 s: every segment named like live, ENDLIST, and it plays fully.
    let url = server.url(&format!("/cam/archive-{from}-20.m3u8"));
    let playlist = get(&url);
    assert_eq!(playlist.status, 200);
    let text = playlist.text();
    assert!(
        text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && text.ends_with("#EXT-X-ENDLIST\n"),
        "{text}"
    );
    assert_eq!(
        text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(),
        text.matches("#EXTINF:").count()
    );
    let alias = get(&server.url(&format!("/cam/index-{from}-20.m3u8")));
    assert_eq!(alias.body, playlist.body, "legacy index- spelling");
    let out = run_with_timeout(
        60,
        "ffmpeg",
        &["-nostdin", "-v", "error", "-i", &url, "-f", "null", "-"],
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = ffprobe_duration(&url);
    assert!(
        (d - 20.0).abs() <= 2.1,
        "archive duration {d} s, asked 20 s"
    );

    // The oldest archived segment has left the live window and its grace: served from disk.
    let p = Playlist::parse(&text);
    let oldest = &p.segments[0].1;
    let live = Playlist::parse(&get(&server.url("/cam/mono.m3u8")).text());
    assert!(!live.segments.iter().any(|s| &s.1 == oldest));
    let seg = get(&server.url(&format!("/cam/{oldest}")));
    assert_eq!(seg.status, 200);
    assert_eq!(ts_pids(&seg.body, 1), [0]);

    // TS export with Range.
    let ts_url = server.url(&format!("/cam/archive-{from}-20.ts"));
    let ts = get(&ts_url);
    assert_eq!(ts.status, 200);
    assert!(
        ts.header("content-disposition")
            .contains(&format!("cam-{from}-20.ts"))
    );
    let part = request("GET", &ts_url, &[("Range", "bytes=1000-1999")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, ts.body[1000..2000]);

    // MP4 export: plays with the right duration; a Range returns exactly those bytes.
    let mp4_url = server.url(&format!("/cam/archive-{from}-20.mp4"));
    let mp4 = get(&mp4_url);
    assert_eq!(mp4.status, 200, "{}", mp4.text());
    assert_eq!(mp4.header("content-type"), "video/mp4");
    let file = server.dir.path().join("export.mp4");
    std::fs::write(&file, &mp4.body).unwrap();
    let d = ffprobe_duration(file.to_str().unwrap());
    assert!((d - 20.0).abs() <= 2.1, "mp4 duration {d}");
    let codecs = ffprobe_csv(
        file.to_str().unwrap(),
        &["-show_entries", "stream=codec_name"],
    );
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );
    let len = mp4.body.len();
    let tail = request(
        "GET",
        &mp4_url,
        &[("Range", &format!("bytes={}-", len - 5000))],
    );
    assert_eq!(tail.status, 206);
    assert_eq!(
        tail.header("content-range"),
        format!("bytes {}-{}/{len}", len - 5000, len - 1)
    );
    assert_eq!(tail.body, mp4.body[len - 5000..]);

    // Growing and sliding playlists.
    let event = get(&server.url(&format!("/cam/archive-{from}-now.m3u8"))).text();
    assert!(event.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !event.contains("ENDLIST"));
    let abs = get(&server.url(&format!("/cam/timeshift_abs-{from}.m3u8"))).text();
    assert!(abs.contains("#EXT-X-PLAYLIST-TYPE:EVENT"));
    let rel = Playlist::parse(&get(&server.url("/cam/timeshift_rel-10.m3u8")).text());
    assert!(!rel.segments.is_empty() && rel.segments.len() <= 4);
    let rewind = Playlist::parse(&get(&server.url("/cam/rewind-20.m3u8")).text());
    assert!(rewind.segments.len() >= 8, "{rewind:?}");

    // recording_status.json (object and legacy array) and the API's ranges.
    let st = status(&server, "cam");
    assert_eq!(st["ranges"].as_array().unwrap().len(), 1);
    assert!(st["disk_size"].as_u64().unwrap() > 100_000);
    let legacy = get(&server.url(&format!(
        "/cam/recording_status.json?from={from}&to=now&request=ranges"
    )))
    .text();
    assert!(
        legacy.starts_with("[{") && legacy.contains("\"stream\":\"cam\""),
        "{legacy}"
    );
    let api = server.url("/flussonic/api/v3/streams/cam/dvr/ranges");
    assert_eq!(get(&api).status, 401);
    let ranges = request(
        "GET",
        &api,
        &[("Authorization", &format!("Basic {}", b64("viewer:pw")))],
    );
    assert_eq!(ranges.status, 200);
    assert!(ranges.text().contains("\"ranges\":[{"), "{}", ranges.text());

    // Bad and empty ranges; a stream without DVR.
    for bad in [
        "archive-abc-20.m3u8",
        "archive-1795305600-0.m3u8",
        "archive-1795305600-99999999.m3u8",
        "archive-20-20.m3u8",
        "rewind--5.m3u8",
    ] {
        let r = get(&server.url(&format!("/cam/{bad}")));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    assert_eq!(
        get(&server.url("/cam/archive-1000000000-60.m3u8")).status,
        404
    );
    assert_eq!(
        get(&server.url(&format!("/live/archive-{from}-20.m3u8"))).status,
        404
    );

    // The DVR metrics are the archive's.
    let text = server.scrape_after(SystemTime::now());
    let st = status(&server, "cam");
    let size = metric(&text, "flussonic_stream_dvr_info_disk_size", "name=\"cam\"").unwrap();
    assert!(
        (size - st["disk_size"].as_f64().unwrap()).abs() < 400_000.0,
        "one segment of slack"
    );
    assert!(metric(&text, "flussonic_stream_dvr_info_depth", "name=\"cam\"").unwrap() >= 30.0);
    // Against the archive's own playlist: `duration` is the EXTINF sum, `depth` the first
    // segment's start to the last one's end. A playlist fetched before the sample and one
    // after bound what the sample saw (the recorder may add a segment meanwhile).
    let whole = |server: &Server| {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        archive_figures(
            &get(&server.url(&format!("/cam/archive-{first}-{}.m3u8", now + 10 - first))).text(),
        )
    };
    let (sum_before, depth_before) = whole(&server);
    let text = server.scrape_after(SystemTime::now());
    let (sum_after, depth_after) = whole(&server);
    let duration = metric(&text, "flussonic_stream_dvr_info_duration", "name=\"cam\"").unwrap();
    let depth = metric(&text, "flussonic_stream_dvr_info_depth", "name=\"cam\"").unwrap();
    assert!(
        sum_before - 0.01 <= duration && duration <= sum_after + 0.01,
        "dvr_info_duration {duration} s vs EXTINF sums {sum_before} … {sum_after} s"
    );
    assert!(
        depth_before - 0.01 <= depth && depth <= depth_after + 0.01,
        "dvr_info_depth {depth} s vs playlist span {depth_before} … {depth_after} s"
    );
    assert!(
        metric(
            &text,
            "flussonic_dvr_segments_written_total",
            "name=\"cam\""
        )
        .unwrap()
            >= 15.0
    );
    assert_eq!(
        metric(&text, "flussonic_stream_dvr_info_depth", "name=\"live\""),
        None,
        "a stream without DVR has no archive figures"
    );
}

#[test]
fn kill_9_mid_recording_loses_no_finished_segment() {
    let server = Server::start(&[("cam", DVR_STREAM)]);
    let st = wait_recorded(&server, "cam", 10, Duration::from_secs(40));
    let from = st["from"].as_u64().unwrap();
    let before =
        Playlist::parse(&get(&server.url(&format!("/cam/archive-{from}-now.m3u8"))).text());
    let server = server.crash_and_restart();
    // Recording resumes after the restart.
    wait_until(Duration::from_secs(40), "recording resumes", || {
        status(&server, "cam")["ranges"]
            .as_array()
            .is_some_and(|r| r.len() >= 2)
    });
    let url = server.url(&format!("/cam/archive-{from}-now.m3u8"));
    let after_text = get(&url).text();
    let after = Playlist::parse(&after_text);
    for seg in &before.segments {
        assert!(
            after.segments.iter().any(|s| s.1 == seg.1),
            "{} lost after kill -9",
            seg.1
        );
    }
    assert!(
        after.segments.iter().any(|s| s.2),
        "the restart gap is a discontinuity:\n{after_text}"
    );
    assert!(!after_text.contains(".tmp"));
    let leftovers = walk(&server.dir.path().join("dvr"))
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0, "no temporary file survives the restart");
    // Everything listed plays.
    let vod = server.url(&format!(
        "/cam/archive-{from}-{}.m3u8",
        before.segments.len() * 2 + 4
    ));
    let out = run_with_timeout(
        60,
        "ffmpeg",
        &["-nostdin", "-v", "error", "-i", &vod, "-f", "null", "-"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn retention_by_expiration_and_storage_limit() {
    let server = Server::start(&[
        (
            "aged",
            "inputs = [{ url = \"fake://fake\" }]\n[dvr]\nexpiration = 8\n",
        ),
        (
            "capped",
            "inputs = [{ url = \"fake://fake\" }]\n[dvr]\nstorage_limit = \"900K\"\n",
        ),
    ]);
    std::thread::sleep(Duration::from_secs(26));
    let text = server.scrape_after(SystemTime::now());
    for stream in ["aged", "capped"] {
        let folder = server.dir.path().join("dvr").join(stream);
        let files: Vec<String> = walk(&folder)
            .into_iter()
            .filter(|p| p.ends_with(".ts"))
            .collect();
        let on_disk: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        let st = status(&server, stream);
        let ranges = st["ranges"].as_array().unwrap();
        let from = ranges[0]["from"].as_u64().unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let deleted = metric(
            &text,
            "flussonic_dvr_deleted_bytes_total",
            &format!("name=\"{stream}\""),
        )
        .unwrap();
        assert!(deleted > 0.0, "{stream}: retention deleted something");
        let size = metric(
            &text,
            "flussonic_stream_dvr_info_disk_size",
            &format!("name=\"{stream}\""),
        )
        .unwrap();
        // One segment (~250 KB) of slack: a segment may land between the scrape and the walk.
        assert!(
            (size - on_disk as f64).abs() <= 400_000.0,
            "{stream}: metric {size} vs files {on_disk}"
        );
        if stream == "aged" {
            assert!(
                now - from <= 8 + 2 + 5,
                "{stream}: oldest kept starts {} s ago",
                now - from
            );
        } else {
            assert!(
                on_disk <= 900 * 1024 + 400_000,
                "{stream}: {on_disk} bytes kept"
            );
        }
        assert!(files.len() >= 2, "{stream}: the newest segments stay");
        // Empty folders are pruned: every minute folder left holds a segment.
        for d in walk_dirs(&folder)
            .into_iter()
            .filter(|d| d.matches('/').count() == folder.to_str().unwrap().matches('/').count() + 5)
        {
            assert!(std::fs::read_dir(&d).unwrap().count() > 0, "{d} left empty");
        }
    }
}

#[test]
fn full_disk_counts_failures_and_live_keeps_playing() {
    // The archive root is a 1 MB tmpfs in the server's own mount namespace.
    // `sh -c SCRIPT headwater --config FILE …`: $0 is the binary, $2 the config file.
    let script = "mkdir -p \"$(dirname \"$2\")/dvr\" && mount -t tmpfs -o size=1m tmpfs \"$(dirname \"$2\")/dvr\" && exec \"$0\" \"$@\"";
    let server = Server::start_with(
        &[("cam", "inputs = [{ url = \"fake://fake\" }]\n[dvr]\n")],
        &["unshare", "-rm", "sh", "-c", script],
    );
    let mut text = String::new();
    wait_until(Duration::from_secs(60), "DVR write failures", || {
        text = server.scrape();
        metric(&text, "flussonic_dvr_segments_failed_total", "name=\"cam\"").unwrap_or(0.0) >= 2.0
    });
    // Live goes on: the playlist advances and segments play.
    let before = Playlist::parse(&get(&server.url("/cam/mono.m3u8")).text());
    std::thread::sleep(Duration::from_secs(5));
    let after = Playlist::parse(&get(&server.url("/cam/mono.m3u8")).text());
    let newest = |p: &Playlist| p.media_sequence + p.segments.len() as u64;
    assert!(
        newest(&after) > newest(&before),
        "live playlist still advances"
    );
    let out = ffmpeg_decode(&server.url("/cam/index.m3u8"), 3, 40);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What was recorded before the disk filled still plays.
    let st = status(&server, "cam");
    let from = st["from"].as_u64().unwrap();
    assert_eq!(
        get(&server.url(&format!("/cam/archive-{from}-4.m3u8"))).status,
        200
    );
    // Readiness reports the failing archive; the log says it once.
    let ready = request(
        "GET",
        &server.url("/flussonic/api/v3/monitoring/readiness"),
        &[("Authorization", &format!("Basic {}", b64("viewer:pw")))],
    );
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.text().contains("\"failing_streams\":[\"cam\"]"),
        "{}",
        ready.text()
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("DVR write failed").count(),
        1,
        "logged once per state change"
    );
    assert!(!log.contains("panicked"));
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn walk_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.push(p.to_string_lossy().into_owned());
                out.extend(walk_dirs(&p));
            }
        }
    }
    out
}

#[test]
fn the_archive_plays_while_the_source_is_down_after_a_restart() {
    let port = free_port(true);
    let stream = format!(
        "inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 3 }}]\n[dvr]\nexpiration = \"1h\"\n"
    );
    let server = Server::start(&[("cam", &stream)]);
    let feeder = udp_feeder(port, "");
    let st = wait_recorded(&server, "cam", 6, Duration::from_secs(40));
    let from = st["from"].as_u64().unwrap();
    drop(feeder);
    // Restarted with the source still down: no live segment, no media info.
    let server = server.crash_and_restart();
    assert_eq!(get(&server.url("/cam/index.m3u8")).status, 503);
    let text = get(&server.url(&format!("/cam/archive-{from}-6.m3u8"))).text();
    let p = Playlist::parse(&text);
    assert!(!p.segments.is_empty(), "{text}");
    for (_, uri, _) in &p.segments {
        let r = get(&server.url(&format!("/cam/{uri}")));
        assert_eq!(r.status, 200, "archived {uri} while the source is down");
        assert_eq!(r.body[0], 0x47);
    }
}
