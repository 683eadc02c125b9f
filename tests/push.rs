//! Pushes with real receivers: a UDP socket and ffmpeg read the UDP push (paced by PCR,
//! continuous counters, decodable), an ffmpeg SRT listener that is killed and restarted five
//! times while hls.js plays the stream, ffmpeg pulling our SRT listener output, nginx-rtmp
//! receiving the RTMP push (its HLS decoded by ffmpeg), a destination that reads slowly, and
//! push URLs whose keys never show.

mod common;

use common::control::put;
use common::veth::Veth;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FAKE: &str = "inputs = [{ url = \"fake://fake\" }]\n";

fn push_stats(server: &Server, stream: &str) -> Vec<Value> {
    stream_json(server, stream)["pushes"]
        .as_array()
        .map(|p| p.iter().map(|p| p["stats"].clone()).collect())
        .unwrap_or_default()
}

/// The 27 MHz PCR of a TS packet, if it carries one.
fn pcr(p: &[u8]) -> Option<u64> {
    if p[3] & 0x20 == 0 || p[4] < 7 || p[5] & 0x10 == 0 {
        return None;
    }
    let b = &p[6..12];
    let base = (u64::from(b[0]) << 25)
        | (u64::from(b[1]) << 17)
        | (u64::from(b[2]) << 9)
        | (u64::from(b[3]) << 1)
        | (u64::from(b[4]) >> 7);
    Some(base * 300 + ((u64::from(b[4] & 1) << 8) | u64::from(b[5])))
}

