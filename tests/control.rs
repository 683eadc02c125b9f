//! Operating without restarts: streams created, changed, restarted and deleted through
//! Flussonic's API v3, by hand edits and `SIGHUP`, while a browser, an `/mpegts` client and a
//! real Prometheus watch a stream that nobody touches; writes that land on disk atomically
//! across `kill -9`; bad input refused with its field named and nothing changed.
//! Needs `chromium`, `ffmpeg`, `prometheus` and `tests/browser/node_modules` (installed by
//! `make test`).

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const API: &str = "/streamer/api/v3";

fn admin() -> String {
    format!("Basic {}", b64("admin:pw"))
}

fn put(server: &Server, name: &str, body: &Value) -> Reply {
    send(
        "PUT",
        &server.url(&format!("{API}/streams/{name}")),
        &[
            ("Authorization", &admin()),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn put_ok(server: &Server, name: &str, body: &Value) -> Value {
    let r = put(server, name, body);
    assert_eq!(r.status, 200, "PUT {name} {body}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn delete(server: &Server, name: &str) -> Reply {
    request(
        "DELETE",
        &server.url(&format!("{API}/streams/{name}")),
        &[("Authorization", &admin())],
    )
}

fn restart(server: &Server, name: &str) -> Reply {
    send(
        "POST",
        &server.url(&format!("{API}/streams/{name}/restart")),
        &[("Authorization", &admin())],
        b"",
    )
}

fn list(server: &Server, query: &str) -> Value {
    let r = request(
        "GET",
        &server.url(&format!("{API}/streams{query}")),
        &[("Authorization", &format!("Basic {}", b64("viewer:pw")))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `headwater check-config` on the server's folder: the files the API wrote are valid files.
fn check_config(server: &Server) {
    let out = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .arg("--config")
        .arg(server.dir.path().join("headwater.toml"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config refused what the API wrote: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stream_files(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.dir.path().join("streams"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn sighup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads `/NAME/mpegts` until stopped: (bytes, longest wait between two reads).
fn mpegts_reader(
    server: &Server,
    name: &str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Duration)> {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let path = format!("/{name}/mpegts");
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 65536];
        let (mut bytes, mut longest) = (0u64, Duration::ZERO);
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => panic!("the /{path} connection was closed after {bytes} bytes"),
                Ok(n) => {
                    bytes += n as u64;
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading {path}: {e}"),
            }
        }
        (bytes, longest.max(last.elapsed()))
    })
}

/// What a stream's media playlists said over time.
#[derive(Debug, Default)]
struct Watched {
    /// Media sequence → segment URI, from every playlist read.
    segments: BTreeMap<u64, String>,
    /// Playlists read, and problems seen (a discontinuity, a sequence going back, one sequence
    /// with two URIs, a failed request).
    reads: u32,
    problems: Vec<String>,
}

/// Polls `/NAME/mono.m3u8` until stopped.
fn playlist_watcher(server: &Server, name: &str, stop: Arc<AtomicBool>) -> JoinHandle<Watched> {
    let url = server.url(&format!("/{name}/mono.m3u8"));
    std::thread::spawn(move || {
        let mut w = Watched::default();
        let mut last_sequence = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = get(&url);
            if r.status != 200 {
                w.problems.push(format!("status {}", r.status));
            } else {
                let p = Playlist::parse(&r.text());
                w.reads += 1;
                if p.media_sequence < last_sequence {
                    w.problems.push(format!(
                        "sequence went back to {} from {last_sequence}",
                        p.media_sequence
                    ));
                }
                last_sequence = p.media_sequence;
                for (i, (_, uri, disc)) in p.segments.iter().enumerate() {
                    let seq = p.media_sequence + i as u64;
                    if *disc {
                        w.problems.push(format!("discontinuity before {seq}"));
                    }
                    if let Some(old) = w.segments.insert(seq, uri.clone())
                        && old != *uri
                    {
                        w.problems
                            .push(format!("sequence {seq} was {old}, now {uri}"));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        w
    })
}

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
    let until = server.dir.path().join("stop-playing");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
    let player = Command::new("timeout")
        .args([
            "-k",
            "5",
            "400",
            "node",
            script,
            &server.base,
            "/a/index.m3u8",
            "20",
            "360",
            "",
        ])
        .arg("--player=hls")
        .arg(format!("--until={}", until.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (installed by make test-deps)");
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
    std::fs::write(&until, "").unwrap();
    stop.store(true, Ordering::Relaxed);
    let (bytes, longest) = mpegts.join().unwrap();
    let watched = watcher.join().unwrap();
    let out = player.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status: Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no status from the player: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        out.status.success() && stdout.contains("PLAYED"),
        "hls.js on A: {stdout}"
    );
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

/// Each kind of bad write is answered with its status and the field named; nothing changes and
/// the refusals are counted.
#[test]
fn bad_writes_are_refused_with_the_field_named_and_change_nothing() {
    let server = Server::start(&[(
        "a",
        "# hand-written\ntitle = \"A\"\ninputs = [{ url = \"fake://fake\" }]\n",
    )]);
    server.wait_segments("a", 1, Duration::from_secs(30));
    let before_files = stream_files(&server);
    let before_text = std::fs::read_to_string(server.dir.path().join("streams/a.toml")).unwrap();
    let url = |p: &str| server.url(&format!("{API}{p}"));
    let json_put = |path: &str, body: &[u8], auth: Option<&str>| {
        let mut h = vec![("Content-Type", "application/json")];
        let a;
        if let Some(creds) = auth {
            a = format!("Basic {}", b64(creds));
            h.push(("Authorization", &a));
        }
        send("PUT", &url(path), &h, body)
    };
    let errors = |r: &Reply| -> Value {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{}", r.text()));
        v["errors"][0].clone()
    };
    // Malformed JSON: where it broke.
    let r = json_put("/streams/a", b"{\"title\": ", Some("admin:pw"));
    assert_eq!(r.status, 400);
    assert_eq!(errors(&r)["line"], 1);
    // Wrong type, unknown key, invalid URL, value out of range: the field.
    for (body, path) in [
        (json!({"segment_count": "six"}), "segment_count"),
        (json!({"segment_cont": 6}), "segment_cont"),
        (
            json!({"inputs": [{"url": "rtmp://nowhere"}]}),
            "inputs[0].url",
        ),
        (
            json!({"inputs": [{"url": "fake://fake", "source_timeout": 0}]}),
            "inputs[0].source_timeout",
        ),
        (json!({"dvr": {"expiration": "forever"}}), "dvr.expiration"),
        (json!({"$reset": true}), ""),
    ] {
        let r = put(&server, "a", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = errors(&r);
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        if path.is_empty() {
            assert!(e["message"].as_str().unwrap().contains("inputs"), "{e}");
        } else {
            assert_eq!(e["path"], path, "{body}: {e}");
        }
    }
    // Too large, bad names, wrong credentials.
    assert_eq!(
        declared_too_large(&server, "/streams/a"),
        "HTTP/1.1 413 Payload Too Large"
    );
    for name in ["..", "a.toml", "a%2Fb", "%2e%2e"] {
        let status = json_put(&format!("/streams/{name}"), b"{}", Some("admin:pw")).status;
        assert_eq!(status, 400, "{name}");
    }
    assert_eq!(
        json_put("/streams/a/b", b"{}", Some("admin:pw")).status,
        404
    );
    let body = json!({"title": "X", "inputs": [{"url": "fake://fake"}]}).to_string();
    assert_eq!(
        json_put("/streams/x", body.as_bytes(), Some("viewer:pw")).status,
        403
    );
    assert_eq!(json_put("/streams/x", body.as_bytes(), None).status, 401);
    assert_eq!(
        json_put("/streams/x", body.as_bytes(), Some("admin:wrong")).status,
        401
    );
    assert_eq!(delete(&server, "nosuch").status, 404);
    assert_eq!(restart(&server, "nosuch").status, 404);
    // Nothing changed: the same files, the same text, the same running set.
    assert_eq!(stream_files(&server), before_files);
    assert_eq!(
        std::fs::read_to_string(server.dir.path().join("streams/a.toml")).unwrap(),
        before_text
    );
    assert_eq!(names(&list(&server, "")), ["a"]);
    // Counted: by route and status, and the credential failures by reason.
    let text = server.scrape_after(std::time::SystemTime::now());
    let route = "route=\"/flussonic/api/v3/streams/:name\"";
    let count = |status: &str| {
        metric(
            &text,
            "flussonic_http_requests_total",
            &format!("method=\"PUT\",{route},status=\"{status}\""),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("400"), 7.0, "{text}");
    assert_eq!(count("413"), 1.0);
    assert_eq!(count("403"), 1.0);
    assert_eq!(count("401"), 2.0);
    assert!(
        metric(
            &text,
            "flussonic_auth_failures_total",
            "reason=\"forbidden\""
        ) >= Some(1.0)
    );
    // A partial update keeps the hand-written comment; validation changes nothing.
    put_ok(&server, "a", &json!({"segment_count": 4}));
    let text = std::fs::read_to_string(server.dir.path().join("streams/a.toml")).unwrap();
    assert!(
        text.starts_with("# hand-written\ntitle = \"A\"\n") && text.contains("segment_count = 4"),
        "{text}"
    );
    let validate = |query: &str, body: &str| {
        send(
            "POST",
            &url(&format!("/config/validate{query}")),
            &[("Authorization", &admin())],
            body.as_bytes(),
        )
    };
    let r = validate(
        "",
        "title = \"x\"\ninputs = [{ url = \"udp://300.1.1.1:5\" }]\n",
    );
    assert_eq!(r.status, 400);
    let e = errors(&r);
    assert_eq!(
        (e["path"].as_str(), e["line"].as_u64()),
        (Some("inputs[0].url"), Some(2)),
        "{e}"
    );
    assert_eq!(
        validate("", "inputs = [{ url = \"fake://fake\" }]\n").status,
        200
    );
    assert_eq!(
        validate("", "{\"inputs\": [{\"url\": \"fake://fake\"}]}").status,
        200
    );
    let r = validate("", "[server]\nlisten = \"nowhere\"\n");
    assert_eq!(r.status, 400);
    assert_eq!(errors(&r)["path"], "server.listen");
    assert_eq!(
        validate("?type=server", "[stats]\ninterval = 1000\n").status,
        200
    );
    assert_eq!(stream_files(&server), before_files);
}

/// A PUT declaring a 2 MiB body: answered at once, before any byte of it is sent (a client
/// library that insists on sending the body would see the connection closed under it).
fn declared_too_large(server: &Server, path: &str) -> String {
    let addr = server.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {API}{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        admin(),
        2 << 20
    )
    .unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap();
    String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Concurrent partial updates of one stream, each to another key, are applied one after the
/// other: none is lost.
#[test]
fn concurrent_writes_to_one_stream_lose_nothing() {
    let server = Server::start(&[("c", "inputs = [{ url = \"publish://\" }]\n")]);
    let bodies = [
        json!({"title": "T"}),
        json!({"segment_count": 5}),
        json!({"segment_duration": 3000}),
        json!({"publish_key": "k"}),
        json!({"dvr": {"expiration": "2h"}}),
        json!({"dvr": {"storage_limit": "1G"}}),
    ];
    let base = server.base.clone();
    let writers: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let url = format!("{base}{API}/streams/c");
            std::thread::spawn(move || {
                let r = send(
                    "PUT",
                    &url,
                    &[("Authorization", &admin())],
                    body.to_string().as_bytes(),
                );
                assert_eq!(r.status, 200, "{body}: {}", r.text());
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    let text = std::fs::read_to_string(server.dir.path().join("streams/c.toml")).unwrap();
    let stored: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(stored["title"].as_str(), Some("T"), "{text}");
    assert_eq!(stored["segment_count"].as_integer(), Some(5), "{text}");
    assert_eq!(
        stored["segment_duration"].as_integer(),
        Some(3000),
        "{text}"
    );
    assert_eq!(stored["publish_key"].as_str(), Some("k"), "{text}");
    assert_eq!(stored["dvr"]["expiration"].as_str(), Some("2h"), "{text}");
    assert_eq!(
        stored["dvr"]["storage_limit"].as_str(),
        Some("1G"),
        "{text}"
    );
    let shown = stream_json(&server, "c");
    assert_eq!(shown["stats"]["segment_count"], 5);
    assert_eq!(shown["stats"]["segment_duration"], 3000);
}

/// Listing with `limit`, `cursor` and `q`; a stream's JSON shows its stored definition with
/// secrets masked, and sending it back changes nothing.
#[test]
fn listing_pages_and_definitions_round_trip() {
    let streams: Vec<(String, String)> = (0..5)
        .map(|i| {
            (
                format!("cam{i}"),
                "inputs = [{ url = \"publish://\" }]\npublish_key = \"s3cret\"\n".to_owned(),
            )
        })
        .chain([(
            "other".to_owned(),
            "inputs = [{ url = \"rtsp://u:Pw123456@127.0.0.1:1/x\" }]\n".to_owned(),
        )])
        .collect();
    let refs: Vec<(&str, &str)> = streams
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let server = Server::start(&refs);
    let page = list(&server, "?limit=2&q=cam");
    assert_eq!(names(&page), ["cam0", "cam1"]);
    assert_eq!(page["estimated_count"], 5);
    assert_eq!(page["next"], "cam1");
    let page = list(&server, "?limit=2&q=cam&cursor=cam1");
    assert_eq!(names(&page), ["cam2", "cam3"]);
    let page = list(&server, "?limit=2&q=cam&cursor=cam3");
    assert_eq!(names(&page), ["cam4"]);
    assert_eq!(page["next"], Value::Null);
    let all = list(&server, "");
    assert!(!all.to_string().contains("s3cret") && !all.to_string().contains("Pw123456"));
    let one = stream_json(&server, "other");
    assert_eq!(one["inputs"][0]["url"], "rtsp://u:***@127.0.0.1:1/x");
    let before = std::fs::read_to_string(server.dir.path().join("streams/other.toml")).unwrap();
    let back = put_ok(&server, "other", &one);
    assert_eq!(back["inputs"][0]["url"], "rtsp://u:***@127.0.0.1:1/x");
    assert_eq!(
        std::fs::read_to_string(server.dir.path().join("streams/other.toml")).unwrap(),
        before
    );
    let cam = stream_json(&server, "cam0");
    assert_eq!(cam["publish_key"], "***");
    put_ok(&server, "cam0", &cam);
    assert!(
        std::fs::read_to_string(server.dir.path().join("streams/cam0.toml"))
            .unwrap()
            .contains("s3cret")
    );
}

/// A reload applies what changed: an invalid file keeps the running stream as it was (logged
/// with file, line and column, counted), new credentials apply at once, a listen address is
/// said to need a restart, and a deleted stream's archive stays playable.
#[test]
fn reloads_keep_last_good_definitions_and_apply_server_settings_live() {
    let server = Server::start(&[
        ("a", "title = \"A\"\ninputs = [{ url = \"fake://fake\" }]\n"),
        (
            "rec",
            "inputs = [{ url = \"fake://fake\" }]\n[dvr]\nexpiration = \"1h\"\n",
        ),
    ]);
    server.wait_segments("rec", 2, Duration::from_secs(30));
    let a_file = server.dir.path().join("streams/a.toml");
    std::fs::write(
        &a_file,
        "title = \"A2\"\ninputs = [{ url = \"nope://x\" }]\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the invalid file logged", || {
        server.log_text().contains("invalid stream file refused")
    });
    let log = server.log_text();
    assert!(log.contains("a.toml:2:"), "FILE:LINE:COLUMN in {log}");
    assert_eq!(
        stream_json(&server, "a")["title"],
        "A",
        "the last good definition runs"
    );
    server.wait_segments("a", 2, Duration::from_secs(30));
    let text = server.scrape_after(std::time::SystemTime::now());
    assert!(metric(&text, "flussonic_config_reloads_total", "result=\"error\"") >= Some(1.0));
    // Fixed by hand: applied.
    std::fs::write(
        &a_file,
        "title = \"A3\"\ninputs = [{ url = \"fake://fake\" }]\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the fixed file applied", || {
        stream_json(&server, "a")["title"] == "A3"
    });
    // New API credentials and listen address on SIGHUP.
    let config = server.dir.path().join("headwater.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("admin:pw", "admin:new")
            .replace("rtmp = \"127.0.0.1:0\"", "rtmp = \"127.0.0.1:1\""),
    )
    .unwrap();
    sighup(&server);
    wait_until(Duration::from_secs(10), "new credentials", || {
        delete(&server, "nosuch").status == 401
    });
    let new_admin = format!("Basic {}", b64("admin:new"));
    let r = request(
        "DELETE",
        &server.url(&format!("{API}/streams/rec")),
        &[("Authorization", &new_admin)],
    );
    assert_eq!(r.status, 204);
    assert!(
        server
            .log_text()
            .contains("changed settings apply after a restart settings=rtmp"),
        "{}",
        server.log_text()
    );
    // The deleted stream's archive is still served: status, playlist and its segments.
    assert_eq!(get(&server.url("/rec/mono.m3u8")).status, 404);
    let status = get(&server.url("/rec/recording_status.json"));
    assert_eq!(status.status, 200, "{}", status.text());
    let from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 120;
    let archive = get(&server.url(&format!("/rec/archive-{from}-120.m3u8")));
    assert_eq!(archive.status, 200, "{}", archive.text());
    let playlist = Playlist::parse(&archive.text());
    assert!(!playlist.segments.is_empty());
    let segment = get(&server.url(&format!("/rec/{}", playlist.segments[0].1)));
    assert_eq!(segment.status, 200);
    assert_eq!(segment.body[0], 0x47);
}
