//! Stage 1: one supervised GStreamer pipeline per stream, source → `mpegtsmux` → `appsink`.
//!
//! The supervisor (a tokio task) builds a pipeline for the current input, drives its bus with
//! `bus.stream()`, and restarts it with capped exponential backoff after an error, an
//! unexpected end of stream or `source_timeout` seconds without data, counting each restart.
//! The appsink callback runs on a GStreamer streaming thread and only `try_send`s chunks to
//! the stream actor, counting what it has to drop. A file input ends normally at its end and
//! is started again at once (loop), which is not counted as a failure.

mod backoff;
mod media;
mod pipeline;

pub use backoff::Backoff;

use crate::config::{InputUrl, StreamConfig};
use crate::gst_util::{GstError, PipelineEvent, PipelineGuard};
use crate::media::Chunk;
use crate::stream::{DvbCards, Feed, StreamCounters, mono_ms};
use bytes::BytesMut;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// First wait after a failure; doubles up to [`BACKOFF_CAP`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// A run this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How often the source timeout is checked.
const WATCHDOG_EVERY: Duration = Duration::from_millis(250);

/// Why a pipeline could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("GStreamer element missing: {0}")]
    MissingElement(String),
    #[error("cannot link: {0}")]
    Link(String),
    #[error("source unavailable: {0}")]
    Source(String),
    #[error(transparent)]
    Gst(#[from] GstError),
}

impl From<gst::glib::BoolError> for IngestError {
    fn from(e: gst::glib::BoolError) -> Self {
        IngestError::Link(e.to_string())
    }
}

impl From<gst::StateChangeError> for IngestError {
    fn from(e: gst::StateChangeError) -> Self {
        IngestError::Link(e.to_string())
    }
}

/// How one pipeline run ended.
#[derive(Debug)]
enum RunEnd {
    Cancelled,
    /// End of a file input: loop without counting a failure.
    Looped,
    Failed(String),
}

/// Supervises the ingest pipeline of one stream.
#[derive(Debug)]
pub struct IngestSupervisor {
    config: StreamConfig,
    feed: mpsc::Sender<Feed>,
    counters: Arc<StreamCounters>,
    dvb: Arc<DvbCards>,
}

impl IngestSupervisor {
    pub fn new(
        config: StreamConfig,
        feed: mpsc::Sender<Feed>,
        counters: Arc<StreamCounters>,
        dvb: Arc<DvbCards>,
    ) -> Self {
        IngestSupervisor {
            config,
            feed,
            counters,
            dvb,
        }
    }

    /// Runs pipelines until cancelled. Inputs are tried in priority order: a failed input
    /// hands over to the next one, and a full round without success waits the backoff.
    pub async fn run(self, cancel: CancellationToken) {
        let span = info_span!("ingest", stream = %self.config.name);
        self.supervise(cancel).instrument(span).await;
    }