/// UDP push: every datagram is 7 packets; continuity counters never skip; bytes per second
/// of arrival match bytes per second of the stream's own PCR clock within 5 %; PCR arrival
/// jitter stays small; and ffmpeg decodes 20 s of a second push with no error.
#[test]
fn udp_push_is_paced_by_pcr_continuous_and_decodes() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let ffmpeg_port = free_port(true);
    // ffmpeg listens before the push starts: it sees the stream from its first keyframe.
    let decoder = std::thread::spawn(move || {
        ffmpeg_decode(
            &format!("udp://127.0.0.1:{ffmpeg_port}?timeout=60000000"),
            20,
            90,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let server = Server::start(&[(
        "cam",
        &format!(
            "{FAKE}pushes = [{{ url = \"udp://127.0.0.1:{port}\" }}, {{ url = \"udp://127.0.0.1:{ffmpeg_port}?ttl=3\" }}]\n"
        ),
    )]);
    // Capture 23 s from the first datagram.
    let mut buf = [0u8; 2048];
    let mut got: Vec<(Instant, Vec<u8>)> = Vec::new();
    let start = Instant::now();
    while got.first().map_or(start, |g| g.0).elapsed() < Duration::from_secs(23) {
        assert!(start.elapsed() < Duration::from_secs(60), "no UDP push");
        if let Ok(n) = socket.recv(&mut buf) {
            got.push((Instant::now(), buf[..n].to_vec()));
        }
    }
    assert!(got.len() > 500, "{} datagrams", got.len());
    assert!(
        got.iter().all(|(_, d)| d.len() == 7 * 188),
        "datagram sizes: {:?}",
        got.iter()
            .map(|(_, d)| d.len())
            .collect::<std::collections::BTreeSet<_>>()
    );
    // Continuity counters per PID.
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut errors = 0;
    // (arrival, media time in s) of every packet; media time interpolated between PCRs.
    let mut packets: Vec<(Instant, Option<f64>)> = Vec::new();
    for (at, d) in &got {
        for p in d.chunks(188) {
            assert_eq!(p[0], 0x47);
            let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            if pid != 0x1fff {
                let c = p[3] & 0x0f;
                let payload = p[3] & 0x10 != 0;
                if let Some(last) = cc.get(&pid) {
                    let expected = if payload { (last + 1) & 0x0f } else { *last };
                    if c != expected {
                        errors += 1;
                    }
                }
                cc.insert(pid, c);
            }
            packets.push((*at, pcr(p).map(|v| v as f64 / 27e6)));
        }
    }
    assert_eq!(errors, 0, "continuity errors");
    let pcr_at: Vec<usize> = (0..packets.len())
        .filter(|&i| packets[i].1.is_some())
        .collect();
    assert!(pcr_at.len() > 100, "{} PCRs", pcr_at.len());
    for w in pcr_at.windows(2) {
        let (a, b) = (packets[w[0]].1.unwrap(), packets[w[1]].1.unwrap());
        assert!(b > a && b - a < 1.0, "one PCR timeline: {a} then {b}");
        let span = (w[1] - w[0]) as f64;
        for (k, p) in packets[w[0] + 1..w[1]].iter_mut().enumerate() {
            p.1 = Some(a + (b - a) * (k + 1) as f64 / span);
        }
    }
    let t0 = got[0].0;
    // Arrival minus media time, per PCR: constant if paced by PCR.
    let mut offsets: Vec<f64> = pcr_at
        .iter()
        .map(|&i| (packets[i].0 - t0).as_secs_f64() - packets[i].1.unwrap())
        .collect();
    offsets.sort_by(f64::total_cmp);
    let median = offsets[offsets.len() / 2];
    let p99 = offsets[offsets.len() * 99 / 100] - median;
    let p1 = median - offsets[offsets.len() / 100];
    println!(
        "PCR arrival jitter: p1 -{:.1} ms, p99 +{:.1} ms",
        p1 * 1e3,
        p99 * 1e3
    );
    assert!(p99 < 0.05 && p1 < 0.05, "arrival follows PCR within 50 ms");
    // Bytes per 1 s window: by arrival, and by the media clock (shifted by the median).
    let mut by_arrival: HashMap<i64, u64> = HashMap::new();
    let mut by_media: HashMap<i64, u64> = HashMap::new();
    for (at, media) in &packets {
        *by_arrival
            .entry((*at - t0).as_secs_f64().floor() as i64)
            .or_default() += 188;
        if let Some(m) = media {
            *by_media.entry((m + median).floor() as i64).or_default() += 188;
        }
    }
    let mut compared = 0;
    for second in 2..20 {
        let (a, m) = (by_arrival[&second] as f64, by_media[&second] as f64);
        assert!(
            (a - m).abs() <= 0.05 * m,
            "second {second}: {a} bytes arrived, the stream's clock says {m}"
        );
        compared += 1;
    }
    assert_eq!(compared, 18);
    let out = decoder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg decoding the UDP push: {stderr}"
    );
    let stats = push_stats(&server, "cam");
    assert_eq!(stats[0]["status"], "running", "{stats:?}");
    assert!(stats[0]["bytes"].as_u64().unwrap() >= got.len() as u64 * 1316);
    let text = server.scrape();
    let label = format!("name=\"cam\",push=\"udp://127.0.0.1:{port}\"");
    assert_eq!(metric(&text, "flussonic_stream_push_up", &label), Some(1.0));
    assert!(
        metric(&text, "flussonic_stream_push_bytes_total", &label).unwrap()
            >= got.len() as f64 * 1316.0 * 0.9
    );
}

/// Pushes change at run time: adding one (API `PUT`) starts it and leaves the running one
/// untouched (its datagrams never pause, its state never leaves `running`); removing one
/// stops it and its series leave the exposition.
#[test]
fn pushes_change_at_run_time_without_touching_the_others() {
    let recv = |s: &UdpSocket| {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    };
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    recv(&a);
    recv(&b);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let push_a = json!({"url": format!("udp://127.0.0.1:{pa}")});
    let push_b = json!({"url": format!("udp://127.0.0.1:{pb}")});
    let server = Server::start(&[(
        "cam",
        &format!("{FAKE}pushes = [{{ url = \"udp://127.0.0.1:{pa}\" }}]\n"),
    )]);
    let mut buf = [0u8; 2048];
    // A flows; then B is added while A is watched for gaps.
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.recv(&mut buf).is_err() {
        assert!(Instant::now() < deadline, "push A never sent");
    }
    let watcher = std::thread::spawn(move || {
        let mut last = Instant::now();
        let mut longest = Duration::ZERO;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(12) {
            if a.recv(&mut buf).is_ok() {
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
        }
        longest.max(last.elapsed())
    });
    std::thread::sleep(Duration::from_secs(2));
    let r = put(
        &server,
        "cam",
        &json!({"inputs": [{"url": "fake://fake"}], "pushes": [push_a, push_b]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.recv(&mut buf).is_err() {
        assert!(Instant::now() < deadline, "the added push B never sent");
    }
    let longest = watcher.join().unwrap();
    assert!(
        longest < Duration::from_millis(500),
        "push A paused {longest:?} while B was added"
    );
    let stats = push_stats(&server, "cam");
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0]["retries"], 0, "{stats:?}");
    assert_eq!(stats[0]["status"], "running");
    assert_eq!(stats[1]["status"], "running");
    assert!(
        server.log_text().contains("changed=pushes"),
        "logged as a push change"
    );
    // B removed: it stops, and its series go with the next sample.
    let r = put(
        &server,
        "cam",
        &json!({"inputs": [{"url": "fake://fake"}], "pushes": [push_a]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    std::thread::sleep(Duration::from_millis(1500));
    while b.recv(&mut buf).is_ok() {}
    assert!(b.recv(&mut buf).is_err(), "B stopped sending");
    let text = server.scrape_after(std::time::SystemTime::now());
    assert!(
        !text.contains(&format!("127.0.0.1:{pb}")),
        "B's series are gone"
    );
    assert!(text.contains(&format!("push=\"udp://127.0.0.1:{pa}\"")));
}

/// A source failover under a UDP push: the receiver sees continuity counters that never skip,
/// and every jump of the PCR (a new timeline) carries the discontinuity indicator.
#[test]
fn a_udp_push_stays_continuous_across_a_source_failover() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let input = free_port(true);
    let feeder = udp_feeder(input, "");
    let server = Server::start(&[(
        "cam",
        &format!(
            "inputs = [{{ url = \"udp://127.0.0.1:{input}\", priority = 1, source_timeout = 2 }}, {{ url = \"fake://fake\", priority = 2 }}]\n\
             pushes = [{{ url = \"udp://127.0.0.1:{port}\" }}]\n"
        ),
    )]);
    let mut buf = [0u8; 2048];
    let mut got: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    let mut feeder = Some(feeder);
    let mut failed_over_at = None;
    while failed_over_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(6)) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no failover seen"
        );
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        if feeder.is_some() && got.len() > 1500 {
            // The primary source dies; the backup takes over after its source_timeout.
            drop(feeder.take());
        }
        if feeder.is_none()
            && failed_over_at.is_none()
            && stream_json(&server, "cam")["inputs"][1]["stats"]["active"] == true
        {
            failed_over_at = Some(Instant::now());
        }
    }
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let (mut errors, mut jumps, mut marked) = (0, 0, 0);
    let mut last_pcr: Option<u64> = None;
    for p in got.iter().flat_map(|d| d.chunks(188)) {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        if pid == 0x1fff {
            continue;
        }
        let c = p[3] & 0x0f;
        if let Some(last) = cc.get(&pid) {
            let expected = if p[3] & 0x10 != 0 {
                (last + 1) & 0x0f
            } else {
                *last
            };
            errors += usize::from(c != expected);
        }
        cc.insert(pid, c);
        if let Some(v) = pcr(p) {
            let flagged = p[5] & 0x80 != 0;
            if let Some(last) = last_pcr
                && (v < last || v - last > 27_000_000)
            {
                jumps += 1;
                assert!(
                    flagged,
                    "a PCR jump from {last} to {v} without the discontinuity indicator"
                );
            }
            marked += usize::from(flagged);
            last_pcr = Some(v);
        }
    }
    assert_eq!(errors, 0, "continuity errors across the failover");
    assert_eq!(
        marked, jumps,
        "the indicator marks exactly the new timelines"
    );
    println!("{} packets, {jumps} new timeline(s)", got.len() * 7);
}

/// Multicast out of the interface `iface` names, with its TTL: a receiver in a network
/// namespace at the far end of a veth pair joins the group and gets every datagram with
/// TTL 3 (nothing else reaches that namespace: without `iface` the group would leave by the
/// default route), and ffmpeg there decodes 10 s without an error.
#[test]
fn multicast_push_leaves_by_its_interface_with_its_ttl() {
    let veth = Veth::create("u", "10.254.78.1", "10.254.78.2");
    let route = Command::new("ip")
        .args([
            "-n",
            &veth.ns,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            &veth.peer_if,
        ])
        .status()
        .unwrap();
    assert!(route.success(), "multicast route in the namespace");
    let port = free_port(true);
    let group = "239.77.1.1";
    let receiver = format!(
        "import socket, struct, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{group}', {port}))\n\
         s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton('{group}') + socket.inet_aton('10.254.78.2'))\n\
         s.setsockopt(socket.IPPROTO_IP, 12, 1)  # IP_RECVTTL (Linux)\n\
         s.settimeout(30)\n\
         n, ttls, sizes, end = 0, set(), set(), None\n\
         while end is None or time.monotonic() < end:\n\
         \x20   d, anc, _, _ = s.recvmsg(2048, 64)\n\
         \x20   end = end or time.monotonic() + 10\n\
         \x20   n += 1; sizes.add(len(d))\n\
         \x20   ttls.update(struct.unpack('i', a[2])[0] for a in anc if a[1] == 2)  # IP_TTL\n\
         print(n, sorted(ttls), sorted(sizes))\n"
    );
    let listen = Command::new("ip")
        .args([
            "netns", "exec", &veth.ns, "timeout", "60", "python3", "-c", &receiver,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let decode = Command::new("ip")
        .args([
            "netns", "exec", &veth.ns, "timeout", "-k", "3", "60", "ffmpeg", "-nostdin", "-v",
            "error",
        ])
        .args([
            "-i",
            &format!("udp://{group}:{port}?localaddr=10.254.78.2&reuse=1&timeout=30000000"),
        ])
        .args(["-t", "10", "-f", "null", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _server = Server::start(&[(
        "cam",
        &format!(
            "{FAKE}pushes = [{{ url = \"udp://{group}:{port}?ttl=3&iface={}\" }}]\n",
            veth.host_if
        ),
    )]);
    let out = listen.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "receiver: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words = said.split_whitespace();
    let n: u64 = words.next().unwrap().parse().unwrap();
    assert!(n > 200, "{n} datagrams in 10 s");
    assert_eq!(
        said.split_once(' ').unwrap().1.trim(),
        "[3] [1316]",
        "TTLs and sizes"
    );
    let out = decode.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg in the namespace: {stderr}"
    );
}

/// A ladder's push sends the rendition it names: rendition 2 of a two-rung ladder arrives at
/// that rung's size.
#[test]
fn a_ladder_push_sends_the_rendition_it_names() {
    let port = free_port(true);
    let probe = std::thread::spawn(move || {
        run_with_timeout(
            90,
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0",
                &format!("udp://127.0.0.1:{port}?timeout=60000000"),
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let _server = Server::start(&[(
        "ladder",
        &format!(
            "{FAKE}pushes = [{{ url = \"udp://127.0.0.1:{port}\", rendition = 2 }}]\n\
             [transcoder]\nhw = \"cpu\"\npreset = \"ultrafast\"\n\
             [[transcoder.video]]\nbitrate = \"400k\"\nsize = \"480x270\"\n\
             [[transcoder.video]]\nbitrate = \"200k\"\nsize = \"320x180\"\n"
        ),
    )]);
    let out = probe.join().unwrap();
    assert!(
        out.status.success(),
        "ffprobe on the push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ffprobe lists the stream once per program it is in: every listing says 320x180.
    let sizes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !sizes.is_empty() && sizes.iter().all(|s| s == "320,180"),
        "{sizes:?}"
    );
}

/// An ffmpeg SRT listener receiving the push, restarted `n` times.
fn srt_receiver(port: u16, out: &std::path::Path) -> Proc {
    spawn(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            &format!("srt://127.0.0.1:{port}?mode=listener&passphrase=0123456789abcdef"),
            "-c",
            "copy",
            "-f",
            "mpegts",
            out.to_str().unwrap(),
        ],
    )
}

/// The destination killed and started again five times: the push returns each time
/// (`retries` 5) while hls.js plays the stream's own HLS without a stall.
#[test]
fn srt_push_returns_after_each_of_five_destination_restarts() {
    let port = free_port(true);
    let server = Server::start(&[(
        "cam",
        &format!(
            "{FAKE}pushes = [{{ url = \"srt://127.0.0.1:{port}?passphrase=0123456789abcdef\", retry_timeout = 1 }}]\n"
        ),
    )]);
    server.wait_segments("cam", 3, Duration::from_secs(30));
    let player = BackgroundPlayer::start(&server, "/cam/index.m3u8", 240);
    let started = Instant::now();
    for round in 0..=5u64 {
        let file = server.dir.path().join(format!("srt{round}.ts"));
        let mut receiver = srt_receiver(port, &file);
        wait_until(
            Duration::from_secs(30),
            "the push connected and sent",
            || {
                let s = &push_stats(&server, "cam")[0];
                s["status"] == "running"
                    && s["retries"] == round
                    && std::fs::metadata(&file).is_ok_and(|m| m.len() > 100_000)
            },
        );
        if round < 5 {
            receiver.0.kill().unwrap();
            receiver.0.wait().unwrap();
            wait_until(Duration::from_secs(30), "the push saw it go", || {
                push_stats(&server, "cam")[0]["status"] != "running"
            });
        } else {
            drop(receiver);
        }
        // What the receiver wrote decodes.
        let probe = ffprobe_csv(
            file.to_str().unwrap(),
            &["-show_entries", "stream=codec_name"],
        );
        assert!(probe.contains("h264"), "{probe}");
    }
    let stats = &push_stats(&server, "cam")[0];
    assert_eq!(stats["retries"], 5, "{stats}");
    let text = server.scrape();
    let label = format!("name=\"cam\",push=\"srt://127.0.0.1:{port}?passphrase=***\"");
    assert_eq!(
        metric(&text, "flussonic_stream_push_retries_total", &label),
        Some(5.0),
        "{text}"
    );
    assert!(!text.contains("0123456789abcdef") && !server.log_text().contains("0123456789abcdef"));
    let status = player.finish();
    assert_eq!(status["stalls"], 0, "the player stalled: {status}");
    let played = status["played"].as_f64().unwrap();
    assert!(
        played + 15.0 >= started.elapsed().as_secs_f64(),
        "played {played} s of {:?}",
        started.elapsed()
    );
}

/// ffmpeg pulls the SRT listener output and decodes it; the push counts its viewer.
#[test]
fn ffmpeg_pulls_the_srt_listener_output() {
    let port = free_port(true);
    let server = Server::start(&[(
        "cam",
        &format!("{FAKE}pushes = [{{ url = \"srt://:{port}?mode=listener\" }}]\n"),
    )]);
    server.wait_segments("cam", 1, Duration::from_secs(30));
    wait_until(Duration::from_secs(10), "the listener is up", || {
        push_stats(&server, "cam")[0]["status"] == "running"
    });
    let url = format!("srt://127.0.0.1:{port}");
    let viewer = std::thread::spawn(move || ffmpeg_decode(&url, 6, 40));
    wait_until(Duration::from_secs(15), "one viewer", || {
        push_stats(&server, "cam")[0]["connections"] == 1
    });
    let out = viewer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg pulling SRT: {stderr}"
    );
    let probe = run_with_timeout(
        30,
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &format!("srt://127.0.0.1:{port}"),
        ],
    );
    let codecs = String::from_utf8_lossy(&probe.stdout);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );
    wait_until(Duration::from_secs(15), "viewers gone", || {
        push_stats(&server, "cam")[0]["connections"] == 0
    });
    assert!(push_stats(&server, "cam")[0]["bytes"].as_u64().unwrap() > 100_000);
}

/// nginx with the RTMP module, writing HLS of what it receives under `dir/hls`.
fn nginx_rtmp(dir: &std::path::Path, port: u16) -> Proc {
    std::fs::create_dir_all(dir.join("hls")).unwrap();
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon off;\nmaster_process off;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
         application live {{ live on; record off; hls on; hls_path {d}/hls; hls_fragment 1s; hls_playlist_length 6s; }} }} }}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let p = spawn(
        "nginx",
        &[
            "-p",
            dir.to_str().unwrap(),
            "-c",
            path.to_str().unwrap(),
            "-e",
            dir.join("stderr.log").to_str().unwrap(),
        ],
    );
    wait_until(Duration::from_secs(10), "nginx-rtmp listening", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    p
}

/// The RTMP push reaches nginx-rtmp, whose HLS of it ffmpeg decodes (H.264 and AAC); the key
/// shows nowhere.
#[test]
fn nginx_rtmp_receives_the_rtmp_push_and_its_hls_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let _nginx = nginx_rtmp(dir.path(), port);
    let server = Server::start(&[(
        "cam",
        &format!("{FAKE}pushes = [{{ url = \"rtmp://127.0.0.1:{port}/live/SeCrEtKeY\" }}]\n"),
    )]);
    let playlist = dir.path().join("hls/SeCrEtKeY.m3u8");
    wait_until(
        Duration::from_secs(40),
        "nginx-rtmp's HLS of the push",
        || std::fs::read_to_string(&playlist).is_ok_and(|p| p.matches("#EXTINF").count() >= 3),
    );
    let out = ffmpeg_decode(playlist.to_str().unwrap(), 2, 60);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg decoding nginx-rtmp's HLS: {stderr}"
    );
    let codecs = ffprobe_csv(
        playlist.to_str().unwrap(),
        &["-show_entries", "stream=codec_name"],
    );
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );
    let stats = &push_stats(&server, "cam")[0];
    assert_eq!(stats["status"], "running");
    assert_eq!(stats["url"], format!("rtmp://127.0.0.1:{port}/live/***"));
    let shown = stream_json(&server, "cam");
    assert!(!shown.to_string().contains("SeCrEtKeY"), "{shown}");
    assert!(!server.log_text().contains("SeCrEtKeY"));
    assert!(!server.scrape().contains("SeCrEtKeY"));
}

