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

/// Payload of one TS packet (after the adaptation field), if it has one.
fn ts_payload(p: &[u8]) -> &[u8] {
    match (p[3] >> 4) & 0x03 {
        0x01 => &p[4..],
        0x03 => p.get(5 + usize::from(p[4])..).unwrap_or(&[]),
        _ => &[],
    }
}

/// A source that stops sending in the middle of a picture (an encoder killed, datagrams
/// lost) and goes on with the next one: the demuxer would hand the cut picture on as whole,
/// and browsers stop on its decode error. The picture is dropped before the demuxer instead,
/// counted, and every segment decodes cleanly with exactly one picture fewer.
#[test]
fn a_picture_cut_short_by_the_source_is_dropped_and_counted() {
    const FRAMES: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.ts");
    let made = gst_run(
        60,
        &format!(
            "videotestsrc num-buffers={FRAMES} pattern=ball \
             ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=400 key-int-max=25 \
             ! h264parse ! mpegtsmux ! filesink location={}",
            file.display()
        ),
    );
    assert!(made.status.success(), "{made:?}");
    let ts = std::fs::read(&file).unwrap();
    let packets: Vec<&[u8]> = ts.chunks(188).collect();
    let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let video = packets
        .iter()
        .find(|p| p[1] & 0x40 != 0 && ts_payload(p).starts_with(&[0, 0, 1, 0xe0]))
        .map(|p| pid(p))
        .expect("a video PES");
    let starts: Vec<usize> = (0..packets.len())
        .filter(|&i| pid(packets[i]) == video && packets[i][1] & 0x40 != 0)
        .collect();
    assert_eq!(starts.len(), FRAMES, "one PES per picture");
    // The last picture before the fourth keyframe loses all but its first packet.
    let (cut_from, cut_to) = (starts[99] + 1, starts[100]);
    let sent: Vec<&[u8]> = packets
        .iter()
        .enumerate()
        .filter(|(i, p)| !(pid(p) == video && (cut_from..cut_to).contains(i)))
        .map(|(_, p)| *p)
        .collect();
    assert!(
        packets.len() - sent.len() >= 2,
        "the cut picture spans several packets"
    );

    let port = free_port(true);
    let server = Server::start(&[(
        "cut",
        &format!(
            "inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 2 }}]\nsegment_count = 10\n"
        ),
    )]);
    wait_until(Duration::from_secs(20), "the UDP pipeline", || {
        server.log_text().contains("pipeline playing")
    });
    // Sent as an encoder sends: seven packets per datagram, paced by the PCR.
    let cut = dir.path().join("cut.ts");
    std::fs::write(&cut, sent.concat()).unwrap();
    let _sender = gst_launch(&format!(
        "filesrc location={} ! tsparse set-timestamps=true alignment=7 ! udpsink host=127.0.0.1 port={port} sync=true",
        cut.display()
    ));
    // The source stops: after source_timeout the last segment is closed.
    let mut playlist = Playlist::default();
    wait_until(Duration::from_secs(30), "three segments", || {
        let reply = get(&server.url("/cut/mono.m3u8"));
        if reply.status == 200 {
            playlist = Playlist::parse(&reply.text());
        }
        playlist.segments.len() >= 3
    });
    let mut frames = Vec::new();
    for (_, uri, _) in &playlist.segments {
        let url = server.url(&format!("/cut/{uri}"));
        let out = ffmpeg_decode(&url, 10, 30);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{uri}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        frames.push(
            ffprobe_csv(
                &url,
                &[
                    "-select_streams",
                    "v",
                    "-count_frames",
                    "-show_entries",
                    "stream=nb_read_frames",
                ],
            )
            .split(|c: char| !c.is_ascii_digit())
            .find(|n| !n.is_empty())
            .and_then(|n| n.parse::<usize>().ok())
            .expect("a frame count"),
        );
    }
    // Segments are cut at every second keyframe (50 pictures); the cut picture was the
    // last of the second segment.
    assert_eq!(
        frames[..2],
        [50, 49],
        "only the cut picture is missing: {frames:?}"
    );
    assert_eq!(stream_json(&server, "cut")["stats"]["broken_pes"], 1);
    assert!(server.log_text().contains("PES cut short in the source"));
}
