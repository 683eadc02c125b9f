//! Play authorization against a real HTTP backend (tests/common/backend.rs): who gets in,
//! how often the backend is asked, tokens carried into every URL, `X-Max-Sessions`, a
//! backend that dies, sessions ended through the API, and `on_publish` for RTMP and HTTP
//! publishers.

mod common;

use common::backend::Backend;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const STREAM: &str = "inputs = [{ url = \"fake://fake\" }]\nsegment_duration = 1000\n";

fn admin_header() -> (&'static str, String) {
    ("Authorization", format!("Basic {}", b64("admin:pw")))
}

/// Every URL a playlist names (URI lines and `URI="…"` attributes).
fn playlist_urls(text: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            let mut rest = line;
            while let Some(at) = rest.find("URI=\"") {
                let start = at + 5;
                let len = rest[start..].find('"').unwrap();
                urls.push(rest[start..start + len].to_owned());
                rest = &rest[start + len..];
            }
        } else if !line.trim().is_empty() {
            urls.push(line.trim().to_owned());
        }
    }
    urls
}

/// `base_path`'s folder joined with a relative `url`.
fn resolve(base_path: &str, url: &str) -> String {
    let dir = &base_path[..base_path.rfind('/').unwrap() + 1];
    format!("{dir}{url}")
}

#[test]
fn on_play_lets_in_only_allowed_tokens_and_asks_once_per_auth_duration() {
    let backend = Backend::start(2);
    let server = Server::start(&[("tv", &format!("{STREAM}on_play = \"{}\"\n", backend.url))]);
    wait_until(Duration::from_secs(30), "fMP4 and TS playlists", || {
        get(&server.url("/tv/index.m3u8?token=good1")).status == 200
            && get(&server.url("/tv/index.fmp4.m3u8?token=good1")).status == 200
    });
    // Walk everything a player fetches, with the token only where the playlists put it.
    let mut seen = Vec::new();
    for master in ["/tv/index.m3u8", "/tv/index.fmp4.m3u8"] {
        let path = format!("{master}?token=good1");
        let text = get(&server.url(&path)).text();
        for media in playlist_urls(&text) {
            assert!(
                media.ends_with("?token=good1"),
                "{master}: {media} lacks the token"
            );
            let media_path = resolve(master, &media);
            let reply = get(&server.url(&media_path));
            assert_eq!(reply.status, 200, "{media_path}");
            for url in playlist_urls(&reply.text()).into_iter().take(4) {
                assert!(url.ends_with("?token=good1"), "{media_path}: {url}");
                let full = resolve(&media_path, &url);
                assert_eq!(get(&server.url(&full)).status, 200, "{full}");
                seen.push(full);
            }
        }
    }
    let mpd = get(&server.url("/tv/index.mpd?token=good1")).text();
    assert!(
        mpd.contains("init.mp4?token=good1\"") && mpd.contains("$Number$.m4s?token=good1\""),
        "{mpd}"
    );
    assert!(seen.iter().any(|u| u.contains(".ts?")) && seen.iter().any(|u| u.contains(".m4s?")));

    // Without a token, or with a bad one, the master and every segment are 403.
    for path in [
        "/tv/index.m3u8",
        "/tv/index.mpd",
        "/tv/mpegts",
        "/tv/index.fmp4.m3u8",
    ] {
        assert_eq!(get(&server.url(path)).status, 403, "{path} without a token");
        assert_eq!(
            get(&server.url(&format!("{path}?token=bad"))).status,
            403,
            "{path} with a bad token"
        );
    }
    for url in &seen {
        let bare = url.split('?').next().unwrap();
        assert_eq!(get(&server.url(bare)).status, 403, "{bare} without a token");
        assert_eq!(
            get(&server.url(&format!("{bare}?token=bad"))).status,
            403,
            "{bare} with a bad token"
        );
    }
    // One session, one call, however many requests (all within X-AuthDuration = 2 s)...
    let calls = backend.play_calls("good1");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.param("name"), Some("tv"));
    assert_eq!(c.param("proto"), Some("hls"));
    assert_eq!(c.param("ip"), Some("127.0.0.1"));
    assert_eq!(c.param("request_type"), Some("new_session"));
    assert_eq!(c.param("request_number"), Some("1"));
    assert_eq!(c.param("qs"), Some("token=good1"));
    for key in [
        "session_id",
        "user_agent",
        "referer",
        "duration",
        "bytes",
        "stream_clients",
        "total_clients",
    ] {
        assert!(c.param(key).is_some(), "{key} missing from {c:?}");
    }
    // ... and after it, the next request asks again (update_session) in the same session.
    // (The session timeout, 3 s, has not passed: still the same session.)
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(get(&server.url("/tv/index.m3u8?token=good1")).status, 200);
    let calls = backend.play_calls("good1");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].param("request_type"), Some("update_session"));
    assert_eq!(calls[1].param("request_number"), Some("2"));
    assert_eq!(calls[1].param("session_id"), calls[0].param("session_id"));
    assert!(
        calls[1].param("bytes").unwrap().parse::<u64>().unwrap() > 1000,
        "bytes sent to the session so far: {:?}",
        calls[1]
    );
    // The refused were asked too (once each: the denial is cached like an allow).
    assert_eq!(backend.play_calls("bad").len(), 1);

    let metrics = server.scrape_after(std::time::SystemTime::now());
    let allow = metric(
        &metrics,
        "flussonic_auth_backend_requests_total",
        "hook=\"on_play\",result=\"allow\"",
    );
    let deny = metric(
        &metrics,
        "flussonic_auth_backend_requests_total",
        "hook=\"on_play\",result=\"deny\"",
    );
    assert_eq!(allow, Some(2.0), "{metrics}");
    assert!(
        deny.unwrap_or(0.0) >= 2.0,
        "bad token and no token: {deny:?}"
    );
    assert!(metric(&metrics, "flussonic_auth_cached_answers_total", "").unwrap_or(0.0) > 10.0);
    assert!(metrics.contains("flussonic_auth_backend_duration_seconds_bucket"));
}

