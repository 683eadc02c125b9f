//! Traces over OTLP, received by a real receiver built on the official protobufs
//! (`common::otlp`, gRPC and HTTP/protobuf): request spans join the caller's trace, an edge
//! pulling from an origin is one trace across both processes, failover and DVR writes are
//! traced, the sampler ratio holds, a dead collector costs serving nothing and its drops are
//! counted, JSON log lines carry the trace id, and Prometheus gets exemplars over OpenMetrics.

mod common;

use common::otlp::{Receiver, Span};
use common::*;
use std::time::Duration;

const FAKE: &str = "inputs = [{ url = \"fake://fake\" }]\nsegment_count = 4\n";

/// Server environment exporting to `endpoint` over `protocol`, batching every 200 ms.
fn otel_env<'a>(endpoint: &'a str, protocol: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ]
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn request_span<'a>(spans: &'a [Span], trace_id: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.trace_id == trace_id && s.kind == 2)
}

/// A playlist request with a `traceparent` gives a server span in that trace, with the route
/// template, the status and the stream, over HTTP/protobuf and over gRPC; a log line written
/// inside a request carries the trace id the receiver saw.
#[test]
fn a_playlist_request_joins_the_callers_trace_over_both_protocols() {
    let receiver = Receiver::start();
    for (protocol, endpoint, via) in [
        ("http/protobuf", receiver.http.as_str(), "http"),
        ("grpc", receiver.grpc.as_str(), "grpc"),
    ] {
        let mut env = otel_env(endpoint, protocol);
        env.push(("HEADWATER_LOG_FORMAT", "json"));
        let server = Server::start_env(&[("demo", FAKE)], "", "", &env);
        server.wait_segments("demo", 1, Duration::from_secs(20));
        let trace_id = random_hex(16);
        let parent = random_hex(8);
        let traceparent = format!("00-{trace_id}-{parent}-01");
        let reply = request(
            "GET",
            &server.url("/demo/index.m3u8"),
            &[("traceparent", &traceparent)],
        );
        assert_eq!(reply.status, 200);
        let spans = receiver.wait_for(Duration::from_secs(15), "the request span", |s| {
            request_span(s, &trace_id).is_some()
        });
        let span = request_span(&spans, &trace_id).unwrap();
        assert_eq!(
            span.parent_span_id, parent,
            "the caller's span is the parent"
        );
        assert_eq!(span.via, via, "{protocol}");
        assert_eq!(span.name, "GET /:name/index.m3u8");
        assert_eq!(span.attr("http.route"), Some("/:name/index.m3u8"));
        assert_eq!(span.attr("http.request.method"), Some("GET"));
        assert_eq!(span.attr("http.response.status_code"), Some("200"));
        assert_eq!(span.attr("stream"), Some("demo"));
        assert_eq!(
            span.attr("http.response.body.size"),
            Some(reply.body.len().to_string().as_str())
        );
        assert_eq!(span.service, "headwater", "the default service.name");

        // A refused API request logs (debug) inside its span: the JSON line names the trace.
        let trace_id = random_hex(16);
        let refused = request(
            "GET",
            &server.url("/flussonic/api/metrics"),
            &[
                (
                    "traceparent",
                    &format!("00-{trace_id}-{}-01", random_hex(8)),
                ),
                ("Authorization", &format!("Basic {}", b64("viewer:wrong"))),
            ],
        );
        assert_eq!(refused.status, 401);
        let spans = receiver.wait_for(Duration::from_secs(15), "the refused request", |s| {
            request_span(s, &trace_id).is_some()
        });
        let refused_span = request_span(&spans, &trace_id).unwrap();
        assert_eq!(
            refused_span.attr("http.route"),
            Some("/flussonic/api/metrics")
        );
        assert_eq!(refused_span.attr("http.response.status_code"), Some("401"));
        let line = server
            .log_text()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON log line"))
            .find(|l| l["message"] == "API request refused")
            .expect("the refusal is logged");
        assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
        assert_eq!(line["span_id"], refused_span.span_id.as_str(), "{line}");
        // Segments were cut and listed, each a span with its fMP4 remux inside.
        let spans = receiver.wait_for(Duration::from_secs(15), "segment spans", |s| {
            s.iter()
                .any(|x| x.name == "segment" && x.attr("stream") == Some("demo"))
        });
        let segment = spans.iter().find(|x| x.name == "segment").unwrap();
        assert!(segment.attr("segment.sequence").is_some(), "{segment:?}");
        assert!(
            spans
                .iter()
                .any(|x| x.name == "segment.fmp4" && x.parent_span_id == segment.span_id),
            "the remux is inside its segment's span"
        );
        let exported = metric(&server.scrape(), "flussonic_trace_spans_exported_total", "")
            .expect("the exported-spans counter");
        assert!(exported >= 2.0, "{exported}");
    }
}

