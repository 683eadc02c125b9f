//! A UDP source dies and comes back: the stream resumes (restart counted, discontinuity
//! marked) and another stream on the same server never stalls.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn udp_feeder_killed_and_restarted_resumes_while_other_stream_keeps_going() {
    let port = free_port(true);
    let feeder = udp_feeder(port, "");
    let server = Server::start(&[
        (
            "demo",
            "inputs = [{ url = \"fake://fake\" }]\nsegment_count = 10\n",
        ),
        (
            "cam",
            &format!(
                "inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 2 }}]\nsegment_count = 10\n"
            ),
        ),
    ]);
    server.wait_segments("cam", 2, Duration::from_secs(30));
    server.wait_segments("demo", 2, Duration::from_secs(30));
    drop(feeder); // SIGKILL mid-stream

    // For 8 s the demo stream must keep producing segments at its normal pace.
    let mut demo_seq = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let p = Playlist::parse(&get(&server.url("/demo/mono.m3u8")).text());
        demo_seq.push((start.elapsed(), p.media_sequence + p.segments.len() as u64));
        std::thread::sleep(Duration::from_millis(250));
    }
    let produced = demo_seq.last().unwrap().1 - demo_seq[0].1;
    assert!(
        produced >= 3,
        "demo produced {produced} segments in 8 s while cam was down"
    );
    // No gap longer than two segment durations between new demo segments.
    let mut last_change = demo_seq[0].0;
    for w in demo_seq.windows(2) {
        if w[1].1 != w[0].1 {
            assert!(
                w[1].0 - last_change < Duration::from_millis(4500),
                "demo stalled: {demo_seq:?}"
            );
            last_change = w[1].0;
        }
    }
    let cam_before = Playlist::parse(&get(&server.url("/cam/mono.m3u8")).text());
    let _feeder = udp_feeder(port, "");
    // The stream resumes: new segments after a discontinuity, and they decode.
    let mut resumed = Playlist::default();
    wait_until(
        Duration::from_secs(40),
        "cam to resume after a discontinuity",
        || {
            resumed = Playlist::parse(&get(&server.url("/cam/mono.m3u8")).text());
            let last_before = cam_before.media_sequence + cam_before.segments.len() as u64;
            let new_after_disc = resumed
                .segments
                .iter()
                .enumerate()
                .skip_while(|(_, s)| !s.2)
                .filter(|(i, _)| resumed.media_sequence + *i as u64 >= last_before)
                .count();
            new_after_disc >= 2
        },
    );
    let log = server.log_text();
    assert!(
        log.contains("no data for 2 s (source_timeout)"),
        "the restart reason is logged"
    );
    let out = ffmpeg_decode(&server.url("/cam/index.m3u8"), 3, 40);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
