//! A real HTTP authorization backend for the tests: a TCP server speaking HTTP/1.1 (one
//! request per connection, `Connection: close`) that logs every call and answers by rule:
//!
//! - `GET` (`on_play`): `token` starting with `good` → 200; `user1-*` → 200 with
//!   `X-UserId: u1`, `X-Max-Sessions: 1`; anything else → 403. Every 200 carries
//!   `X-AuthDuration` = the backend's `auth_duration`.
//! - `POST` (`on_publish`): a JSON body whose `key` starts with `good` → 200, else 403.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One call the backend received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Query parameters (decoded) of a GET; the JSON body's fields of a POST.
    pub params: Vec<(String, String)>,
    /// The W3C `traceparent` the caller sent, if any.
    pub traceparent: Option<String>,
}

impl Call {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub struct Backend {
    pub url: String,
    pub calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
    /// Seconds in `X-AuthDuration`.
    pub auth_duration: Arc<AtomicU64>,
    /// Tokens denied from now on, whatever their prefix.
    revoked: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl Backend {
    pub fn start(auth_duration_s: u64) -> Backend {
        Backend::start_on(0, auth_duration_s)
    }

    /// On a given port (0: any), e.g. to come back where a killed one was.
    pub fn start_on(port: u16, auth_duration_s: u64) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let auth_duration = Arc::new(AtomicU64::new(auth_duration_s));
        let revoked: Arc<Mutex<Vec<String>>> = Arc::default();
        let thread = {
            let (calls, stop, auth_duration, revoked) = (
                calls.clone(),
                stop.clone(),
                auth_duration.clone(),
                revoked.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            let calls = calls.clone();
                            let d = auth_duration.load(Ordering::Relaxed);
                            let revoked = revoked.lock().unwrap().clone();
                            std::thread::spawn(move || {
                                let _ = answer(tcp, &calls, d, &revoked);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Backend {
            url: format!("http://127.0.0.1:{port}/auth"),
            calls,
            stop,
            auth_duration,
            revoked,
            thread: Some(thread),
            port,
        }
    }

    /// Denies `token` from now on (a subscription that ended).
    pub fn revoke(&self, token: &str) {
        self.revoked.lock().unwrap().push(token.to_owned());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Play calls (GET) whose token is `token`.
    pub fn play_calls(&self, token: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == "GET" && c.param("token") == Some(token))
            .cloned()
            .collect()
    }

    pub fn all_calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Stops listening: later calls are refused at connect.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn answer(
    tcp: TcpStream,
    calls: &Mutex<Vec<Call>>,
    duration: u64,
    revoked: &[String],
) -> std::io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(tcp.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut length = 0usize;
    let mut traceparent = None;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("traceparent") {
                traceparent = Some(v.trim().to_owned());
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let params: Vec<(String, String)> = if method == "POST" {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        target
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect()
    };
    let call = Call {
        method,
        params,
        traceparent,
    };
    let (status, headers) = match call.param("token") {
        Some(t) if revoked.iter().any(|r| r == t) => ("403 Forbidden", String::new()),
        _ => decide(&call, duration),
    };
    calls.lock().unwrap().push(call);
    let mut out = tcp;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n{headers}\r\n"
    )?;
    out.flush()
}

fn decide(call: &Call, duration: u64) -> (&'static str, String) {
    let allow = |extra: &str| ("200 OK", format!("X-AuthDuration: {duration}\r\n{extra}"));
    if call.method == "POST" {
        return match call.param("key") {
            Some(k) if k.starts_with("good") => allow(""),
            _ => ("403 Forbidden", String::new()),
        };
    }
    match call.param("token") {
        Some(t) if t.starts_with("good") => allow(""),
        Some(t) if t.starts_with("user1-") => allow("X-UserId: u1\r\nX-Max-Sessions: 1\r\n"),
        _ => ("403 Forbidden", String::new()),
    }
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(x);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