#[test]
fn max_sessions_backend_down_and_default_allow() {
    let mut backend = Backend::start(4);
    let server = Server::start(&[
        ("tv", &format!("{STREAM}on_play = \"{}\"\n", backend.url)),
        (
            "open",
            &format!(
                "{STREAM}on_play = \"{}\"\non_play_default = \"allow\"\n",
                backend.url
            ),
        ),
    ]);
    wait_until(Duration::from_secs(30), "playlist", || {
        get(&server.url("/tv/index.m3u8?token=good-a")).status == 200
    });
    // X-Max-Sessions: 1 for user u1: a second player of u1 waits until the first ends.
    assert_eq!(get(&server.url("/tv/index.m3u8?token=user1-a")).status, 200);
    assert_eq!(get(&server.url("/tv/index.m3u8?token=user1-b")).status, 403);
    assert_eq!(get(&server.url("/tv/index.m3u8?token=user1-a")).status, 200);
    let sessions = sessions(&server);
    let first = sessions
        .iter()
        .find(|s| s["token"] == "user1-a")
        .expect("user1-a's session listed");
    assert_eq!(first["user_id"], "u1");
    assert!(
        sessions.iter().all(|s| s["token"] != "user1-b"),
        "refused ones are not sessions"
    );
    let id = first["id"].as_str().unwrap();
    let (k, v) = admin_header();
    assert_eq!(
        request(
            "DELETE",
            &server.url(&format!("/streamer/api/v3/sessions/{id}")),
            &[(k, &v)]
        )
        .status,
        204
    );
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=user1-a")).status,
        403,
        "ended"
    );
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=user1-b")).status,
        200,
        "the first ended"
    );

    // The backend dies: a session with a valid answer goes on until it expires...
    let started = Instant::now();
    assert_eq!(get(&server.url("/tv/index.m3u8?token=good-b")).status, 200);
    assert_eq!(
        get(&server.url("/open/index.m3u8?token=good-c")).status,
        200
    );
    backend.kill();
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=good-b")).status,
        200,
        "answer still valid"
    );
    // ... new ones are denied, or allowed where on_play_default = "allow".
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=good-new")).status,
        403
    );
    assert_eq!(
        get(&server.url("/open/index.m3u8?token=good-new")).status,
        200
    );
    wait_until(Duration::from_secs(10), "the answer to expire", || {
        started.elapsed() > Duration::from_millis(4200)
    });
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=good-b")).status,
        403,
        "expired, no backend"
    );
    assert_eq!(
        get(&server.url("/open/index.m3u8?token=good-c")).status,
        200,
        "default allow"
    );
    let metrics = server.scrape_after(std::time::SystemTime::now());
    assert!(
        metric(
            &metrics,
            "flussonic_auth_backend_requests_total",
            "hook=\"on_play\",result=\"error\""
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "flussonic_sessions_ended_total", "reason=\"api\""),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            "flussonic_play_refused_total",
            "reason=\"max_sessions\""
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // Failures are logged once per change of state, not per call.
    let failures = server
        .log_text()
        .lines()
        .filter(|l| l.contains("authorization backend failed"))
        .count();
    assert_eq!(failures, 1, "{}", server.log_text());
}

