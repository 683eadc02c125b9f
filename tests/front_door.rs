//! The front door under abuse and over TLS: slow and silent connections closed at the
//! header timeout while a normal client is served, keep-alive idle time, `max_connections`,
//! oversized heads (431), `X-Forwarded-For` only from trusted proxies, HTTPS with HTTP/2 and
//! a certificate reloaded on `SIGHUP`, and archive export limits.

mod common;

use common::backend::Backend;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const DEMO: &str = "inputs = [{ url = \"fake://fake\" }]\nsegment_duration = 1000\n";

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

#[test]
fn slow_and_silent_connections_are_closed_while_others_are_served() {
    let server = Server::start_configured(
        &[("demo", DEMO)],
        "header_read_timeout = 2\nkeepalive_timeout = 5\nmax_connections = 2000\n",
        "",
    );
    server.wait_segments("demo", 1, Duration::from_secs(30));
    let a = addr(&server);
    // A normal client polls the playlist all along.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let poller = {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        let url = server.url("/demo/mono.m3u8");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if get(&url).status == 200 {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // 500 slow-loris connections (one header line, then nothing) and 100 silent ones.
    let mut slow: Vec<TcpStream> = (0..600)
        .map(|i| {
            let mut s = TcpStream::connect(&a).unwrap();
            if i < 500 {
                write!(s, "GET /demo/mono.m3u8 HTTP/1.1\r\nHost: {a}\r\n").unwrap();
            }
            s
        })
        .collect();
    let opened = Instant::now();
    let mut last = TcpStream::connect(&a).unwrap();
    write!(last, "GET /demo/mono.m3u8 HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !closed_within(&mut last, Duration::from_millis(10)),
        "still open before the 2 s timeout"
    );
    slow.push(last);
    let mut all_closed = true;
    for s in &mut slow {
        let left = Duration::from_secs(5).saturating_sub(opened.elapsed());
        all_closed &= closed_within(s, left.max(Duration::from_millis(10)));
    }
    assert!(all_closed, "every slow connection closed by 5 s");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "the normal client was never refused"
    );
    assert!(
        served.load(Ordering::Relaxed) >= 20,
        "and was served all along"
    );
    let metrics = server.scrape_after(std::time::SystemTime::now());
    let timed_out = metric(
        &metrics,
        "flussonic_http_connections_refused_total",
        "reason=\"header_timeout\"",
    )
    .unwrap_or(0.0)
        + metric(
            &metrics,
            "flussonic_http_connections_refused_total",
            "reason=\"idle_timeout\"",
        )
        .unwrap_or(0.0);
    assert!(timed_out >= 600.0, "{metrics}");

    // Between requests a keep-alive connection may idle longer than the header timeout...
    let mut s = TcpStream::connect(&a).unwrap();
    let req = format!("GET /demo/mono.m3u8 HTTP/1.1\r\nHost: {a}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(s.read(&mut buf).unwrap() > 0);
    std::thread::sleep(Duration::from_secs(3));
    s.write_all(req.as_bytes()).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "served after 3 s idle"
    );
    // ... but not longer than the keep-alive timeout.
    let idle = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(8)));
    assert!(
        idle.elapsed() >= Duration::from_millis(4500),
        "closed after {:?}",
        idle.elapsed()
    );

    // Heads over 16 KiB: 431; a normal large one is fine.
    let raw = |header_len: usize| {
        let mut s = TcpStream::connect(&a).unwrap();
        let big = "x".repeat(header_len);
        write!(
            s,
            "GET /demo/mono.m3u8 HTTP/1.1\r\nHost: {a}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        raw(32 * 1024).starts_with("HTTP/1.1 431"),
        "{}",
        raw(32 * 1024)
    );
    assert!(raw(8 * 1024).starts_with("HTTP/1.1 200"));
}

