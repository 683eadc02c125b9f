//! Every input an operator has, with real peers: SRT pushed by ffmpeg and pulled from an ffmpeg
//! listener, RTMP pulled from nginx-rtmp, RTSP from gst-rtsp-server, HLS and HTTP MPEG-TS
//! pulled from another Headwater (origin → edge), one program of a multi-program TS, failover
//! to a backup and back, and garbage on an input that must not hurt anything else.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn decodes(server: &Server, stream: &str) {
    let url = server.url(&format!("/{stream}/index.m3u8"));
    let out = ffmpeg_decode(&url, 4, 60);
    assert!(
        out.status.success(),
        "{stream}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn master(server: &Server, stream: &str) -> String {
    get(&server.url(&format!("/{stream}/index.m3u8"))).text()
}

#[test]
fn srt_push_and_pull() {
    let push_port = free_port(true);
    let pull_port = free_port(true);
    let server = Server::start(&[
        (
            "pushed",
            &format!(
                "inputs = [{{ url = \"srt://:{push_port}?mode=listener&passphrase=pushsecret99\", source_timeout = 3 }}]\n"
            ),
        ),
        (
            "pulled",
            &format!(
                "inputs = [{{ url = \"srt://127.0.0.1:{pull_port}?mode=caller&passphrase=0123456789abc\", source_timeout = 3 }}]\n"
            ),
        ),
    ]);
    // An encoder pushes to our listener; another waits for us to call it.
    let push = ffmpeg_sender(
        "mpegts",
        &format!("srt://127.0.0.1:{push_port}?mode=caller&pkt_size=1316&passphrase=pushsecret99"),
    );
    let _pull = ffmpeg_sender(
        "mpegts",
        &format!(
            "srt://127.0.0.1:{pull_port}?mode=listener&pkt_size=1316&passphrase=0123456789abc"
        ),
    );
    server.wait_segments("pushed", 2, Duration::from_secs(40));
    server.wait_segments("pulled", 2, Duration::from_secs(40));
    decodes(&server, "pushed");
    decodes(&server, "pulled");
    assert!(master(&server, "pushed").contains("RESOLUTION=320x240"));
    let log = server.log_text();
    assert!(
        !log.contains("0123456789abc") && !log.contains("pushsecret99"),
        "SRT passphrases are never logged"
    );
    // Garbage datagrams at the SRT listener: ignored; the stream and its publisher carry on.
    let before = Playlist::parse(&get(&server.url("/pushed/mono.m3u8")).text());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2000u32 {
        let junk: Vec<u8> = (0..1316u32)
            .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(2_654_435_761)) as u8)
            .collect();
        let _ = sock.send_to(&junk, ("127.0.0.1", push_port));
    }
    let newest = |p: &Playlist| p.media_sequence + p.segments.len() as u64;
    wait_until(
        Duration::from_secs(12),
        "new segments after SRT garbage",
        || {
            newest(&Playlist::parse(
                &get(&server.url("/pushed/mono.m3u8")).text(),
            )) >= newest(&before) + 2
        },
    );
    // The publisher vanishes (SIGKILL: no SRT shutdown) and, like a real encoder, keeps trying
    // to reconnect: within source_timeout the listener is fresh and takes it again.
    drop(push);
    let gap = Playlist::parse(&get(&server.url("/pushed/mono.m3u8")).text());
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut back = false;
    while !back && Instant::now() < deadline {
        let _encoder = ffmpeg_sender(
            "mpegts",
            &format!(
                "srt://127.0.0.1:{push_port}?mode=caller&pkt_size=1316&passphrase=pushsecret99"
            ),
        );
        let attempt = Instant::now() + Duration::from_secs(6);
        while !back && Instant::now() < attempt {
            std::thread::sleep(Duration::from_millis(500));
            back = newest(&Playlist::parse(
                &get(&server.url("/pushed/mono.m3u8")).text(),
            )) >= newest(&gap) + 2;
        }
    }
    assert!(back, "the SRT publisher got back in");
}

