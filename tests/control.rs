//! Operating without restarts, while people watch: streams created, changed, restarted and
//! deleted through Flussonic's API v3, by hand edits and `SIGHUP`, while a browser, an
//! `/mpegts` client and a real Prometheus watch a stream that nobody touches; a rebuilt stream
//! going on in every packaging; writes that land on disk atomically across `kill -9`.
//! Needs `chromium`, `ffmpeg`, `prometheus` and `tests/browser/node_modules` (installed by
//! `make test`). The API's refusals and reloads are in `tests/control_api.rs`.

mod common;

use common::control::*;
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Stream A plays in hls.js, in an `/mpegts` client and in a playlist watcher while stream B is
/// created, played, changed, restarted, hand-edited, reloaded and deleted ten times; a real
/// Prometheus sees B's series come and go.
#[test]
fn a_stream_plays_on_untouched_while_another_is_managed_ten_times() {
    let server = Server::start(&[("a", "title = \"A\"\ninputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("a", 3, Duration::from_secs(30));
    let prometheus = Prometheus::start(&server.base);
    let stop = Arc::new(AtomicBool::new(false));
    let mpegts = mpegts_reader(&server, "a", stop.clone());
    let watcher = playlist_watcher(&server, "a", stop.clone());
    let player = BackgroundPlayer::start(&server, "/a/index.m3u8", 360);
    let churn_started = Instant::now();
    let b_file = server.dir.path().join("streams/b.toml");
    let udp_port = free_port(true);
    let mut b_seen_by_prometheus = false;
    for round in 0..10 {
        // Created through the API: the answer is the stored definition, and it is on disk.
        let stored = put_ok(
            &server,
            "b",
            &json!({"title": format!("B{round}"), "inputs": [{"url": "fake://fake"}], "segment_count": 4}),
        );
        assert_eq!(stored["title"], format!("B{round}"));
        assert!(b_file.exists());
        let first = server.wait_segments("b", 1, Duration::from_secs(30));
        if round % 3 == 0 {
            let out = ffmpeg_decode(&server.url("/b/index.m3u8"), 1, 60);
            assert!(
                out.status.success(),
                "ffmpeg on B: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            check_config(&server);
        }
        if !b_seen_by_prometheus {
            wait_until(Duration::from_secs(20), "Prometheus scrapes B", || {
                prometheus.has_data("flussonic_stream_alive{name=\"b\"}")
            });
            b_seen_by_prometheus = true;
        }
        // A new input and a new segment_count: the source restarts, the playlist goes on.
        put_ok(
            &server,
            "b",
            &json!({"inputs": [{"url": "fake://fake"}, {"url": format!("udp://127.0.0.1:{udp_port}"), "priority": 2}], "segment_count": 3}),
        );
        let after = first.media_sequence + first.segments.len() as u64;
        wait_until(
            Duration::from_secs(30),
            "B continues after the new input",
            || {
                let r = get(&server.url("/b/mono.m3u8"));
                r.status == 200 && {
                    let p = Playlist::parse(&r.text());
                    p.segments.len() <= 3
                        && p.media_sequence + p.segments.len() as u64 > after
                        && p.segments.iter().any(|s| s.2)
                }
            },
        );
        assert_eq!(restart(&server, "b").status, 204);
        // By hand: a new title in the file, picked up by the watcher or by SIGHUP.
        let text = std::fs::read_to_string(&b_file).unwrap();
        std::fs::write(
            &b_file,
            text.replace(&format!("B{round}"), &format!("hand{round}")),
        )
        .unwrap();
        if round % 2 == 1 {
            sighup(&server);
        }
        wait_until(Duration::from_secs(10), "the hand edit applied", || {
            stream_json(&server, "b")["title"] == format!("hand{round}")
        });
        assert_eq!(delete(&server, "b").status, 204);
        assert!(!b_file.exists());
        assert_eq!(get(&server.url("/b/mono.m3u8")).status, 404);
    }
    let churn = churn_started.elapsed();
    // B's series leave the exposition with the next sample, and Prometheus marks them stale.
    let text = server.scrape_after(std::time::SystemTime::now());
    assert!(!text.contains("name=\"b\""), "stale series of B:\n{text}");
    assert_eq!(metric(&text, "flussonic_streams", ""), Some(1.0));
    wait_until(Duration::from_secs(10), "Prometheus sees B gone", || {
        !prometheus.has_data("flussonic_stream_alive{name=\"b\"}")
    });
    assert!(prometheus.has_data("flussonic_stream_alive{name=\"a\"}"));
    let status = player.finish();
    stop.store(true, Ordering::Relaxed);
    let (bytes, longest) = mpegts.join().unwrap();
    let watched = watcher.join().unwrap();
    assert_eq!(
        status["stalls"], 0,
        "A's player stalled during the churn: {status}"
    );
    let played = status["played"].as_f64().unwrap();
    assert!(
        played + 15.0 >= churn.as_secs_f64(),
        "A played {played} s during {churn:?} of churn: {status}"
    );
    // A's /mpegts client got bytes all along; its playlist advanced by one per segment.
    assert!(
        longest < Duration::from_secs(3),
        "A's /mpegts stalled for {longest:?}"
    );
    assert!(
        bytes > churn.as_secs() * 20_000,
        "{bytes} bytes in {churn:?}"
    );
    assert!(
        watched.problems.is_empty(),
        "A's playlist: {:?}",
        watched.problems
    );
    let (first, last) = (
        *watched.segments.keys().next().unwrap(),
        *watched.segments.keys().last().unwrap(),
    );
    assert_eq!(
        watched.segments.len() as u64,
        last - first + 1,
        "A's sequence numbers have a hole: {:?}",
        watched.segments.keys().collect::<Vec<_>>()
    );
    assert!(
        (last - first) as f64 * 2.0 + 12.0 >= churn.as_secs_f64(),
        "A advanced {first}..{last} in {churn:?}"
    );
    let log = server.log_text();
    assert!(
        !log.contains("stream changed stream=a") && !log.contains("stream removed stream=\"a\""),
        "A was touched"
    );
    assert_eq!(log.matches("stream added stream=b").count(), 10);
    assert_eq!(log.matches("stream removed stream=\"b\"").count(), 10);
    assert!(
        log.contains("stream changed stream=b changed=inputs,segment_count restarted=\"source\""),
        "{log}"
    );
}

/// A change that rebuilds a stream (`segment_duration`) continues it in every packaging: the
/// TS playlist's numbering goes on after a discontinuity, fMP4 names a new init version, the
/// open `/mpegts` connection stays open, and ffmpeg decodes HLS-TS and HLS-fMP4 after it.
#[test]
fn a_rebuilt_stream_goes_on_in_every_packaging() {
    let server = Server::start(&[("r", "inputs = [{ url = \"fake://fake\" }]\n")]);
    let before = server.wait_segments("r", 3, Duration::from_secs(30));
    let next = before.media_sequence + before.segments.len() as u64;
    let fmp4 = || get(&server.url("/r/tracks-v1/index.fmp4.m3u8"));
    wait_until(Duration::from_secs(20), "fMP4 playlist", || {
        fmp4().status == 200
    });
    assert!(fmp4().text().contains("#EXT-X-MAP:URI=\"init.mp4\""));
    let stop = Arc::new(AtomicBool::new(false));
    let mpegts = mpegts_reader(&server, "r", stop.clone());
    let stored = put_ok(&server, "r", &json!({"segment_duration": 3000}));
    assert_eq!(stored["segment_duration"], 3000);
    assert!(
        server
            .log_text()
            .contains("stream changed stream=r changed=segment_duration restarted=\"source, packager and DVR writer\""),
        "{}",
        server.log_text()
    );
    let mut after = Playlist::default();
    wait_until(
        Duration::from_secs(30),
        "3 s segments after the rebuild",
        || {
            let r = get(&server.url("/r/mono.m3u8"));
            r.status == 200 && {
                after = Playlist::parse(&r.text());
                after.target_duration == 3 && after.segments.len() >= 2
            }
        },
    );
    assert!(
        after.media_sequence >= next,
        "numbering went on: {after:?} after {before:?}"
    );
    assert!(
        after.segments[0].2,
        "the first segment after the rebuild is a discontinuity"
    );
    assert!(after.discontinuity_sequence >= before.discontinuity_sequence);
    // fMP4: a new init version, served, and decodable.
    let text = fmp4().text();
    let map = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no EXT-X-MAP: {text}"))
        .to_owned();
    assert_ne!(
        map, "init.mp4",
        "the rebuilt track's init has a new version: {text}"
    );
    assert_eq!(get(&server.url(&format!("/r/tracks-v1/{map}"))).status, 200);
    for path in ["/r/index.m3u8", "/r/index.fmp4.m3u8"] {
        let out = ffmpeg_decode(&server.url(path), 2, 60);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (bytes, longest) = mpegts.join().unwrap();
    assert!(bytes > 100_000, "{bytes}");
    assert!(
        longest < Duration::from_secs(8),
        "the /mpegts connection waited {longest:?}"
    );
}

/// Every answered write is on disk, whole; `kill -9` at any instant leaves the old file or the
/// new one, and the restarted server runs exactly the stored set.
#[test]
fn kill_9_during_writes_never_leaves_a_partial_file() {
    let mut server = Server::start(&[("keep", "inputs = [{ url = \"publish://\" }]\n")]);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut total_writes, mut cut_short) = (0, 0);
    for crash in 0..20 {
        let base = server.base.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // (title acknowledged last, title being written when the crash came)
                let mut acked: Option<String> = None;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let title = format!("t{crash}-{i}");
                    let body = json!({"title": title, "inputs": [{"url": "publish://"}], "segment_count": 2 + i % 5});
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(5)))
                        .build()
                        .into();
                    let result = agent
                        .put(format!("{base}{API}/streams/w"))
                        .header("Authorization", admin())
                        .send(body.to_string().as_bytes());
                    match result {
                        Ok(r) if r.status() == 200 => acked = Some(title),
                        Ok(r) => panic!("PUT answered {}", r.status()),
                        // The server died under the request.
                        Err(_) => return (acked, Some(title), i),
                    }
                }
                (acked, None, i)
            })
        };
        std::thread::sleep(Duration::from_millis(100 + random(400)));
        server = server.crash_and_restart();
        stop.store(true, Ordering::Relaxed);
        let (acked, in_flight, writes) = writer.join().unwrap();
        total_writes += writes;
        cut_short += u32::from(in_flight.is_some());
        let files = stream_files(&server);
        assert!(
            files
                .iter()
                .all(|f| f == "keep.toml" || f == "w.toml" || f == ".w.toml.tmp"),
            "{files:?}"
        );
        let text =
            std::fs::read_to_string(server.dir.path().join("streams/w.toml")).unwrap_or_default();
        if let Some(acked) = &acked {
            let stored: toml::Table = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("crash {crash}: w.toml does not parse ({e}):\n{text}"));
            let title = stored["title"].as_str().unwrap();
            assert!(
                title == acked || Some(title) == in_flight.as_deref(),
                "crash {crash}: stored {title}, acknowledged {acked}, in flight {in_flight:?}"
            );
        }
        check_config(&server);
        // The restarted server runs exactly what is stored.
        let running = names(&list(&server, ""));
        let stored: Vec<String> = files
            .iter()
            .filter(|f| !f.starts_with('.'))
            .map(|f| f.trim_end_matches(".toml").to_owned())
            .collect();
        assert_eq!(running, stored, "crash {crash}");
        if let Some(title) = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("title").cloned())
        {
            assert_eq!(stream_json(&server, "w")["title"], title.as_str().unwrap());
        }
    }
    // The crashes came during writes, not between idle moments.
    assert!(
        total_writes >= 20,
        "only {total_writes} writes in 20 rounds"
    );
    assert!(
        cut_short >= 10,
        "only {cut_short} of 20 crashes hit a request in flight"
    );
}
