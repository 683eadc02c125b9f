//! A real browser: Debian's headless Chromium with hls.js and dash.js plays the live demo
//! stream, a transcoded ladder (switching renditions on command) and a pass-through UDP
//! stream in all three packagings. Needs `chromium` and `tests/browser/node_modules` (both
//! installed by `make test`).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn chromium_with_hls_js_plays_the_demo_stream() {
    let server = Server::start(&[(
        "demo",
        "title = \"demo\"\ninputs = [{ url = \"fake://fake\" }]\n",
    )]);
    server.wait_segments("demo", 2, Duration::from_secs(30));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
    let shot = server.dir.path().join("browser.png");
    let out = Command::new("timeout")
        .args([
            "-k",
            "5",
            "120",
            "node",
            script,
            &server.base,
            "/demo/index.m3u8",
            "5",
            "60",
        ])
        .arg(&shot)
        .output()
        .expect("node (installed by make test-deps)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PLAYED"),
        "hls.js in Chromium did not play:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.exists(), "screenshot taken");
}

/// Runs `play.mjs` on `path` with `player` (`hls`/`dash`), optionally forcing a rendition
/// switch; returns the JSON status line after asserting that it played.
fn play(server: &Server, path: &str, player: &str, switch: bool) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
    let mut args = vec![
        "-k".to_owned(),
        "5".into(),
        "150".into(),
        "node".into(),
        script.into(),
        server.base.clone(),
        path.into(),
        "5".into(),
        "90".into(),
        String::new(),
        format!("--player={player}"),
    ];
    if switch {
        args.push("--switch".into());
    }
    let out = Command::new("timeout")
        .args(&args)
        .output()
        .expect("node (installed by make test-deps)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("PLAYED") && !stdout.contains("DID NOT PLAY"),
        "{player} did not play {path} (switch {switch}):\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server
            .log_text()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    stdout
}

#[test]
fn players_switch_renditions_of_a_transcoded_ladder() {
    let server = Server::start(&[(
        "ladder",
        "inputs = [{ url = \"fake://fake\" }]\n[transcoder]\nhw = \"cpu\"\npreset = \"ultrafast\"\n\
         [[transcoder.video]]\nbitrate = \"800k\"\nsize = \"640x360\"\n\
         [[transcoder.video]]\nbitrate = \"300k\"\nsize = \"320x180\"\n",
    )]);
    server.wait_segments("ladder", 3, Duration::from_secs(60));
    wait_until(Duration::from_secs(30), "DASH manifest", || {
        get(&server.url("/ladder/index.mpd")).status == 200
    });
    for (path, player) in [
        ("/ladder/index.m3u8", "hls"),
        ("/ladder/index.fmp4.m3u8", "hls"),
        ("/ladder/index.mpd", "dash"),
    ] {
        let status = play(&server, path, player, true);
        // The picture really changed size with the switch.
        assert!(
            status.contains("\"sizeMatchesTarget\":true"),
            "{player} {path}: {status}"
        );
    }
}

#[test]
fn a_udp_pass_through_stream_plays_as_ts_fmp4_and_dash() {
    let port = free_port(true);
    let server = Server::start(&[(
        "udp",
        &format!("inputs = [{{ url = \"udp://127.0.0.1:{port}\" }}]\n"),
    )]);
    let _feeder = udp_feeder(port, "");
    server.wait_segments("udp", 3, Duration::from_secs(40));
    wait_until(Duration::from_secs(30), "DASH manifest", || {
        get(&server.url("/udp/index.mpd")).status == 200
    });
    for path in ["/udp/index.m3u8", "/udp/index.fmp4.m3u8", "/udp/index.mpd"] {
        let out = ffmpeg_decode(&server.url(path), 4, 60);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "ffmpeg {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    play(&server, "/udp/index.m3u8", "hls", false);
    play(&server, "/udp/index.fmp4.m3u8", "hls", false);
    play(&server, "/udp/index.mpd", "dash", false);
}