/// An edge Headwater pulling `tshttp://` from an origin Headwater: the edge's
/// `source.connect` span and the origin's `/mpegts` server span are one trace.
#[test]
fn an_edge_pulling_from_an_origin_is_one_trace_across_both() {
    let receiver = Receiver::start();
    let mut env = otel_env(&receiver.http, "http/protobuf");
    env.push(("OTEL_SERVICE_NAME", "origin"));
    let origin = Server::start_env(&[("demo", FAKE)], "", "", &env);
    origin.wait_segments("demo", 1, Duration::from_secs(20));
    let pull = format!(
        "inputs = [{{ url = \"tshttp://{}/demo/mpegts\" }}]\nsegment_count = 4\n",
        origin.base.trim_start_matches("http://")
    );
    let mut env = otel_env(&receiver.http, "http/protobuf");
    env.push((
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=edge,deployment.environment=test",
    ));
    let mut edge = Server::start_env(&[("relay", &pull)], "", "", &env);
    edge.wait_segments("relay", 1, Duration::from_secs(30));
    // The origin's span of the endless /mpegts body ends when the edge hangs up.
    edge.terminate(Duration::from_secs(10));
    let spans = receiver.wait_for(Duration::from_secs(20), "both sides of the pull", |s| {
        s.iter().any(|x| {
            x.service == "origin"
                && x.attr("http.route") == Some("/:name/mpegts")
                && s.iter().any(|c| {
                    c.service == "edge"
                        && c.name == "source.connect"
                        && c.span_id == x.parent_span_id
                })
        })
    });
    let served = spans
        .iter()
        .find(|x| x.service == "origin" && x.attr("http.route") == Some("/:name/mpegts"))
        .unwrap();
    let connect = spans
        .iter()
        .find(|c| c.service == "edge" && c.span_id == served.parent_span_id)
        .unwrap();
    assert_eq!(
        connect.trace_id, served.trace_id,
        "one trace across both processes"
    );
    assert_eq!(connect.attr("stream"), Some("relay"));
    assert!(
        connect.attr("input").unwrap().ends_with("/demo/mpegts"),
        "{connect:?}"
    );
    assert!(
        served
            .attr("http.response.body.size")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 10_000,
        "the origin's span counts what the edge was sent: {served:?}"
    );
}