/// An RTMP destination behind a relay that reads 4 KB/s through a tiny window: the push drops
/// chunks (counted) and HTTP viewers lose nothing — every segment is listed in order and
/// fetched whole.
#[test]
fn a_destination_that_reads_slowly_costs_viewers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rtmp_port = free_port(false);
    let _nginx = nginx_rtmp(dir.path(), rtmp_port);
    // A 4 KB receive buffer, set before listen so that accepted sockets have it (and
    // advertise a tiny window).
    let relay = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    relay.set_recv_buffer_size(4096).unwrap();
    relay
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    relay.listen(8).unwrap();
    let relay: TcpListener = relay.into();
    let relay_port = relay.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in relay.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", rtmp_port)) else {
                continue;
            };
            slow_relay(client, upstream);
        }
    });
    let server = Server::start(&[(
        "cam",
        &format!("{FAKE}pushes = [{{ url = \"rtmp://127.0.0.1:{relay_port}/live/slow\" }}]\n"),
    )]);
    let first = server.wait_segments("cam", 2, Duration::from_secs(30));
    let mut last_seq = first.media_sequence + first.segments.len() as u64 - 1;
    let mut fetched = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let p = server.wait_segments("cam", 1, Duration::from_secs(5));
        for (i, (_, uri, discontinuity)) in p.segments.iter().enumerate() {
            let seq = p.media_sequence + i as u64;
            if seq <= last_seq {
                continue;
            }
            assert_eq!(seq, last_seq + 1, "segments listed in order, none skipped");
            assert!(!discontinuity, "segment {seq} follows without a break");
            last_seq = seq;
            let r = get(&server.url(&format!("/cam/{uri}")));
            assert_eq!(r.status, 200, "{uri}");
            assert!(r.body.len() > 10_000, "{uri}: {} bytes", r.body.len());
            fetched += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(fetched >= 12, "{fetched} segments in 30 s");
    let stats = &push_stats(&server, "cam")[0];
    assert!(
        stats["dropped_chunks"].as_u64().unwrap() > 0,
        "the slow destination made the push drop chunks: {stats}"
    );
    let text = server.scrape();
    assert!(
        metric(
            &text,
            "flussonic_stream_push_dropped_chunks_total",
            &format!("name=\"cam\",push=\"rtmp://127.0.0.1:{relay_port}/live/***\"")
        )
        .unwrap()
            > 0.0
    );
}

