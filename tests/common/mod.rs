//! Shared harness for the end-to-end tests: the real `headwater` binary on a loopback port,
//! real feeders (`gst-launch-1.0`), real clients (`ffmpeg`, `ffprobe`, Chromium), and a small
//! HTTP client. Every child process is killed when its guard drops.
#![allow(dead_code, unreachable_pub)]

pub mod backend;
pub mod control;
pub mod mp4;
pub mod otlp;
pub mod veth;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// A running Headwater with its own config directory.
#[derive(Debug)]
pub struct Server {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    proc: Option<Proc>,
}

impl Server {
    /// Starts the binary with one stream file per `(name, toml)`.
    pub fn start(streams: &[(&str, &str)]) -> Server {
        Server::start_with(streams, &[])
    }

    /// Like [`Server::start`], with more server configuration appended (e.g. `[dvb.*]` tables).
    pub fn start_with_config(streams: &[(&str, &str)], extra: &str) -> Server {
        Server::start_inner(streams, &[], "", extra)
    }

    /// Like [`Server::start`], with the command run through `wrapper` (e.g. `unshare …`).
    pub fn start_with(streams: &[(&str, &str)], wrapper: &[&str]) -> Server {
        Server::start_inner(streams, wrapper, "", "")
    }

    /// Like [`Server::start_with_config`], with `server_keys` added to the `[server]` table.
    pub fn start_configured(streams: &[(&str, &str)], server_keys: &str, extra: &str) -> Server {
        Server::start_inner(streams, &[], server_keys, extra)
    }

    /// Like [`Server::start_configured`], with environment variables (e.g. `OTEL_*`).
    pub fn start_env(
        streams: &[(&str, &str)],
        server_keys: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Server {
        Server::start_full(streams, &[], server_keys, extra, env)
    }

    fn start_inner(
        streams: &[(&str, &str)],
        wrapper: &[&str],
        server_keys: &str,
        extra: &str,
    ) -> Server {
        Server::start_full(streams, wrapper, server_keys, extra, &[])
    }

    fn start_full(
        streams: &[(&str, &str)],
        wrapper: &[&str],
        server_keys: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("streams")).unwrap();
        for (name, text) in streams {
            std::fs::write(dir.path().join(format!("streams/{name}.toml")), text).unwrap();
        }
        std::fs::write(
            dir.path().join("headwater.toml"),
            format!("[server]\n{server_keys}\nview_auth = \"viewer:pw\"\nedit_auth = \"admin:pw\"\nstreams = \"streams\"\nshutdown_drain = 2000\nrtmp = \"127.0.0.1:0\"\n[dvr]\nroot = \"dvr\"\n[stats]\ninterval = 1000\nsession_timeout = 3\n{extra}"),
        )
        .unwrap();
        Server::launch(dir, wrapper, env)
    }

    /// Starts the binary on an existing config folder (a restart keeps the archive).
    fn launch(dir: tempfile::TempDir, wrapper: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch_on(dir, wrapper, env, "127.0.0.1:0")
    }

    /// As [`Server::launch`], listening on `listen` (`127.0.0.1:0`: a free port, logged).
    fn launch_on(
        dir: tempfile::TempDir,
        wrapper: &[&str],
        env: &[(&str, &str)],
        listen: &str,
    ) -> Server {
        let log = dir.path().join("headwater.log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_headwater"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_headwater")),
        };
        // Port 0: the server binds a free port and logs it; no race with parallel tests.
        let child = command
            .arg("--config")
            .arg(dir.path().join("headwater.toml"))
            .arg("--listen")
            .arg(listen)
            .env("HEADWATER_LOG", "info,headwater=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start headwater");
        let mut server = Server {
            base: String::new(),
            dir,
            log,
            proc: Some(Proc(child)),
        };
        wait_until(Duration::from_secs(15), "HTTP listener", || {
            let text = server.log_text();
            // Text (`local_addr=…`) or JSON lines (`"fields":{"local_addr":"…"}`).
            let Some(addr) = text
                .lines()
                .find(|l| l.contains("headwater started"))
                .and_then(|l| match serde_json::from_str::<serde_json::Value>(l) {
                    Ok(json) => json["fields"]["local_addr"].as_str().map(str::to_owned),
                    Err(_) => l
                        .split("local_addr=")
                        .nth(1)
                        .and_then(|a| a.split_whitespace().next())
                        .map(str::to_owned),
                })
            else {
                return false;
            };
            server.base = format!("http://{addr}");
            true
        });
        server
    }

