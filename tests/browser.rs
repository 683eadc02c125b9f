//! A real browser: Debian's headless Chromium with hls.js and dash.js plays the live demo
//! stream, a transcoded ladder (switching renditions on command), a pass-through UDP
//! stream in all three packagings, and keeps playing when that source changes resolution.
//! Needs `chromium` and `tests/browser/node_modules` (both installed by `make test`).

mod common;

use common::*;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// One browser test at a time: each runs up to three Chromium players next to its server and
/// a real-time encoder, and two of them on a 2-core machine starve the encoders (whose late,
/// bursty output is then what the players get to see).
fn one_browser_test_at_a_time() -> MutexGuard<'static, ()> {
    static BROWSERS: Mutex<()> = Mutex::new(());
    BROWSERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn chromium_with_hls_js_plays_the_demo_stream() {
    let _alone = one_browser_test_at_a_time();
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
    play_args(server, path, player, 5, switch)
}

/// [`play`] for `seconds` of playout, without a switch.
fn play_for(server: &Server, path: &str, player: &str, seconds: u32) -> String {
    play_args(server, path, player, seconds, false)
}

fn play_args(server: &Server, path: &str, player: &str, seconds: u32, switch: bool) -> String {
    play_on(server, &server.base, path, player, seconds, switch)
}

/// [`play_args`] against `base` (the server's HTTP or HTTPS origin).
fn play_on(
    server: &Server,
    base: &str,
    path: &str,
    player: &str,
    seconds: u32,
    switch: bool,
) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
    let mut args = vec![
        "-k".to_owned(),
        "5".into(),
        "150".into(),
        "node".into(),
        script.into(),
        base.to_owned(),
        path.into(),
        seconds.to_string(),
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
    let _alone = one_browser_test_at_a_time();
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

/// A server with one UDP pass-through stream `name`, fed `size` pictures, once its DASH
/// manifest is served; returns the UDP port and the feeder too.
fn udp_stream(name: &str, size: (u32, u32)) -> (Server, u16, Proc) {
    let port = free_port(true);
    let server = Server::start(&[(
        name,
        &format!("inputs = [{{ url = \"udp://127.0.0.1:{port}\" }}]\n"),
    )]);
    let feeder = udp_feeder_sized(port, size, "");
    server.wait_segments(name, 3, Duration::from_secs(40));
    wait_until(Duration::from_secs(30), "DASH manifest", || {
        get(&server.url(&format!("/{name}/index.mpd"))).status == 200
    });
    (server, port, feeder)
}

#[test]
fn a_udp_pass_through_stream_plays_as_ts_fmp4_and_dash() {
    let _alone = one_browser_test_at_a_time();
    let (server, _port, _feeder) = udp_stream("udp", (320, 240));
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

/// A contribution encoder restarts with another picture size: HLS-fMP4 gets a new init
/// segment (`EXT-X-MAP`), DASH a new Period, and players already watching go on across it.
#[test]
fn players_keep_playing_when_the_source_changes_resolution() {
    let _alone = one_browser_test_at_a_time();
    let (server, port, before) = udp_stream("change", (320, 240));
    let init0 = get(&server.url("/change/tracks-v1/init.mp4")).body;
    // Players start on the 320x240 picture and must still be playing well after the change.
    let server_ref = &server;
    let statuses = std::thread::scope(|s| {
        let players: Vec<_> = [
            ("/change/index.m3u8", "hls"),
            ("/change/index.fmp4.m3u8", "hls"),
            ("/change/index.mpd", "dash"),
        ]
        .into_iter()
        .map(|(path, player)| s.spawn(move || (path, play_for(server_ref, path, player, 24))))
        .collect();
        std::thread::sleep(Duration::from_secs(8));
        drop(before);
        let _after = udp_feeder_sized(port, (480, 270), "");
        wait_until(Duration::from_secs(40), "a second DASH Period", || {
            get(&server.url("/change/index.mpd"))
                .text()
                .matches("<Period ")
                .count()
                == 2
        });
        let playlist = get(&server.url("/change/tracks-v1/index.fmp4.m3u8")).text();
        assert!(
            playlist.contains("#EXT-X-MAP:URI=\"init.mp4\"")
                && playlist.contains("#EXT-X-MAP:URI=\"init-1.mp4\""),
            "{playlist}"
        );
        // init.mp4 still names the first picture's init while the playlist lists it.
        assert_eq!(get(&server.url("/change/tracks-v1/init.mp4")).body, init0);
        assert_ne!(get(&server.url("/change/tracks-v1/init-1.mp4")).body, init0);
        // No segment mixes the two pictures: the new parameter sets cut a segment at once
        // (a player sets its decoder up per segment).
        let live = Playlist::parse(&get(&server.url("/change/mono.m3u8")).text());
        for (_, uri, _) in &live.segments {
            let sizes: std::collections::BTreeSet<String> = ffprobe_csv(
                &server.url(&format!("/change/{uri}")),
                &[
                    "-select_streams",
                    "v",
                    "-show_entries",
                    "frame=width,height",
                ],
            )
            .lines()
            .map(|l| l.trim_end_matches(',').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
            assert_eq!(sizes.len(), 1, "{uri} has pictures of sizes {sizes:?}");
        }
        players
            .into_iter()
            .map(|p| p.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (path, status) in statuses {
        let json: serde_json::Value = status
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        let sizes: Vec<&str> = json["sizes"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        assert!(
            sizes.first() == Some(&"320x240") && sizes.last() == Some(&"480x270"),
            "{path}: the player did not go on to the new picture: {status}"
        );
    }
}

#[test]
fn players_carry_the_token_to_every_request_over_http_and_https() {
    let _alone = one_browser_test_at_a_time();
    let backend = common::backend::Backend::start(30);
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = self_signed(certs.path(), "site", "headwater.test");
    let server = Server::start_configured(
        &[(
            "paid",
            &format!(
                "inputs = [{{ url = \"fake://fake\" }}]\non_play = \"{}\"\n",
                backend.url
            ),
        )],
        &format!(
            "https = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            crt.display(),
            key.display()
        ),
        "",
    );
    wait_until(Duration::from_secs(40), "fMP4 and DASH", || {
        get(&server.url("/paid/index.mpd?token=good-wait")).status == 200
    });
    let https = server.https_base();
    for (scheme, base) in [("http", server.base.clone()), ("https", https)] {
        for (path, player, kind) in [
            ("/paid/index.m3u8", "hls", "ts"),
            ("/paid/index.fmp4.m3u8", "hls", "fmp4"),
            ("/paid/index.mpd", "dash", "dash"),
        ] {
            let token = format!("good-{scheme}-{kind}");
            play_on(
                &server,
                &base,
                &format!("{path}?token={token}"),
                player,
                20,
                false,
            );
            // One session: the backend was asked once for all its requests.
            let calls = backend.play_calls(&token);
            assert_eq!(calls.len(), 1, "{scheme} {kind}: {calls:?}");
        }
    }
    // Everything without the token was refused (the players never asked without it).
    let text = server.scrape_after(std::time::SystemTime::now());
    assert_eq!(
        metric(&text, "flussonic_play_refused_total", "reason=\"denied\""),
        None,
        "{text}"
    );
}