/// A failover (a silent UDP input → the fake backup) and the DVR's writes give their spans:
/// the failover with from/to/reason and the backup's connect inside it; each archive write
/// with its write, fsync and rename steps; a transcoded stream's connect with the
/// transcoder's hardware and encoder.
#[test]
fn failover_and_dvr_writes_are_traced() {
    let receiver = Receiver::start();
    let port = free_port(true);
    let stream = format!(
        "inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 2 }}, {{ url = \"fake://fake\" }}]\nsegment_count = 4\n[dvr]\nexpiration = \"1h\"\n"
    );
    let env = otel_env(&receiver.grpc, "grpc");
    // And a transcoded stream: its connect names where the transcoder runs and with what.
    let ladder = "inputs = [{ url = \"fake://fake\" }]\n[transcoder]\nhw = \"cpu\"\npreset = \"ultrafast\"\n\
                  [[transcoder.video]]\nbitrate = \"200k\"\nsize = \"320x180\"\n";
    let _server = Server::start_env(&[("cam", &stream), ("abr", ladder)], "", "", &env);
    let spans = receiver.wait_for(Duration::from_secs(30), "a failover and a DVR write", |s| {
        s.iter().any(|x| x.name == "source.failover")
            && s.iter().any(|x| x.name == "dvr.write.rename")
    });
    let failover = spans.iter().find(|x| x.name == "source.failover").unwrap();
    assert_eq!(failover.attr("stream"), Some("cam"));
    assert_eq!(
        failover.attr("from"),
        Some(format!("udp://127.0.0.1:{port}").as_str())
    );
    assert_eq!(failover.attr("to"), Some("fake://fake"));
    assert!(
        failover.attr("reason").unwrap().contains("no data"),
        "{failover:?}"
    );
    let connect = receiver.wait_for(Duration::from_secs(10), "the backup's connect", |s| {
        s.iter()
            .any(|x| x.name == "source.connect" && x.parent_span_id == failover.span_id)
    });
    let connect = connect
        .iter()
        .find(|x| x.name == "source.connect" && x.parent_span_id == failover.span_id)
        .unwrap();
    assert_eq!(connect.attr("input"), Some("fake://fake"));
    assert_eq!(connect.trace_id, failover.trace_id);

    let spans = receiver.wait_for(Duration::from_secs(20), "the ladder's connect", |s| {
        s.iter()
            .any(|x| x.name == "source.connect" && x.attr("stream") == Some("abr"))
    });
    let transcoded = spans
        .iter()
        .find(|x| x.name == "source.connect" && x.attr("stream") == Some("abr"))
        .unwrap();
    assert_eq!(
        transcoded.attr("transcoder.hw"),
        Some("cpu"),
        "{transcoded:?}"
    );
    assert_eq!(transcoded.attr("transcoder.encoder"), Some("x264enc"));

    let write = spans
        .iter()
        .find(|x| {
            x.name == "dvr.write"
                && ["data", "fsync", "rename"].iter().all(|step| {
                    spans.iter().any(|c| {
                        c.name == format!("dvr.write.{step}") && c.parent_span_id == x.span_id
                    })
                })
        })
        .expect("a DVR write with its three steps");
    assert_eq!(write.attr("stream"), Some("cam"));
    assert!(write.attr("segment.bytes").unwrap().parse::<u64>().unwrap() > 1000);
    assert!(write.end_ns >= write.start_ns);
}

/// `parentbased_traceidratio` at 0.1: of 1000 untraced requests about a tenth are kept
/// (binomial: 100 ± 4.5 σ), and every request whose caller sampled it is kept.
#[test]
fn the_sampler_ratio_keeps_about_a_tenth() {
    let receiver = Receiver::start();
    let mut env = otel_env(&receiver.http, "http/protobuf");
    env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"));
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0.1"));
    let server = Server::start_env(&[], "", "", &env);
    let url = server.url("/time");
    for _ in 0..1000 {
        assert_eq!(get(&url).status, 200);
    }
    let parents: Vec<String> = (0..20).map(|_| random_hex(16)).collect();
    for t in &parents {
        let tp = format!("00-{t}-{}-01", random_hex(8));
        assert_eq!(request("GET", &url, &[("traceparent", &tp)]).status, 200);
    }
    let spans = receiver.wait_for(Duration::from_secs(15), "the sampled parents' spans", |s| {
        parents.iter().all(|t| request_span(s, t).is_some())
    });
    // Let any straggler batch arrive before counting.
    std::thread::sleep(Duration::from_secs(1));
    let spans = {
        let later = receiver.spans();
        assert!(later.len() >= spans.len());
        later
    };
    let untraced = spans
        .iter()
        .filter(|s| s.attr("http.route") == Some("/time") && !parents.contains(&s.trace_id))
        .count();
    // n = 1000, p = 0.1: mean 100, σ = 9.5.
    assert!(
        (57..=143).contains(&untraced),
        "{untraced} of 1000 untraced requests kept at ratio 0.1"
    );
}

