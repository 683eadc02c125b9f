//! Scale-out on nginx caches: two real nginx edges running `config/nginx-edge.conf` as
//! shipped (only the origin's address, the edge's port and its cache folder changed) in front
//! of one Headwater. 200 clients following the live edge through them cost the origin at most
//! one request per segment per edge; media is cached without the viewer's token but still
//! authorized per token; hls.js plays through an edge across an edge restart and an origin
//! restart.

mod common;

use common::backend::Backend;
use common::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STREAM: &str = "inputs = [{ url = \"fake://fake\" }]\nsegment_duration = 1000\n";

/// One nginx edge in its own folder (config, cache, logs) on its own port.
struct Edge {
    dir: tempfile::TempDir,
    port: u16,
    nginx: Option<Proc>,
}

impl Edge {
    /// `origin`: the Headwater's `host:port`.
    fn start(origin: &str) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port(false);
        let prefix = dir.path().to_str().unwrap();
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/nginx-edge.conf"
        ))
        .unwrap();
        let mut site = shipped.clone();
        for (from, to) in [
            ("server 127.0.0.1:8080;", format!("server {origin};")),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            ("/var/cache/nginx/", format!("{prefix}/cache/")),
        ] {
            assert!(
                site.contains(from),
                "config/nginx-edge.conf has no `{from}`"
            );
            site = site.replace(from, &to);
        }
        std::fs::write(dir.path().join("edge.conf"), site).unwrap();
        // Debian's nginx package makes /var/cache/nginx; nginx makes the folders inside.
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        // What a Debian nginx.conf gives the files in conf.d/, with paths in the folder.
        let main = format!(
            "daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log {prefix}/access.log;\n  client_body_temp_path {prefix}/body;\n  \
             proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n  \
             uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n  \
             include {prefix}/edge.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let mut edge = Edge {
            dir,
            port,
            nginx: None,
        };
        edge.run();
        edge
    }

    fn run(&mut self) {
        let conf: PathBuf = self.dir.path().join("nginx.conf");
        let test = run_with_timeout(
            10,
            "nginx",
            &[
                "-t",
                "-p",
                self.dir.path().to_str().unwrap(),
                "-c",
                conf.to_str().unwrap(),
            ],
        );
        assert!(
            test.status.success(),
            "nginx -t refuses the edge config: {}",
            String::from_utf8_lossy(&test.stderr)
        );
        self.nginx = Some(spawn(
            "nginx",
            &[
                "-p",
                self.dir.path().to_str().unwrap(),
                "-c",
                conf.to_str().unwrap(),
            ],
        ));
        let port = self.port;
        wait_until(Duration::from_secs(10), "the nginx edge listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops nginx (its cache on disk stays, as on a real restart) and starts it again.
    fn restart(&mut self) {
        drop(self.nginx.take());
        self.run();
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Requests the origin answered on `route` so far (all methods and statuses).
fn origin_requests(server: &Server, route: &str) -> f64 {
    let text = server.scrape();
    text.lines()
        .filter(|l| {
            l.starts_with("flussonic_http_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The newest segment a media playlist lists.
fn newest(playlist: &str) -> Option<String> {
    playlist
        .lines()
        .rev()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
}

#[test]
fn two_edges_ask_the_origin_once_per_segment_each() {
    let server = Server::start(&[("demo", STREAM)]);
    server.wait_segments("demo", 2, Duration::from_secs(30));
    let origin = server.base.trim_start_matches("http://").to_owned();
    let edges = [Edge::start(&origin), Edge::start(&origin)];

    // A segment is fetched from the origin once, then served from the edge's cache.
    let playlist = get(&edges[0].url("/demo/mono.m3u8"));
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    let segment = format!("/demo/{}", newest(&playlist.text()).unwrap());
    let first = get(&edges[0].url(&segment));
    let again = get(&edges[0].url(&segment));
    let direct = get(&server.url(&segment));
    assert_eq!((first.status, again.status), (200, 200));
    assert_eq!(first.header("x-cache-status"), "MISS");
    assert_eq!(again.header("x-cache-status"), "HIT");
    assert_eq!(
        again.body, direct.body,
        "the edge serves the origin's bytes"
    );

    // 200 clients, 100 per edge, following the live edge for 12 s. (The exposition is
    // rendered every stats interval, 1 s here: let it catch up before and after.)
    std::thread::sleep(Duration::from_millis(2500));
    let segments_before = origin_requests(&server, "segment");
    let playlists_before = origin_requests(&server, "/:name/mono.m3u8");
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let served = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
    let until = Instant::now() + Duration::from_secs(12);
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let base = edges[i % 2].url("");
            let (seen, served) = (seen.clone(), served.clone());
            std::thread::spawn(move || {
                let mut last = String::new();
                while Instant::now() < until {
                    let playlist = get(&format!("{base}/demo/mono.m3u8"));
                    let newest = (playlist.status == 200)
                        .then(|| newest(&playlist.text()))
                        .flatten();
                    let Some(name) = newest else {
                        served
                            .lock()
                            .unwrap()
                            .1
                            .push(format!("playlist {}", playlist.status));
                        std::thread::sleep(Duration::from_millis(300));
                        continue;
                    };
                    if name != last {
                        let reply = get(&format!("{base}/demo/{name}"));
                        let mut s = served.lock().unwrap();
                        if reply.status == 200 && !reply.body.is_empty() {
                            s.0 += 1;
                        } else {
                            s.1.push(format!("{name}: {}", reply.status));
                        }
                        seen.lock().unwrap().insert(name.clone());
                        last = name;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let (fetched, errors) = served.lock().unwrap().clone();
    assert!(errors.is_empty(), "clients got errors: {errors:?}");
    let distinct = seen.lock().unwrap().len() as f64;
    std::thread::sleep(Duration::from_millis(2500));
    let from_origin = origin_requests(&server, "segment") - segments_before;
    let playlists = origin_requests(&server, "/:name/mono.m3u8") - playlists_before;
    eprintln!(
        "200 clients fetched {fetched} segments ({distinct} distinct) through 2 edges; \
         the origin served {from_origin} segment and {playlists} playlist requests"
    );
    assert!(
        distinct >= 8.0,
        "the clients followed the live edge: {distinct}"
    );
    assert!(
        fetched as f64 >= 100.0 * distinct,
        "{fetched} of {distinct}"
    );
    assert!(
        from_origin <= 2.0 * distinct,
        "{from_origin} origin requests for {distinct} segments on 2 edges"
    );
    // Playlists live a second at each edge: about one origin request per edge per second.
    assert!(
        playlists <= 2.0 * (12.0 + 2.0) * 2.0,
        "{playlists} playlist requests reached the origin in 12 s"
    );
}

#[test]
fn media_cached_without_the_token_is_still_authorized_per_token() {
    let backend = Backend::start(5);
    let server = Server::start(&[("tv", &format!("{STREAM}on_play = \"{}\"\n", backend.url))]);
    wait_until(Duration::from_secs(30), "the playlist", || {
        get(&server.url("/tv/mono.m3u8?token=good1")).status == 200
    });
    let origin = server.base.trim_start_matches("http://").to_owned();
    let edge = Edge::start(&origin);
    let playlist = get(&edge.url("/tv/mono.m3u8?token=good1"));
    assert_eq!(playlist.status, 200);
    let listed = newest(&playlist.text()).unwrap();
    assert!(listed.ends_with("?token=good1"), "{listed}");
    let with_a = get(&edge.url(&format!("/tv/{listed}")));
    assert_eq!(with_a.status, 200);
    // Another valid token gets the same cached bytes; no token or a bad one gets nothing.
    let path = listed.split('?').next().unwrap().to_owned();
    let with_b = get(&edge.url(&format!("/tv/{path}?token=good2")));
    assert_eq!(with_b.status, 200);
    assert_eq!(with_b.header("x-cache-status"), "HIT");
    assert_eq!(with_b.body, with_a.body);
    assert_eq!(get(&edge.url(&format!("/tv/{path}"))).status, 403);
    assert_eq!(get(&edge.url(&format!("/tv/{path}?token=bad"))).status, 403);
    // A playlist is per token: B's lists B's token.
    let b = get(&edge.url("/tv/mono.m3u8?token=good2")).text();
    assert!(newest(&b).unwrap().ends_with("?token=good2"), "{b}");
}

#[test]
fn hls_js_plays_through_an_edge_across_edge_and_origin_restarts() {
    let server = Server::start(&[("demo", STREAM)]);
    server.wait_segments("demo", 3, Duration::from_secs(30));
    let origin = server.base.trim_start_matches("http://").to_owned();
    let mut edge = Edge::start(&origin);
    let scratch = tempfile::tempdir().unwrap();
    let player = BackgroundPlayer::start_at(&edge.url(""), scratch.path(), "/demo/index.m3u8", 90);
    std::thread::sleep(Duration::from_secs(10));
    edge.restart();
    std::thread::sleep(Duration::from_secs(8));
    let server = server.crash_and_restart_in_place();
    server.wait_segments("demo", 1, Duration::from_secs(30));
    // The player (the edge's only client) goes on fetching new segments from the new origin.
    wait_until(
        Duration::from_secs(30),
        "segments fetched from the restarted origin",
        || origin_requests(&server, "segment") >= 4.0,
    );
    let status = player.finish();
    eprintln!("player: {status}");
    assert!(
        status["played"].as_f64().unwrap_or(0.0) >= 20.0,
        "played through both restarts: {status}"
    );
}
