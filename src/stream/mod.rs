//! Stage 2: one actor per stream owns its mutable state (segmenter, window, media info) and
//! publishes what readers need: an immutable [`Snapshot`] per new segment through a `watch`,
//! and the raw chunk flow through a bounded `broadcast` for `/NAME/mpegts` subscribers.
//!
//! ```text
//! ingest --Feed (bounded mpsc, try_send)--> StreamActor --watch<Arc<Snapshot>>--> http (HLS)
//!                                                      \--broadcast<Chunk>-----> http (/mpegts)
//! ```

mod actor;
mod counters;
mod rendition;
mod sessions;

pub use actor::StreamActor;
pub use counters::{DvbCards, DvbReading, StreamCounters, TranscoderStatus, mono_ms};
pub use sessions::{Sessions, StreamingClient, session_key};

use crate::media::{Chunk, MediaInfo};
use crate::packaging::Snapshot;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// Chunks queued from ingest to the actor. Bounded so a stalled actor cannot grow memory: at
/// ~70 chunks/s (25 fps video + audio) this absorbs about 7 s of scheduling hiccups.
pub const FEED_CAPACITY: usize = 512;
/// Chunks buffered per `/mpegts` subscriber before it counts as lagging (~3.5 s).
pub const LIVE_CAPACITY: usize = 256;

/// What ingest sends to a stream actor.
#[derive(Debug)]
pub enum Feed {
    /// Muxed TS for one access unit of one rendition ([`Chunk::rendition`]).
    Chunk(Chunk),
    /// Tracks and codecs of rendition `.0`, read from the real stream (sent again on change).
    Media(usize, MediaInfo),
    /// The source stopped or restarted: what follows does not continue what came before.
    Break,
}

/// Why a publisher was turned away: the `reason` label of `flussonic_publish_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownStream,
    BadKey,
    Busy,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownStream => "unknown_stream",
            Refusal::BadKey => "bad_key",
            Refusal::Busy => "busy",
        }
    }
}

/// Accepts pushed streams (`publish://` inputs) from any protocol front end (RTMP, HTTP),
/// without those front ends knowing how ingest consumes the bytes.
pub trait Publishing: Send + Sync + std::fmt::Debug {
    /// Claims stream `name` for one publisher. `authorized` (administrator credentials)
    /// skips the publish key check.
    fn claim(
        &self,
        name: &str,
        key: Option<&str>,
        authorized: bool,
    ) -> Result<Box<dyn PublishFeed>, Refusal>;
}

/// A publisher's hold on a stream; dropping it ends the publication.
pub trait PublishFeed: Send + std::fmt::Debug {
    /// Hands over container bytes (FLV or MPEG-TS); false when nothing consumes them now.
    fn push(&self, data: Vec<u8>) -> bool;
}

/// The reader side of one stream; cheap to clone.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    pub name: Arc<str>,
    pub title: Option<Arc<str>>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub live: broadcast::Sender<Chunk>,
    pub counters: Arc<StreamCounters>,
    pub sessions: Arc<Sessions>,
    /// Target segment duration, ms (for client delay and session timeouts).
    pub segment_ms: u32,
    /// Live window length, segments (timeshift windows have the same length).
    pub segment_count: usize,
    /// Configured inputs in priority order, as shown to operators (credentials masked).
    pub inputs: Arc<[String]>,
    /// The first recording rendition's archive (what metrics and status report).
    pub archive: Option<Arc<crate::dvr::Archive>>,
    /// Each rendition's archive (index 0 is `archive`); `None` where it does not record.
    pub archives: Arc<[Option<Arc<crate::dvr::Archive>>]>,
}

impl StreamHandle {
    /// The current snapshot (a pointer copy).
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// All configured streams by name; fixed after start-up.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    streams: Arc<BTreeMap<String, StreamHandle>>,
}

impl Registry {
    pub fn new(handles: impl IntoIterator<Item = StreamHandle>) -> Self {
        Registry {
            streams: Arc::new(
                handles
                    .into_iter()
                    .map(|h| (h.name.to_string(), h))
                    .collect(),
            ),
        }
    }

    pub fn get(&self, name: &str) -> Option<&StreamHandle> {
        self.streams.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &StreamHandle> {
        self.streams.values()
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}
