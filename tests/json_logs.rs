//! JSON logs (`--log-format json`, `HEADWATER_LOG_FORMAT=json`): every line a running server
//! writes parses as one JSON object with time, level, target, message and fields, and lines
//! logged inside a stream's span name that stream.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn json_logs_parse_line_by_line_and_name_their_stream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("streams")).unwrap();
    std::fs::write(
        dir.path().join("streams/demo.toml"),
        "inputs = [{ url = \"fake://fake\" }]\n",
    )
    .unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(
        &cfg,
        "[server]\nstreams = \"streams\"\nrtmp = \"127.0.0.1:0\"\n[dvr]\nroot = \"dvr\"\n",
    )
    .unwrap();
    let log = dir.path().join("log.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("HEADWATER_LOG_FORMAT", "json")
        .env("HEADWATER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Proc(child);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(Duration::from_secs(20), "the stream's pipeline", || {
        text().contains("\"message\":\"pipeline playing\"")
    });
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let _ = server.0.wait();
    let lines: Vec<serde_json::Value> = text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 5, "{lines:?}");
    for l in &lines {
        for key in ["time", "level", "target", "message", "fields"] {
            assert!(l.get(key).is_some(), "{key} missing: {l}");
        }
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    }
    let started = lines
        .iter()
        .find(|l| l["message"] == "headwater started")
        .expect("the start line");
    assert!(
        started["fields"]["local_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{started}"
    );
    assert_eq!(started["level"], "INFO");
    let playing = lines
        .iter()
        .find(|l| l["message"] == "pipeline playing")
        .unwrap();
    assert_eq!(playing["stream"], "demo", "{playing}");
    // The innermost span: the source's connect (a traced operation inside the ingest span).
    assert_eq!(playing["span"], "source.connect", "{playing}");
    assert!(lines.iter().any(|l| l["message"] == "headwater stopped"));

    // A format that does not exist is refused before anything starts.
    let out = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--log-format",
            "xml",
            "check-config",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log format must be text or json"));
}