/// A play request to a stream with `on_play`: the backend call is a client span, child of
/// the request's span, and the backend receives a `traceparent` naming that client span. A
/// request the caller did not sample makes no backend span, and tells the backend so.
#[test]
fn an_auth_backend_call_is_a_child_of_the_request() {
    let receiver = Receiver::start();
    let backend = common::backend::Backend::start(1);
    let stream = format!("{FAKE}on_play = \"{}\"\n", backend.url);
    let server = Server::start_env(
        &[("tv", &stream)],
        "",
        "",
        &otel_env(&receiver.http, "http/protobuf"),
    );
    wait_until(Duration::from_secs(30), "the playlist", || {
        get(&server.url("/tv/index.m3u8?token=good1")).status == 200
    });
    let trace_id = random_hex(16);
    let reply = request(
        "GET",
        &server.url("/tv/index.m3u8?token=good-traced"),
        &[(
            "traceparent",
            &format!("00-{trace_id}-{}-01", random_hex(8)),
        )],
    );
    assert_eq!(reply.status, 200);
    let spans = receiver.wait_for(Duration::from_secs(15), "the request and its call", |s| {
        request_span(s, &trace_id).is_some()
            && s.iter()
                .any(|x| x.trace_id == trace_id && x.name.ends_with("auth backend"))
    });
    let served = request_span(&spans, &trace_id).unwrap();
    let call = spans
        .iter()
        .find(|x| x.trace_id == trace_id && x.name.ends_with("auth backend"))
        .unwrap();
    assert_eq!(
        call.parent_span_id, served.span_id,
        "the request is the parent"
    );
    assert_eq!(call.kind, 3, "a client span");
    assert_eq!(call.attr("http.response.status_code"), Some("200"));
    let calls = backend.play_calls("good-traced");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].traceparent.as_deref(),
        Some(format!("00-{trace_id}-{}-01", call.span_id).as_str()),
        "the backend is told its caller"
    );

    // The caller did not sample: no spans in that trace, and the backend hears "not sampled".
    let unsampled = random_hex(16);
    let reply = request(
        "GET",
        &server.url("/tv/index.m3u8?token=good-unsampled"),
        &[(
            "traceparent",
            &format!("00-{unsampled}-{}-00", random_hex(8)),
        )],
    );
    assert_eq!(reply.status, 200);
    let calls = backend.play_calls("good-unsampled");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let tp = calls[0].traceparent.as_deref().unwrap_or_default();
    assert!(tp.ends_with("-00"), "not sampled: {tp}");
    // A later traced request's spans arrive after anything the unsampled one could send.
    let later = random_hex(16);
    request(
        "GET",
        &server.url("/tv/index.m3u8?token=good1"),
        &[("traceparent", &format!("00-{later}-{}-01", random_hex(8)))],
    );
    let spans = receiver.wait_for(Duration::from_secs(15), "a later request", |s| {
        request_span(s, &later).is_some()
    });
    let leaked: Vec<&Span> = spans
        .iter()
        .filter(|x| x.name.ends_with("auth backend") && !x.trace_id.starts_with(&trace_id))
        .filter(|x| {
            calls[0]
                .traceparent
                .as_deref()
                .is_some_and(|tp| tp.contains(&x.span_id))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "an unsampled request's call was exported: {leaked:?}"
    );
    assert!(
        spans.iter().all(|x| x.trace_id != unsampled),
        "nothing of the unsampled trace is exported"
    );
}

