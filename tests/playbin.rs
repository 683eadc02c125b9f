//! GStreamer's own player (`playbin`, hlsdemux) renders frames of the live demo stream.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn gstreamer_playbin_renders_the_demo_stream() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("demo", 5, Duration::from_secs(40));
    let uri = format!("uri={}", server.url("/demo/index.m3u8"));
    let out = run_with_timeout(
        20,
        "gst-launch-1.0",
        &[
            "-v",
            "playbin",
            &uri,
            "audio-sink=fakesink",
            "video-sink=fpsdisplaysink video-sink=fakesink text-overlay=false sync=true",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // fpsdisplaysink reports "rendered: N, dropped: M" in its last-message property.
    let rendered = text
        .rsplit("rendered: ")
        .next()
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        rendered >= 200,
        "playbin rendered {rendered} frames:\n{}",
        &text[text.len().saturating_sub(2000)..]
    );
}
