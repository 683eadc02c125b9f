//! LL-HLS with real clients: hls.js (`lowLatencyMode`) in Chromium plays `index.ll.m3u8` of a
//! live `fake://` stream about 1.3-1.7 s behind live without a stall (the master's variant:
//! video and audio in one track), and switches renditions of a two-rung ladder; 500 requests
//! held for a future part are all answered together at its publication while the server's CPU
//! stays at its idle level; a request more than two segments (or 3 s of parts) ahead gets 400;
//! held requests are answered when the stream goes away.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const STREAM: &str = "inputs = [{ url = \"fake://fake\" }]\n";

/// These tests measure latency and CPU: one at a time, so that they do not measure each
/// other (a transcoded ladder and Chromium take both cores of a small machine).
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits for the LL playlist of `track` and returns it.
fn ll_playlist(server: &Server, track: &str) -> String {
    let path = format!("/demo/tracks-{track}/index.ll.m3u8");
    wait_until(Duration::from_secs(30), "an LL-HLS playlist", || {
        get(&server.url(&path)).status == 200
    });
    get(&server.url(&path)).text()
}

/// (media sequence number, part index) of the newest part a playlist lists.
fn last_part(playlist: &str) -> (u64, u32) {
    let mut msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let mut parts = 0u32;
    for line in playlist.lines() {
        if line.starts_with("#EXT-X-PART:") {
            parts += 1;
        } else if !line.starts_with('#') && !line.is_empty() {
            msn += 1;
            parts = 0;
        } else if line.starts_with("#EXT-X-SKIP:SKIPPED-SEGMENTS=") {
            msn += line.rsplit('=').next().unwrap().parse::<u64>().unwrap();
        }
    }
    assert!(parts > 0, "the open segment has parts: {playlist}");
    (msn, parts - 1)
}

