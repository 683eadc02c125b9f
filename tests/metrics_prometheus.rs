//! A real Prometheus (Debian's) scrapes Headwater exactly as it scrapes Flussonic:
//! `metrics_path: /flussonic/api/metrics` with `basic_auth`. Every metric that can exist on
//! this machine must arrive; a wrong password must leave the target down with 401; the
//! exposition must pass `promtool check metrics` (only the lints that Flussonic's fixed names
//! cause are allowed).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Series every Headwater exports on a machine without GPU or DVB hardware.
const SERVER_METRICS: &[&str] = &[
    "flussonic_version_info",
    "flussonic_boot_time_seconds",
    "flussonic_memory_usage",
    "flussonic_clients",
    "flussonic_streams",
    "flussonic_opened_files",
    "flussonic_scheduler_load",
    "flussonic_cpu_usage",
    "flussonic_disk_size",
    "flussonic_disk_usage",
    "flussonic_disk_io_usage",
    "flussonic_net_input_bytes",
    "flussonic_net_output_bytes",
    "flussonic_gpu_available",
    "flussonic_http_requests_total",
    "flussonic_http_request_duration_seconds_bucket",
    "flussonic_http_requests_in_flight",
    "flussonic_http_response_size_bytes_bucket",
    "flussonic_auth_failures_total",
    "flussonic_stats_last_success_timestamp_seconds",
    "flussonic_stats_errors_total",
    "flussonic_stats_duration_seconds",
];
const STREAM_METRICS: &[&str] = &[
    "flussonic_stream_client_delay",
    "flussonic_stream_bytes_in",
    "flussonic_stream_bytes_out",
    "flussonic_stream_bitrate",
    "flussonic_stream_start_running_at",
    "flussonic_stream_retry_count",
    "flussonic_stream_client_count",
    "flussonic_stream_alive",
];
/// Only streams that record have these.
const DVR_METRICS: &[&str] = &[
    "flussonic_stream_dvr_info_disk_size",
    "flussonic_stream_dvr_info_depth",
    "flussonic_stream_dvr_info_duration",
    "flussonic_dvr_segments_written_total",
    "flussonic_dvr_segments_dropped_total",
    "flussonic_dvr_segments_failed_total",
    "flussonic_dvr_deleted_bytes_total",
];

#[test]
fn real_prometheus_scrapes_every_metric_with_basic_auth() {
    let port = free_port(true);
    let _feeder = udp_feeder(port, "");
    let server = Server::start(&[
        ("demo", "inputs = [{ url = \"fake://fake\" }]\n"),
        (
            "cam",
            &format!(
                "inputs = [{{ url = \"udp://127.0.0.1:{port}\" }}]\n[dvr]\nexpiration = \"1h\"\n"
            ),
        ),
    ]);
    server.wait_segments("demo", 1, Duration::from_secs(30));
    server.wait_segments("cam", 1, Duration::from_secs(30));
    // Some playback traffic so that HTTP series exist.
    get(&server.url("/demo/index.m3u8"));

    let prom = Prometheus::start(&server.base);
    let query = |q: &str| prom.query(q);
    let prom_base = prom.base.clone();
    // Two more scrapes so that every series has been seen.
    std::thread::sleep(Duration::from_secs(3));
    let mut missing = Vec::new();
    for name in SERVER_METRICS {
        if !query(name).contains("\"metric\":{") {
            missing.push((*name).to_owned());
        }
    }
    for name in STREAM_METRICS {
        for stream in ["demo", "cam"] {
            let q = format!("{name}{{name=\"{stream}\"}}");
            if !query(&q).contains("\"metric\":{") {
                missing.push(q);
            }
        }
    }
    for name in DVR_METRICS {
        let q = format!("{name}{{name=\"cam\"}}");
        if !query(&q).contains("\"metric\":{") {
            missing.push(q);
        }
        let q = format!("{name}{{name=\"demo\"}}");
        assert!(
            !query(&q).contains("\"metric\":{"),
            "{q}: a stream without DVR has no archive figures"
        );
    }
    assert!(missing.is_empty(), "not in Prometheus: {missing:?}");
    // The wrong password: target down with 401, counted by reason.
    let targets = get(&format!("{prom_base}/api/v1/targets")).text();
    let bad = targets
        .split("\"scrapePool\":\"headwater_badpass\"")
        .nth(1)
        .expect("badpass target listed");
    assert!(bad.contains("\"health\":\"down\""), "{bad:.400}");
    assert!(bad.contains("401 Unauthorized"), "{bad:.400}");
    assert!(
        query("flussonic_auth_failures_total{reason=\"invalid\"} > 0").contains("\"metric\":{"),
        "wrong-password scrapes are counted"
    );
    // promtool on the real exposition; and every family has its HELP and TYPE.
    let text = server.scrape();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            })
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{name} has no TYPE"
        );
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool: {report}"
    );
    // Lints caused by the names seed 001 fixes (Flussonic's, kept for existing dashboards).
    let allowed: &[(&str, &str)] = &[
        (
            "flussonic_stream_bytes_in",
            "counter metrics should have \"_total\" suffix",
        ),
        (
            "flussonic_stream_bytes_out",
            "counter metrics should have \"_total\" suffix",
        ),
        (
            "flussonic_stream_retry_count",
            "counter metrics should have \"_total\" suffix",
        ),
        (
            "flussonic_stream_retry_count",
            "should not have \"_count\" suffix",
        ),
        (
            "flussonic_stream_client_count",
            "should not have \"_count\" suffix",
        ),
        (
            "flussonic_net_input_bytes",
            "counter metrics should have \"_total\" suffix",
        ),
        (
            "flussonic_net_output_bytes",
            "counter metrics should have \"_total\" suffix",
        ),
    ];
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let ok = allowed
            .iter()
            .any(|(name, lint)| line.starts_with(&format!("{name} ")) && line.contains(lint));
        assert!(ok, "unexpected promtool finding: {line}\n{report}");
    }
}
