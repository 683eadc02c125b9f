//! Stage 3b: the archive. Same segments as the live window, recorded to disk by a writer
//! thread per stream, kept under a retention policy, and read back by HTTP for Flussonic's
//! archive URLs.
//!
//! ```text
//! stream actor --try_send(Arc<Segment>)--> recorder thread --> ROOT/NAME/YYYY/MM/DD/HH/MM/SS-DDDDD.ts
//!                                               |                    + per-hour index
//!                                               \--> Archive (RwLock<ArchiveIndex>) <-- http (playlists, export, status)
//! ```

pub mod index;
pub mod playlist;
pub mod recorder;
pub mod retention;
pub mod store;

pub use index::{ArchiveIndex, Entry, Range};
pub use recorder::{RecorderInput, RecorderSettings};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Archive I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum DvrError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl DvrError {
    fn io(path: &Path, what: &str) -> Self {
        DvrError::Io(path.to_owned(), std::io::Error::other(what.to_owned()))
    }
}

/// Turns an MPEG-TS file into an MP4 file. Implemented with GStreamer outside this module
/// (`gst_util::GstMp4Export`), so HTTP and DVR need no GStreamer themselves.
pub trait Mp4Export: Send + Sync + std::fmt::Debug {
    /// Blocking; call it off the async runtime. `created` (UNIX s) is written as the file's
    /// creation time, so equal inputs give equal files.
    fn ts_to_mp4(&self, input: &Path, output: &Path, created: i64) -> Result<(), String>;
}

/// Recorder counters, read by the stats thread.
#[derive(Debug, Default)]
pub struct DvrCounters {
    pub written: AtomicU64,
    /// Dropped because the writer was behind.
    pub dropped: AtomicU64,
    /// Failed to write (disk full, read-only, I/O error).
    pub failed: AtomicU64,
    /// Bytes deleted by retention.
    pub deleted_bytes: AtomicU64,
}

/// One stream's archive: its folder, index and counters; shared by recorder and readers.
#[derive(Debug)]
pub struct Archive {
    /// `ROOT/NAME`.
    pub dir: PathBuf,
    /// Lock order: only this lock; held for one insert/remove or one read, never across I/O.
    index: RwLock<ArchiveIndex>,
    pub counters: DvrCounters,
    /// True from a failed write until the next successful one.
    pub failing: AtomicBool,
}

impl Archive {
    /// Opens `root/name`, rebuilding the index from disk and removing stray temporary files.
    pub fn open(root: &Path, name: &str) -> Result<Archive, DvrError> {
        let dir = root.join(name);
        let loaded = store::load(&dir)?;
        if loaded.removed_temp > 0 || !loaded.index.is_empty() {
            tracing::info!(
                stream = name,
                segments = loaded.index.len(),
                removed_temp = loaded.removed_temp,
                "archive loaded"
            );
        }
        Ok(Archive {
            dir,
            index: RwLock::new(loaded.index),
            counters: DvrCounters::default(),
            failing: AtomicBool::new(false),
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, ArchiveIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, ArchiveIndex> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The nearest existing folder of the archive, for filesystem statistics.
    pub fn root_for_stats(&self) -> &Path {
        self.dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"))
    }
}
