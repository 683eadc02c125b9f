//! The recorder of one stream: a reader of the same segments the live window gets. The
//! stream actor `try_send`s each finished segment; a dedicated writer thread (off the async
//! runtime) writes it crash-safely, indexes it, and applies retention. A full queue (slow
//! disk) drops and counts segments; live playback never waits for the disk.

use super::index::Entry;
use super::retention::{self, Disk, Limits};
use super::{Archive, store};
use crate::media::Segment;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::{error, info, warn};

/// Segments queued for the writer: ~30 s of 2 s segments absorbs a disk hiccup; beyond that
/// segments are dropped (counted) rather than stalling the stream.
const QUEUE: usize = 16;
/// Retention also runs when no segment arrives (expiration must advance on a dead stream).
const RETENTION_EVERY: Duration = Duration::from_secs(5);

/// Retention settings of one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecorderSettings {
    pub limits: Limits,
    /// Filesystem usage (%) above which the oldest segments are deleted.
    pub disk_usage_limit: Option<f64>,
}

/// The actor's side: hands segments to the writer without blocking.
#[derive(Debug, Clone)]
pub struct RecorderInput {
    tx: SyncSender<Arc<Segment>>,
    archive: Arc<Archive>,
    /// Retention settings in force; replaced at run time by a configuration change, read by
    /// the writer at each retention pass.
    settings: Arc<Mutex<RecorderSettings>>,
}

impl RecorderInput {
    /// Applies new retention settings from the next retention pass on (no restart).
    pub fn set_settings(&self, settings: RecorderSettings) {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    pub fn offer(&self, segment: &Arc<Segment>) {
        match self.tx.try_send(segment.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self
                    .archive
                    .counters
                    .dropped
                    .fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    warn!(
                        dropped = n + 1,
                        "DVR writer behind (slow disk?), dropping segments"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.archive.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the writer thread of `archive`.
pub fn start(
    name: &str,
    archive: Arc<Archive>,
    settings: RecorderSettings,
) -> std::io::Result<(RecorderInput, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE);
    let writer_archive = archive.clone();
    let settings = Arc::new(Mutex::new(settings));
    let writer_settings = settings.clone();
    let span = tracing::info_span!("dvr", stream = %name);
    let join = std::thread::Builder::new()
        .name(format!("dvr-{name}"))
        .spawn(move || span.in_scope(|| run(&writer_archive, &writer_settings, &rx)))?;
    Ok((
        RecorderInput {
            tx,
            archive,
            settings,
        },
        join,
    ))
}

fn run(archive: &Archive, settings: &Mutex<RecorderSettings>, rx: &Receiver<Arc<Segment>>) {
    let settings = || *settings.lock().unwrap_or_else(PoisonError::into_inner);
    // The first segment of this run follows whatever was recorded before: a break.
    let mut first = true;
    loop {
        match rx.recv_timeout(RETENTION_EVERY) {
            Ok(segment) => {
                let resumed = first && !archive.read().is_empty();
                first = false;
                write(archive, &segment, resumed);
                apply_retention(archive, settings());
            }
            Err(RecvTimeoutError::Timeout) => apply_retention(archive, settings()),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    info!("DVR writer stopped");
}

/// The stream's name (the archive folder's), for trace attributes.
fn stream_of(archive: &Archive) -> &str {
    archive
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

fn write(archive: &Archive, segment: &Segment, resumed: bool) {
    let entry = Entry {
        start_ms: segment.start_ms,
        duration_ms: segment.duration_ms,
        size: segment.data.len() as u64,
        discontinuity: segment.discontinuity || resumed,
        seq: 0,
    };
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        "dvr.write",
        stream = stream_of(archive),
        segment.start_ms = entry.start_ms,
        segment.duration_ms = entry.duration_ms,
        segment.bytes = entry.size,
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
    );
    let _entered = span.enter();
    let written = store::write(&archive.dir, &entry, &segment.data);
    if let Err(e) = &written {
        span.record("otel.status_code", "ERROR");
        span.record("error.message", tracing::field::display(e));
    }
    match written {
        Ok(()) => {
            archive.write_index().insert(
                entry.start_ms,
                entry.duration_ms,
                entry.size,
                entry.discontinuity,
            );
            archive.counters.written.fetch_add(1, Ordering::Relaxed);
            if archive.failing.swap(false, Ordering::Relaxed) {
                info!("DVR writes succeed again");
            }
        }
        Err(e) => {
            archive.counters.failed.fetch_add(1, Ordering::Relaxed);
            // Logged once per change of state, not once per segment.
            if !archive.failing.swap(true, Ordering::Relaxed) {
                error!(error = %e, "DVR write failed; live streaming continues, recording is interrupted");
            }
        }
    }
}

fn apply_retention(archive: &Archive, settings: RecorderSettings) {
    let disk = settings.disk_usage_limit.and_then(|usage_limit| {
        let stats = fs4::statvfs(archive.root_for_stats()).ok()?;
        Some(Disk {
            total: stats.total_space(),
            available: stats.available_space(),
            usage_limit,
        })
    });
    let now = crate::media::utc::now_ms();
    let doomed = retention::plan(&archive.read(), settings.limits, disk, now);
    if doomed.is_empty() {
        return;
    }
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        "dvr.retention",
        stream = stream_of(archive),
        segments = doomed.len(),
        bytes = doomed.iter().map(|e| e.size).sum::<u64>(),
    );
    let _entered = span.enter();
    for entry in doomed {
        match store::delete(&archive.dir, &entry) {
            Ok(()) => {
                archive.write_index().remove(entry.start_ms);
                archive
                    .counters
                    .deleted_bytes
                    .fetch_add(entry.size, Ordering::Relaxed);
            }
            Err(e) => {
                warn!(error = %e, "retention could not delete a segment");
                break;
            }
        }
    }
}
