//! Limits on archive exports: at most `[dvr] max_exports` MP4 remuxes at once (more → 503
//! with `Retry-After`), no export longer than `max_export_duration` (→ 400), and a finished
//! MP4 kept for a minute after its last use so a player's `Range` requests read the same
//! file instead of each remuxing the range again.

use crate::stats::names;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a finished export stays after its last request.
const KEEP: Duration = Duration::from_secs(60);
/// Most finished exports kept at once (each is a file in the temporary folder).
const KEEP_MAX: usize = 8;

/// A folder deleted when the last response body (or cache entry) that reads from it is gone.
#[derive(Debug)]
pub(super) struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One finished MP4 export.
#[derive(Debug, Clone)]
pub(super) struct Finished {
    pub path: PathBuf,
    pub size: u64,
    pub dir: Arc<TempDir>,
}

/// Which export: the archive folder, its start and duration.
type Key = (PathBuf, u64, u64);

/// Export limits and the finished-export cache.
#[derive(Debug)]
pub struct Exports {
    max: AtomicUsize,
    max_duration_s: AtomicU64,
    running: Arc<AtomicUsize>,
    done: Mutex<Vec<(Key, Finished, Instant)>>,
}

impl Exports {
    pub fn new(max: usize, max_duration_s: u64) -> Self {
        Exports {
            max: AtomicUsize::new(max),
            max_duration_s: AtomicU64::new(max_duration_s),
            running: Arc::default(),
            done: Mutex::default(),
        }
    }

    /// Takes reloaded `[dvr]` limits (exports running go on).
    pub fn set_limits(&self, max: usize, max_duration_s: u64) {
        self.max.store(max, Ordering::Relaxed);
        self.max_duration_s.store(max_duration_s, Ordering::Relaxed);
    }

    pub(super) fn max_duration_s(&self) -> u64 {
        self.max_duration_s.load(Ordering::Relaxed)
    }

    /// A place for one remux, or `None` when `max_exports` run already.
    pub(super) fn start(&self) -> Option<Running> {
        let max = self.max.load(Ordering::Relaxed);
        let mut n = self.running.load(Ordering::Acquire);
        loop {
            if n >= max {
                return None;
            }
            match self
                .running
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    metrics::gauge!(names::EXPORTS_RUNNING).increment(1.0);
                    return Some(Running(self.running.clone()));
                }
                Err(now) => n = now,
            }
        }
    }

    /// A finished export of this range, if one is kept (its last use is now).
    pub(super) fn find(&self, key: &Key) -> Option<Finished> {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        done.retain(|(_, _, used)| now.duration_since(*used) < KEEP);
        let entry = done.iter_mut().find(|(k, _, _)| k == key)?;
        entry.2 = now;
        Some(entry.1.clone())
    }

    /// Keeps a finished export for later requests of the same range.
    pub(super) fn keep(&self, key: Key, finished: Finished) {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        if done.len() >= KEEP_MAX {
            // The least recently used goes (its file goes with its last reader).
            if let Some(oldest) = done
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(i, _)| i)
            {
                done.swap_remove(oldest);
            }
        }
        done.push((key, finished, Instant::now()));
    }
}

/// A running remux's place.
#[derive(Debug)]
pub(super) struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(names::EXPORTS_RUNNING).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_limited_and_kept() {
        let e = Exports::new(2, 3600);
        let a = e.start().unwrap();
        let _b = e.start().unwrap();
        assert!(e.start().is_none(), "a third waits");
        drop(a);
        assert!(e.start().is_some());
        let dir = std::env::temp_dir().join(format!("hw-export-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key: Key = (PathBuf::from("/a"), 1, 2);
        e.keep(
            key.clone(),
            Finished {
                path: dir.join("x.mp4"),
                size: 1,
                dir: Arc::new(TempDir(dir.clone())),
            },
        );
        assert!(e.find(&key).is_some());
        assert!(e.find(&(PathBuf::from("/a"), 1, 3)).is_none());
        drop(e);
        assert!(!dir.exists(), "the folder goes with the last holder");
    }
}
