//! Stage 2: one actor per stream owns its mutable state (segmenter, window, media info) and
//! publishes what readers need: an immutable [`Snapshot`] per new segment through a `watch`,
//! and the raw chunk flow through a bounded `broadcast` for `/NAME/mpegts` subscribers.
//!
//! ```text
//! ingest --Feed (bounded mpsc, try_send)--> StreamActor --watch<Arc<Snapshot>>--> http (HLS)
//!                                                      \--broadcast<Chunk>-----> http (/mpegts), push
//!                                                      \--broadcast<Chunk> (renditions 2…)--> push
//! ```

mod actor;
mod counters;
mod ll;
mod ll_muxed;
#[cfg(test)]
mod ll_test_media;
mod low_latency;
mod push_status;
mod rendition;
mod sessions;

pub use actor::{ActorControl, ActorParts, Audience, Continuity, StreamActor};
pub use counters::{DvbCards, DvbReading, StreamCounters, TranscoderStatus, mono_ms};
pub use push_status::{PushBoard, PushPhase, PushStatus};
pub use sessions::{Sessions, StreamingClient, session_key};

use crate::media::{Chunk, MediaInfo};
use crate::packaging::Snapshot;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// Chunks queued from ingest to the actor. Bounded so a stalled actor cannot grow memory: at
/// ~70 chunks/s (25 fps video + audio) this absorbs about 7 s of scheduling hiccups.
pub const FEED_CAPACITY: usize = 512;
/// Chunks of the first rendition buffered per subscriber (an `/mpegts` viewer, a push)
/// before it counts as lagging and skips to the next keyframe (~3.5 s).
pub const LIVE_CAPACITY: usize = 256;
/// The same for the other renditions of a ladder, which share one broadcast that only pushes
/// of those renditions read (~3.5 s of a four-rung ladder).
pub const LADDER_CAPACITY: usize = 3 * LIVE_CAPACITY;

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

/// A publisher asking to push to a stream, as the `on_publish` backend is told.
#[derive(Debug, Clone, Copy)]
pub struct PublishAttempt<'a> {
    pub stream: &'a str,
    pub ip: std::net::IpAddr,
    /// `rtmp`, `srt` or `http`.
    pub proto: &'static str,
    pub key: Option<&'a str>,
    pub query: &'a str,
}

/// Decides publishers by the stream's (or the server's) `on_publish` backend; before a
/// publisher's first byte reaches the stream. Front ends in `ingest` and `http` share it.
pub trait PublishGate: Send + Sync + std::fmt::Debug {
    fn allow<'a>(
        &'a self,
        attempt: PublishAttempt<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// A publisher's hold on a stream; dropping it ends the publication.
pub trait PublishFeed: Send + std::fmt::Debug {
    /// Hands over container bytes (FLV or MPEG-TS); false when nothing consumes them now.
    fn push(&self, data: Vec<u8>) -> bool;
    /// The stream no longer takes this publisher (deleted, or its key changed): the front
    /// end ends the connection.
    fn is_closed(&self) -> bool;
}

/// The reader side of one stream; cheap to clone.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    pub name: Arc<str>,
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
    /// The stream's definition as stored (`streams/NAME.toml`), for the API (which masks its
    /// secrets); never logged.
    pub definition: Arc<str>,
    /// The stream's own authorization backends (the server's `[auth]` fills the gaps).
    pub access: Arc<crate::config::StreamAccess>,
    /// Its pushes' states and figures (empty without `pushes`).
    pub pushes: Arc<PushBoard>,
    /// Ticks (monotonic ms) about once a second while the stream's actor runs: what requests
    /// held for a future part check their deadline on, instead of a timer each.
    pub heartbeat: watch::Receiver<u64>,
}

impl StreamHandle {
    /// The current snapshot (a pointer copy).
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// The running streams by name, replaced whole by the control plane when the stream set
/// changes; readers take a consistent snapshot without locking (`ArcSwap`).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    streams: Arc<ArcSwap<Streams>>,
}

/// One version of the stream set.
#[derive(Debug, Default)]
pub struct Streams {
    /// Running streams (shared: a request takes one reference, not a copy of each field).
    live: BTreeMap<String, Arc<StreamHandle>>,
    /// Deleted streams whose archive is still on disk: only the archive URLs find them.
    archived: BTreeMap<String, Arc<StreamHandle>>,
}

impl Registry {
    pub fn new(handles: impl IntoIterator<Item = StreamHandle>) -> Self {
        let registry = Registry::default();
        registry.replace(handles, []);
        registry
    }

    /// Publishes a new stream set (control plane only).
    pub fn replace(
        &self,
        live: impl IntoIterator<Item = StreamHandle>,
        archived: impl IntoIterator<Item = StreamHandle>,
    ) {
        let by_name = |handles: &mut dyn Iterator<Item = StreamHandle>| {
            handles.map(|h| (h.name.to_string(), Arc::new(h))).collect()
        };
        self.streams.store(Arc::new(Streams {
            live: by_name(&mut live.into_iter()),
            archived: by_name(&mut archived.into_iter()),
        }));
    }

    /// A running stream.
    pub fn get(&self, name: &str) -> Option<Arc<StreamHandle>> {
        self.streams.load().live.get(name).cloned()
    }

    /// A running stream, or a deleted one whose archive is still served.
    pub fn get_with_archive(&self, name: &str) -> Option<Arc<StreamHandle>> {
        let streams = self.streams.load();
        streams
            .live
            .get(name)
            .or_else(|| streams.archived.get(name))
            .cloned()
    }

    /// The running streams, in name order (a snapshot).
    pub fn iter(&self) -> impl Iterator<Item = Arc<StreamHandle>> {
        let streams = self.streams.load_full();
        let handles: Vec<Arc<StreamHandle>> = streams.live.values().cloned().collect();
        handles.into_iter()
    }

    /// Names of the running streams, in order.
    pub fn names(&self) -> Vec<String> {
        self.streams.load().live.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.streams.load().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
