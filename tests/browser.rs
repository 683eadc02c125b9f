//! A real browser: Debian's headless Chromium with hls.js plays the live demo stream.
//! Needs `chromium` and `tests/browser/node_modules` (both installed by `make test`).

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
