//! What each of a stream's pushes is doing, written by the push tasks and read by the API and
//! the stats thread (atomics and a small lock: never held across an await).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// The state of one push, as JSON stats show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushPhase {
    /// Connecting (or, for a listener, binding); also between retries.
    Connecting,
    /// Sending (a listener: bound and accepting viewers).
    Running,
    /// The last attempt failed; another follows after the backoff.
    Failed(String),
}

/// One push's figures. `url` is masked (no key, no passphrase): it is the metric label.
#[derive(Debug)]
pub struct PushStatus {
    pub url: String,
    /// `udp`, `srt` or `rtmp`.
    pub protocol: &'static str,
    /// Payload bytes handed to the network (to every viewer, for a listener).
    pub bytes: AtomicU64,
    /// Times the push lost its destination (refused, dropped, unreachable) and started again.
    pub retries: AtomicU64,
    /// Chunks of the stream skipped because the destination could not keep up.
    pub dropped_chunks: AtomicU64,
    /// Viewers connected (SRT listener); 1 while a caller push is connected.
    pub connections: AtomicU64,
    phase: Mutex<PushPhase>,
}

impl PushStatus {
    pub fn new(url: String, protocol: &'static str) -> Self {
        PushStatus {
            url,
            protocol,
            bytes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped_chunks: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            phase: Mutex::new(PushPhase::Connecting),
        }
    }

    pub fn phase(&self) -> PushPhase {
        self.phase
            .lock()
            .map(|p| p.clone())
            .unwrap_or(PushPhase::Connecting)
    }

    /// Sets the phase; returns the previous one.
    pub fn set_phase(&self, phase: PushPhase) -> PushPhase {
        match self.phase.lock() {
            Ok(mut p) => std::mem::replace(&mut *p, phase),
            Err(_) => PushPhase::Connecting,
        }
    }

    /// `flussonic_stream_push_up`: sending now.
    pub fn up(&self) -> bool {
        self.phase() == PushPhase::Running
    }
}

/// The pushes of one stream, replaced whole when its push list changes.
#[derive(Debug, Default)]
pub struct PushBoard {
    entries: Mutex<Vec<std::sync::Arc<PushStatus>>>,
}

impl PushBoard {
    pub fn set(&self, entries: Vec<std::sync::Arc<PushStatus>>) {
        if let Ok(mut e) = self.entries.lock() {
            *e = entries;
        }
    }

    /// The pushes, in configuration order.
    pub fn list(&self) -> Vec<std::sync::Arc<PushStatus>> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}
