//! The command line: `check-config` on good and broken configurations, `file://` inputs that
//! loop, and graceful shutdown on SIGTERM with a client still attached.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn headwater(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(args)
        .env_remove("HEADWATER_VIEW_AUTH")
        .env_remove("HEADWATER_EDIT_AUTH")
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_shipped_configuration() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/headwater.toml");
    let out = headwater(&["--config", config, "check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration OK: 2 stream(s)"), "{stdout}");
    // The shipped ladder: where it would run on this host.
    // (cpu here and in CI; nvdec or nvenc on a host with an NVIDIA GPU)
    assert!(
        stdout.contains("stream ladder: transcoder hw = \"auto\" runs as ")
            && stdout.contains("on this host: 640x360@800k, 320x180@300k"),
        "{stdout}"
    );
}

#[test]
fn check_config_says_where_nvenc_runs_or_warns_that_it_cannot() {
    let nvenc = run_with_timeout(20, "gst-inspect-1.0", &["--exists", "nvh264enc"])
        .status
        .success();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("streams")).unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(&cfg, "[server]\nstreams = \"streams\"\n").unwrap();
    std::fs::write(
        dir.path().join("streams/gpu.toml"),
        "inputs = [{ url = \"fake://fake\" }]\n[transcoder]\nhw = \"nvenc\"\n\
         [[transcoder.video]]\nbitrate = \"1M\"\nsize = \"640x360\"\n",
    )
    .unwrap();
    let out = headwater(&["--config", cfg.to_str().unwrap(), "check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the file is valid");
    if nvenc {
        eprintln!("nvh264enc present: checking that check-config places the ladder on NVENC");
        assert!(
            stdout.contains("stream gpu: transcoder hw = \"nvenc\" runs as nvenc")
                && stdout.contains("nvh264enc"),
            "{stdout}"
        );
    } else {
        eprintln!("no nvh264enc: checking the warning");
        assert!(
            stdout.contains("warning: stream gpu: transcoder cannot run on this host")
                && stdout.contains("refusing to fall back to the CPU"),
            "{stdout}"
        );
    }
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("streams")).unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(&cfg, "[server]\nstreams = \"streams\"\n").unwrap();
    let stream = dir.path().join("streams/bad.toml");
    let cases = [
        (
            "inputs = [{ url = \"fake://fake\" }]\nsegment_duration = 10\n",
            ":2:",
            "segment_duration",
        ),
        (
            "inputs = [{ url = \"ftp://x\" }]\n",
            ":1:",
            "unsupported scheme `ftp`",
        ),
        (
            "inputs = [{ url = \"fake://fake\" }]\ncolour = \"red\"\n",
            ":2:",
            "unknown field `colour`",
        ),
    ];
    for (text, line, words) in cases {
        std::fs::write(&stream, text).unwrap();
        let out = headwater(&["--config", cfg.to_str().unwrap(), "check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("bad.toml") && err.contains(line) && err.contains(words),
            "{err}"
        );
    }
    // A password from the environment is validated too, and never echoed.
    std::fs::write(&stream, "inputs = [{ url = \"fake://fake\" }]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["--config", cfg.to_str().unwrap(), "check-config"])
        .env("HEADWATER_EDIT_AUTH", "no-colon-secret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("HEADWATER_EDIT_AUTH") && !err.contains("no-colon-secret"),
        "{err}"
    );
    // A missing config file.
    let out = headwater(&["--config", "/nonexistent/h.toml", "check-config"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn file_input_loops_forever() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("clip.ts");
    // A 3 s clip: the stream must keep producing segments well past its end.
    let out = gst_run(
        60,
        &format!(
            "videotestsrc num-buffers=75 pattern=ball \
             ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
             ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! mpegtsmux name=m \
             ! filesink location={} \
             audiotestsrc num-buffers=140 ! audio/x-raw,rate=48000,channels=2 ! avenc_aac \
             ! aacparse ! m.",
            media.display()
        ),
    );
    assert!(
        out.status.success() && media.exists(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream = format!(
        "inputs = [{{ url = \"file://{}\" }}]\nsegment_duration = 1000\nsegment_count = 10\n",
        media.display()
    );
    let server = Server::start(&[("clip", &stream)]);
    let p = server.wait_segments("clip", 8, Duration::from_secs(40));
    assert!(
        p.segments.iter().any(|s| s.2),
        "each loop is marked as a discontinuity"
    );
    let total: f64 = p.segments.iter().map(|s| s.0).sum();
    assert!(total > 6.0, "more media than the clip holds: {total} s");
    let out = ffmpeg_decode(&server.url("/clip/index.m3u8"), 4, 40);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // File loops are not failures, nor broken sources.
    let log = server.log_text();
    assert!(!log.contains("input failed"), "{log}");
    assert!(!log.contains("PES cut short"), "{log}");
}

#[test]
fn sigterm_shuts_down_within_the_drain_period_with_a_client_attached() {
    let mut server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("demo", 1, Duration::from_secs(30));
    // An endless /mpegts client is attached while the server stops.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET /demo/mpegts HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut total = 0usize;
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    std::thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    let status = server
        .terminate(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let received = client.join().unwrap();
    assert!(
        received > 100_000,
        "the client got the stream before shutdown ({received} B)"
    );
    let log = server.log_text();
    assert!(log.contains("headwater stopped"), "{log}");
}
