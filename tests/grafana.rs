//! The shipped Grafana dashboards and alert rules are proven against a live Headwater and a
//! real Prometheus: every dashboard is well-formed, uses only metrics Headwater exports, and
//! every panel's PromQL returns data (hardware panels this machine cannot fill are listed and
//! skipped by name); the alert rules pass `promtool check rules` and their unit tests.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const DASHBOARDS: &[&str] = &["headwater-server", "headwater-streams", "headwater-http"];
/// Panels for hardware that this machine (and CI) does not have.
const HARDWARE_PANELS: &[&str] = &[
    "GPU encoder",
    "GPU decoder",
    "GPU temperature",
    "DVB signal strength",
];

fn dashboard(name: &str) -> Value {
    let path = format!(
        "{}/grafana/dashboards/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every (panel title, expr) of a dashboard.
fn targets(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed() {
    for name in DASHBOARDS {
        let d = dashboard(name);
        assert_eq!(d["uid"], *name);
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "Grafana 10 schema"
        );
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"datasource") && vars.contains(&"instance"),
            "{name}: {vars:?}"
        );
        if *name == "headwater-streams" {
            assert!(vars.contains(&"name"));
        }
        let panels = d["panels"].as_array().unwrap();
        let mut ids = std::collections::HashSet::new();
        let mut boxes: Vec<(i64, i64, i64, i64, String)> = Vec::new();
        for p in panels {
            let title = p["title"].as_str().unwrap().to_owned();
            assert!(
                ids.insert(p["id"].as_i64().unwrap()),
                "{name}: duplicate panel id in {title}"
            );
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_i64().unwrap(),
                g["y"].as_i64().unwrap(),
                g["w"].as_i64().unwrap(),
                g["h"].as_i64().unwrap(),
            );
            assert!(
                x >= 0 && w > 0 && x + w <= 24 && h > 0,
                "{name}: {title} outside the 24-column grid"
            );
            for (bx, by, bw, bh, other) in &boxes {
                let overlap = x < bx + bw && *bx < x + w && y < by + bh && *by < y + h;
                assert!(!overlap, "{name}: panel {title} overlaps {other}");
            }
            boxes.push((x, y, w, h, title.clone()));
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: {title}");
                let ts = p["targets"].as_array().unwrap();
                assert!(!ts.is_empty(), "{name}: {title} has no query");
                for t in ts {
                    assert!(
                        t["refId"].is_string() && t["expr"].is_string(),
                        "{name}: {title}"
                    );
                }
            }
        }
    }
}

#[test]
fn alert_rules_check_and_unit_tests_pass() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_panel_query_returns_data_from_a_live_headwater() {
    let port = free_port(true);
    let push_port = free_port(true);
    let _feeder = udp_feeder(port, "");
    // Traces on, to a real OTLP receiver, so the tracing panel has its series.
    let receiver = common::otlp::Receiver::start();
    let server = Server::start_env(
        &[
            // A one-rung ladder, so the transcoding panels have data.
            (
                "demo",
                "inputs = [{ url = \"fake://fake\" }]\n[transcoder]\nhw = \"cpu\"\npreset = \"ultrafast\"\n\
             [[transcoder.video]]\nbitrate = \"200k\"\nsize = \"320x180\"\n",
            ),
            (
                "cam",
                // A push (to a port nobody reads: UDP does not mind), for the push panels.
                &format!(
                    "inputs = [{{ url = \"udp://127.0.0.1:{port}\" }}]\npushes = [{{ url = \"udp://127.0.0.1:{push_port}\" }}]\n[dvr]\n"
                ),
            ),
        ],
        "",
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "500"),
        ],
    );
    let playlist = server.wait_segments("demo", 2, Duration::from_secs(30));
    server.wait_segments("cam", 1, Duration::from_secs(30));
    let prom = Prometheus::start(&server.base);
    // Some HLS traffic and a wrong password, spread over a few scrapes.
    for _ in 0..4 {
        get(&server.url("/demo/index.m3u8"));
        get(&server.url(&format!("/demo/{}", playlist.segments[0].1)));
        get(&server.url("/cam/mono.m3u8"));
        request(
            "GET",
            &server.url("/flussonic/api/metrics"),
            &[("Authorization", &format!("Basic {}", b64("viewer:bad")))],
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(2));
    let exposition = server.scrape();
    assert!(
        exposition.contains("flussonic_dvr_segments_written_total{name=\"cam\"}"),
        "the DVR stream records"
    );
    let mut empty = Vec::new();
    let mut checked = 0;
    let mut skipped = Vec::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        for (title, expr) in targets(&d) {
            // Only metrics Headwater exports (a renamed metric breaks this).
            for metric in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("flussonic_"))
            {
                let hardware = HARDWARE_PANELS.contains(&title.as_str());
                assert!(
                    hardware || exposition.contains(metric),
                    "{name}/{title}: {metric} is not exported"
                );
            }
            if HARDWARE_PANELS.contains(&title.as_str()) {
                skipped.push(title);
                continue;
            }
            let q = expr
                .replace("$__rate_interval", "15s")
                .replace("$__interval", "5s")
                .replace("$instance", ".*")
                .replace("$name", ".*");
            checked += 1;
            if !prom.has_data(&q) {
                empty.push(format!("{name}/{title}: {q} -> {}", prom.query(&q)));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    skipped.sort();
    let mut expected: Vec<String> = HARDWARE_PANELS.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(skipped, expected, "exactly the hardware panels are skipped");
    assert!(checked >= 30, "checked {checked} queries");
}
