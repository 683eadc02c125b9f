//! Host metrics against the host's own accounts under load the test makes: network bytes
//! under known veth traffic (/proc/net/dev), disk busy time during direct writes
//! (/proc/diskstats), GPU gauges (nvidia-smi, where a GPU is present).

mod common;

use common::veth::Veth;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// Σ (received, transmitted) bytes of every interface but `lo`, from /proc/net/dev.
fn proc_net_dev() -> (u64, u64) {
    std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            Some((v[0], v[8]))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

/// `net_input_bytes`/`net_output_bytes` under known traffic: 20,000 UDP datagrams of 1,000
/// bytes each way over a veth (1,042 bytes on the wire each: + UDP 8, IP 20, Ethernet 14). The
/// exported deltas between two samples hold at least that traffic and at most what
/// /proc/net/dev counted over a window enclosing both samples (the traffic plus whatever else
/// crossed the host's interfaces meanwhile).
#[test]
fn net_bytes_follow_known_traffic() {
    let veth = Veth::create("m", "10.254.77.1", "10.254.77.2");
    let server = Server::start(&[]);
    let sink = std::net::UdpSocket::bind("10.254.77.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let (n, payload, wire) = (20_000u64, 1000usize, 1042u64);
    let proc0 = proc_net_dev();
    let s0 = server.scrape_after(SystemTime::now());
    // Into the host: sent from the namespace to the socket above.
    let send = Command::new("ip")
        .args(["netns", "exec", &veth.ns, "python3", "-c"])
        .arg(format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for _ in range({n}): s.sendto(b'x' * {payload}, ('10.254.77.1', {port}))"
        ))
        .status()
        .unwrap();
    assert!(send.success());
    // Out of the host: to a port in the namespace that nobody listens on.
    let out = std::net::UdpSocket::bind("10.254.77.1:0").unwrap();
    for _ in 0..n {
        out.send_to(&[b'y'; 1000][..payload], "10.254.77.2:9")
            .unwrap();
    }
    let s1 = server.scrape_after(SystemTime::now());
    let proc1 = proc_net_dev();
    let known = n * wire;
    for (name, before, after, proc_delta) in [
        ("flussonic_net_input_bytes", &s0, &s1, proc1.0 - proc0.0),
        ("flussonic_net_output_bytes", &s0, &s1, proc1.1 - proc0.1),
    ] {
        let delta = (metric(after, name, "").unwrap() - metric(before, name, "").unwrap()) as u64;
        assert!(
            known <= delta && delta <= proc_delta,
            "{name}: +{delta} bytes; sent {known}, /proc/net/dev counted {proc_delta}"
        );
    }
    drop(sink);
}

/// `disk_io_usage` while `dd` writes with O_DIRECT next to the DVR root: the share of the
/// last interval the device was busy, as /proc/diskstats' io_ticks (field 13) of the device
/// `df` names for that folder say over the same second.
#[test]
fn disk_io_usage_follows_diskstats_during_a_direct_write() {
    let server = Server::start(&[]);
    let folder = server.dir.path().to_str().unwrap().to_owned();
    let df = run_with_timeout(10, "df", &["--output=source", &folder]);
    let source = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    let device = source
        .strip_prefix("/dev/")
        .unwrap_or_else(|| panic!("the test folder is not on a block device ({source})"))
        .to_owned();
    let ticks = || {
        std::fs::read_to_string("/proc/diskstats")
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&device.as_str())).then(|| f[12].parse::<u64>().unwrap())
            })
            .unwrap_or_else(|| panic!("{device} not in /proc/diskstats"))
    };
    let target = server.dir.path().join("direct.bin");
    let _writer = Proc(
        Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "count=100000", "oflag=direct"])
            .arg(format!("of={}", target.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut samples = Vec::new();
    let end = std::time::Instant::now() + Duration::from_millis(3000);
    while std::time::Instant::now() < end {
        samples.push((SystemTime::now(), ticks()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = server.scrape();
    drop(_writer);
    let _ = std::fs::remove_file(&target);
    let at = metric(&text, "flussonic_stats_last_success_timestamp_seconds", "").unwrap();
    let nearest = |t: f64| nearest_sample(&samples, t);
    let (w0, t0) = nearest(at - 1.0);
    let (w1, t1) = nearest(at);
    let wall_ms = w1.duration_since(*w0).unwrap().as_secs_f64() * 1000.0;
    let proc_busy = ((t1 - t0) as f64 * 100.0 / wall_ms).min(100.0);
    let label = format!("path=\"{}\"", server.dir.path().join("dvr").display());
    let busy =
        metric(&text, "flussonic_disk_io_usage", &label).expect("disk_io_usage of the DVR root");
    assert!(
        proc_busy >= 20.0,
        "dd kept {device} only {proc_busy} % busy"
    );
    // The windows align to within one 50 ms sample at each end (≤ 10 % of the second).
    assert!(
        (busy - proc_busy).abs() <= 10.0,
        "disk_io_usage {busy} % vs /proc/diskstats {proc_busy} %"
    );
}

/// GPU gauges against `nvidia-smi` on the same host, per GPU: temperature within 3 °C, encoder
/// and decoder utilisation within 10 points (both read the same NVML counters a moment apart).
/// GPU tests run only where an NVIDIA GPU is present, and say so.
#[test]
fn gpu_metrics_agree_with_nvidia_smi() {
    let query = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,utilization.encoder,utilization.decoder,temperature.gpu",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let rows = match query {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            println!(
                "no NVIDIA GPU on this host (nvidia-smi absent or failing): GPU metrics not checked here"
            );
            return;
        }
    };
    let server = Server::start(&[]);
    let text = server.scrape_after(SystemTime::now());
    assert_eq!(
        metric(&text, "flussonic_gpu_available", "reason=\"ok\""),
        Some(1.0),
        "nvidia-smi works, so NVML must"
    );
    let mut gpus = 0;
    for row in rows.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<f64> = row
            .split(',')
            .map(|v| v.trim().parse().unwrap_or(f64::NAN))
            .collect();
        let label = format!("gpu=\"{}\"", f[0]);
        for (name, truth, tolerance) in [
            ("flussonic_gpu_enc", f[1], 10.0),
            ("flussonic_gpu_dec", f[2], 10.0),
            ("flussonic_gpu_temp", f[3], 3.0),
        ] {
            let value = metric(&text, name, &label)
                .unwrap_or_else(|| panic!("{name}{{{label}}} missing; nvidia-smi: {row}"));
            assert!(
                (value - truth).abs() <= tolerance,
                "{name}{{{label}}} {value} vs nvidia-smi {truth}"
            );
        }
        gpus += 1;
    }
    println!("checked {gpus} GPU(s) against nvidia-smi");
    assert!(gpus > 0);
}
