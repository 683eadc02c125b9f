//! Metrics must be true, not just present: each test knows the ground truth (clients it
//! opened, bytes it downloaded, the rate it sends, the restarts it caused, what /proc says)
//! and checks the exported value against it.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// ffmpeg sending a constant 1,000,000 bit/s MPEG-TS (`-muxrate` pads with null packets).
/// Each audio frame is its own PES (`-pes_payload_size 0`): ffmpeg's default packs ~370 ms
/// of audio into one, and the stream then arrives in bursts that far apart.
fn cbr_feeder(port: u16) -> Proc {
    Proc(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "25",
            ])
            .args([
                "-b:v", "300k", "-maxrate", "300k", "-bufsize", "300k", "-pix_fmt", "yuv420p",
            ])
            .args([
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-pes_payload_size",
                "0",
                "-muxrate",
                "1000000",
                "-f",
                "mpegts",
            ])
            .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    )
}

fn stream_metric(text: &str, name: &str, stream: &str) -> f64 {
    metric(text, name, &format!("name=\"{stream}\""))
        .unwrap_or_else(|| panic!("{name}{{name=\"{stream}\"}} missing"))
}

#[test]
fn bytes_out_rises_by_exactly_the_bytes_sent() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    let p = server.wait_segments("demo", 3, Duration::from_secs(30));
    // Quiet: the only client is this test.
    let before = stream_metric(
        &server.scrape_after(SystemTime::now()),
        "flussonic_stream_bytes_out",
        "demo",
    );
    let mut sent = 0usize;
    sent += get(&server.url("/demo/index.m3u8")).body.len();
    sent += get(&server.url("/demo/mono.m3u8")).body.len();
    for (_, uri, _) in &p.segments {
        sent += get(&server.url(&format!("/demo/{uri}"))).body.len();
    }
    let part = request(
        "GET",
        &server.url(&format!("/demo/{}", p.segments[0].1)),
        &[("Range", "bytes=0-999")],
    );
    assert_eq!(part.status, 206);
    sent += part.body.len();
    // HEAD sends no body and 404s belong to no stream.
    request(
        "HEAD",
        &server.url(&format!("/demo/{}", p.segments[0].1)),
        &[],
    );
    get(&server.url("/demo/2001/01/01/00/00/00-02000.ts"));
    let after = stream_metric(
        &server.scrape_after(SystemTime::now()),
        "flussonic_stream_bytes_out",
        "demo",
    );
    assert_eq!(
        (after - before) as usize,
        sent,
        "bytes_out must rise by exactly what was sent"
    );
}