/// A server whose stream `tv` asks `backend`, once it has a segment.
fn guarded_tv(backend: &Backend) -> Server {
    let server = Server::start(&[("tv", &format!("{STREAM}on_play = \"{}\"\n", backend.url))]);
    wait_until(Duration::from_secs(30), "a segment", || {
        get(&server.url("/tv/mono.m3u8?token=good-wait"))
            .text()
            .contains(".ts")
    });
    server
}

/// An open `/tv/mpegts?token=TOKEN` connection.
fn open_mpegts(server: &Server, token: &str, user_agent: &str) -> std::net::TcpStream {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        tcp,
        "GET /tv/mpegts?token={token} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {user_agent}\r\n\r\n"
    )
    .unwrap();
    tcp
}

fn sessions(server: &Server) -> Vec<serde_json::Value> {
    let reply = request(
        "GET",
        &server.url("/streamer/api/v3/sessions"),
        &[("Authorization", &format!("Basic {}", b64("viewer:pw")))],
    );
    assert_eq!(reply.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    v["sessions"].as_array().unwrap().clone()
}

#[test]
fn deleting_a_session_closes_its_mpegts_connection_and_refuses_its_player() {
    let backend = Backend::start(30);
    let server = guarded_tv(&backend);
    let mut tcp = open_mpegts(&server, "good-ts", "vlc");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < 100_000 {
        got += tcp.read(&mut buf).expect("mpegts bytes");
    }
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=good-hls")).status,
        200
    );
    let list = sessions(&server);
    let ts = list
        .iter()
        .find(|s| s["token"] == "good-ts")
        .expect("the mpegts session");
    assert_eq!(ts["proto"], "mpegts");
    assert_eq!(ts["user_agent"], "vlc");
    // What the client read includes the response head and chunk framing.
    assert!(ts["bytes"].as_u64().unwrap() >= 90_000, "{ts}");
    let hls = list
        .iter()
        .find(|s| s["token"] == "good-hls")
        .expect("the HLS session");
    let (k, v) = admin_header();
    // View credentials may list but not end sessions.
    let viewer = format!("Basic {}", b64("viewer:pw"));
    let id = ts["id"].as_str().unwrap();
    let url = server.url(&format!("/streamer/api/v3/sessions/{id}"));
    assert_eq!(
        request("DELETE", &url, &[("Authorization", &viewer)]).status,
        403
    );
    assert_eq!(
        request("GET", &url, &[("Authorization", &viewer)]).status,
        200
    );
    let deleted = Instant::now();
    assert_eq!(request("DELETE", &url, &[(k, &v)]).status, 204);
    // The socket closes within a second.
    assert!(
        closed_within(
            &mut tcp,
            Duration::from_secs(1).saturating_sub(deleted.elapsed())
        ),
        "the /mpegts socket is still open"
    );
    assert_eq!(
        request("DELETE", &url, &[(k, &v)]).status,
        404,
        "already ended"
    );
    let id = hls["id"].as_str().unwrap();
    let url = server.url(&format!("/streamer/api/v3/sessions/{id}"));
    assert_eq!(request("DELETE", &url, &[(k, &v)]).status, 204);
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=good-hls")).status,
        403
    );
    assert_eq!(get(&server.url("/tv/mono.m3u8?token=good-hls")).status, 403);
    let metrics = server.scrape_after(std::time::SystemTime::now());
    assert_eq!(
        metric(&metrics, "flussonic_sessions_ended_total", "reason=\"api\""),
        Some(2.0)
    );
}

