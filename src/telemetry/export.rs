//! The span queue and the export thread: finished spans are handed over with `try_send` on a
//! bounded queue (full: the span is dropped and counted, the caller never waits), and one
//! thread with its own small runtime batches them to the collector. A collector that is down
//! or slow costs that thread its time, nothing else.

use super::{Protocol, Settings, TelemetryError};
use crate::stats::names;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the queue carries.
enum Msg {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
}

/// A [`SpanProcessor`] in front of the export thread.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    /// Bounded at `OTEL_BSP_MAX_QUEUE_SIZE`: spans beyond it are dropped, never waited for.
    /// `None` once shut down.
    queue: Mutex<Option<SyncSender<Msg>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    export_timeout: Duration,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Span(_) => "Span",
            Msg::Flush(_) => "Flush",
        })
    }
}

impl QueueProcessor {
    /// Starts the export thread; fails when the exporter cannot be built from the settings.
    pub(super) fn start(settings: &Settings, resource: Resource) -> Result<Self, TelemetryError> {
        let (tx, rx) = mpsc::sync_channel(settings.max_queue);
        let (built_tx, built_rx) = mpsc::sync_channel(1);
        let worker_settings = settings.clone();
        let worker = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(&worker_settings, &resource, &rx, &built_tx))
            .map_err(|e| TelemetryError::Exporter(format!("starting the export thread: {e}")))?;
        match built_rx.recv() {
            Ok(Ok(())) => {
                // Present from the start: "nothing lost" is a value, not a missing series.
                metrics::counter!(names::TRACE_SPANS_EXPORTED).increment(0);
                for reason in ["queue_full", "export_failed"] {
                    metrics::counter!(names::TRACE_SPANS_DROPPED, "reason" => reason).increment(0);
                }
            }
            Ok(Err(e)) => return Err(TelemetryError::Exporter(e)),
            Err(_) => return Err(TelemetryError::Exporter("export thread ended".into())),
        }
        Ok(QueueProcessor {
            queue: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            export_timeout: Duration::from_millis(settings.export_timeout_ms),
        })
    }

    fn sender(&self) -> Option<SyncSender<Msg>> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn flush(&self, timeout: Duration) -> OTelSdkResult {
        let Some(tx) = self.sender() else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        tx.send(Msg::Flush(ack_tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        ack_rx
            .recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let Some(tx) = self.sender() else {
            return;
        };
        match tx.try_send(Msg::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!(names::TRACE_SPANS_DROPPED, "reason" => "queue_full")
                    .increment(1);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(self.export_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush(timeout.min(self.export_timeout));
        // Closing the queue ends the thread once it has sent what it holds.
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if flushed.is_ok()
            && let Some(w) = worker
        {
            let _ = w.join();
        }
        flushed
    }
}

/// The export thread: build the exporter inside its own runtime (gRPC channels need one),
/// then batch by size and by delay until the queue closes.
fn run(
    settings: &Settings,
    resource: &Resource,
    rx: &Receiver<Msg>,
    built: &SyncSender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = built.send(Err(format!("starting the export runtime: {e}")));
            return;
        }
    };
    let exporter = {
        let _entered = runtime.enter();
        let builder = opentelemetry_otlp::SpanExporter::builder();
        match settings.protocol {
            Protocol::Grpc => builder.with_tonic().build(),
            Protocol::HttpProtobuf => builder.with_http().build(),
        }
    };
    let mut exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            let _ = built.send(Err(e.to_string()));
            return;
        }
    };
    exporter.set_resource(resource);
    let _ = built.send(Ok(()));
    let delay = Duration::from_millis(settings.delay_ms);
    let timeout = Duration::from_millis(settings.export_timeout_ms);
    let mut batch: Vec<SpanData> = Vec::with_capacity(settings.max_batch);
    let mut due: Option<Instant> = None;
    let mut failing = false;
    let mut send = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::take(batch);
        let n = spans.len() as u64;
        let result = runtime.block_on(async {
            match tokio::time::timeout(timeout, exporter.export(spans)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            }
        });
        match result {
            Ok(()) => {
                metrics::counter!(names::TRACE_SPANS_EXPORTED).increment(n);
                if failing {
                    tracing::info!("trace collector reachable again");
                    failing = false;
                }
            }
            Err(e) => {
                metrics::counter!(names::TRACE_SPANS_DROPPED, "reason" => "export_failed")
                    .increment(n);
                if !failing {
                    tracing::warn!(error = %e, spans = n, "trace export failed; spans are dropped until the collector answers");
                    failing = true;
                }
            }
        }
    };
    loop {
        let wait = due.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(Msg::Span(span)) => {
                if batch.is_empty() {
                    due = Some(Instant::now() + delay);
                }
                batch.push(*span);
                if batch.len() >= settings.max_batch {
                    send(&mut batch);
                    due = None;
                }
            }
            Ok(Msg::Flush(ack)) => {
                send(&mut batch);
                due = None;
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                send(&mut batch);
                due = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch);
                break;
            }
        }
    }
    let _ = exporter.shutdown_with_timeout(timeout);
}
