//! The API surface: authentication on every `/flussonic/api/…` path (Basic and Flussonic's
//! Bearer form), failures counted by reason, and the liveness/readiness probes.

mod common;

use common::*;
use std::time::{Duration, SystemTime};

#[test]
fn api_requires_credentials_and_counts_failures() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("demo", 1, Duration::from_secs(30));
    let metrics = server.url("/flussonic/api/metrics");
    let none = get(&metrics);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), "Basic realm=\"headwater\"");
    let wrong = request(
        "GET",
        &metrics,
        &[("Authorization", &format!("Basic {}", b64("viewer:nope")))],
    );
    assert_eq!(wrong.status, 401);
    let garbage = request("GET", &metrics, &[("Authorization", "Basic ***")]);
    assert_eq!(garbage.status, 401);
    let bearer = request(
        "GET",
        &metrics,
        &[("Authorization", &format!("Bearer {}", b64("admin:pw")))],
    );
    assert_eq!(bearer.status, 200);
    assert!(
        bearer
            .header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    // Unknown API paths are 401 before auth and 404 after: nothing is revealed unauthenticated.
    assert_eq!(
        get(&server.url("/flussonic/api/v3/no_such_thing")).status,
        401
    );
    let auth = format!("Basic {}", b64("viewer:pw"));
    assert_eq!(
        request(
            "GET",
            &server.url("/flussonic/api/v3/no_such_thing"),
            &[("Authorization", &auth)]
        )
        .status,
        404
    );
    // The log never shows a password.
    assert!(!server.log_text().contains("nope"));

    let text = server.scrape_after(SystemTime::now());
    let failures = |reason: &str| {
        metric(
            &text,
            "flussonic_auth_failures_total",
            &format!("reason=\"{reason}\""),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(failures("missing"), 2.0);
    assert_eq!(failures("invalid"), 1.0);
    assert_eq!(failures("malformed"), 1.0);
    // HTTP metrics carry route templates, never the stream name or a raw path.
    assert!(
        metric(
            &text,
            "flussonic_http_requests_total",
            "method=\"GET\",route=\"/flussonic/api/metrics\",status=\"401\""
        )
        .unwrap_or(0.0)
            >= 3.0
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("flussonic_http") && l.contains("demo"))
    );
}

#[test]
fn liveness_and_readiness() {
    let port = free_port(true);
    let auth = format!("Bearer {}", b64("viewer:pw"));
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    server.wait_segments("demo", 1, Duration::from_secs(30));
    server.scrape_after(SystemTime::now());
    let live = request(
        "GET",
        &server.url("/flussonic/api/v3/monitoring/liveness"),
        &[("Authorization", &auth)],
    );
    assert_eq!(live.status, 200, "{}", live.text());
    assert!(
        live.text().contains("\"stats_thread\":{"),
        "{}",
        live.text()
    );
    let ready = request(
        "GET",
        &server.url("/streamer/api/v3/monitoring/readiness"),
        &[("Authorization", &auth)],
    );
    assert_eq!(ready.status, 200, "{}", ready.text());
    for part in [
        "\"streams\":{",
        "\"dvr_disk\":{",
        "\"with_live_source\":1",
        "\"status\":\"ok\"",
    ] {
        assert!(ready.text().contains(part), "{part} in {}", ready.text());
    }
    assert_eq!(
        get(&server.url("/flussonic/api/v3/monitoring/liveness")).status,
        401
    );

    // A server whose only stream has no source is alive but not ready.
    let silent = Server::start(&[(
        "silent",
        &format!("inputs = [{{ url = \"udp://127.0.0.1:{port}\" }}]\n"),
    )]);
    silent.scrape_after(SystemTime::now());
    let live = request(
        "GET",
        &silent.url("/flussonic/api/v3/monitoring/liveness"),
        &[("Authorization", &auth)],
    );
    assert_eq!(live.status, 200);
    let ready = request(
        "GET",
        &silent.url("/flussonic/api/v3/monitoring/readiness"),
        &[("Authorization", &auth)],
    );
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.text().contains("\"with_live_source\":0"),
        "{}",
        ready.text()
    );
}

#[test]
fn streams_json_matches_the_metrics() {
    let server = Server::start(&[
        (
            "demo",
            "title = \"Demo\"\ninputs = [{ url = \"fake://fake\" }]\n[dvr]\n",
        ),
        (
            "cam",
            "inputs = [{ url = \"rtsp://u:Pw123456@127.0.0.1:1/x\", source_timeout = 2 }, { url = \"fake://fake\", priority = 2 }]\n",
        ),
    ]);
    server.wait_segments("demo", 2, Duration::from_secs(30));
    let auth = format!("Basic {}", b64("viewer:pw"));
    assert_eq!(get(&server.url("/flussonic/api/v3/streams")).status, 401);
    let list = request(
        "GET",
        &server.url("/flussonic/api/v3/streams"),
        &[("Authorization", &auth)],
    );
    assert_eq!(list.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["estimated_count"], 2);
    assert!(
        !list.text().contains("Pw123456"),
        "credentials masked in the API too"
    );
    let one = request(
        "GET",
        &server.url("/flussonic/api/v3/streams/demo"),
        &[("Authorization", &auth)],
    );
    let d: serde_json::Value = serde_json::from_slice(&one.body).unwrap();
    assert_eq!(d["title"], "Demo");
    assert_eq!(d["stats"]["alive"], true);
    assert_eq!(d["stats"]["dvr_enabled"], true);
    let tracks = d["stats"]["media_info"]["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2);
    assert_eq!(tracks[0]["width"], 640);
    // The same counters as the metrics: bytes_in only grows between a JSON read and a scrape.
    let json_in = d["stats"]["bytes_in"].as_u64().unwrap();
    let text = server.scrape_after(SystemTime::now());
    let metric_in = metric(&text, "flussonic_stream_bytes_in", "name=\"demo\"").unwrap() as u64;
    assert!(
        metric_in >= json_in && metric_in - json_in < 2_000_000,
        "{json_in} vs {metric_in}"
    );
    // The RTSP input cannot connect: the backup feeds `cam` and the JSON says which input is active.
    wait_until(Duration::from_secs(30), "cam on its backup input", || {
        let r = request(
            "GET",
            &server.url("/flussonic/api/v3/streams/cam"),
            &[("Authorization", &auth)],
        );
        let c: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        c["inputs"][1]["stats"]["active"] == true
            && c["stats"]["retry_count"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(
        request(
            "GET",
            &server.url("/flussonic/api/v3/streams/nosuch"),
            &[("Authorization", &auth)]
        )
        .status,
        404
    );
}