#[test]
fn rtmp_pull_from_nginx_rtmp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nginx-rtmp.conf"
    ))
    .unwrap()
    .replace("RTMP_PORT", &port.to_string())
    .replace("PREFIX", dir.path().to_str().unwrap());
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let _nginx = spawn(
        "nginx",
        &[
            "-p",
            dir.path().to_str().unwrap(),
            "-c",
            dir.path().join("nginx.conf").to_str().unwrap(),
        ],
    );
    wait_until(Duration::from_secs(10), "nginx-rtmp listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let _publisher = ffmpeg_sender("flv", &format!("rtmp://127.0.0.1:{port}/live/test"));
    let server = Server::start(&[(
        "rtmp",
        &format!(
            "inputs = [{{ url = \"rtmp://127.0.0.1:{port}/live/test\", source_timeout = 5 }}]\n"
        ),
    )]);
    server.wait_segments("rtmp", 2, Duration::from_secs(60));
    decodes(&server, "rtmp");
}

#[test]
fn rtsp_pull_from_a_camera_with_credentials_masked() {
    let port = free_port(false);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rtsp_server.py");
    let _camera = spawn("/usr/bin/python3", &[script, &port.to_string()]);
    wait_until(Duration::from_secs(15), "RTSP server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let server = Server::start(&[
        (
            "cam",
            &format!(
                "inputs = [{{ url = \"rtsp://admin:S3cretPw@127.0.0.1:{port}/cam\", source_timeout = 5 }}]\n"
            ),
        ),
        (
            "camudp",
            &format!(
                "inputs = [{{ url = \"rtsp://127.0.0.1:{port}/cam?transport=udp\", source_timeout = 5 }}]\n"
            ),
        ),
    ]);
    server.wait_segments("cam", 2, Duration::from_secs(60));
    server.wait_segments("camudp", 2, Duration::from_secs(60));
    decodes(&server, "cam");
    // Audio may be announced a little after video (its RTP stream starts on its own).
    wait_until(
        Duration::from_secs(20),
        "audio came through RTP too",
        || master(&server, "cam").contains("mp4a.40.2"),
    );
    let log = server.log_text();
    assert!(
        log.contains("rtsp://admin:***@127.0.0.1"),
        "the input is named in the log"
    );
    assert!(!log.contains("S3cretPw"), "the password never is");
}

#[test]
fn edge_pulls_hls_and_http_mpegts_from_an_origin() {
    let origin = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    origin.wait_segments("demo", 3, Duration::from_secs(30));
    let host = origin.base.trim_start_matches("http://").to_owned();
    let edge = Server::start(&[
        (
            "viahls",
            &format!(
                "inputs = [{{ url = \"hls://{host}/demo/index.m3u8\", source_timeout = 15 }}]\n"
            ),
        ),
        (
            "viats",
            &format!(
                "inputs = [{{ url = \"tshttp://{host}/demo/mpegts\", source_timeout = 5 }}]\n"
            ),
        ),
    ]);
    edge.wait_segments("viahls", 2, Duration::from_secs(60));
    edge.wait_segments("viats", 2, Duration::from_secs(60));
    decodes(&edge, "viahls");
    decodes(&edge, "viats");
    for stream in ["viahls", "viats"] {
        assert!(
            master(&edge, stream).contains("RESOLUTION=640x360"),
            "{stream}"
        );
    }
}

#[test]
fn one_program_of_a_multi_program_ts() {
    let port = free_port(true);
    let _mux = two_program_sender(port);
    let server = Server::start(&[(
        "two",
        &format!("inputs = [{{ url = \"udp://127.0.0.1:{port}?program=2\" }}]\n"),
    )]);
    server.wait_segments("two", 2, Duration::from_secs(40));
    let m = master(&server, "two");
    assert!(m.contains("RESOLUTION=160x120"), "program 2 only: {m}");
    decodes(&server, "two");
}

#[test]
fn failover_to_the_backup_and_back_while_hls_js_plays() {
    let port = free_port(true);
    let mut feeder = Some(udp_feeder(port, ""));
    let server = Server::start(&[(
        "tv",
        &format!(
            "inputs = [{{ url = \"udp://127.0.0.1:{port}\", priority = 1, source_timeout = 2 }},\n\
                       {{ url = \"fake://fake\", priority = 2 }}]\n"
        ),
    )]);
    server.wait_segments("tv", 2, Duration::from_secs(30));
    assert!(
        master(&server, "tv").contains("RESOLUTION=320x240"),
        "starts on the primary"
    );
    // A real player watches through both switches.
    let base = server.base.clone();
    let player = std::thread::spawn(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
        Command::new("timeout")
            .args([
                "-k",
                "5",
                "90",
                "node",
                script,
                &base,
                "/tv/index.m3u8",
                "24",
                "80",
            ])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_secs(4));
    drop(feeder.take());
    let killed = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "the backup feeds the stream",
        || master(&server, "tv").contains("RESOLUTION=640x360"),
    );
    // source_timeout (2 s) + start of the backup + one segment.
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 1 + 5),
        "switched after {:?}",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    feeder = Some(udp_feeder(port, ""));
    wait_until(Duration::from_secs(30), "back on the primary", || {
        master(&server, "tv").contains("RESOLUTION=320x240")
    });
    let p = Playlist::parse(&get(&server.url("/tv/mono.m3u8")).text());
    assert!(
        p.segments.iter().any(|s| s.2) || p.discontinuity_sequence > 0,
        "switches are discontinuities"
    );
    assert!(
        server
            .log_text()
            .contains("returning to the higher-priority input")
    );
    let out = player.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PLAYED"),
        "hls.js stopped during failover:\n{stdout}"
    );
    drop(feeder);
}