/// A collector killed mid-run: every request is still answered, segments keep coming, the
/// lost spans are counted (at least one per request made after the kill), and the failure is
/// logged once, not per batch.
#[test]
fn a_dead_collector_costs_serving_nothing_and_drops_are_counted() {
    let mut receiver = Receiver::start();
    let mut env = otel_env(&receiver.http, "http/protobuf");
    env.push(("OTEL_BSP_MAX_QUEUE_SIZE", "64"));
    env.push(("OTEL_BSP_EXPORT_TIMEOUT", "1000"));
    let server = Server::start_env(&[("demo", FAKE)], "", "", &env);
    server.wait_segments("demo", 1, Duration::from_secs(20));
    for _ in 0..20 {
        assert_eq!(get(&server.url("/demo/index.m3u8")).status, 200);
    }
    receiver.wait_for(Duration::from_secs(10), "spans before the kill", |s| {
        s.len() >= 20
    });
    receiver.kill();
    let dropped = |text: &str| {
        metric(
            text,
            "flussonic_trace_spans_dropped_total",
            "reason=\"export_failed\"",
        )
        .unwrap_or(0.0)
            + metric(
                text,
                "flussonic_trace_spans_dropped_total",
                "reason=\"queue_full\"",
            )
            .unwrap_or(0.0)
    };
    let before = dropped(&server.scrape());
    let first = server.wait_segments("demo", 1, Duration::from_secs(5));
    let made = 300;
    for _ in 0..made {
        assert_eq!(get(&server.url("/demo/index.m3u8")).status, 200);
    }
    // Segments keep being cut and listed.
    wait_until(Duration::from_secs(15), "a newer segment", || {
        server
            .wait_segments("demo", 1, Duration::from_secs(5))
            .media_sequence
            > first.media_sequence
    });
    wait_until(Duration::from_secs(20), "the drops counted", || {
        dropped(&server.scrape()) - before >= f64::from(made)
    });
    let warnings = server
        .log_text()
        .lines()
        .filter(|l| l.contains("trace export failed"))
        .count();
    assert_eq!(warnings, 1, "logged once per change of state");
}

/// Prometheus scraping with OpenMetrics stores the request-duration histogram's exemplars;
/// their trace ids are ones the receiver got.
#[test]
fn prometheus_gets_exemplars_that_lead_to_received_traces() {
    let receiver = Receiver::start();
    let env = otel_env(&receiver.http, "http/protobuf");
    let server = Server::start_env(&[("demo", FAKE)], "", "", &env);
    server.wait_segments("demo", 1, Duration::from_secs(20));
    let om = request(
        "GET",
        &server.url("/flussonic/api/metrics"),
        &[
            ("Authorization", &format!("Basic {}", b64("viewer:pw"))),
            ("Accept", "application/openmetrics-text;version=1.0.0"),
        ],
    );
    assert!(
        om.header("content-type")
            .starts_with("application/openmetrics-text"),
        "{}",
        om.header("content-type")
    );
    assert!(om.text().ends_with("# EOF\n"));
    let prom = Prometheus::start_with(&server.base, &["--enable-feature=exemplar-storage"]);
    let start = unix_now() - 5;
    for _ in 0..50 {
        assert_eq!(get(&server.url("/demo/index.m3u8")).status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut answer = String::new();
    wait_until(Duration::from_secs(30), "exemplars in Prometheus", || {
        answer = get(&format!(
            "{}/api/v1/query_exemplars?query={}&start={start}&end={}",
            prom.base,
            urlencode(
                "flussonic_http_request_duration_seconds_bucket{route=\"/:name/index.m3u8\"}"
            ),
            unix_now() + 5
        ))
        .text();
        answer.contains("\"trace_id\"")
    });
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let ids: Vec<String> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|series| series["exemplars"].as_array().unwrap().iter())
        .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ids.is_empty(), "{answer}");
    let spans = receiver.wait_for(Duration::from_secs(10), "the exemplars' traces", |s| {
        ids.iter().all(|id| s.iter().any(|x| &x.trace_id == id))
    });
    for id in &ids {
        let span = spans.iter().find(|x| &x.trace_id == id).unwrap();
        assert_eq!(span.attr("http.route"), Some("/:name/index.m3u8"));
    }
    // The OpenMetrics scrape keeps every series: `up` and a per-stream family are there.
    assert!(prom.has_data("flussonic_http_requests_total{route=\"/:name/index.m3u8\"}"));
    assert!(prom.query("up{job=\"headwater\"}").contains("\"1\"]"));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
