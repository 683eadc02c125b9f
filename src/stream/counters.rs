//! Per-stream counters: atomics written by ingest and the actor, read by the stats thread.
//! Relaxed ordering everywhere: each value is independent and only ever sampled.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Milliseconds on a process-wide monotonic clock (starts near 0 at first use).
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Live figures of one stream.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Bytes of muxed TS received from the source pipeline.
    pub bytes_in: AtomicU64,
    /// Bytes of playback payload sent to clients.
    pub bytes_out: AtomicU64,
    /// Pipeline restarts after an error, an unexpected end or a source timeout.
    pub retries: AtomicU64,
    /// Chunks lost because the actor's queue was full (should stay 0).
    pub dropped_chunks: AtomicU64,
    /// Segments produced.
    pub segments: AtomicU64,
    /// [`mono_ms`] of the last chunk from the source; 0 before any.
    pub last_input_ms: AtomicU64,
    /// Wall-clock ms since the epoch when the current source run delivered its first data.
    pub running_since_ms: AtomicU64,
}

impl StreamCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