#[test]
fn garbage_and_corrupt_input_hurt_nothing_else() {
    let port = free_port(true);
    let dir = tempfile::tempdir().unwrap();
    // A real TS file with bytes flipped all over it.
    let clip = dir.path().join("corrupt.ts");
    let out = run_with_timeout(
        60,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "mpegts",
            clip.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let mut bytes = std::fs::read(&clip).unwrap();
    for i in (5000..bytes.len()).step_by(4099) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&clip, &bytes).unwrap();
    let server = Server::start(&[
        ("demo", "inputs = [{ url = \"fake://fake\" }]\n"),
        (
            "junk",
            &format!("inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 2 }}]\n"),
        ),
        (
            "corrupt",
            &format!("inputs = [{{ url = \"file://{}\" }}]\n", clip.display()),
        ),
    ]);
    server.wait_segments("demo", 1, Duration::from_secs(30));
    // Random datagrams for 6 s.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let end = Instant::now() + Duration::from_secs(6);
    let mut datagram = [0u8; 1316];
    while Instant::now() < end {
        for b in datagram.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        sock.send_to(&datagram, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    // The other streams play on, the corrupt file is still served as far as it decodes, and
    // the junk stream simply has nothing (503), with the reason in the log.
    decodes(&server, "demo");
    let corrupt = server.wait_segments("corrupt", 2, Duration::from_secs(30));
    assert!(!corrupt.segments.is_empty());
    assert_eq!(get(&server.url("/junk/index.m3u8")).status, 503);
    let log = server.log_text();
    assert!(
        log.contains("input failed") && log.contains("udp://127.0.0.1"),
        "junk input failures are logged"
    );
    assert!(!log.contains("panicked"));
}

#[test]
fn rtmp_publish_with_keys_and_refusals() {
    let server = Server::start(&[
        ("open", "inputs = [{ url = \"publish://\" }]\n"),
        (
            "keyed",
            "inputs = [{ url = \"publish://\" }]\npublish_key = \"letmein42\"\n",
        ),
        ("demo", "inputs = [{ url = \"fake://fake\" }]\n"),
    ]);
    let rtmp = server.rtmp_addr();
    // A publish stream without a publisher is waiting, not failing.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(&server.url("/open/index.m3u8")).status, 503);
    let _obs = ffmpeg_sender("flv", &format!("rtmp://{rtmp}/live/open"));
    let _keyed = ffmpeg_sender("flv", &format!("rtmp://{rtmp}/live/keyed?key=letmein42"));
    server.wait_segments("open", 2, Duration::from_secs(40));
    server.wait_segments("keyed", 2, Duration::from_secs(40));
    decodes(&server, "open");
    decodes(&server, "keyed");
    // Refused: a wrong key, an unknown name, a second publisher to a live name.
    for (url, reason) in [
        (format!("rtmp://{rtmp}/live/keyed?key=guess"), "bad_key"),
        (format!("rtmp://{rtmp}/live/nosuch"), "unknown_stream"),
        (format!("rtmp://{rtmp}/live/open"), "busy"),
    ] {
        let out = run_with_timeout(
            20,
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=25",
                "-t",
                "3",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-f",
                "flv",
                &url,
            ],
        );
        assert!(
            !out.status.success(),
            "{reason}: the publisher must be refused"
        );
        let text = server.scrape_after(std::time::SystemTime::now());
        assert!(
            metric(
                &text,
                "flussonic_publish_refused_total",
                &format!("reason=\"{reason}\"")
            )
            .unwrap_or(0.0)
                >= 1.0,
            "{reason} counted"
        );
    }
    assert!(
        !server.log_text().contains("letmein42"),
        "publish keys are never logged"
    );
    // The legitimate publishers were not disturbed.
    decodes(&server, "open");
    decodes(&server, "demo");
}

#[test]
fn http_mpegts_publish_with_key_or_admin_credentials() {
    let server = Server::start(&[
        (
            "pushts",
            "inputs = [{ url = \"publish://\" }]\npublish_key = \"tskey77\"\n",
        ),
        (
            "admin",
            "inputs = [{ url = \"publish://\" }]\npublish_key = \"other\"\n",
        ),
    ]);
    let _keyed = ffmpeg_sender_with(
        &["-method", "POST"],
        "mpegts",
        &server.url("/pushts/mpegts?key=tskey77"),
    );
    let admin_url = server
        .url("/admin/mpegts")
        .replace("http://", "http://admin:pw@");
    let _admin = ffmpeg_sender_with(&["-method", "PUT"], "mpegts", &admin_url);
    server.wait_segments("pushts", 2, Duration::from_secs(40));
    server.wait_segments("admin", 2, Duration::from_secs(40));
    decodes(&server, "pushts");
    decodes(&server, "admin");
    // Wrong key: 401; unknown stream: 404; a second publisher: 409.
    let status = |path: &str| {
        let out = run_with_timeout(
            10,
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "--data-binary",
                "x",
                &server.url(path),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status("/pushts/mpegts?key=nope"), "401");
    assert_eq!(status("/nosuch/mpegts"), "404");
    assert_eq!(status("/pushts/mpegts?key=tskey77"), "409");
    assert_eq!(status("/pushts/index.m3u8"), "405");
    assert!(!server.log_text().contains("tskey77"));
}

#[test]
fn one_dvb_multiplex_shared_by_two_program_streams() {
    // The card's multiplex arrives over UDP here (no DVB hardware on this machine); the tuner,
    // the fan-out to both streams and each stream's program selection are the real code.
    let port = free_port(true);
    let _mux = two_program_sender(port);
    let server = Server::start_with_config(
        &[
            ("first", "inputs = [{ url = \"dvb://sat?program=1\" }]\n"),
            ("second", "inputs = [{ url = \"dvb://sat?program=2\" }]\n"),
            (
                "terrestrial",
                "inputs = [{ url = \"dvb://card0?program=1\" }]\n",
            ),
            ("demo", "inputs = [{ url = \"fake://fake\" }]\n"),
        ],
        &format!(
            "[dvb.sat]\nhw = \"udp\"\ndevice = \"127.0.0.1:{port}\"\n[dvb.card0]\nhw = \"dvb\"\nadapter = 0\nsystem = \"dvbt\"\nfrequency = 474000000\nbandwidth = 8000000\n"
        ),
    );
    server.wait_segments("first", 2, Duration::from_secs(40));
    server.wait_segments("second", 2, Duration::from_secs(40));
    assert!(master(&server, "first").contains("RESOLUTION=320x240"));
    assert!(master(&server, "second").contains("RESOLUTION=160x120"));
    decodes(&server, "second");
    // One tuner feeds both programs of `sat`; `card0` has no hardware here: its failure is
    // logged once (not per retry), its stream waits, and everything else plays.
    std::thread::sleep(Duration::from_secs(4));
    let log = server.log_text();
    assert_eq!(
        log.matches("DVB tuner running").count(),
        1,
        "one tuner feeds both streams:\n{log}"
    );
    assert_eq!(
        log.matches("DVB tuner failed; retrying").count(),
        1,
        "{log}"
    );
    assert!(log.contains("adapter0"), "the missing device is named");
    assert_eq!(get(&server.url("/terrestrial/index.m3u8")).status, 503);
    // No card reported signal stats (no hardware): the DVB JSON lists none.
    let cards = request(
        "GET",
        &server.url("/flussonic/api/v3/dvb_cards"),
        &[("Authorization", &format!("Basic {}", b64("viewer:pw")))],
    );
    assert_eq!(cards.status, 200);
    assert_eq!(cards.text(), "{\"dvb_cards\":[]}");
    decodes(&server, "demo");
}

/// A TCP server on a free port answering every connection with `respond` (in a thread).
fn tcp_server(respond: fn(std::net::TcpStream)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || respond(conn));
        }
    });
    port
}

