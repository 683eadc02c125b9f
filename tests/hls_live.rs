//! End to end: the real binary with a `fake://` stream and a `udp://` stream fed by
//! gst-launch-1.0; real ffmpeg/ffprobe read what it serves.

mod common;

use common::*;
use std::time::Duration;

const DEMO: &str = "title = \"demo\"\ninputs = [{ url = \"fake://fake\" }]\nsegment_duration = 2000\nsegment_count = 4\n";

fn udp_stream(port: u16) -> String {
    format!(
        "inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 3 }}]\nsegment_duration = 2000\nsegment_count = 4\n"
    )
}

#[test]
fn fake_and_udp_streams_are_served_as_hls_and_mpegts() {
    let port = free_port(true);
    let _feeder = udp_feeder(port, "");
    let server = Server::start(&[("demo", DEMO), ("cam", &udp_stream(port))]);

    for stream in ["demo", "cam"] {
        let playlist = server.wait_segments(stream, 3, Duration::from_secs(40));
        check_master(&server, stream);
        check_segments(&server, stream, &playlist);
        check_decodes(&server, stream);
    }
    check_window_slides(&server, "demo");
    check_mpegts(&server, "demo");
    check_mpegts(&server, "cam");
}

fn check_master(server: &Server, stream: &str) {
    let r = get(&server.url(&format!("/{stream}/index.m3u8")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(r.header("cache-control"), "public, max-age=1");
    let text = r.text();
    let inf = text
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .expect("variant");
    let (w, h) = if stream == "demo" {
        (640, 360)
    } else {
        (320, 240)
    };
    assert!(inf.contains(&format!("RESOLUTION={w}x{h}")), "{inf}");
    assert!(
        inf.contains("CODECS=\"avc1.") && inf.contains(",mp4a.40.2\""),
        "{inf}"
    );
    let bw: u64 = inf
        .split("BANDWIDTH=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bw > 100_000 && bw < 5_000_000, "implausible bandwidth {bw}");
    assert!(text.ends_with("tracks-v1a1/mono.m3u8\n"), "{text}");
    // Both media playlist spellings exist and agree.
    let a = get(&server.url(&format!("/{stream}/tracks-v1a1/mono.m3u8")));
    assert_eq!(a.status, 200);
    assert!(a.text().contains("#EXT-X-PROGRAM-DATE-TIME:"));
    // A track selection the stream does not have.
    let r = get(&server.url(&format!("/{stream}/tracks-v2/mono.m3u8")));
    assert_eq!(r.status, 404);
}

fn check_segments(server: &Server, stream: &str, playlist: &Playlist) {
    assert!(playlist.target_duration >= 2 && playlist.target_duration <= 3);
    let dir = tempfile::tempdir().unwrap();
    let mut prev_end: Option<f64> = None;
    for (i, (dur, uri, disc)) in playlist.segments.iter().enumerate() {
        let (start, dur_ms) = segment_name_parts(uri);
        assert_eq!(
            dur_ms,
            (dur * 1000.0).round() as u64,
            "name carries the duration: {uri}"
        );
        assert!(dur.round() as u64 <= playlist.target_duration);
        let start_s = unix_seconds(&start) as f64;
        if let (Some(end), false) = (prev_end, *disc) {
            // Names are to the second: consecutive segments tile time.
            assert!(
                (start_s - end).abs() <= 1.0,
                "{uri} starts at {start_s}, previous ended {end}"
            );
        }
        prev_end = Some(start_s + dur);
        let r = get(&server.url(&format!("/{stream}/{uri}")));
        assert_eq!(r.status, 200, "{uri}");
        assert_eq!(r.header("content-type"), "video/mp2t");
        assert!(r.header("cache-control").contains("immutable"));
        assert_eq!(r.body.len() % 188, 0);
        assert_eq!(r.header("content-length"), r.body.len().to_string());
        let pids = ts_pids(&r.body, 3);
        assert_eq!(
            pids[0], 0,
            "segment {i} of {stream} starts with PAT, got {pids:?}"
        );
        assert_ne!(pids[1], 0, "then the PMT");
        let file = dir.path().join(format!("{i}.ts"));
        std::fs::write(&file, &r.body).unwrap();
        let frame = first_video_frame(&file);
        assert!(
            frame.starts_with("1,I"),
            "first video frame of {uri} is {frame:?}"
        );
        // The same segment through the tracks- path.
        let r2 = get(&server.url(&format!("/{stream}/tracks-v1a1/{uri}")));
        assert_eq!(r2.body, r.body);
    }
}

fn check_decodes(server: &Server, stream: &str) {
    let url = server.url(&format!("/{stream}/index.m3u8"));
    let out = ffmpeg_decode(&url, 10, 60);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed on {stream}: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg reported errors on {stream}: {stderr}"
    );
    let streams = ffprobe_csv(&url, &["-show_entries", "stream=codec_name,codec_type"]);
    assert!(
        streams.contains("h264,video") && streams.contains("aac,audio"),
        "{stream}: {streams}"
    );
}

/// Media sequence and names advance as the window slides; TARGETDURATION stays right.
fn check_window_slides(server: &Server, stream: &str) {
    let before = Playlist::parse(&get(&server.url(&format!("/{stream}/mono.m3u8"))).text());
    assert_eq!(
        before.segments.len(),
        4,
        "window holds segment_count segments"
    );
    std::thread::sleep(Duration::from_millis(4500));
    let after = Playlist::parse(&get(&server.url(&format!("/{stream}/mono.m3u8"))).text());
    let moved = after.media_sequence - before.media_sequence;
    assert!(
        (2..=3).contains(&moved),
        "moved {moved} in 4.5 s of 2 s segments"
    );
    assert_eq!(after.segments.len(), 4);
    // What both lists hold is the same segment under the same sequence number.
    for (i, seg) in after.segments.iter().enumerate() {
        let seq = after.media_sequence + i as u64;
        if seq < before.media_sequence + before.segments.len() as u64 {
            assert_eq!(
                seg.1,
                before.segments[(seq - before.media_sequence) as usize].1
            );
        }
    }
    // A segment just slid out is still served (grace); one that never existed is 404.
    let gone = &before.segments[0].1;
    assert_eq!(get(&server.url(&format!("/{stream}/{gone}"))).status, 200);
    assert_eq!(
        get(&server.url(&format!("/{stream}/2001/01/01/00/00/00-02000.ts"))).status,
        404
    );
}

fn check_mpegts(server: &Server, stream: &str) {
    let url = server.url(&format!("/{stream}/mpegts"));
    let out = ffmpeg_decode(&url, 4, 30);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ffmpeg on /mpegts of {stream}: {stderr}"
    );
    assert!(stderr.trim().is_empty(), "{stream} /mpegts: {stderr}");
}