#[test]
fn client_count_follows_real_players_and_sessions_expire() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("demo", 3, Duration::from_secs(30));
    // The harness itself just polled the playlist: one session, which expires after 3 s.
    let polled = server.scrape_after(SystemTime::now());
    assert_eq!(
        stream_metric(&polled, "flussonic_stream_client_count", "demo"),
        1.0
    );
    wait_until(
        Duration::from_secs(10),
        "the harness session to expire",
        || {
            metric(
                &server.scrape(),
                "flussonic_stream_client_count",
                "name=\"demo\"",
            ) == Some(0.0)
        },
    );
    // Three HLS players (distinct User-Agents: one session each) and one /mpegts client.
    let players: Vec<Proc> = (0..3)
        .map(|i| {
            Proc(
                Command::new("ffmpeg")
                    .args([
                        "-nostdin",
                        "-v",
                        "error",
                        "-re",
                        "-user_agent",
                        &format!("player-{i}"),
                    ])
                    .args(["-i", &server.url("/demo/index.m3u8"), "-f", "null", "-"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let mpegts = Proc(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-i",
                &server.url("/demo/mpegts"),
                "-f",
                "null",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut text = String::new();
    wait_until(Duration::from_secs(20), "4 clients", || {
        text = server.scrape();
        metric(&text, "flussonic_stream_client_count", "name=\"demo\"") == Some(4.0)
    });
    // Stable while they play (HLS players poll well within the 3 s session timeout).
    std::thread::sleep(Duration::from_secs(4));
    let text = server.scrape_after(SystemTime::now());
    assert_eq!(
        stream_metric(&text, "flussonic_stream_client_count", "demo"),
        4.0
    );
    assert_eq!(metric(&text, "flussonic_clients", ""), Some(4.0));
    drop(mpegts);
    drop(players);
    // The /mpegts connection ends at once; HLS sessions after the 3 s timeout.
    wait_until(Duration::from_secs(15), "0 clients", || {
        metric(
            &server.scrape(),
            "flussonic_stream_client_count",
            "name=\"demo\"",
        ) == Some(0.0)
    });
}

#[test]
fn bitrate_and_retries_of_a_udp_source() {
    let port = free_port(true);
    let feeder = cbr_feeder(port);
    let server = Server::start(&[(
        "cam",
        &format!("inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 2 }}]\n"),
    )]);
    server.wait_segments("cam", 2, Duration::from_secs(30));
    // A full 10 s window of input at 1,000,000 bit/s = 125 kB/s.
    std::thread::sleep(Duration::from_secs(11));
    let text = server.scrape_after(SystemTime::now());
    let kbytes = stream_metric(&text, "flussonic_stream_bitrate", "cam");
    assert!(
        (kbytes - 125.0).abs() <= 125.0 * 0.05,
        "bitrate {kbytes} kB/s, sent 125 kB/s"
    );
    assert_eq!(
        stream_metric(&text, "flussonic_stream_retry_count", "cam"),
        0.0
    );
    assert_eq!(stream_metric(&text, "flussonic_stream_alive", "cam"), 1.0);
    let delay = stream_metric(&text, "flussonic_stream_client_delay", "cam");
    assert!(
        (0.0..=3000.0).contains(&delay),
        "client delay {delay} ms within one segment"
    );
    let started = stream_metric(&text, "flussonic_stream_start_running_at", "cam");
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        started > now_ms - 60_000.0 && started < now_ms,
        "start_running_at {started}"
    );

    // Kill the source three times; each time wait for the restart, then bring it back.
    drop(feeder);
    let mut feeder = None;
    for round in 1..=3 {
        wait_until(Duration::from_secs(15), &format!("retry {round}"), || {
            metric(
                &server.scrape(),
                "flussonic_stream_retry_count",
                "name=\"cam\"",
            ) == Some(f64::from(round))
        });
        drop(feeder.take());
        let f = cbr_feeder(port);
        wait_until(Duration::from_secs(15), "data again", || {
            let t = server.scrape_after(SystemTime::now());
            stream_metric(&t, "flussonic_stream_alive", "cam") == 1.0
                && stream_metric(&t, "flussonic_stream_start_running_at", "cam") > started
        });
        if round < 3 {
            drop(f);
        } else {
            feeder = Some(f);
        }
    }
    std::thread::sleep(Duration::from_secs(4));
    let text = server.scrape_after(SystemTime::now());
    assert_eq!(
        stream_metric(&text, "flussonic_stream_retry_count", "cam"),
        3.0
    );
    drop(feeder);
}

/// `client_delay` is the media received but not yet fetchable: from the moment the newest
/// segment was listed (the live edge a player can reach) to the newest frame, at the stats
/// sample. The truth is taken from the client side: the test polls the playlist to see when
/// its newest segment appeared, then compares the sample's timestamp with that moment, for
/// samples during which the newest segment did not change. (The playlist's PROGRAM-DATE-TIME
/// is no clock for this: it follows the source's clock from the run's first keyframe, and a
/// sender that falls behind real time on a loaded machine drifts away from it.)
#[test]
fn client_delay_is_the_media_clients_cannot_fetch_yet() {
    let port = free_port(true);
    let _feeder = cbr_feeder(port);
    let server = Server::start(&[(
        "cam",
        // 3 s segments sampled every second: samples fall at different points of a build.
        &format!(
            "inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 2 }}]\nsegment_duration = 3000\n"
        ),
    )]);
    server.wait_segments("cam", 3, Duration::from_secs(30));
    let wall_ms = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0
    };
    let newest = |p: &Playlist| p.segments.last().map(|s| s.1.clone());
    let mut checked = Vec::new();
    for attempt in 0..30 {
        // Poll until a new segment is listed: it appeared after the previous poll was sent
        // and before this one was answered.
        let seen = newest(&server.wait_segments("cam", 1, Duration::from_secs(5)));
        let mut sent_before = wall_ms();
        let listed_ms = loop {
            let sent = wall_ms();
            let p = server.wait_segments("cam", 1, Duration::from_secs(5));
            let answered = wall_ms();
            if newest(&p) != seen {
                assert!(
                    answered - sent_before < 100.0,
                    "the playlist took {} ms to poll",
                    answered - sent_before
                );
                break (sent_before + answered) / 2.0;
            }
            sent_before = sent;
            std::thread::sleep(Duration::from_millis(5));
        };
        let listed = newest(&server.wait_segments("cam", 1, Duration::from_secs(5)));
        // Samples fall at different points of a segment's build.
        std::thread::sleep(Duration::from_millis(1000 * (attempt % 3)));
        let text = server.scrape_after(SystemTime::now());
        let after = server.wait_segments("cam", 1, Duration::from_secs(5));
        if newest(&after) != listed {
            continue;
        }
        let sampled_ms =
            metric(&text, "flussonic_stats_last_success_timestamp_seconds", "").unwrap() * 1000.0;
        let truth = sampled_ms - listed_ms;
        let delay = stream_metric(&text, "flussonic_stream_client_delay", "cam");
        // The sample reads the newest frame's arrival (25 fps: ≤ 40 ms old) a few ms before
        // its timestamp, and the listing moment is known to within half a poll: 250 ms covers
        // both and is far below one segment (the scale of the value).
        assert!(
            (delay - truth).abs() <= 250.0,
            "client_delay {delay} ms, the playlist listed its newest segment {truth} ms before the sample"
        );
        checked.push(delay);
        if checked.len() >= 4 {
            break;
        }
    }
    assert!(
        checked.len() >= 4,
        "samples with a steady playlist: {checked:?}"
    );
    let spread = checked.iter().copied().fold(f64::MIN, f64::max)
        - checked.iter().copied().fold(f64::MAX, f64::min);
    assert!(spread > 100.0, "client_delay never moved: {checked:?}");
}

/// /proc figures read the same way the kernel documents them.
fn meminfo_used_percent() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |k: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    let total = field("MemTotal:");
    (total - field("MemAvailable:")) * 100.0 / total
}

/// (busy, total) jiffies of all CPUs from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let idle = v[3] + v[4];
    let total: u64 = v.iter().take(8).sum();
    (total - idle, total)
}

#[test]
fn host_figures_agree_with_proc() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("demo", 1, Duration::from_secs(30));
    // A steady load (one core spinning) makes the CPU figure comparable between two readers.
    let _burner = Proc(
        Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    // Sample /proc/stat every 50 ms with wall time; then compare the server's figure for its
    // last interval with /proc over the same interval.
    let mut samples = Vec::new();
    let end = std::time::Instant::now() + Duration::from_millis(3500);
    while std::time::Instant::now() < end {
        samples.push((SystemTime::now(), cpu_jiffies()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = server.scrape();
    let at = metric(&text, "flussonic_stats_last_success_timestamp_seconds", "").unwrap();
    let nearest = |t: f64| nearest_sample(&samples, t).1;
    let (b0, t0) = nearest(at - 1.0);
    let (b1, t1) = nearest(at);
    let proc_cpu = (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64;
    let cpu = metric(&text, "flussonic_cpu_usage", "").unwrap();
    // Tolerance: the two 1 s windows are aligned to within one 50 ms sample at each end
    // (≤ 10 % of the window) and jiffies are 10 ms ticks: 10 points covers both under steady load.
    assert!(
        (cpu - proc_cpu).abs() <= 10.0,
        "cpu {cpu} % vs /proc/stat {proc_cpu} %"
    );
    // One core of N spins: at least 100/N % (less 10 % of that for the window alignment).
    // (The CPUs /proc/stat counts, as the figure does: not a cgroup's quota.)
    let cores = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as f64;
    let floor = 100.0 / cores * 0.9;
    assert!(
        cpu >= floor,
        "one of {cores} cores is busy: {cpu} % < {floor} %"
    );

    // Memory moves slowly: 2 points (≈ 480 MiB here) covers what changes within a second.
    let mem = metric(&text, "flussonic_memory_usage", "").unwrap();
    let proc_mem = meminfo_used_percent();
    assert!(
        (mem - proc_mem).abs() <= 2.0,
        "memory {mem} % vs /proc/meminfo {proc_mem} %"
    );

    // Open files: the process's fd table, ±2 for a connection opening or closing meanwhile.
    let text = server.scrape_after(SystemTime::now());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count() as f64;
    let files = metric(&text, "flussonic_opened_files", "").unwrap();
    assert!(
        (files - fds).abs() <= 2.0,
        "opened_files {files} vs /proc fd count {fds}"
    );

    let load = metric(&text, "flussonic_scheduler_load", "").unwrap();
    assert!((0.0..=100.0).contains(&load));
    assert_eq!(metric(&text, "flussonic_streams", ""), Some(1.0));
    let boot = metric(&text, "flussonic_boot_time_seconds", "").unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(boot <= now && boot > now - 120.0, "boot time {boot}");
}

#[test]
fn disk_figures_are_those_of_the_dvr_filesystem() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    let text = server.scrape_after(SystemTime::now());
    let root = server.dir.path().join("dvr");
    let label = format!("path=\"{}\"", root.display());
    let size = metric(&text, "flussonic_disk_size", &label).expect("disk size of the DVR root");
    let usage = metric(&text, "flussonic_disk_usage", &label).expect("disk usage");
    // df on the nearest existing directory (the root is created when recording starts).
    let out = run_with_timeout(
        10,
        "df",
        &[
            "-B1",
            "--output=size,used,avail",
            server.dir.path().to_str().unwrap(),
        ],
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(size, v[0], "size equals df's");
    let df_usage = (v[0] - v[2]) * 100.0 / v[0];
    assert!(
        (usage - df_usage).abs() < 1.0,
        "usage {usage} vs df {df_usage}"
    );
}

#[test]
fn a_viewer_is_one_person_watching() {
    let server = Server::start(&[(
        "v",
        "inputs = [{ url = \"fake://fake\" }]\n[dvr]\nexpiration = \"1h\"\n",
    )]);
    server.wait_segments("v", 2, Duration::from_secs(30));
    wait_until(
        Duration::from_secs(10),
        "the harness session to expire",
        || {
            metric(
                &server.scrape(),
                "flussonic_stream_client_count",
                "name=\"v\"",
            ) == Some(0.0)
        },
    );
    // Monitoring: HEAD requests and recording_status.json polls, all along; nobody watches.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let (head, status) = (
            server.url("/v/index.m3u8"),
            server.url("/v/recording_status.json"),
        );
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(request("HEAD", &head, &[]).status, 200);
                assert_eq!(get(&status).status, 200);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let text = server.scrape_after(SystemTime::now());
    assert_eq!(
        stream_metric(&text, "flussonic_stream_client_count", "v"),
        0.0,
        "polls are not viewers"
    );
    // One /mpegts viewer is one client, from its first second.
    let watch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = common::control::mpegts_reader(&server, "v", watch.clone());
    std::thread::sleep(Duration::from_millis(500));
    let text = server.scrape_after(SystemTime::now());
    assert_eq!(
        stream_metric(&text, "flussonic_stream_client_count", "v"),
        1.0,
        "one connection, one viewer"
    );
    assert_eq!(metric(&text, "flussonic_clients", ""), Some(1.0));
    watch.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.join().unwrap();
}

#[test]
fn scheduler_load_follows_the_work_the_runtime_does() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("demo", 2, Duration::from_secs(30));
    // Idle but for one stream: its workers are mostly parked.
    std::thread::sleep(Duration::from_millis(1500));
    let idle = metric(
        &server.scrape_after(SystemTime::now()),
        "flussonic_scheduler_load",
        "",
    )
    .unwrap();
    // Four clients asking as fast as they can keep the workers busy.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let url = server.url("/demo/mono.m3u8");
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(get(&url).status, 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let busy = metric(
        &server.scrape_after(SystemTime::now()),
        "flussonic_scheduler_load",
        "",
    )
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let requests: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    eprintln!("scheduler load: idle {idle} %, busy {busy} % ({requests} requests)");
    assert!(idle < 10.0, "an idle runtime is not loaded: {idle} %");
    assert!(
        busy > idle + 10.0,
        "serving {requests} requests must show: idle {idle} %, busy {busy} %"
    );
    assert!(busy <= 100.0);
}
