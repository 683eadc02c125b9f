//! Helpers of the control-plane tests (`tests/control*.rs`): the stream API with the harness
//! credentials, stream files, signals, and readers that watch a stream while it is managed.
#![allow(dead_code, unreachable_pub)]

use super::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const API: &str = "/streamer/api/v3";

pub fn admin() -> String {
    format!("Basic {}", b64("admin:pw"))
}

pub fn put(server: &Server, name: &str, body: &Value) -> Reply {
    send(
        "PUT",
        &server.url(&format!("{API}/streams/{name}")),
        &[
            ("Authorization", &admin()),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

pub fn put_ok(server: &Server, name: &str, body: &Value) -> Value {
    let r = put(server, name, body);
    assert_eq!(r.status, 200, "PUT {name} {body}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

pub fn delete(server: &Server, name: &str) -> Reply {
    request(
        "DELETE",
        &server.url(&format!("{API}/streams/{name}")),
        &[("Authorization", &admin())],
    )
}

pub fn restart(server: &Server, name: &str) -> Reply {
    send(
        "POST",
        &server.url(&format!("{API}/streams/{name}/restart")),
        &[("Authorization", &admin())],
        b"",
    )
}

pub fn list(server: &Server, query: &str) -> Value {
    let r = request(
        "GET",
        &server.url(&format!("{API}/streams{query}")),
        &[("Authorization", &format!("Basic {}", b64("viewer:pw")))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

pub fn names(list: &Value) -> Vec<String> {
    list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `headwater check-config` on the server's folder: the files the API wrote are valid files.
pub fn check_config(server: &Server) {
    let out = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .arg("--config")
        .arg(server.dir.path().join("headwater.toml"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config refused what the API wrote: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stream_files(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.dir.path().join("streams"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub fn sighup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads `/NAME/mpegts` until stopped: (bytes, longest wait between two reads).
pub fn mpegts_reader(
    server: &Server,
    name: &str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Duration)> {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let path = format!("/{name}/mpegts");
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 65536];
        let (mut bytes, mut longest) = (0u64, Duration::ZERO);
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => panic!("the /{path} connection was closed after {bytes} bytes"),
                Ok(n) => {
                    bytes += n as u64;
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading {path}: {e}"),
            }
        }
        (bytes, longest.max(last.elapsed()))
    })
}

/// What a stream's media playlists said over time.
#[derive(Debug, Default)]
pub struct Watched {
    /// Media sequence → segment URI, from every playlist read.
    pub segments: BTreeMap<u64, String>,
    /// Playlists read, and problems seen (a discontinuity, a sequence going back, one sequence
    /// with two URIs, a failed request).
    pub reads: u32,
    pub problems: Vec<String>,
}

/// Polls `/NAME/mono.m3u8` until stopped.
pub fn playlist_watcher(server: &Server, name: &str, stop: Arc<AtomicBool>) -> JoinHandle<Watched> {
    let url = server.url(&format!("/{name}/mono.m3u8"));
    std::thread::spawn(move || {
        let mut w = Watched::default();
        let mut last_sequence = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = get(&url);
            if r.status != 200 {
                w.problems.push(format!("status {}", r.status));
            } else {
                let p = Playlist::parse(&r.text());
                w.reads += 1;
                if p.media_sequence < last_sequence {
                    w.problems.push(format!(
                        "sequence went back to {} from {last_sequence}",
                        p.media_sequence
                    ));
                }
                last_sequence = p.media_sequence;
                for (i, (_, uri, disc)) in p.segments.iter().enumerate() {
                    let seq = p.media_sequence + i as u64;
                    if *disc {
                        w.problems.push(format!("discontinuity before {seq}"));
                    }
                    if let Some(old) = w.segments.insert(seq, uri.clone())
                        && old != *uri
                    {
                        w.problems
                            .push(format!("sequence {seq} was {old}, now {uri}"));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        w
    })
}

/// A PUT declaring a 2 MiB body: answered at once, before any byte of it is sent (a client
/// library that insists on sending the body would see the connection closed under it).
pub fn declared_too_large(server: &Server, path: &str) -> String {
    let addr = server.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {API}{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        admin(),
        2 << 20
    )
    .unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap();
    String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