/// The server's WARN and ERROR lines.
fn warnings_of(server: &Server) -> String {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// hls.js with `lowLatencyMode` plays `path` for `seconds` (after a forced rendition switch
/// with `switch`); returns its status and (median, p95) of its distance behind live, ms.
/// A first, short session warms the browser up and is not measured: hls.js keeps the
/// distance it starts at, and a Chromium starting from a cold disk cache (right after a
/// build) started 0.6–1 s later and stayed that much further behind.
fn play_ll(
    server: &Server,
    path: &str,
    seconds: u32,
    switch: bool,
) -> (serde_json::Value, f64, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
    let warm_up = Command::new("timeout")
        .args(["-k", "5", "90", "node", script, &server.base, path])
        .args(["2", "60", "", "--player=hls", "--ll"])
        .output()
        .expect("node (installed by make test-deps)");
    assert!(
        warm_up.status.success(),
        "hls.js did not play {path} (warm-up):\n{}",
        String::from_utf8_lossy(&warm_up.stdout)
    );
    let mut command = Command::new("timeout");
    command
        .args(["-k", "5", "150", "node", script, &server.base, path])
        .args([&seconds.to_string(), "90", "", "--player=hls", "--ll"]);
    if switch {
        command.arg("--switch");
    }
    let out = command
        .output()
        .expect("node (installed by make test-deps)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("PLAYED"),
        "hls.js did not play {path}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap();
    let mut latency: Vec<f64> = status["latencyMs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    assert!(latency.len() >= 10, "latency samples: {status}");
    latency.sort_by(f64::total_cmp);
    let (median, p95) = (percentile(&latency, 0.5), percentile(&latency, 0.95));
    eprintln!(
        "LL-HLS in hls.js ({path}): {} samples, median {median:.0} ms, p95 {p95:.0} ms behind \
         live, stalls {}",
        latency.len(),
        status["stalls"]
    );
    (status, median, p95)
}

#[test]
fn hls_js_plays_ll_hls_a_second_or_two_behind_live() {
    let _alone = alone();
    let server = Server::start(&[("demo", STREAM)]);
    let text = ll_playlist(&server, "v1");
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.250"), "{text}");
    // A channel that has been running a while: a few whole segments listed (with one or two,
    // hls.js starts at the playlist's start, seconds behind).
    wait_until(Duration::from_secs(30), "three whole segments", || {
        ll_playlist(&server, "v1").matches("#EXTINF").count() >= 3
    });
    let master = get(&server.url("/demo/index.ll.m3u8"));
    assert_eq!(master.status, 200, "{}", master.text());
    // The variant carries video and audio in the same parts (one track for the player to
    // load, not two): no separate audio playlist is announced.
    let master = master.text();
    assert!(
        master.contains("CODECS=\"avc1.")
            && master.contains(",mp4a.40.2\"")
            && master.contains("\ntracks-v1a1/index.ll.m3u8\n")
            && !master.contains("EXT-X-MEDIA"),
        "{master}"
    );
    muxed_segment_has_both_tracks(&server);
    // No part lasts longer than the part target, audio (whole AAC frames) included.
    for track in ["v1", "a1"] {
        let text = ll_playlist(&server, track);
        let durations: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:DURATION="))
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(durations.len() >= 8, "{text}");
        assert!(
            durations.iter().all(|d| *d <= 0.250),
            "{track}: {durations:?}"
        );
    }
    let (status, median, p95) = play_ll(&server, "/demo/index.ll.m3u8", 30, false);
    // The server's warnings go with a failure: a part it could not package explains a hole.
    let warnings = || warnings_of(&server);
    // hls.js (default settings: no playback-rate catch-up) keeps the distance it started at:
    // 1.27-1.71 s in twelve runs of this debug build here, 0.97-1.36 s for a release build
    // (the goal is 1.5 s); the bound leaves room for a slower start on a busy CI machine (HLS
    // is 6-8 s behind). A stall a viewer sees is never excused: the one seen before (hls.js
    // skipping a segment's short last part) cost 5 s each time. See `seen_stalls` for the
    // `waiting` events that are not counted.
    assert!(
        median <= 2000.0,
        "median {median} ms behind live: {status}\n{}",
        warnings()
    );
    assert!(
        p95 <= 2500.0,
        "p95 {p95} ms behind live: {status}\n{}",
        warnings()
    );
    assert!(
        seen_stalls(&status).is_empty(),
        "stalls: {status}\n{}",
        warnings()
    );
}

/// The stalls of a play status a viewer would see: each `waiting` of the element that lasted
/// 100 ms or more (ended, or still going on at the end). Shorter ones are not counted: on a
/// CI machine's shared cores Chromium once fired a 21 ms `waiting` right as playback started
/// with every part served in 7-24 ms — a frame or so of decoder start-up, not a hole in the
/// stream; a missing part stalls for its whole duration (250 ms) or, as seen before, for
/// seconds.
fn seen_stalls(status: &serde_json::Value) -> Vec<u64> {
    let ended = status["stallMs"].as_array().cloned().unwrap_or_default();
    ended
        .iter()
        .chain(std::iter::once(&status["stallingMs"]))
        .filter_map(serde_json::Value::as_u64)
        .filter(|ms| *ms >= 100)
        .collect()
}

/// The muxed track's init segment and a whole segment, as a real reader sees them: one H.264
/// and one AAC stream, each about the segment's duration; its parts are the video track's
/// (same names, same durations).
fn muxed_segment_has_both_tracks(server: &Server) {
    let muxed = ll_playlist(server, "v1a1");
    let video = ll_playlist(server, "v1");
    let parts = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .map(str::to_owned)
            .collect()
    };
    let (m, v) = (parts(&muxed), parts(&video));
    let common = m.iter().filter(|l| v.contains(l)).count();
    assert!(
        common >= 4,
        "the muxed parts are the video's:\n{muxed}\n{video}"
    );
    let uri = |line: &str| line.split('"').nth(1).unwrap().to_owned();
    let init = uri(muxed.lines().find(|l| l.starts_with("#EXT-X-MAP")).unwrap());
    let segment = muxed
        .lines()
        .filter(|l| l.ends_with(".m4s") && !l.starts_with('#'))
        .nth(1)
        .expect("two whole segments")
        .to_owned();
    let mut bytes = Vec::new();
    for name in [&init, &segment] {
        let reply = get(&server.url(&format!("/demo/tracks-v1a1/{name}")));
        assert_eq!(reply.status, 200, "{name}");
        assert_eq!(reply.header("content-type"), "video/mp4", "{name}");
        bytes.extend_from_slice(&reply.body);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("muxed.mp4");
    std::fs::write(&file, &bytes).unwrap();
    let streams = ffprobe_csv(
        file.to_str().unwrap(),
        &[
            "-count_packets",
            "-show_entries",
            "stream=codec_name,nb_read_packets",
        ],
    );
    let streams: Vec<(String, u32)> = streams
        .lines()
        .map(|l| {
            let (codec, n) = l.split_once(',').unwrap();
            (codec.to_owned(), n.trim().parse().unwrap())
        })
        .collect();
    assert_eq!(streams.len(), 2, "{streams:?}");
    assert_eq!(streams[0].0, "h264", "{streams:?}");
    assert_eq!(streams[1].0, "aac", "{streams:?}");
    // 2 s: 50 pictures at 25 fps, ~94 AAC frames at 48 kHz.
    assert!((48..=52).contains(&streams[0].1), "{streams:?}");
    assert!((88..=99).contains(&streams[1].1), "{streams:?}");
}

/// A two-rung transcoded ladder: every rendition has parts on the same segments (same media
/// sequence numbers and dates), the LL master lists both, and hls.js switches between them.
#[test]
fn hls_js_switches_renditions_of_an_ll_ladder() {
    let _alone = alone();
    let ladder = "inputs = [{ url = \"fake://fake\" }]\n[transcoder]\npreset = \"ultrafast\"\n\
                  [[transcoder.video]]\nbitrate = \"600k\"\nsize = \"640x360\"\n\
                  [[transcoder.video]]\nbitrate = \"200k\"\nsize = \"320x180\"\n";
    let server = Server::start(&[("ladder", ladder)]);
    wait_until(
        Duration::from_secs(60),
        "both renditions' LL playlists",
        || {
            get(&server.url("/ladder/index.ll.m3u8"))
                .text()
                .contains("tracks-v2a1/index.ll.m3u8")
        },
    );
    // Let the second rendition list a few segments, then compare the two.
    std::thread::sleep(Duration::from_secs(5));
    let listed = |track: &str| -> Vec<String> {
        get(&server.url(&format!("/ladder/tracks-{track}/index.ll.m3u8")))
            .text()
            .lines()
            .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME") || l.contains("-s"))
            .map(|l| {
                l.split("ll-")
                    .last()
                    .unwrap()
                    .split_once('-')
                    .map_or(l, |(_, s)| s)
                    .to_owned()
            })
            .collect()
    };
    let (v1, v2) = (listed("v1"), listed("v2"));
    let common: Vec<&String> = v2.iter().filter(|l| v1.contains(l)).collect();
    assert!(
        common.len() >= 2,
        "the renditions share segments: {v1:?} {v2:?}"
    );
    let (status, median, _) = play_ll(&server, "/ladder/index.ll.m3u8", 8, true);
    assert_eq!(status["switch"]["state"], "confirmed", "{status}");
    assert!(median <= 2500.0, "median {median} ms behind live: {status}");
}

/// Sends a GET for `path` and returns the socket (the answer is read later).
fn send_get(server: &Server, path: &str) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

/// Reads a whole `Connection: close` answer: (status, body).
fn read_answer(mut s: TcpStream) -> (u16, String) {
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    parse_answer(&text)
}

/// (status, body) of a whole HTTP/1.1 answer's text.
fn parse_answer(text: &str) -> (u16, String) {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn server_cpu_ticks(server: &Server) -> u64 {
    let pid = server.pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Holds `n` requests for `path` on one thread (tokio, current-thread): each answer's
/// status, body and arrival time. `during` runs once every request has been sent.
fn hold_many(
    server: &Server,
    path: &str,
    n: usize,
    during: impl FnOnce(),
) -> Vec<(Instant, u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base.trim_start_matches("http://").to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut sockets = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            sockets.push(s);
        }
        during();
        let reads = sockets.into_iter().map(|mut s| {
            tokio::spawn(async move {
                let mut text = Vec::new();
                s.read_to_end(&mut text).await.unwrap();
                let at = Instant::now();
                let (status, body) = parse_answer(&String::from_utf8_lossy(&text));
                (at, status, body)
            })
        });
        let mut out = Vec::with_capacity(n);
        for r in reads.collect::<Vec<_>>() {
            out.push(r.await.unwrap());
        }
        out
    })
}

#[test]
fn five_hundred_held_requests_are_answered_at_the_publication_of_their_part() {
    let _alone = alone();
    let server = Server::start(&[("demo", STREAM)]);
    // The track the master lists (video and audio in one).
    let text = ll_playlist(&server, "v1a1");
    let (msn, _) = last_part(&text);
    // The next segment's fourth part: about a second or more away.
    let (want_msn, want_part) = (msn + 1, 3);
    let path = format!("/demo/tracks-v1a1/index.ll.m3u8?_HLS_msn={want_msn}&_HLS_part={want_part}");
    let cpu_per_s = |ms: u64| {
        let (from, at) = (server_cpu_ticks(&server), Instant::now());
        std::thread::sleep(Duration::from_millis(ms));
        (server_cpu_ticks(&server) - from) as f64 / at.elapsed().as_secs_f64()
    };
    let idle = cpu_per_s(600);
    let mut holding = 0.0;
    let results = hold_many(&server, &path, 500, || {
        // Past the connections' arrival: 500 requests waiting, nothing else.
        std::thread::sleep(Duration::from_millis(150));
        holding = cpu_per_s(400);
    });
    let mut arrivals: Vec<Instant> = Vec::new();
    for (at, status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        let (m, p) = last_part(body);
        assert!(
            (m, p) >= (want_msn, want_part),
            "answered before part {want_msn}.{want_part} existed: {m}.{p}"
        );
        arrivals.push(*at);
    }
    arrivals.sort();
    let mut spread: Vec<f64> = arrivals
        .iter()
        .map(|t| t.duration_since(arrivals[0]).as_secs_f64() * 1000.0)
        .collect();
    spread.sort_by(f64::total_cmp);
    let p99 = percentile(&spread, 0.99);
    eprintln!(
        "500 held requests: answered within {p99:.1} ms (p99) of the first answer; \
         server CPU {idle:.1} ticks/s idle, {holding:.1} while holding"
    );
    // Woken by the publication itself, not by a timer or a poll of their own: all answered
    // together. (This is the debug build on two shared cores, 500 answers with their
    // authorization, session and metrics work; the release figure is in docs/benchmarks.md.)
    assert!(p99 <= 200.0, "p99 {p99} ms after the first answer");
    // Holding costs nothing: the server's CPU while 500 requests wait is its idle level
    // (the stream's own encoding), within noise.
    assert!(
        holding <= idle * 1.5 + 5.0,
        "{holding} ticks/s while holding, {idle} idle"
    );
}

#[test]
fn too_far_ahead_is_400_and_a_stopped_stream_answers_its_held_requests() {
    let _alone = alone();
    let server = Server::start(&[("demo", STREAM), ("other", STREAM)]);
    let text = ll_playlist(&server, "v1");
    let (msn, _) = last_part(&text);
    let ahead = get(&server.url(&format!(
        "/demo/tracks-v1/index.ll.m3u8?_HLS_msn={}&_HLS_part=0",
        msn + 3
    )));
    assert_eq!(ahead.status, 400, "{}", ahead.text());
    // A part of the next segment more than 3 s of parts ahead (12 parts of 250 ms): 400.
    let parts_ahead = get(&server.url(&format!(
        "/demo/tracks-v1a1/index.ll.m3u8?_HLS_msn={}&_HLS_part=12",
        msn + 1
    )));
    assert_eq!(parts_ahead.status, 400, "{}", parts_ahead.text());
    assert!(
        parts_ahead.text().contains("Advance Part Limit"),
        "{}",
        parts_ahead.text()
    );
    // Answered at once when the part exists.
    let started = Instant::now();
    let now = get(&server.url(&format!(
        "/demo/tracks-v1/index.ll.m3u8?_HLS_msn={msn}&_HLS_part=0"
    )));
    assert_eq!(now.status, 200);
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(
        now.header("cache-control"),
        "public, max-age=6",
        "a blocking answer is cacheable by its full URL"
    );
    // Held (two segments ahead), then the stream is deleted: answered, not hung.
    let held: Vec<TcpStream> = (0..20)
        .map(|_| {
            send_get(
                &server,
                &format!("/demo/tracks-v1/index.ll.m3u8?_HLS_msn={}", msn + 2),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let deleted = request(
        "DELETE",
        &server.url("/flussonic/api/v3/streams/demo"),
        &[("Authorization", &format!("Basic {}", b64("admin:pw")))],
    );
    assert!(deleted.status < 300, "{}", deleted.text());
    let stopped = Instant::now();
    for s in held {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (status, _) = read_answer(s);
        assert_eq!(status, 503, "a stopped stream's held request");
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "answered {:?} after the stream stopped",
        stopped.elapsed()
    );
    // The other stream still serves.
    assert_eq!(
        get(&server.url("/other/tracks-v1/index.ll.m3u8")).status,
        200
    );
}
