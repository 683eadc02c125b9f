//! Rebuilding archive indexes after a restart (issue #16 item 2): DAYS of 2 s segments for
//! STREAMS streams, laid out as the recorder writes them (`NAME/YYYY/MM/DD/HH/MM/SS-DDDDD.ts`
//! plus each hour's `index` file), then every stream's archive opened the way the server does
//! at start-up, one after another (`Archive::open`), timed.
//!
//! Run: `cargo bench --bench archive_index -- [DAYS (7)] [STREAMS (10)]`. The archive is made
//! once under `target/bench-archive/DAYSxSTREAMS` (empty segment files, their sizes in the
//! index; 3 million files for 7 × 10) and kept for the next run. Opened twice: as the page
//! cache left it, and, when this process may (root), after dropping the caches (`cold`: a
//! restart after a reboot). Under `cargo test --all-targets` (no `--bench` argument) it checks
//! itself on one day of one stream in a temporary folder, warm only.

use headwater::dvr::Archive;
use headwater::media::segment_path;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

const SEGMENT_MS: u64 = 2000;
/// 2026-11-01T00:00:00Z.
const T0: u64 = 1_793_491_200_000;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let benching = std::env::args().any(|a| a == "--bench");
    let (days, streams) = if benching {
        (
            args.first().copied().unwrap_or(7),
            args.get(1).copied().unwrap_or(10),
        )
    } else {
        (1, 1)
    };
    let scratch = tempfile::tempdir().expect("temporary folder");
    let root = if benching {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench-archive")
            .join(format!("{days}x{streams}"))
    } else {
        scratch.path().join("archive")
    };
    let per_stream = days * 86_400_000 / SEGMENT_MS;
    if !root.join("complete").exists() {
        let started = Instant::now();
        make(&root, streams, per_stream);
        println!(
            "made {} segments in {:.1} s under {}",
            per_stream * streams,
            started.elapsed().as_secs_f64(),
            root.display()
        );
    }
    let open_all = |label: &str| {
        let started = Instant::now();
        let mut segments = 0;
        for s in 0..streams {
            let archive = Archive::open(&root, &format!("s{s}")).expect("archive opens");
            segments += archive.read().len();
        }
        let took = started.elapsed().as_secs_f64();
        assert_eq!(
            segments as u64,
            per_stream * streams,
            "every segment indexed"
        );
        println!(
            "{label}: {days} days x {streams} streams ({segments} segments) indexed in {took:.3} s \
             ({:.2} us per segment)",
            took * 1e6 / segments as f64
        );
    };
    open_all("warm");
    open_all("warm");
    if !benching {
        return;
    }
    let _ = std::process::Command::new("sync").status();
    match std::fs::write("/proc/sys/vm/drop_caches", "3") {
        Ok(()) => open_all("cold"),
        Err(e) => println!("cold: not measured (cannot drop the page cache: {e})"),
    }
}

/// Lays out `streams` archives of `per_stream` contiguous segments.
fn make(root: &Path, streams: u64, per_stream: u64) {
    let _ = std::fs::remove_dir_all(root);
    for s in 0..streams {
        let dir = root.join(format!("s{s}"));
        let mut index = String::new();
        let mut hour_dir = None;
        for i in 0..per_stream {
            let start = T0 + i * SEGMENT_MS;
            let path = dir.join(segment_path(start, SEGMENT_MS as u32));
            let minute = path.parent().expect("minute folder");
            let hour = minute.parent().expect("hour folder").to_path_buf();
            if hour_dir.as_ref() != Some(&hour)
                && let Some(previous) = hour_dir.replace(hour.clone())
            {
                flush(&previous, &mut index);
            }
            std::fs::create_dir_all(minute).expect("folders");
            std::fs::File::create(&path).expect("segment file");
            // 1 Mbit/s: 250,000 bytes per segment; a discontinuity every 5,000 segments.
            let _ = writeln!(
                index,
                "{start} {SEGMENT_MS} 250000 {}",
                u8::from(i % 5000 == 0)
            );
        }
        if let Some(hour) = hour_dir {
            flush(&hour, &mut index);
        }
    }
    std::fs::write(root.join("complete"), "").expect("marker");
}

fn flush(hour: &Path, index: &mut String) {
    std::fs::write(hour.join("index"), index.as_bytes()).expect("index file");
    index.clear();
}