#[test]
fn max_connections_closes_the_extra_ones() {
    let server = Server::start_configured(&[("demo", DEMO)], "max_connections = 20\n", "");
    let a = addr(&server);
    let held: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(&a).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)),
        "the 21st is closed at once"
    );
    drop(held);
    // Once the server has seen them go, there is room again.
    wait_until(Duration::from_secs(5), "a place again", || {
        let Ok(mut s) = TcpStream::connect(&a) else {
            return false;
        };
        let _ = write!(
            s,
            "GET /flussonic/api/v3/monitoring/liveness HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"
        );
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out.starts_with(b"HTTP/1.1 ")
    });
    let metrics = server.scrape_after(std::time::SystemTime::now());
    assert!(
        metric(
            &metrics,
            "flussonic_http_connections_refused_total",
            "reason=\"max_connections\""
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let backend = Backend::start(30);
    let stream = format!("{DEMO}on_play = \"{}\"\n", backend.url);
    for (trusted, expected) in [
        ("trusted_proxies = [\"127.0.0.0/8\"]\n", "203.0.113.7"),
        ("", "127.0.0.1"),
    ] {
        let server = Server::start_configured(&[("tv", &stream)], trusted, "");
        let token = format!("good-{}", expected.replace('.', "-"));
        wait_until(Duration::from_secs(30), "playlist", || {
            request(
                "GET",
                &server.url(&format!("/tv/index.m3u8?token={token}")),
                &[("X-Forwarded-For", "198.51.100.1, 203.0.113.7")],
            )
            .status
                == 200
        });
        let calls = backend.play_calls(&token);
        assert_eq!(calls[0].param("ip"), Some(expected), "{trusted}");
    }
}

#[test]
fn https_with_http2_and_a_certificate_reloaded_on_sighup() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = self_signed(certs.path(), "site", "first.example");
    let server = Server::start_configured(
        &[("demo", DEMO)],
        &format!(
            "https = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            crt.display(),
            key.display()
        ),
        "",
    );
    server.wait_segments("demo", 1, Duration::from_secs(30));
    let https = server.https_base();
    let (rc, body, err) = curl(&["-vk", "--http2", &format!("{https}/demo/mono.m3u8")]);
    assert_eq!(rc, 0, "{err}");
    assert!(body.starts_with("#EXTM3U"), "{body}");
    assert!(
        err.contains("ALPN: server accepted h2") || err.contains("using HTTP/2"),
        "{err}"
    );
    assert!(err.contains("CN=first.example"), "{err}");
    // DASH writes its clock URL with the scheme the viewer used.
    wait_until(Duration::from_secs(20), "DASH over HTTPS", || {
        let (_, mpd, _) = curl(&["-k", &format!("{https}/demo/index.mpd")]);
        mpd.contains(&format!("value=\"{https}/time\""))
    });
    let (_, mpd, _) = curl(&[&server.url("/demo/index.mpd")]);
    assert!(
        mpd.contains(&format!("value=\"{}/time\"", server.base)),
        "{mpd}"
    );
    // Plain HTTP stays.
    assert_eq!(get(&server.url("/demo/mono.m3u8")).status, 200);
    // A renewed certificate under the same file names takes effect on SIGHUP.
    self_signed(certs.path(), "site", "second.example");
    let since = std::time::SystemTime::now();
    control::sighup(&server);
    wait_until(Duration::from_secs(10), "the certificate reload", || {
        server.log_text().contains("TLS certificate reloaded")
    });
    let _ = since;
    let (rc, _, err) = curl(&["-vk", &format!("{https}/demo/mono.m3u8")]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("CN=second.example"), "{err}");
    // A broken file on reload keeps the certificate in use.
    std::fs::write(&crt, "not a certificate").unwrap();
    control::sighup(&server);
    wait_until(Duration::from_secs(10), "the refused reload", || {
        server.log_text().contains("TLS certificate not reloaded")
    });
    let (rc, _, err) = curl(&["-vk", &format!("{https}/demo/mono.m3u8")]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("CN=second.example"), "{err}");
}

/// `YYYY/MM/DD/HH/MM/SS` (UTC) of UNIX second `t`.
fn utc_path(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}/{m:02}/{d:02}/{:02}/{:02}/{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn exports_are_limited_bounded_and_kept_for_range_requests() {
    let server = Server::start(&[("demo", DEMO)]);
    // One hour of archive (1800 two-second segments), made at once by ffmpeg's segmenter.
    let dir = server.dir.path().join("dvr/arch");
    let parts = server.dir.path().join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    let out = run_with_timeout(
        120,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x90:rate=10",
            "-t",
            "3600",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "20",
            "-keyint_min",
            "20",
            "-sc_threshold",
            "0",
            "-f",
            "segment",
            "-segment_time",
            "2",
            "-segment_format",
            "mpegts",
            "-reset_timestamps",
            "0",
            &parts.join("seg%05d.ts").to_string_lossy(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let from = (now - 2 * 3600) / 2 * 2;
    for i in 0..1800 {
        let path = dir.join(format!("{}-02000.ts", utc_path(from + 2 * i)));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::rename(parts.join(format!("seg{i:05}.ts")), &path).unwrap();
    }
    // The stream is added now: its archive is read from disk.
    control::put_ok(
        &server,
        "arch",
        &serde_json::json!({ "inputs": [{ "url": "publish://" }], "dvr": { "expiration": "30d" } }),
    );
    let url = server.url(&format!("/arch/archive-{from}-3600.mp4"));
    wait_until(Duration::from_secs(20), "the archive", || {
        get(&server.url("/arch/recording_status.json"))
            .text()
            .contains("\"from\"")
    });
    // Two exports run; a third at the same time waits (503, Retry-After).
    let running: Vec<_> = (0..2)
        .map(|i| {
            let url = server.url(&format!("/arch/archive-{}-3600.mp4", from + 2 + i));
            std::thread::spawn(move || {
                let started = Instant::now();
                let r = get(&url);
                (r.status, r.body.len(), started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let third = get(&url);
    let results: Vec<_> = running.into_iter().map(|t| t.join().unwrap()).collect();
    for (status, len, took) in &results {
        assert_eq!(*status, 200);
        assert!(*len > 1_000_000, "an hour of video: {len} bytes");
        assert!(
            *took > Duration::from_millis(400),
            "the remux outlasted the third request: {took:?}"
        );
    }
    assert_eq!(third.status, 503, "{}", third.text());
    assert_eq!(third.header("retry-after"), "10");
    // Once a place is free the export runs; a player's Range requests then reuse it.
    let whole = get(&url);
    assert_eq!(whole.status, 200);
    for (range, start) in [("bytes=0-99", 0usize), ("bytes=1000-1999", 1000)] {
        let part = request("GET", &url, &[("Range", range)]);
        assert_eq!(part.status, 206);
        assert_eq!(part.body, whole.body[start..start + part.body.len()]);
    }
    let metrics = server.scrape_after(std::time::SystemTime::now());
    assert_eq!(
        metric(&metrics, "flussonic_dvr_exports_total", "source=\"remux\""),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "flussonic_dvr_exports_total", "source=\"kept\""),
        Some(2.0)
    );
    assert_eq!(
        metric(&metrics, "flussonic_dvr_exports_running", ""),
        Some(0.0)
    );
    // Longer than max_export_duration (6 h by default): 400.
    let long = get(&server.url(&format!("/arch/archive-{from}-25200.mp4")));
    assert_eq!(long.status, 400, "{}", long.text());
    // Other streams were served throughout.
    assert_eq!(get(&server.url("/demo/mono.m3u8")).status, 200);
}
