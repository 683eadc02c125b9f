//! Stage 1: one supervised GStreamer pipeline per stream, source → `mpegtsmux` → `appsink`.
//!
//! The supervisor (a tokio task) builds a pipeline for the current input, drives its bus with
//! `bus.stream()`, and restarts it with capped exponential backoff after an error, an
//! unexpected end of stream or `source_timeout` seconds without data, counting each restart.
//! The appsink callback runs on a GStreamer streaming thread and only `try_send`s chunks to
//! the stream actor, counting what it has to drop. A file input ends normally at its end and
//! is started again at once (loop), which is not counted as a failure.

mod adts;
mod backoff;
pub mod codecs;
pub mod dvb;
mod ladder;
mod media;
mod pipeline;
pub mod publish;
pub mod rtmp;
mod splice;
pub mod srt_publish;

pub use backoff::Backoff;
pub use publish::PublishSlots;

use crate::config::{InputUrl, StreamConfig};
use crate::gst_util::{GstError, PipelineEvent, PipelineGuard};
use crate::media::Chunk;
use crate::stream::{DvbCards, Feed, StreamCounters, TranscoderStatus, mono_ms};
use crate::telemetry;
use bytes::BytesMut;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

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

/// How the supervisor's wait ended.
#[derive(Debug)]
enum Outcome {
    Cancelled,
    /// End of a file input: loop without counting a failure.
    Looped,
    Failed(String),
    /// The higher-priority input is healthy again: hand over to its instance.
    Promote,
}

/// Shared between one pipeline instance's streaming threads and the supervisor.
#[derive(Debug, Default)]
struct Gate {
    /// Chunks reach the stream only while true; a probe of a recovering input keeps it false.
    forward: AtomicBool,
    /// [`mono_ms`] of the last chunk this instance produced, forwarded or not; 0 before any.
    last_chunk_ms: AtomicU64,
    /// [`mono_ms`] of the last keyframe chunk: a source that yields data but never a keyframe
    /// (undecodable payload, a broken decryption) is as dead as a silent one.
    last_keyframe_ms: AtomicU64,
    /// The instance has produced a keyframe (a clean point to switch to).
    keyframe_seen: AtomicBool,
}

/// Counts raw input bytes of an instance while it feeds the stream.
#[derive(Debug)]
pub(crate) struct InputMeter {
    counters: Arc<StreamCounters>,
    gate: Arc<Gate>,
}

impl InputMeter {
    /// One source PES had a broken AAC tail cut off.
    fn count_broken_audio(&self) {
        self.counters
            .broken_audio_frames
            .fetch_add(1, Ordering::Relaxed);
    }

    /// One source PES cut short was dropped before the demuxer.
    fn count_broken_pes(&self) {
        self.counters.broken_pes.fetch_add(1, Ordering::Relaxed);
    }