#[test]
fn misbehaving_network_sources_hurt_nothing_else() {
    use std::io::{Read, Write};
    fn answer(mut c: std::net::TcpStream, status: &str) {
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        let _ = write!(
            c,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let not_found = tcp_server(|c| answer(c, "404 Not Found"));
    let broken = tcp_server(|c| answer(c, "500 Internal Server Error"));
    // An "RTSP camera" that accepts and then says nothing at all.
    let stalled = tcp_server(|c| {
        std::thread::sleep(Duration::from_secs(60));
        drop(c);
    });
    let server = Server::start(&[
        ("demo", "inputs = [{ url = \"fake://fake\" }]\n"),
        ("pub", "inputs = [{ url = \"publish://\" }]\n"),
        (
            "h404",
            &format!(
                "inputs = [{{ url = \"hls://127.0.0.1:{not_found}/live/index.m3u8\", source_timeout = 3 }}]\n"
            ),
        ),
        (
            "h500",
            &format!(
                "inputs = [{{ url = \"http://127.0.0.1:{broken}/live/index.m3u8\", source_timeout = 3 }}]\n"
            ),
        ),
        (
            "cam",
            &format!(
                "inputs = [{{ url = \"rtsp://user:Sekrit99@127.0.0.1:{stalled}/cam\", source_timeout = 3 }}]\n"
            ),
        ),
    ]);
    let rtmp = server.rtmp_addr();
    // Garbage into the RTMP port: a broken handshake, then a flood of random bytes.
    for _ in 0..3 {
        if let Ok(mut c) = std::net::TcpStream::connect(&rtmp) {
            let junk: Vec<u8> = (0..20_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let _ = c.write_all(&junk);
            let mut buf = [0u8; 64];
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
    std::thread::sleep(Duration::from_secs(10));
    let log = server.log_text();
    for (stream, url) in [
        (
            "h404",
            format!("http://127.0.0.1:{not_found}/live/index.m3u8"),
        ),
        ("h500", format!("http://127.0.0.1:{broken}/live/index.m3u8")),
        ("cam", format!("rtsp://user:***@127.0.0.1:{stalled}/cam")),
    ] {
        assert_eq!(
            get(&server.url(&format!("/{stream}/index.m3u8"))).status,
            503,
            "{stream}"
        );
        let warnings = log
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains("input failed") && l.contains(&url))
            .count();
        assert_eq!(
            warnings, 1,
            "{stream}: logged once per state change, with the URL:\n{log}"
        );
    }
    assert!(!log.contains("Sekrit99"), "credentials masked");
    assert!(
        log.contains("RTMP connection closed"),
        "the broken RTMP handshakes were dropped"
    );
    let text = server.scrape_after(std::time::SystemTime::now());
    for stream in ["h404", "h500", "cam"] {
        let retries = metric(
            &text,
            "flussonic_stream_retry_count",
            &format!("name=\"{stream}\""),
        )
        .unwrap();
        assert!(retries >= 1.0, "{stream}: failures counted");
    }
    // A valid RTMP handshake, then a chunk announcing a 16 MB message and garbage: the
    // connection is dropped when it goes quiet; nothing else notices.
    if let Ok(mut c) = std::net::TcpStream::connect(&rtmp) {
        let mut c1 = vec![3u8];
        c1.extend((0..1536u32).map(|i| (i * 7) as u8));
        c.write_all(&c1).unwrap();
        let mut s = vec![0u8; 3073];
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if c.read_exact(&mut s).is_ok() {
            c.write_all(&s[1..1537]).unwrap();
            let mut chunk = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0];
            chunk.extend((0..60_000u32).map(|i| (i * 13) as u8));
            let _ = c.write_all(&chunk);
        }
        let mut buf = [0u8; 64];
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    }
    // Everything else works: the demo plays and a real publisher still gets in.
    decodes(&server, "demo");
    let _obs = ffmpeg_sender("flv", &format!("rtmp://{rtmp}/live/pub"));
    server.wait_segments("pub", 2, Duration::from_secs(40));
    assert!(!server.log_text().contains("panicked"));
}

/// ffmpeg sending a two-program MPEG-TS over UDP: program 1 is 320x240, program 2 160x120.
fn two_program_sender(port: u16) -> Proc {
    spawn(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-map",
            "0:v",
            "-map",
            "1:v",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-program",
            "title=one:program_num=1:st=0",
            "-program",
            "title=two:program_num=2:st=1",
            "-f",
            "mpegts",
            &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        ],
    )
}