    async fn supervise(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_CAP);
        let mut index = 0;
        loop {
            let input = &self.config.inputs[index % self.config.inputs.len()];
            let started = tokio::time::Instant::now();
            let end = self
                .run_once(&input.url, input.source_timeout.duration(), &cancel)
                .await;
            // Whatever comes next does not continue this run.
            if self.feed.send(Feed::Break).await.is_err() {
                return;
            }
            let wait = match end {
                RunEnd::Cancelled => return,
                RunEnd::Looped => Duration::ZERO,
                RunEnd::Failed(reason) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    if started.elapsed() >= HEALTHY_RUN {
                        backoff.reset();
                    }
                    index += 1;
                    let wait = if index % self.config.inputs.len() == 0 {
                        backoff.fail()
                    } else {
                        Duration::ZERO
                    };
                    warn!(input = %input.url, %reason, retry_in_ms = wait.as_millis() as u64, "input failed, restarting");
                    wait
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn run_once(
        &self,
        url: &InputUrl,
        source_timeout: Duration,
        cancel: &CancellationToken,
    ) -> RunEnd {
        let tracker = media::MediaTracker::new(self.feed.clone());
        let built = match pipeline::build(
            &self.config.name,
            url,
            self.config.segment_duration.as_millis(),
            &tracker,
        ) {
            Ok(b) => b,
            Err(e) => return RunEnd::Failed(e.to_string()),
        };
        let count_at_sink = match &built.source {
            Some(src) => {
                count_input(src, self.counters.clone());
                false
            }
            None => true,
        };
        attach_sink(
            &built.appsink,
            self.feed.clone(),
            self.counters.clone(),
            count_at_sink,
        );
        let guard = PipelineGuard::new(built.pipeline);
        let mut events = guard.events();
        self.counters.running_since_ms.store(0, Ordering::Relaxed);
        let run_start = mono_ms();
        if let Err(e) = guard.play() {
            // The bus usually holds the real reason (e.g. "could not bind port").
            let detail = first_error(&mut events).await.unwrap_or(e);
            guard.shutdown().await;
            return RunEnd::Failed(detail.to_string());
        }
        info!(input = %url, "pipeline playing");
        let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
        let end = loop {
            tokio::select! {
                () = cancel.cancelled() => break RunEnd::Cancelled,
                event = events.next() => match event {
                    Some(PipelineEvent::Error(e)) => {
                        error!(element = %e.element, reason = %e.message, debug = ?e.debug, "pipeline error");
                        break RunEnd::Failed(e.to_string());
                    }
                    Some(PipelineEvent::Eos) if matches!(url, InputUrl::File { .. }) => {
                        debug!("end of file, looping");
                        break RunEnd::Looped;
                    }
                    Some(PipelineEvent::Eos) => break RunEnd::Failed("source ended".into()),
                    Some(PipelineEvent::Warning(w)) => {
                        warn!(element = %w.element, reason = %w.message, "pipeline warning");
                    }
                    Some(PipelineEvent::Element { source, structure }) => {
                        on_element_message(&source, &structure, &self.dvb);
                    }
                    None => break RunEnd::Failed("bus closed".into()),
                },
                _ = watchdog.tick() => {
                    let last = self.counters.last_input_ms.load(Ordering::Relaxed).max(run_start);
                    if mono_ms().saturating_sub(last) > source_timeout.as_millis() as u64 {
                        break RunEnd::Failed(format!("no data for {} s (source_timeout)", source_timeout.as_secs()));
                    }
                }
            }
        };
        guard.shutdown().await;
        end
    }
}

/// Waits briefly for the error that explains a failed state change.
async fn first_error(
    events: &mut (impl futures_util::Stream<Item = PipelineEvent> + Unpin),
) -> Option<GstError> {
    let wait = async {
        while let Some(ev) = events.next().await {
            if let PipelineEvent::Error(e) = ev {
                return Some(e);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_millis(500), wait)
        .await
        .ok()
        .flatten()
}

/// Installs the appsink callback: one sample (a buffer list, one access unit) becomes one
/// [`Chunk`], `try_send` to the actor; a full queue drops the chunk and counts it.
fn attach_sink(
    appsink: &gst_app::AppSink,
    feed: mpsc::Sender<Feed>,
    counters: Arc<StreamCounters>,
    count_bytes_in: bool,
) {
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                let Some(chunk) = chunk_of(&sample) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let now = mono_ms();
                if count_bytes_in {
                    counters
                        .bytes_in
                        .fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                }
                counters.last_input_ms.store(now, Ordering::Relaxed);
                if counters.running_since_ms.load(Ordering::Relaxed) == 0 {
                    counters
                        .running_since_ms
                        .store(crate::media::utc::now_ms(), Ordering::Relaxed);
                }
                match feed.try_send(Feed::Chunk(chunk)) {
                    Ok(()) => Ok(gst::FlowSuccess::Ok),
                    Err(TrySendError::Full(_)) => {
                        let n = counters.dropped_chunks.fetch_add(1, Ordering::Relaxed);
                        if n.is_power_of_two() {
                            warn!(dropped = n + 1, "stream actor behind, dropping chunks");
                        }
                        Ok(gst::FlowSuccess::Ok)
                    }
                    Err(TrySendError::Closed(_)) => Err(gst::FlowError::Flushing),
                }
            })
            .build(),
    );
}

/// Counts the raw input bytes leaving the source element (a streaming-thread probe: one
/// atomic add per buffer).
fn count_input(source: &gst::Element, counters: Arc<StreamCounters>) {
    use gstreamer::prelude::*;
    let Some(pad) = source.static_pad("src") else {
        return;
    };
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            let bytes = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => b.size(),
                Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                _ => 0,
            };
            counters.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        },
    );
}

/// Element messages from a pipeline's bus. `dvb-frontend-stats` (posted by `dvbsrc` every
/// `stats-reporting-interval` reads) carries `signal` as 0..65535: stored as percent under
/// the posting element's name.
pub fn on_element_message(source: &str, structure: &gst::StructureRef, dvb: &DvbCards) {
    if structure.name() == "dvb-frontend-stats" {
        match structure.get::<i32>("signal") {
            Ok(signal) => {
                let percent = f64::from(signal.clamp(0, 65535)) * 100.0 / 65535.0;
                dvb.set(source, percent);
            }
            Err(e) => warn!(card = source, error = %e, "dvb-frontend-stats without a signal field"),
        }
    }
}

/// Concatenates a sample's TS packets. A chunk is a keyframe when its first buffer is not a
/// delta unit: with the force-key-unit probe that is the PAT that precedes an IDR.
fn chunk_of(sample: &gst::Sample) -> Option<Chunk> {
    let mut data = BytesMut::new();
    let mut first: Option<(Option<gst::ClockTime>, bool)> = None;
    let mut add = |buf: &gst::BufferRef| {
        if first.is_none() {
            first = Some((
                buf.pts(),
                !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
            ));
        }
        if let Ok(map) = buf.map_readable() {
            data.extend_from_slice(map.as_slice());
        }
    };
    if let Some(list) = sample.buffer_list() {
        list.iter().for_each(&mut add);
    } else if let Some(buf) = sample.buffer() {
        add(buf);
    }
    let (pts, keyframe) = first?;
    let pts = pts.map(|t| Duration::from_nanos(t.nseconds()));
    Some(Chunk {
        data: data.freeze(),
        pts,
        keyframe,
    })
}
