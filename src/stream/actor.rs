//! The per-stream actor: the only owner of a stream's segmenter and window.

use super::{Feed, StreamCounters, StreamHandle, mono_ms};
use crate::dvr::{Archive, RecorderInput};
use crate::media::{Chunk, MediaInfo};
use crate::packaging::{Segmenter, Snapshot, Window};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often retired segments are checked for the end of their grace period.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Owns one stream's state; see the module docs of [`crate::stream`].
#[derive(Debug)]
pub struct StreamActor {
    name: Arc<str>,
    feed: mpsc::Receiver<Feed>,
    segmenter: Segmenter,
    window: Window,
    /// Latest media description from ingest; `None` until the first caps arrive.
    media: Option<MediaInfo>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    live: broadcast::Sender<Chunk>,
    counters: Arc<StreamCounters>,
    /// The DVR writer of this stream, when recording.
    recorder: Option<RecorderInput>,
}

impl StreamActor {
    /// Creates the actor and its reader handle. The feed sender goes to ingest.
    pub fn new(
        config: &crate::config::StreamConfig,
        counters: Arc<StreamCounters>,
        dvr: Option<(Arc<Archive>, RecorderInput)>,
    ) -> (Self, StreamHandle, mpsc::Sender<Feed>) {
        let (archive, recorder) = dvr.unzip();
        let (feed_tx, feed) = mpsc::channel(super::FEED_CAPACITY);
        let (snapshot, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (live, _) = broadcast::channel(super::LIVE_CAPACITY);
        let name: Arc<str> = config.name.as_str().into();
        let handle = StreamHandle {
            name: name.clone(),
            title: config.title.as_deref().map(Into::into),
            snapshot: snapshot_rx,
            live: live.clone(),
            counters: counters.clone(),
            sessions: Arc::default(),
            segment_ms: config.segment_duration.as_millis(),
            segment_count: config.segment_count.get(),
            inputs: config.inputs.iter().map(|i| i.url.to_string()).collect(),
            archive,
        };
        let actor = StreamActor {
            name,
            feed,
            segmenter: Segmenter::new(config.segment_duration.duration()),
            window: Window::new(
                config.segment_count.get(),
                config.segment_duration.as_millis(),
            ),
            media: None,
            snapshot,
            live,
            counters,
            recorder,
        };
        (actor, handle, feed_tx)
    }

    /// Runs until cancelled or until ingest has gone away.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                feed = self.feed.recv() => match feed {
                    Some(feed) => self.on_feed(feed),
                    None => break,
                },
                _ = expire.tick() => self.on_expire(),
            }
        }
        debug!(stream = %self.name, "stream actor stopped");
    }

    fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Chunk(chunk) => {
                let segment = self.segmenter.push(&chunk, crate::media::utc::now_ms());
                // No receiver is normal (nobody watching /mpegts); the error only says that.
                let _ = self.live.send(chunk);
                if let Some(segment) = segment {
                    self.on_segment(segment);
                }
            }
            Feed::Media(info) => {
                if self.media.as_ref() != Some(&info) {
                    info!(stream = %self.name, tracks = %info.tracks_spec(), codecs = %info.codecs(), "media info");
                    self.media = Some(info);
                    self.publish();
                }
            }
            Feed::Break => {
                if let Some(segment) = self.segmenter.break_run() {
                    self.on_segment(segment);
                }
            }
        }
    }

    fn on_segment(&mut self, segment: crate::media::Segment) {
        if segment.data.len() < 188 || segment.data[0] != 0x47 {
            warn!(stream = %self.name, "dropping a segment that does not start with a TS packet");
            return;
        }
        debug!(stream = %self.name, seq = segment.sequence, ms = segment.duration_ms, bytes = segment.data.len(), "segment");
        StreamCounters::add(&self.counters.segments, 1);
        self.counters
            .last_segment_ms
            .store(mono_ms(), std::sync::atomic::Ordering::Relaxed);
        let segment = Arc::new(segment);
        if let Some(recorder) = &self.recorder {
            recorder.offer(&segment);
        }
        self.window.push(segment, mono_ms());
        self.publish();
    }

    fn on_expire(&mut self) {
        if self.window.expire(mono_ms()) {
            self.publish();
        }
    }

    fn publish(&self) {
        let snap = self.window.snapshot(self.media.as_ref());
        self.snapshot.send_replace(Arc::new(snap));
    }
}