/// Relays one connection: answers from upstream pass freely; what the client sends reaches
/// upstream at 4 KB/s (after the first 16 KB: the RTMP handshake and publish request go at
/// full speed), read 1 KB at a time from a socket with a 4 KB receive buffer.
fn slow_relay(client: TcpStream, upstream: TcpStream) {
    let mut down_from = upstream.try_clone().unwrap();
    let mut down_to = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = down_from.read(&mut buf) {
            if n == 0 || down_to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut up_from = client;
    let mut up_to = upstream;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut total = 0usize;
        while let Ok(n) = up_from.read(&mut buf) {
            if n == 0 || up_to.write_all(&buf[..n]).is_err() {
                break;
            }
            total += n;
            if total > 16 * 1024 {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    });
}

/// A bad push URL is refused by the loader with the key masked, through the API too.
#[test]
fn bad_push_urls_are_refused_naming_the_key_without_showing_it() {
    let server = Server::start(&[("cam", FAKE)]);
    let r = put(
        &server,
        "cam",
        &json!({"inputs": [{"url": "fake://fake"}], "pushes": [{"url": "rtmp://host/onlyapp-SeCrEt"}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("pushes[0].url"), "{}", r.text());
    let r = put(
        &server,
        "cam",
        &json!({"inputs": [{"url": "fake://fake"}], "pushes": [{"url": "rtmp://h/live/SeCrEt", "retry_timeout": 0}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("retry_timeout"), "{}", r.text());
    assert!(!r.text().contains("SeCrEt"), "{}", r.text());
    let r = put(
        &server,
        "cam",
        &json!({"inputs": [{"url": "fake://fake"}], "pushes": [{"url": "rtmp://h/live/SeCrEt", "rendition": 2}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!r.text().contains("SeCrEt"), "{}", r.text());
    assert!(!server.log_text().contains("SeCrEt"));
}
