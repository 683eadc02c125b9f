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
    assert_eq!(get(&server.url("/flussonic/api/v3/streams")).status, 401);
    let auth = format!("Basic {}", b64("viewer:pw"));
    assert_eq!(
        request(
            "GET",
            &server.url("/flussonic/api/v3/streams"),
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