    fn add(&self, bytes: u64) {
        if self.gate.forward.load(Ordering::Relaxed) {
            self.counters.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// One running pipeline for one input.
struct Instance {
    /// Index of its input in the priority-sorted list.
    index: usize,
    guard: PipelineGuard,
    events: std::pin::Pin<Box<dyn futures_util::Stream<Item = PipelineEvent> + Send>>,
    gate: Arc<Gate>,
    /// One per rendition.
    trackers: Vec<Arc<media::MediaTracker>>,
    /// [`mono_ms`] when it started playing.
    started_ms: u64,
    /// Its attachment to a DVB card's multiplex, removed when the instance stops.
    tap: Option<(u64, Arc<dvb::Fanout>)>,
    /// The `source.first_keyframe` trace span, open from playing until the watchdog sees
    /// the first keyframe (`None` after, and for probes).
    awaiting_key: Option<tracing::Span>,
}

impl Instance {
    /// Detaches from shared sources and takes the pipeline to `Null`.
    async fn stop(self) {
        if let Some((id, fanout)) = &self.tap {
            fanout.detach(*id);
        }
        self.guard.shutdown().await;
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("index", &self.index)
            .finish()
    }
}

/// While a backup input feeds the stream, the top-priority input is tried this often.
const PROBE_EVERY_MS: u64 = 5000;

/// Supervises the ingest pipeline of one stream.
#[derive(Debug)]
pub struct IngestSupervisor {
    config: StreamConfig,
    feed: mpsc::Sender<Feed>,
    counters: Arc<StreamCounters>,
    dvb: Arc<DvbCards>,
    /// This stream's publish slot, when an input is `publish://`.
    slot: Option<Arc<publish::Slot>>,
    /// The DVB cards' fan-outs, for `dvb://` inputs.
    tuners: dvb::Tuners,
}

impl IngestSupervisor {
    pub fn new(
        config: StreamConfig,
        feed: mpsc::Sender<Feed>,
        counters: Arc<StreamCounters>,
        dvb: Arc<DvbCards>,
        slots: &PublishSlots,
        tuners: dvb::Tuners,
    ) -> Self {
        let slot = slots.slot(&config.name);
        IngestSupervisor {
            config,
            feed,
            counters,
            dvb,
            slot,
            tuners,
        }
    }

    /// Runs pipelines until cancelled.
    ///
    /// Inputs are tried in priority order: an input that fails (error, unexpected end, no data
    /// for its `source_timeout`) hands over to the next, and a full round without success
    /// waits the backoff. While a backup feeds the stream, the top-priority input is probed
    /// every few seconds with a second pipeline that forwards nothing; once it delivers a
    /// keyframe the backup is stopped and the probe takes over. The output timeline goes on:
    /// each switch is a discontinuity, never a reset.
    pub async fn run(self, cancel: CancellationToken) {
        let span = info_span!("ingest", stream = %self.config.name);
        self.supervise(cancel).instrument(span).await;
    }

    async fn supervise(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_CAP);
        let mut index = 0;
        let mut current: Option<Instance> = None;
        let mut probe: Option<Instance> = None;
        let mut next_probe_ms = 0;
        // The last failure logged (input index, reason); cleared once an input delivers data.
        let mut last_failure: Option<(usize, String)> = None;
        let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
        // The `source.restart`/`source.failover` span of the last failure: the next start is
        // traced inside it.
        let mut recovering: Option<tracing::Span> = None;
        loop {
            let cur = match current.as_mut() {
                Some(c) => c,
                None => match match recovering.take() {
                    Some(span) => self.start(index, true).instrument(span).await,
                    None => self.start(index, true).await,
                } {
                    Ok(instance) => {
                        self.counters.running_since_ms.store(0, Ordering::Relaxed);
                        self.counters
                            .active_input
                            .store(instance.index as u64 + 1, Ordering::Relaxed);
                        current.insert(instance)
                    }
                    Err(reason) => {
                        let (wait, span) =
                            self.failed(&mut index, &mut backoff, 0, &reason, &mut last_failure);
                        recovering = Some(span);
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(wait) => continue,
                        }
                    }
                },
            };
            let input = &self.config.inputs[cur.index];
            let outcome = tokio::select! {
                () = cancel.cancelled() => Outcome::Cancelled,
                event = cur.events.next() => match event {
                    Some(PipelineEvent::Error(e)) => {
                        // The failure is logged (with element and reason) where it is handled,
                        // once per change of state; the full detail only at debug level.
                        debug!(input = %input.url, element = %e.element, reason = %e.message, debug = ?e.debug, "pipeline error");
                        Outcome::Failed(failure_reason(&e.element, &e.message))
                    }
                    Some(PipelineEvent::Eos) if matches!(input.url, InputUrl::File { .. }) => {
                        debug!("end of file, looping");
                        Outcome::Looped
                    }
                    Some(PipelineEvent::Eos) => Outcome::Failed("source ended".into()),
                    Some(PipelineEvent::Warning(w)) => {
                        debug!(input = %input.url, element = %w.element, reason = %w.message, "pipeline warning");
                        continue;
                    }
                    Some(PipelineEvent::Element { source, structure }) => {
                        on_element_message(&source, &structure, &self.dvb);
                        continue;
                    }
                    None => Outcome::Failed("bus closed".into()),
                },
                event = next_event(&mut probe) => {
                    // Any error or end of the probe: the top input is still not usable.
                    if matches!(event, Some(PipelineEvent::Error(_) | PipelineEvent::Eos) | None)
                        && let Some(p) = probe.take()
                    {
                        p.stop().await;
                        next_probe_ms = mono_ms() + PROBE_EVERY_MS;
                    }
                    continue;
                },
                _ = watchdog.tick() => {
                    let now = mono_ms();
                    if cur.awaiting_key.is_some() && cur.gate.keyframe_seen.load(Ordering::Relaxed) {
                        // Ends the span: the source delivered its first keyframe.
                        cur.awaiting_key = None;
                    }
                    let waiting_for_publisher = matches!(input.url, InputUrl::Publish)
                        && !self.slot.as_ref().is_some_and(|s| s.is_busy());
                    if waiting_for_publisher {
                        // No publisher is not a failure: the clock starts when one arrives.
                        cur.started_ms = now;
                    }
                    let last = cur.gate.last_chunk_ms.load(Ordering::Relaxed).max(cur.started_ms);
                    let last_key = cur.gate.last_keyframe_ms.load(Ordering::Relaxed).max(cur.started_ms);
                    let timeout = input.source_timeout.duration();
                    // Without keyframes nothing can be segmented: data that never yields one
                    // (an undecodable or wrongly decrypted payload) fails too, after the longer
                    // of source_timeout and three segment durations.
                    let key_timeout_ms = (timeout.as_millis() as u64)
                        .max(3 * u64::from(self.config.segment_duration.as_millis()));
                    if now.saturating_sub(last) > timeout.as_millis() as u64 {
                        Outcome::Failed(format!("no data for {} s (source_timeout)", timeout.as_secs()))
                    } else if now.saturating_sub(last_key) > key_timeout_ms {
                        Outcome::Failed(format!("no keyframe for {} s", key_timeout_ms / 1000))
                    } else if let Some(p) = &probe {
                        let fresh = now.saturating_sub(p.gate.last_chunk_ms.load(Ordering::Relaxed)) < 1000;
                        if p.gate.keyframe_seen.load(Ordering::Relaxed) && fresh {
                            Outcome::Promote
                        } else {
                            let window = self.config.inputs[0].source_timeout.duration().as_millis() as u64;
                            if now.saturating_sub(p.started_ms) > window.max(3000) {
                                if let Some(p) = probe.take() {
                                    p.stop().await;
                                }
                                next_probe_ms = now + PROBE_EVERY_MS;
                            }
                            continue;
                        }
                    } else {
                        if cur.index > 0 && now >= next_probe_ms {
                            match self.start(0, false).await {
                                Ok(p) => probe = Some(p),
                                Err(reason) => {
                                    debug!(%reason, "top-priority input still unavailable");
                                    next_probe_ms = now + PROBE_EVERY_MS;
                                }
                            }
                        }
                        continue;
                    }
                }
            };
            let Some(ended) = current.take() else {
                continue;
            };
            if let Some(slot) = &self.slot {
                slot.attach(None);
            }
            let ran_ms = mono_ms().saturating_sub(ended.started_ms);
            let ended_index = ended.index;
            self.counters.active_input.store(0, Ordering::Relaxed);
            if ended.gate.last_chunk_ms.load(Ordering::Relaxed) > 0 {
                // It worked for a while: its next failure is news again.
                last_failure = None;
            }
            ended.stop().await;
            if matches!(outcome, Outcome::Cancelled) {
                if let Some(p) = probe.take() {
                    p.stop().await;
                }
                return;
            }
            // Whatever comes next does not continue this run.
            if self.feed.send(Feed::Break).await.is_err() {
                return;
            }
            match outcome {
                Outcome::Cancelled => return,
                Outcome::Looped => {}
                Outcome::Promote => {
                    let p = probe.take().expect("promotion needs a probe");
                    info!(from = %self.config.inputs[ended_index].url, to = %self.config.inputs[p.index].url, "returning to the higher-priority input");
                    drop(tracing::info_span!(
                        target: telemetry::TARGET,
                        "source.failover",
                        stream = %self.config.name,
                        from = %self.config.inputs[ended_index].url,
                        to = %self.config.inputs[p.index].url,
                        from.index = ended_index,
                        to.index = p.index,
                        reason = "higher-priority input is back",
                    ));
                    p.gate.forward.store(true, Ordering::Relaxed);
                    p.trackers.iter().for_each(|t| t.announce());
                    self.counters.running_since_ms.store(0, Ordering::Relaxed);
                    index = p.index;
                    self.counters
                        .active_input
                        .store(p.index as u64 + 1, Ordering::Relaxed);
                    backoff.reset();
                    current = Some(p);
                }
                Outcome::Failed(reason) => {
                    if let Some(p) = probe.take() {
                        p.stop().await;
                    }
                    let (wait, span) =
                        self.failed(&mut index, &mut backoff, ran_ms, &reason, &mut last_failure);
                    recovering = Some(span);
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Counts a failure, moves to the next input and returns how long to wait, with the trace
    /// span of what follows (`source.failover` to another input, else `source.restart`).
    /// Failures are logged once per change of state: the same input failing the same way
    /// again (a dead source retried with backoff) is a debug line, not a warning per retry.
    fn failed(
        &self,
        index: &mut usize,
        backoff: &mut Backoff,
        ran_ms: u64,
        reason: &str,
        last: &mut Option<(usize, String)>,
    ) -> (Duration, tracing::Span) {
        let inputs = self.config.inputs.len();
        let input = &self.config.inputs[*index % inputs];
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        if ran_ms >= HEALTHY_RUN.as_millis() as u64 {
            backoff.reset();
        }
        *index = (*index + 1) % inputs;
        let wait = if *index == 0 {
            backoff.fail()
        } else {
            Duration::ZERO
        };
        let this = (*index + inputs - 1) % inputs;
        let repeat = last
            .as_ref()
            .is_some_and(|(i, r)| *i == this && r == reason);
        if repeat {
            debug!(input = %input.url, %reason, retry_in_ms = wait.as_millis() as u64, "input failed again");
        } else {
            warn!(input = %input.url, %reason, next = %self.config.inputs[*index].url, retry_in_ms = wait.as_millis() as u64, "input failed");
        }
        *last = Some((this, reason.to_owned()));
        let wait_ms = wait.as_millis() as u64;
        let span = if this == *index {
            tracing::info_span!(
                target: telemetry::TARGET,
                "source.restart",
                stream = %self.config.name,
                input = %input.url,
                error.message = reason,
                retry_in_ms = wait_ms,
                otel.status_code = "ERROR",
            )
        } else {
            tracing::info_span!(
                target: telemetry::TARGET,
                "source.failover",
                stream = %self.config.name,
                from = %input.url,
                to = %self.config.inputs[*index].url,
                from.index = this,
                to.index = *index,
                reason = reason,
                retry_in_ms = wait_ms,
            )
        };
        (wait, span)
    }

    /// The transcoder of this stream with the codecs this host offers now; `None` passes the
    /// source through. The choice (or why there is none) is logged when it changes and kept
    /// in the counters for the JSON stats and metrics.
    fn transcode_plan(&self) -> Result<Option<ladder::Plan>, String> {
        let Some(t) = &self.config.transcoder else {
            return Ok(None);
        };
        let chosen = codecs::choose(t.hw, t.deviceid, &codecs::GstRegistry);
        let status = match &chosen {
            Ok(c) => TranscoderStatus {
                hw: c.hw_label().into(),
                decoder: c.decoder.clone(),
                encoder: c.encoder.clone(),
                renditions: t.video.0.len(),
                error: None,
            },
            Err(e) => TranscoderStatus {
                hw: "none".into(),
                decoder: String::new(),
                encoder: String::new(),
                renditions: t.video.0.len(),
                error: Some(e.to_string()),
            },
        };
        if self.counters.transcoder().as_ref() != Some(&status) {
            match &chosen {
                Ok(c) => info!(
                    requested = t.hw.as_str(),
                    hw = c.hw_label(),
                    decoder = %c.decoder,
                    encoder = %c.encoder,
                    renditions = t.video.0.len(),
                    "transcoder"
                ),
                Err(e) => warn!(requested = t.hw.as_str(), error = %e, "transcoder cannot start"),
            }
            self.counters.set_transcoder(status);
        }
        let codecs = chosen.map_err(|e| e.to_string())?;
        Ok(Some(ladder::Plan {
            transcoder: t.clone(),
            codecs,
            segment_ns: u64::from(self.config.segment_duration.as_millis()) * 1_000_000,
        }))
    }

    /// Builds and starts a pipeline for input `index`; `forward` false makes it a probe.
    /// Traced as `source.connect` (with the transcoder's hardware and encoder when there is
    /// one); HTTP pulls carry its `traceparent`.
    async fn start(&self, index: usize, forward: bool) -> Result<Instance, String> {
        let span = tracing::info_span!(
            target: telemetry::TARGET,
            "source.connect",
            stream = %self.config.name,
            input = %self.config.inputs[index].url,
            input.index = index,
            probe = !forward,
            transcoder.hw = tracing::field::Empty,
            transcoder.encoder = tracing::field::Empty,
            error.message = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let started = self
            .start_traced(index, forward, &span)
            .instrument(span.clone())
            .await;
        if let Err(reason) = &started {
            span.record("otel.status_code", "ERROR");
            span.record("error.message", reason.as_str());
        }
        started
    }

    async fn start_traced(
        &self,
        index: usize,
        forward: bool,
        span: &tracing::Span,
    ) -> Result<Instance, String> {
        let url = &self.config.inputs[index].url;
        let gate = Arc::new(Gate {
            forward: AtomicBool::new(forward),
            ..Gate::default()
        });
        let plan = self.transcode_plan()?;
        if let Some(p) = &plan {
            span.record("transcoder.hw", p.codecs.hw_label());
            span.record("transcoder.encoder", p.codecs.encoder.as_str());
        }
        let renditions = plan.as_ref().map_or(1, |p| p.transcoder.video.0.len());
        let trackers: Vec<_> = (0..renditions)
            .map(|i| media::MediaTracker::new(self.feed.clone(), gate.clone(), i))
            .collect();
        let meter = Arc::new(InputMeter {
            counters: self.counters.clone(),
            gate: gate.clone(),
        });
        let built = pipeline::build(
            &self.config.name,
            url,
            self.config.segment_duration.as_millis(),
            trackers.clone(),
            plan,
            &meter,
            telemetry::traceparent(span).as_deref(),
        )
        .map_err(|e| e.to_string())?;
        for (rendition, appsink) in built.appsinks.iter().enumerate() {
            attach_sink(
                appsink,
                Sink {
                    feed: self.feed.clone(),
                    counters: self.counters.clone(),
                    gate: gate.clone(),
                    // Generated sources have no input but what their muxer makes.
                    count_bytes_in: !built.metered && rendition == 0,
                    rendition,
                },
            );
        }
        let mut tap = None;
        match (url, built.appsrc) {
            (InputUrl::Publish, Some(src)) => {
                if let Some(slot) = &self.slot {
                    slot.attach(Some(src));
                }
            }
            (InputUrl::Dvb { card, .. }, Some(src)) => {
                let fanout = self
                    .tuners
                    .fanout(card)
                    .ok_or_else(|| format!("no DVB card {card}"))?;
                tap = Some((fanout.attach(src), fanout));
            }
            _ => {}
        }
        let guard = PipelineGuard::new(built.pipeline);
        let mut events = Box::pin(guard.events());
        if let Err(e) = guard.play_or_reason(&mut events).await {
            if let Some((id, fanout)) = &tap {
                fanout.detach(*id);
            }
            guard.shutdown().await;
            return Err(failure_reason(&e.element, &e.message));
        }
        info!(input = %url, probe = !forward, "pipeline playing");
        let awaiting_key = forward.then(|| {
            tracing::info_span!(
                target: telemetry::TARGET,
                "source.first_keyframe",
                stream = %self.config.name,
                input = %url,
            )
        });
        Ok(Instance {
            awaiting_key,
            index,
            guard,
            events,
            gate,
            trackers,
            started_ms: mono_ms(),
            tap,
        })
    }
}

/// The element's type from its path (`/GstPipeline:cam/GstURISourceBin:src/GstSoupHTTPSrc:souphttpsrc3`
/// → `GstSoupHTTPSrc`): stable across restarts, unlike instance names with counters.
/// `ElementKind: message`, with an NVENC session-limit failure named as such.
fn failure_reason(element: &str, message: &str) -> String {
    let kind = element_kind(element);
    match codecs::explain_encoder_error(kind, message) {
        Some(explained) => format!("{kind}: {explained}"),
        None => format!("{kind}: {message}"),
    }
}

fn element_kind(path: &str) -> &str {
    let last = path.rsplit('/').next().unwrap_or(path);
    last.split(':').next().unwrap_or(last)
}

/// The next bus event of an optional instance (pending forever without one).
async fn next_event(instance: &mut Option<Instance>) -> Option<PipelineEvent> {
    match instance {
        Some(i) => i.events.next().await,
        None => std::future::pending().await,
    }
}

/// Where one rendition's appsink delivers.
struct Sink {
    feed: mpsc::Sender<Feed>,
    counters: Arc<StreamCounters>,
    gate: Arc<Gate>,
    /// Count the muxed bytes as input (generated sources, first rendition only).
    count_bytes_in: bool,
    rendition: usize,
}

/// Installs the appsink callback: one sample (a buffer list, one access unit) becomes one
/// [`Chunk`], `try_send` to the actor; a full queue drops the chunk and counts it.
fn attach_sink(appsink: &gst_app::AppSink, to: Sink) {
    let Sink {
        feed,
        counters,
        gate,
        count_bytes_in,
        rendition,
    } = to;
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                let Some(mut chunk) = chunk_of(&sample) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                chunk.rendition = rendition;
                let now = mono_ms();
                gate.last_chunk_ms.store(now, Ordering::Relaxed);
                if chunk.keyframe {
                    gate.keyframe_seen.store(true, Ordering::Relaxed);
                    gate.last_keyframe_ms.store(now, Ordering::Relaxed);
                }
                if !gate.forward.load(Ordering::Relaxed) {
                    return Ok(gst::FlowSuccess::Ok);
                }
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

/// Element messages from a pipeline's bus. `dvb-frontend-stats` (posted by `dvbsrc` every
/// `stats-reporting-interval` reads) carries `signal` as 0..65535: stored as percent under
/// the posting element's name.
pub fn on_element_message(source: &str, structure: &gst::StructureRef, dvb: &DvbCards) {
    if structure.name() == "dvb-frontend-stats" {
        match structure.get::<i32>("signal") {
            Ok(signal) => {
                let reading = crate::stream::DvbReading {
                    strength: f64::from(signal.clamp(0, 65535)) * 100.0 / 65535.0,
                    snr: structure.get::<i32>("snr").ok(),
                    ber: structure.get::<i32>("ber").ok(),
                    unc: structure.get::<i32>("unc").ok(),
                    lock: structure.get::<bool>("lock").ok(),
                };
                dvb.set(source, reading);
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
        rendition: 0,
    })
}
