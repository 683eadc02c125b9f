//! HTTP behaviour a CDN or caching proxy relies on: status codes, HEAD, Range, CORS,
//! malformed paths refused before any lookup.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn status_codes_head_and_ranges() {
    let server = Server::start(&[("demo", "inputs = [{ url = \"fake://fake\" }]\n")]);
    let playlist = server.wait_segments("demo", 1, Duration::from_secs(30));
    let uri = &playlist.segments[0].1;
    let seg_url = server.url(&format!("/demo/{uri}"));
    let full = get(&seg_url);
    let len = full.body.len();
    assert_eq!(full.status, 200);
    assert_eq!(full.header("accept-ranges"), "bytes");
    assert_eq!(full.header("access-control-allow-origin"), "*");

    let head = request("HEAD", &seg_url, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), len.to_string());
    assert_eq!(head.header("content-type"), "video/mp2t");

    let part = request("GET", &seg_url, &[("Range", "bytes=188-375")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), format!("bytes 188-375/{len}"));
    assert_eq!(part.body, full.body[188..376]);
    let tail = request("GET", &seg_url, &[("Range", "bytes=-188")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, full.body[len - 188..]);
    let past = request("GET", &seg_url, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), format!("bytes */{len}"));

    assert_eq!(get(&server.url("/nosuch/index.m3u8")).status, 404);
    assert_eq!(get(&server.url("/nosuch/mono.m3u8")).status, 404);
    assert_eq!(get(&server.url("/demo/unknown.txt")).status, 404);
    assert_eq!(
        get(&server.url("/demo/2026/99/22/01/37/18-02000.ts")).status,
        400
    );
    assert_eq!(get(&server.url("/demo/tracks-zz/mono.m3u8")).status, 400);
    for raw in [
        "/../etc/passwd",
        "/demo/../../etc/passwd",
        "/demo/%2e%2e/index.m3u8",
        "/demo//mono.m3u8",
    ] {
        let status = raw_status(&server.base, raw);
        assert!(status.contains(" 400 "), "{raw}: {status}");
    }
    let post = raw_method(&server.base, "POST", "/demo/index.m3u8");
    assert!(post.contains(" 405 "), "{post}");
    let options = raw_method(&server.base, "OPTIONS", "/demo/index.m3u8");
    assert!(options.contains(" 204 "), "{options}");
}

#[test]
fn stream_without_data_answers_503_and_others_keep_running() {
    // Nothing sends to this UDP port: the stream exists but has no segment yet.
    let port = free_port(true);
    let server = Server::start(&[
        ("demo", "inputs = [{ url = \"fake://fake\" }]\n"),
        (
            "silent",
            &format!("inputs = [{{ url = \"udp://127.0.0.1:{port}\", source_timeout = 1 }}]\n"),
        ),
    ]);
    server.wait_segments("demo", 2, Duration::from_secs(30));
    let r = get(&server.url("/silent/index.m3u8"));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), "1");
    let log = server.log_text();
    assert!(
        log.contains("no data for 1 s (source_timeout)"),
        "restart reason is logged:\n{log}"
    );
}

fn raw_method(base: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_owned()
}
