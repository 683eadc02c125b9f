//! LL-HLS blocking playlist reload under load, on the release binary: N requests held for a
//! part about a second ahead (`_HLS_msn`/`_HLS_part`), then how far apart their answers
//! arrive (from the first; the part's publication is the first answer, give or take the
//! client's own reading) and the server's CPU while they wait against its idle CPU.
//! Run: `cargo bench --bench held_requests -- [N] [ROUNDS]` (default 500 requests, 5 rounds).
//! Under `cargo test --all-targets` (no `--bench` argument) it checks itself with one round of
//! 50 requests, all of which must be answered 200.
//! There is no peer to compare with (nginx has no blocking playlist reload): the figures are
//! the spread in ms and CPU in % of one core, with the idle CPU of the same run beside it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server under test, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir(dir.path().join("streams")).expect("streams folder");
    std::fs::write(
        dir.path().join("streams/demo.toml"),
        "inputs = [{ url = \"fake://fake\" }]\n",
    )
    .expect("stream file");
    std::fs::write(
        dir.path().join("headwater.toml"),
        "[server]\nstreams = \"streams\"\nrtmp = \"127.0.0.1:0\"\n[dvr]\nroot = \"dvr\"\n",
    )
    .expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("headwater.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .arg("--config")
        .arg(dir.path().join("headwater.toml"))
        .arg("--listen")
        .arg(&addr)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the headwater binary");
    Server {
        child,
        addr,
        _dir: dir,
    }
}

/// (status, body) of a GET.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// (media sequence, part index) of the newest part the playlist lists.
fn last_part(playlist: &str) -> (u64, u32) {
    let mut msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let (mut last, mut part) = (msn, 0u32);
    let mut parts_of_current = 0u32;
    for line in playlist.lines() {
        if line.starts_with("#EXT-X-PART:") {
            (last, part) = (msn, parts_of_current);
            parts_of_current += 1;
        } else if !line.starts_with('#') && !line.is_empty() {
            msn += 1;
            parts_of_current = 0;
        }
    }
    (last, part)
}

/// utime + stime of `pid`, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command: state, ppid, …; utime and stime are fields 14 and 15 of the line.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// % of one core `pid` used over `ms`.
fn cpu_percent(pid: u32, ms: u64) -> f64 {
    let (from, at) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_millis(ms));
    (cpu_ticks(pid) - from) as f64 / at.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Holds `n` requests for `path`; returns when each answer was complete, with its status.
async fn hold(addr: &str, path: &str, n: usize, wait: Duration) -> Vec<(Instant, u16)> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.expect("send");
        sockets.push(s);
    }
    tokio::time::sleep(wait).await;
    let reads: Vec<_> = sockets
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut text = Vec::with_capacity(4096);
                let _ = s.read_to_end(&mut text).await;
                let at = Instant::now();
                let status = std::str::from_utf8(&text[..text.len().min(16)])
                    .ok()
                    .and_then(|t| t.split_whitespace().nth(1))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                (at, status)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for r in reads {
        out.push(r.await.expect("reader task"));
    }
    out
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, rounds) = if benching {
        (
            args.first().copied().unwrap_or(500),
            args.get(1).copied().unwrap_or(5),
        )
    } else {
        (50, 1)
    };
    let server = start();
    let pid = server.child.id();
    let playlist = "/demo/tracks-v1a1/index.ll.m3u8";
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&server.addr, playlist)
        .is_none_or(|(status, body)| status != 200 || body.matches("#EXTINF").count() < 3)
    {
        assert!(
            Instant::now() < deadline,
            "no LL-HLS playlist with three segments in 60 s (see the server's log in {})",
            Path::new(&server._dir.path())
                .join("headwater.log")
                .display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let build = if benching {
        "release build"
    } else {
        "test mode, debug build"
    };
    println!("{n} requests held for a part ~1 s ahead, {build}, {rounds} rounds");
    for round in 1..=rounds {
        let idle = cpu_percent(pid, 500);
        let (_, text) = get(&server.addr, playlist).expect("playlist");
        let (msn, _) = last_part(&text);
        // The next segment's fourth part: a second or more away.
        let path = format!("{playlist}?_HLS_msn={}&_HLS_part=3", msn + 1);
        let cpu_start = cpu_ticks(pid);
        let started = Instant::now();
        let (answers, holding) = std::thread::scope(|scope| {
            let meter = scope.spawn(|| {
                // While they wait: after the connections arrived, before the part.
                std::thread::sleep(Duration::from_millis(300));
                cpu_percent(pid, 300)
            });
            let answers = runtime.block_on(hold(&server.addr, &path, n, Duration::ZERO));
            (answers, meter.join().unwrap_or(f64::NAN))
        });
        let whole = (cpu_ticks(pid) - cpu_start) as f64 / started.elapsed().as_secs_f64();
        let ok = answers.iter().filter(|(_, s)| *s == 200).count();
        assert_eq!(ok, n, "every held request is answered 200");
        let first = answers.iter().map(|(at, _)| *at).min().expect("answers");
        let mut spread: Vec<f64> = answers
            .iter()
            .map(|(at, _)| at.duration_since(first).as_secs_f64() * 1000.0)
            .collect();
        spread.sort_by(f64::total_cmp);
        println!(
            "round {round}: {ok}/{n} answered 200, {:.0} ms after they were sent; spread from \
             the first answer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; server CPU idle \
             {idle:.0} %, while holding {holding:.0} %, over the whole round {whole:.0} %",
            first.duration_since(started).as_secs_f64() * 1000.0,
            percentile(&spread, 0.5),
            percentile(&spread, 0.99),
            spread.last().copied().unwrap_or(0.0),
        );
    }
}