#[test]
fn on_publish_keeps_refused_rtmp_srt_and_http_publishers_out() {
    let backend = Backend::start(30);
    let hook = format!("on_publish = \"{}\"\n", backend.url);
    let stream = format!("inputs = [{{ url = \"publish://\" }}]\n{hook}");
    let server = Server::start_configured(
        &[("rt", &stream), ("ht", &stream), ("sr", &stream)],
        "srt_publish = \"127.0.0.1:0\"\n",
        "",
    );
    let rtmp = server.rtmp_addr();
    let srt = server
        .log_text()
        .lines()
        .find(|l| l.contains("SRT publish listener"))
        .and_then(|l| l.split("srt=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .expect("the SRT publish listener in the log")
        .to_owned();
    let srt_url =
        |key: &str| format!("srt://{srt}?mode=caller&pkt_size=1316&streamid=sr?key={key}");
    std::thread::sleep(Duration::from_secs(2));
    // Refused publishers push for 6 s each, all at once.
    let refused = [
        ffmpeg_sender_with(
            &["-t", "6"],
            "flv",
            &format!("rtmp://{rtmp}/live/rt?key=bad"),
        ),
        ffmpeg_sender_with(&["-t", "6"], "mpegts", &srt_url("bad")),
        ffmpeg_sender_with(
            &["-t", "6", "-method", "POST"],
            "mpegts",
            &server.url("/ht/mpegts?key=bad"),
        ),
    ];
    std::thread::sleep(Duration::from_secs(8));
    drop(refused);
    for stream in ["rt", "sr", "ht"] {
        let reply = get(&server.url(&format!("/{stream}/mono.m3u8")));
        assert_eq!(
            reply.status,
            503,
            "{stream}: a refused publisher made media: {}",
            reply.text()
        );
        assert_eq!(
            stream_json(&server, stream)["stats"]["bytes_in"]
                .as_u64()
                .unwrap_or(0),
            0,
            "{stream}: not a byte got in"
        );
    }
    let calls = backend.all_calls();
    for proto in ["rtmp", "srt", "http"] {
        let call = calls
            .iter()
            .find(|c| c.method == "POST" && c.param("proto") == Some(proto))
            .unwrap_or_else(|| panic!("no on_publish call for {proto}: {calls:?}"));
        assert_eq!(call.param("key"), Some("bad"));
        assert_eq!(call.param("ip"), Some("127.0.0.1"));
    }
    // Allowed ones get in.
    let _rt = ffmpeg_sender("flv", &format!("rtmp://{rtmp}/live/rt?key=good"));
    let _sr = ffmpeg_sender("mpegts", &srt_url("good"));
    let _ht = ffmpeg_sender_with(
        &["-method", "POST"],
        "mpegts",
        &server.url("/ht/mpegts?key=good"),
    );
    for stream in ["rt", "sr", "ht"] {
        server.wait_segments(stream, 2, Duration::from_secs(40));
    }
    let text = server.scrape_after(std::time::SystemTime::now());
    assert!(
        metric(
            &text,
            "flussonic_publish_refused_total",
            "reason=\"on_publish\""
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "flussonic_auth_backend_requests_total",
            "hook=\"on_publish\",result=\"allow\""
        ),
        Some(3.0)
    );
}

#[test]
fn server_defaults_come_with_a_reload_and_api_writes_are_checked() {
    let backend = Backend::start(30);
    let server = Server::start(&[("tv", STREAM)]);
    wait_until(Duration::from_secs(30), "open playback", || {
        get(&server.url("/tv/index.m3u8")).status == 200
    });
    // `[auth] on_play` in the server file guards every stream without its own, after SIGHUP.
    let file = server.dir.path().join("headwater.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!(
            "{text}\n[auth]\non_play = \"{}\"\ntimeout_ms = 1000\n",
            backend.url
        ),
    )
    .unwrap();
    control::sighup(&server);
    wait_until(Duration::from_secs(10), "[auth] to apply", || {
        get(&server.url("/tv/index.m3u8")).status == 403
    });
    assert_eq!(get(&server.url("/tv/index.m3u8?token=good-r")).status, 200);
    assert!(server.log_text().contains("[auth] changed"));
    // The API takes the same keys through the same loader: a bad backend URL is refused
    // with the key named, a good one applies without restarting the source.
    let reply = control::put(
        &server,
        "tv",
        &serde_json::json!({ "on_play": "ftp://x/y" }),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    let errors: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(errors["errors"][0]["path"], "on_play", "{errors}");
    control::put_ok(&server, "tv", &serde_json::json!({ "on_play": null }));
    wait_until(
        Duration::from_secs(10),
        "the stream's own key to go",
        || {
            // The server default still applies to it.
            get(&server.url("/tv/index.m3u8")).status == 403
        },
    );
    let other = Backend::start(30);
    control::put_ok(&server, "tv", &serde_json::json!({ "on_play": other.url }));
    assert_eq!(
        get(&server.url("/tv/index.m3u8?token=good-other")).status,
        200
    );
    assert_eq!(
        other.play_calls("good-other").len(),
        1,
        "the stream's own backend is asked"
    );
    assert!(
        server
            .log_text()
            .contains("changed=on_play restarted=\"nothing\""),
        "{}",
        server.log_text()
    );
}

#[test]
fn the_archive_is_authorized_with_proto_dvr() {
    let backend = Backend::start(30);
    let server = Server::start(&[(
        "tv",
        &format!(
            "{STREAM}on_play = \"{}\"\n[dvr]\nexpiration = \"1h\"\n",
            backend.url
        ),
    )]);
    wait_until(Duration::from_secs(40), "two recorded segments", || {
        let status = get(&server.url("/tv/recording_status.json?token=good-dvr"));
        status.status == 200 && {
            let v: serde_json::Value = serde_json::from_slice(&status.body).unwrap_or_default();
            v["duration"].as_u64().unwrap_or(0) >= 2
        }
    });
    let v: serde_json::Value =
        serde_json::from_slice(&get(&server.url("/tv/recording_status.json?token=good-dvr")).body)
            .unwrap();
    let from = v["from"].as_u64().unwrap();
    let playlist = format!("/tv/archive-{from}-60.m3u8");
    assert_eq!(get(&server.url(&playlist)).status, 403, "no token");
    assert_eq!(
        get(&server.url(&format!("/tv/archive-{from}-2.mp4"))).status,
        403
    );
    let text = get(&server.url(&format!("{playlist}?token=good-dvr"))).text();
    let segments = playlist_urls(&text);
    assert!(!segments.is_empty(), "{text}");
    for url in &segments {
        assert!(url.ends_with("?token=good-dvr"), "{url}");
        assert_eq!(
            get(&server.url(&resolve(&playlist, url))).status,
            200,
            "{url}"
        );
    }
    let export = get(&server.url(&format!("/tv/archive-{from}-2.ts?token=good-dvr")));
    assert_eq!(export.status, 200);
    // The archive was asked for as `dvr`, once for the session.
    let calls = backend.play_calls("good-dvr");
    let dvr: Vec<_> = calls
        .iter()
        .filter(|c| c.param("proto") == Some("dvr"))
        .collect();
    assert_eq!(dvr.len(), 1, "{calls:?}");
}

#[test]
fn an_mpegts_viewer_is_asked_again_and_cut_when_revoked() {
    let backend = Backend::start(2);
    let server = guarded_tv(&backend);
    let mut tcp = open_mpegts(&server, "good-sub", "vlc");
    // It keeps playing across several X-AuthDuration periods (each asks again)...
    assert!(
        !closed_within(&mut tcp, Duration::from_secs(5)),
        "closed while allowed"
    );
    let calls = backend.play_calls("good-sub");
    assert!(calls.len() >= 2, "asked again while connected: {calls:?}");
    assert!(
        calls
            .iter()
            .skip(1)
            .all(|c| c.param("request_type") == Some("update_session"))
    );
    // ... until the subscription ends: cut at the next check (within X-AuthDuration).
    backend.revoke("good-sub");
    assert!(
        closed_within(&mut tcp, Duration::from_secs(4)),
        "still streaming after revocation"
    );
    let metrics = server.scrape_after(std::time::SystemTime::now());
    assert_eq!(
        metric(
            &metrics,
            "flussonic_sessions_ended_total",
            "reason=\"denied\""
        ),
        Some(1.0)
    );
}