    /// `kill -9`, then starts again on the same folder (config, streams, archive).
    pub fn crash_and_restart(mut self) -> Server {
        if let Some(mut p) = self.proc.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
        let previous = self.log_text();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("headwater.before-crash.log"), previous).unwrap();
        Server::launch(dir, &[], &[])
    }

    /// `kill -9`, then starts again on the same folder and the same HTTP address (what a
    /// proxy in front of it knows it by).
    pub fn crash_and_restart_in_place(mut self) -> Server {
        if let Some(mut p) = self.proc.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
        let previous = self.log_text();
        let addr = self.base.trim_start_matches("http://").to_owned();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("headwater.before-crash.log"), previous).unwrap();
        Server::launch_on(dir, &[], &[], &addr)
    }

    /// `https://ADDR` of the HTTPS listener (bound to port 0, read from the log).
    pub fn https_base(&self) -> String {
        let text = self.log_text();
        let addr = text
            .lines()
            .find(|l| l.contains("HTTPS listener"))
            .and_then(|l| l.split("https=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .expect("an HTTPS listener in the log");
        format!("https://{addr}")
    }

    /// The RTMP publish listener's address (bound to port 0, read from the log).
    pub fn rtmp_addr(&self) -> String {
        self.log_text()
            .lines()
            .find(|l| l.contains("RTMP publish listener"))
            .and_then(|l| l.split("rtmp=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .expect("an RTMP listener (a publish:// stream is configured)")
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("running").0.id()
    }

    /// The metrics endpoint's text (view credentials of the harness config). Right after
    /// start the endpoint answers 503 until the stats thread's first rendering: wait for it.
    pub fn scrape(&self) -> String {
        let auth = format!("Basic {}", b64("viewer:pw"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = request(
                "GET",
                &self.url("/flussonic/api/metrics"),
                &[("Authorization", &auth)],
            );
            if r.status == 503 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            assert_eq!(r.status, 200, "metrics: {}", r.text());
            return r.text();
        }
    }

    /// Scrapes until the exposition was rendered after `since` (stats ticks are 1 s here).
    pub fn scrape_after(&self, since: std::time::SystemTime) -> String {
        let since = since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let mut text = String::new();
        wait_until(Duration::from_secs(10), "a fresh stats sample", || {
            text = self.scrape();
            metric(&text, "flussonic_stats_last_success_timestamp_seconds", "")
                .is_some_and(|t| t > since)
        });
        text
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a stream's media playlist lists at least `n` segments.
    pub fn wait_segments(&self, stream: &str, n: usize, timeout: Duration) -> Playlist {
        let mut last = None;
        wait_until(timeout, &format!("{n} segments of {stream}"), || {
            let r = get(&self.url(&format!("/{stream}/mono.m3u8")));
            if r.status == 200 {
                let p = Playlist::parse(&r.text());
                let ok = p.segments.len() >= n;
                last = Some(p);
                ok
            } else {
                false
            }
        });
        last.unwrap()
    }

    /// Sends SIGTERM and waits for the exit status, at most `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut proc = self.proc.take()?;
        let pid = proc.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = proc.0.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Polls `f` every 100 ms until it is true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// `/flussonic/api/v3/streams/NAME` with the viewer's credentials.
pub fn stream_json(server: &Server, name: &str) -> serde_json::Value {
    let json = request(
        "GET",
        &server.url(&format!("/flussonic/api/v3/streams/{name}")),
        &[("Authorization", &format!("Basic {}", b64("viewer:pw")))],
    );
    assert_eq!(json.status, 200);
    serde_json::from_slice(&json.body).unwrap()
}

pub fn get(url: &str) -> Reply {
    request("GET", url, &[])
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let agent = agent();
    let mut req = match method {
        "GET" => agent.get(url),
        "HEAD" => agent.head(url),
        "DELETE" => agent.delete(url),
        m => panic!("method {m} not supported by the harness"),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(method, url, req.call())
}

/// A request with a body (`PUT`, `POST`).
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let agent = agent();
    let mut req = match method {
        "PUT" => agent.put(url),
        "POST" => agent.post(url),
        m => panic!("method {m} not supported by the harness"),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(method, url, req.send(body))
}

fn reply(
    method: &str,
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Reply {
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = if method == "HEAD" {
                Vec::new()
            } else {
                resp.body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec()
                    .unwrap()
            };
            Reply {
                status,
                headers,
                body,
            }
        }
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// Sends raw bytes as an HTTP request and returns the status line (for paths that an HTTP
/// client library would normalise, like `/../`).
pub fn raw_status(base: &str, raw_path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write;
    write!(
        s,
        "GET {raw_path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_owned()
}

/// The parts of a live media playlist the tests check.
#[derive(Debug, Clone, Default)]
pub struct Playlist {
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub program_date_time: Option<String>,
    /// (EXTINF seconds, URI, preceded by EXT-X-DISCONTINUITY)
    pub segments: Vec<(f64, String, bool)>,
}

impl Playlist {
    pub fn parse(text: &str) -> Playlist {
        assert!(text.starts_with("#EXTM3U\n"), "not a playlist: {text}");
        let mut p = Playlist::default();
        let mut dur = None;
        let mut disc = false;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = v.parse().unwrap();
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().unwrap();
            } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                p.discontinuity_sequence = v.parse().unwrap();
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                p.program_date_time.get_or_insert_with(|| v.to_owned());
            } else if line == "#EXT-X-DISCONTINUITY" {
                disc = true;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                dur = Some(v.trim_end_matches(',').parse::<f64>().unwrap());
            } else if !line.starts_with('#') && !line.is_empty() {
                p.segments.push((
                    dur.take().expect("EXTINF before URI"),
                    line.to_owned(),
                    disc,
                ));
                disc = false;
            }
        }
        p
    }
}

/// Seconds since the epoch (ms precision) of a segment URI `YYYY/MM/DD/HH/MM/SS-DDDDD.ts`,
/// with its duration in ms. Checked against `date -u` so the harness does not re-implement
/// the calendar code it tests.
pub fn segment_name_parts(uri: &str) -> (String, u64) {
    let parts: Vec<&str> = uri.split('/').collect();
    assert_eq!(parts.len(), 6, "segment uri {uri}");
    let (sec, dur) = parts[5].trim_end_matches(".ts").split_once('-').unwrap();
    (
        format!(
            "{}-{}-{} {}:{}:{}",
            parts[0], parts[1], parts[2], parts[3], parts[4], sec
        ),
        dur.parse().unwrap(),
    )
}

/// Unix seconds of a `YYYY-MM-DD HH:MM:SS` UTC time, via `date -u`.
pub fn unix_seconds(utc: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", utc, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Milliseconds since the epoch of an ISO 8601 UTC time with fractions
/// (`2022-03-22T08:06:37.250Z`), as in `EXT-X-PROGRAM-DATE-TIME`.
pub fn utc_ms(iso: &str) -> f64 {
    let t = iso.trim_end_matches('Z');
    let (whole, frac) = t.split_once('.').unwrap_or((t, "0"));
    unix_seconds(&format!("{whole}Z")) as f64 * 1000.0
        + frac.parse::<f64>().unwrap() * 10f64.powi(3 - frac.len() as i32)
}

/// Runs a command with a hard timeout (`timeout -k`), capturing its output.
pub fn run_with_timeout(secs: u64, program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "3", &secs.to_string(), program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// `ffprobe -v error ARGS -of csv=p=0 INPUT` (a real reader of our output) with a 60 s limit:
/// its stdout, or a panic with its stderr when it fails.
pub fn ffprobe_csv(input: &str, args: &[&str]) -> String {
    let mut all = vec!["-v", "error"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-of", "csv=p=0", input]);
    let out = run_with_timeout(60, "ffprobe", &all);
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ffmpeg decoding `seconds` of `url` (a real client), with a hard timeout of `limit` s.
pub fn ffmpeg_decode(url: &str, seconds: u32, limit: u64) -> Output {
    let seconds = seconds.to_string();
    run_with_timeout(
        limit,
        "ffmpeg",
        &[
            "-nostdin", "-v", "error", "-i", url, "-t", &seconds, "-f", "null", "-",
        ],
    )
}

/// `gst-launch-1.0` sending 320x240 H.264 + AAC MPEG-TS to a UDP port in real time.
pub fn udp_feeder(port: u16, extra_video: &str) -> Proc {
    udp_feeder_sized(port, (320, 240), extra_video)
}

/// [`udp_feeder`] with another picture size.
pub fn udp_feeder_sized(port: u16, (width, height): (u32, u32), extra_video: &str) -> Proc {
    let desc = format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={width},height={height},framerate=25/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=400 key-int-max=25 {extra_video} \
         ! h264parse ! mpegtsmux name=m alignment=7 ! udpsink host=127.0.0.1 port={port} sync=false \
         audiotestsrc is-live=true freq=660 ! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=64000 ! aacparse ! m."
    );
    gst_launch(&desc)
}

pub fn gst_launch(desc: &str) -> Proc {
    let args: Vec<&str> = shell_words(desc);
    Proc(
        Command::new("gst-launch-1.0")
            .arg("-q")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0"),
    )
}

/// Runs a `gst-launch-1.0` description to its end (e.g. writing a test clip), with a hard
/// timeout of `secs`.
pub fn gst_run(secs: u64, desc: &str) -> Output {
    let mut args = vec!["-q"];
    args.extend(shell_words(desc));
    run_with_timeout(secs, "gst-launch-1.0", &args)
}

/// gst-launch takes the description as separate words; none of ours need quoting.
fn shell_words(desc: &str) -> Vec<&str> {
    desc.split_whitespace().collect()
}

/// First bytes of a TS buffer as PIDs of its first `n` packets.
pub fn ts_pids(data: &[u8], n: usize) -> Vec<u16> {
    data.chunks(188)
        .take(n)
        .map(|p| {
            assert_eq!(p[0], 0x47, "TS sync byte");
            (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])
        })
        .collect()
}

/// `ffprobe` of the first video frame of a file: (key_frame, pict_type).
pub fn first_video_frame(path: &Path) -> String {
    ffprobe_csv(
        path.to_str().unwrap(),
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=key_frame,pict_type",
            "-read_intervals",
            "%+#1",
        ],
    )
    .lines()
    .next()
    .unwrap_or_default()
    .to_owned()
}

pub fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The value of one series in Prometheus text: `name` with exactly `labels` (`a="b",c="d"`,
/// in exposition order; empty for none).
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// A real Prometheus (Debian's) scraping a Headwater every second with `basic_auth`, as
/// Flussonic's guide configures it; plus a second job with a wrong password.
#[derive(Debug)]
pub struct Prometheus {
    pub base: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(headwater_base: &str) -> Prometheus {
        Prometheus::start_with(headwater_base, &[])
    }

    /// Like [`Prometheus::start`], with more command-line flags (e.g. feature flags).
    pub fn start_with(headwater_base: &str, flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let target = headwater_base.trim_start_matches("http://");
        let config = format!(
            "global: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}\n\
             scrape_configs:\n\
             \x20 - job_name: headwater\n\
             \x20   metrics_path: /flussonic/api/metrics\n\
             \x20   basic_auth: {{ username: viewer, password: pw }}\n\
             \x20   static_configs: [ {{ targets: [\"{target}\"] }} ]\n\
             \x20 - job_name: headwater_badpass\n\
             \x20   metrics_path: /flussonic/api/metrics\n\
             \x20   basic_auth: {{ username: viewer, password: wrong }}\n\
             \x20   static_configs: [ {{ targets: [\"{target}\"] }} ]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let check = run_with_timeout(
            20,
            "promtool",
            &["check", "config", config_path.to_str().unwrap()],
        );
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        let port = free_port(false);
        let proc = Proc(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(flags)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus (installed by make test-deps)"),
        );
        let prom = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            _proc: proc,
            _dir: dir,
        };
        // Prometheus applies targets on a 5 s tick: poll rather than sleep.
        wait_until(
            Duration::from_secs(40),
            "up{job=\"headwater\"} == 1",
            || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && prom.query("up{job=\"headwater\"}").contains("\"1\"]")
            },
        );
        prom
    }

    /// An instant query; returns the raw JSON answer.
    pub fn query(&self, q: &str) -> String {
        get(&format!(
            "{}/api/v1/query?query={}",
            self.base,
            urlencode(q)
        ))
        .text()
    }

    /// True when the query succeeded with at least one series.
    pub fn has_data(&self, q: &str) -> bool {
        let r = self.query(q);
        r.contains("\"status\":\"success\"") && r.contains("\"metric\":{")
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A self-signed certificate for 127.0.0.1 and localhost with common name `cn`, written as
/// PEM files `NAME.crt` and `NAME.key` into `dir`; returns their paths.
pub fn self_signed(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, pem) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    (crt, pem)
}

/// `curl` (from Debian's package) with extra arguments; returns (status, stdout, stderr).
pub fn curl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl (installed by make deps)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn spawn(program: &str, args: &[&str]) -> Proc {
    Proc(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}")),
    )
}

/// ffmpeg encoding a small H.264 + AAC test signal to `out` (an SRT/RTMP/UDP URL).
pub fn ffmpeg_sender(format: &str, out: &str) -> Proc {
    ffmpeg_sender_with(&[], format, out)
}

/// Like [`ffmpeg_sender`], with extra output options.
pub fn ffmpeg_sender_with(extra: &[&str], format: &str, out: &str) -> Proc {
    let mut args: Vec<&str> = vec![
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        "300k",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", format, out]);
    spawn("ffmpeg", &args)
}

/// Whether the server closes `s` (EOF or reset) within `wait`; data it sends meanwhile is
/// read and dropped.
pub fn closed_within(s: &mut std::net::TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The sample taken nearest to `t` (UNIX seconds), of samples stamped with wall time.
pub fn nearest_sample<T>(
    samples: &[(std::time::SystemTime, T)],
    t: f64,
) -> &(std::time::SystemTime, T) {
    samples
        .iter()
        .min_by(|a, b| {
            let d = |s: &std::time::SystemTime| {
                (s.duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64()
                    - t)
                    .abs()
            };
            d(&a.0).total_cmp(&d(&b.0))
        })
        .expect("at least one sample")
}

/// hls.js in headless Chromium (`tests/browser/play.mjs`) playing `path` of `server` in the
/// background until [`BackgroundPlayer::finish`] (or `limit_s` seconds).
#[derive(Debug)]
pub struct BackgroundPlayer {
    child: Child,
    until: PathBuf,
}

impl BackgroundPlayer {
    pub fn start(server: &Server, path: &str, limit_s: u32) -> BackgroundPlayer {
        BackgroundPlayer::start_at(&server.base, server.dir.path(), path, limit_s)
    }

    /// Playing `path` of `base` (any HTTP origin: a proxy in front of Headwater); `scratch` is
    /// a folder for the stop file.
    pub fn start_at(base: &str, scratch: &Path, path: &str, limit_s: u32) -> BackgroundPlayer {
        let until = scratch.join("stop-playing");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
        let child = Command::new("timeout")
            .args(["-k", "5", &(limit_s + 40).to_string(), "node", script])
            .args([base, path, "20", &limit_s.to_string(), ""])
            .arg("--player=hls")
            .arg(format!("--until={}", until.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node (installed by make test-deps)");
        BackgroundPlayer { child, until }
    }

    /// Stops the player; its JSON status (`played`, `stalls`, …) once it says it played.
    pub fn finish(self) -> serde_json::Value {
        std::fs::write(&self.until, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let status: serde_json::Value = stdout
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no status from the player: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            out.status.success() && stdout.contains("PLAYED"),
            "hls.js did not play: {stdout}"
        );
        status
    }
}
