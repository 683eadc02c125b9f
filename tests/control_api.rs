//! The stream API's contract: bad writes refused with the field named and nothing changed,
//! concurrent writes serialised, paging and masked definitions that round-trip, and reloads
//! that keep the last good definition and apply server settings live (`tests/control.rs` has
//! the streams that play on while others are managed).

mod common;

use common::control::*;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Each kind of bad write is answered with its status and the field named; nothing changes and
/// the refusals are counted.
#[test]
fn bad_writes_are_refused_with_the_field_named_and_change_nothing() {
    let server = Server::start(&[(
        "a",
        "# hand-written\ntitle = \"A\"\ninputs = [{ url = \"fake://fake\" }]\n",
    )]);
    server.wait_segments("a", 1, Duration::from_secs(30));
    let before_files = stream_files(&server);
    let before_text = std::fs::read_to_string(server.dir.path().join("streams/a.toml")).unwrap();
    let url = |p: &str| server.url(&format!("{API}{p}"));
    let json_put = |path: &str, body: &[u8], auth: Option<&str>| {
        let mut h = vec![("Content-Type", "application/json")];
        let a;
        if let Some(creds) = auth {
            a = format!("Basic {}", b64(creds));
            h.push(("Authorization", &a));
        }
        send("PUT", &url(path), &h, body)
    };
    let errors = |r: &Reply| -> Value {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{}", r.text()));
        v["errors"][0].clone()
    };
    // Malformed JSON: where it broke.
    let r = json_put("/streams/a", b"{\"title\": ", Some("admin:pw"));
    assert_eq!(r.status, 400);
    assert_eq!(errors(&r)["line"], 1);
    // Wrong type, unknown key, invalid URL, value out of range: the field.
    for (body, path) in [
        (json!({"segment_count": "six"}), "segment_count"),
        (json!({"segment_cont": 6}), "segment_cont"),
        (
            json!({"inputs": [{"url": "rtmp://nowhere"}]}),
            "inputs[0].url",
        ),
        (
            json!({"inputs": [{"url": "fake://fake", "source_timeout": 0}]}),
            "inputs[0].source_timeout",
        ),
        (json!({"dvr": {"expiration": "forever"}}), "dvr.expiration"),
        (json!({"$reset": true}), ""),
    ] {
        let r = put(&server, "a", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = errors(&r);
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        if path.is_empty() {
            assert!(e["message"].as_str().unwrap().contains("inputs"), "{e}");
        } else {
            assert_eq!(e["path"], path, "{body}: {e}");
        }
    }
    // Too large, bad names, wrong credentials.
    assert_eq!(
        declared_too_large(&server, "/streams/a"),
        "HTTP/1.1 413 Payload Too Large"
    );
    for name in ["..", "a.toml", "a%2Fb", "%2e%2e"] {
        let status = json_put(&format!("/streams/{name}"), b"{}", Some("admin:pw")).status;
        assert_eq!(status, 400, "{name}");
    }
    assert_eq!(
        json_put("/streams/a/b", b"{}", Some("admin:pw")).status,
        404
    );
    let body = json!({"title": "X", "inputs": [{"url": "fake://fake"}]}).to_string();
    assert_eq!(
        json_put("/streams/x", body.as_bytes(), Some("viewer:pw")).status,
        403
    );
    assert_eq!(json_put("/streams/x", body.as_bytes(), None).status, 401);
    assert_eq!(
        json_put("/streams/x", body.as_bytes(), Some("admin:wrong")).status,
        401
    );
    assert_eq!(delete(&server, "nosuch").status, 404);
    assert_eq!(restart(&server, "nosuch").status, 404);
    // Nothing changed: the same files, the same text, the same running set.
    assert_eq!(stream_files(&server), before_files);
    assert_eq!(
        std::fs::read_to_string(server.dir.path().join("streams/a.toml")).unwrap(),
        before_text
    );
    assert_eq!(names(&list(&server, "")), ["a"]);
    // Counted: by route and status, and the credential failures by reason.
    let text = server.scrape_after(std::time::SystemTime::now());
    let route = "route=\"/flussonic/api/v3/streams/:name\"";
    let count = |status: &str| {
        metric(
            &text,
            "flussonic_http_requests_total",
            &format!("method=\"PUT\",{route},status=\"{status}\""),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("400"), 7.0, "{text}");
    assert_eq!(count("413"), 1.0);
    assert_eq!(count("403"), 1.0);
    assert_eq!(count("401"), 2.0);
    assert!(
        metric(
            &text,
            "flussonic_auth_failures_total",
            "reason=\"forbidden\""
        ) >= Some(1.0)
    );
    // A partial update keeps the hand-written comment; validation changes nothing.
    put_ok(&server, "a", &json!({"segment_count": 4}));
    let text = std::fs::read_to_string(server.dir.path().join("streams/a.toml")).unwrap();
    assert!(
        text.starts_with("# hand-written\ntitle = \"A\"\n") && text.contains("segment_count = 4"),
        "{text}"
    );
    let validate = |query: &str, body: &str| {
        send(
            "POST",
            &url(&format!("/config/validate{query}")),
            &[("Authorization", &admin())],
            body.as_bytes(),
        )
    };
    let r = validate(
        "",
        "title = \"x\"\ninputs = [{ url = \"udp://300.1.1.1:5\" }]\n",
    );
    assert_eq!(r.status, 400);
    let e = errors(&r);
    assert_eq!(
        (e["path"].as_str(), e["line"].as_u64()),
        (Some("inputs[0].url"), Some(2)),
        "{e}"
    );
    assert_eq!(
        validate("", "inputs = [{ url = \"fake://fake\" }]\n").status,
        200
    );
    assert_eq!(
        validate("", "{\"inputs\": [{\"url\": \"fake://fake\"}]}").status,
        200
    );
    let r = validate("", "[server]\nlisten = \"nowhere\"\n");
    assert_eq!(r.status, 400);
    assert_eq!(errors(&r)["path"], "server.listen");
    assert_eq!(
        validate("?type=server", "[stats]\ninterval = 1000\n").status,
        200
    );
    assert_eq!(stream_files(&server), before_files);
}

/// Concurrent partial updates of one stream, each to another key, are applied one after the
/// other: none is lost.
#[test]
fn concurrent_writes_to_one_stream_lose_nothing() {
    let server = Server::start(&[("c", "inputs = [{ url = \"publish://\" }]\n")]);
    let bodies = [
        json!({"title": "T"}),
        json!({"segment_count": 5}),
        json!({"segment_duration": 3000}),
        json!({"publish_key": "k"}),
        json!({"dvr": {"expiration": "2h"}}),
        json!({"dvr": {"storage_limit": "1G"}}),
    ];
    let base = server.base.clone();
    let writers: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let url = format!("{base}{API}/streams/c");
            std::thread::spawn(move || {
                let r = send(
                    "PUT",
                    &url,
                    &[("Authorization", &admin())],
                    body.to_string().as_bytes(),
                );
                assert_eq!(r.status, 200, "{body}: {}", r.text());
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    let text = std::fs::read_to_string(server.dir.path().join("streams/c.toml")).unwrap();
    let stored: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(stored["title"].as_str(), Some("T"), "{text}");
    assert_eq!(stored["segment_count"].as_integer(), Some(5), "{text}");
    assert_eq!(
        stored["segment_duration"].as_integer(),
        Some(3000),
        "{text}"
    );
    assert_eq!(stored["publish_key"].as_str(), Some("k"), "{text}");
    assert_eq!(stored["dvr"]["expiration"].as_str(), Some("2h"), "{text}");
    assert_eq!(
        stored["dvr"]["storage_limit"].as_str(),
        Some("1G"),
        "{text}"
    );
    let shown = stream_json(&server, "c");
    assert_eq!(shown["stats"]["segment_count"], 5);
    assert_eq!(shown["stats"]["segment_duration"], 3000);
}

/// Listing with `limit`, `cursor` and `q`; a stream's JSON shows its stored definition with
/// secrets masked, and sending it back changes nothing.
#[test]
fn listing_pages_and_definitions_round_trip() {
    let streams: Vec<(String, String)> = (0..5)
        .map(|i| {
            (
                format!("cam{i}"),
                "inputs = [{ url = \"publish://\" }]\npublish_key = \"s3cret\"\n".to_owned(),
            )
        })
        .chain([(
            "other".to_owned(),
            "inputs = [{ url = \"rtsp://u:Pw123456@127.0.0.1:1/x\" }]\n".to_owned(),
        )])
        .collect();
    let refs: Vec<(&str, &str)> = streams
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let server = Server::start(&refs);
    let page = list(&server, "?limit=2&q=cam");
    assert_eq!(names(&page), ["cam0", "cam1"]);
    assert_eq!(page["estimated_count"], 5);
    assert_eq!(page["next"], "cam1");
    let page = list(&server, "?limit=2&q=cam&cursor=cam1");
    assert_eq!(names(&page), ["cam2", "cam3"]);
    let page = list(&server, "?limit=2&q=cam&cursor=cam3");
    assert_eq!(names(&page), ["cam4"]);
    assert_eq!(page["next"], Value::Null);
    let all = list(&server, "");
    assert!(!all.to_string().contains("s3cret") && !all.to_string().contains("Pw123456"));
    let one = stream_json(&server, "other");
    assert_eq!(one["inputs"][0]["url"], "rtsp://u:***@127.0.0.1:1/x");
    let before = std::fs::read_to_string(server.dir.path().join("streams/other.toml")).unwrap();
    let back = put_ok(&server, "other", &one);
    assert_eq!(back["inputs"][0]["url"], "rtsp://u:***@127.0.0.1:1/x");
    assert_eq!(
        std::fs::read_to_string(server.dir.path().join("streams/other.toml")).unwrap(),
        before
    );
    let cam = stream_json(&server, "cam0");
    assert_eq!(cam["publish_key"], "***");
    put_ok(&server, "cam0", &cam);
    assert!(
        std::fs::read_to_string(server.dir.path().join("streams/cam0.toml"))
            .unwrap()
            .contains("s3cret")
    );
}

/// A reload applies what changed: an invalid file keeps the running stream as it was (logged
/// with file, line and column, counted), new credentials apply at once, a listen address is
/// said to need a restart, and a deleted stream's archive stays playable.
#[test]
fn reloads_keep_last_good_definitions_and_apply_server_settings_live() {
    let server = Server::start(&[
        ("a", "title = \"A\"\ninputs = [{ url = \"fake://fake\" }]\n"),
        (
            "rec",
            "inputs = [{ url = \"fake://fake\" }]\n[dvr]\nexpiration = \"1h\"\n",
        ),
    ]);
    server.wait_segments("rec", 2, Duration::from_secs(30));
    let a_file = server.dir.path().join("streams/a.toml");
    std::fs::write(
        &a_file,
        "title = \"A2\"\ninputs = [{ url = \"nope://x\" }]\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the invalid file logged", || {
        server.log_text().contains("invalid stream file refused")
    });
    let log = server.log_text();
    assert!(log.contains("a.toml:2:"), "FILE:LINE:COLUMN in {log}");
    assert_eq!(
        stream_json(&server, "a")["title"],
        "A",
        "the last good definition runs"
    );
    server.wait_segments("a", 2, Duration::from_secs(30));
    let text = server.scrape_after(std::time::SystemTime::now());
    assert!(metric(&text, "flussonic_config_reloads_total", "result=\"error\"") >= Some(1.0));
    // Fixed by hand: applied.
    std::fs::write(
        &a_file,
        "title = \"A3\"\ninputs = [{ url = \"fake://fake\" }]\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the fixed file applied", || {
        stream_json(&server, "a")["title"] == "A3"
    });
    // New API credentials and listen address on SIGHUP.
    let config = server.dir.path().join("headwater.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("admin:pw", "admin:new")
            .replace("rtmp = \"127.0.0.1:0\"", "rtmp = \"127.0.0.1:1\""),
    )
    .unwrap();
    sighup(&server);
    wait_until(Duration::from_secs(10), "new credentials", || {
        delete(&server, "nosuch").status == 401
    });
    let new_admin = format!("Basic {}", b64("admin:new"));
    let r = request(
        "DELETE",
        &server.url(&format!("{API}/streams/rec")),
        &[("Authorization", &new_admin)],
    );
    assert_eq!(r.status, 204);
    assert!(
        server
            .log_text()
            .contains("changed settings apply after a restart settings=rtmp"),
        "{}",
        server.log_text()
    );
    // The deleted stream's archive is still served: status, playlist and its segments.
    assert_eq!(get(&server.url("/rec/mono.m3u8")).status, 404);
    let status = get(&server.url("/rec/recording_status.json"));
    assert_eq!(status.status, 200, "{}", status.text());
    let from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 120;
    let archive = get(&server.url(&format!("/rec/archive-{from}-120.m3u8")));
    assert_eq!(archive.status, 200, "{}", archive.text());
    let playlist = Playlist::parse(&archive.text());
    assert!(!playlist.segments.is_empty());
    let segment = get(&server.url(&format!("/rec/{}", playlist.segments[0].1)));
    assert_eq!(segment.status, 200);
    assert_eq!(segment.body[0], 0x47);
}
