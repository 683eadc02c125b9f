//! The span queue and the export thread: finished spans are handed over with `try_send` on a
//! bounded queue (full: the span is dropped and counted, the caller never waits), and one
//! thread with its own small runtime batches them to the collector. A collector that is down
//! or slow costs that thread its time, nothing else.

use super::{Protocol, Settings, TelemetryError};
use crate::stats::names;
use arc_swap::ArcSwapOption;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the serving threads and the export thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Finished spans waiting for export; never longer than `OTEL_BSP_MAX_QUEUE_SIZE` (a span
    /// beyond is dropped and counted, never waited for). Held for a push or a swap only.
    queue: Mutex<Vec<SpanData>>,
    /// Callers of a flush waiting for the queue to be sent.
    flushes: Mutex<Vec<SyncSender<()>>>,
    /// Set by shutdown: the thread sends what is queued and ends.
    closed: AtomicBool,
}

/// The serving side of the queue: where a finished span is handed over (the SDK's spans
/// through [`QueueProcessor`], requests' spans straight from [`super::request`]).
#[derive(Debug)]
pub(super) struct Sender {
    shared: Arc<Shared>,
    /// The export thread, woken only when a full batch is waiting (`None`: no thread).
    worker: Option<std::thread::Thread>,
    max_queue: usize,
    max_batch: usize,
}

/// The running pipeline's sender (set while an exporter is installed).
static SENDER: ArcSwapOption<Sender> = ArcSwapOption::const_empty();

/// The installed pipeline's sender, when traces are exported.
pub(super) fn sender() -> Option<Arc<Sender>> {
    SENDER.load_full()
}

impl Sender {
    /// Queues `span` for export: a short lock and a push; a full queue drops it (counted).
    pub(super) fn submit(&self, span: SpanData) {
        if self.shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let waiting = {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if queue.len() >= self.max_queue {
                None
            } else {
                queue.push(span);
                Some(queue.len())
            }
        };
        match waiting {
            None => {
                metrics::counter!(names::TRACE_SPANS_DROPPED, "reason" => "queue_full")
                    .increment(1);
            }
            Some(n) if n == self.max_batch => self.wake(),
            Some(_) => {}
        }
    }

    fn wake(&self) {
        if let Some(w) = &self.worker {
            w.unpark();
        }
    }

    /// A sender with no export thread whose spans go nowhere (unit tests of span contents).
    #[cfg(test)]
    pub(super) fn detached() -> Sender {
        let shared = Arc::new(Shared::default());
        shared.closed.store(true, Ordering::Relaxed);
        Sender {
            shared,
            worker: None,
            max_queue: 1,
            max_batch: 1,
        }
    }
}

/// A [`SpanProcessor`] in front of the export thread. A span costs a short lock and a push;
/// the thread is woken only when a full batch is waiting (else it wakes on its own schedule),
/// so spans never cost a thread switch each.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    sender: Arc<Sender>,
    /// `None` once shut down.
    worker: Mutex<Option<JoinHandle<()>>>,
    export_timeout: Duration,
}

impl QueueProcessor {
    /// Starts the export thread; fails when the exporter cannot be built from the settings.
    pub(super) fn start(settings: &Settings, resource: Resource) -> Result<Self, TelemetryError> {
        let shared = Arc::new(Shared::default());
        let (built_tx, built_rx) = mpsc::sync_channel(1);
        let worker_settings = settings.clone();
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(&worker_settings, &resource, &worker_shared, &built_tx))
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
        let sender = Arc::new(Sender {
            shared,
            worker: Some(worker.thread().clone()),
            max_queue: settings.max_queue,
            max_batch: settings.max_batch,
        });
        SENDER.store(Some(sender.clone()));
        Ok(QueueProcessor {
            sender,
            worker: Mutex::new(Some(worker)),
            export_timeout: Duration::from_millis(settings.export_timeout_ms),
        })
    }

    fn flush(&self, timeout: Duration) -> OTelSdkResult {
        let shared = &self.sender.shared;
        if shared.closed.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        shared
            .flushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ack_tx);
        self.sender.wake();
        ack_rx
            .recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.sender.submit(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(self.export_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush(timeout.min(self.export_timeout));
        // Request spans still open end into a closed queue (dropped): nothing waits on them.
        if SENDER
            .load()
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &self.sender))
        {
            SENDER.store(None);
        }
        self.sender.shared.closed.store(true, Ordering::Relaxed);
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = worker {
            w.thread().unpark();
            if flushed.is_ok() {
                let _ = w.join();
            }
        }
        flushed
    }
}

/// The export thread: build the exporter inside its own runtime (gRPC channels need one),
/// then send what is queued every `OTEL_BSP_SCHEDULE_DELAY`, or at once when a batch is full
/// or a flush asks, until shut down.
fn run(
    settings: &Settings,
    resource: &Resource,
    shared: &Shared,
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
    let mut failing = false;
    let mut send = |spans: Vec<SpanData>| {
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
    let mut next = Instant::now() + delay;
    loop {
        let now = Instant::now();
        let closed = shared.closed.load(Ordering::Relaxed);
        let flushes = std::mem::take(
            &mut *shared
                .flushes
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let full = shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            >= settings.max_batch;
        if now >= next || full || closed || !flushes.is_empty() {
            let queued =
                std::mem::take(&mut *shared.queue.lock().unwrap_or_else(PoisonError::into_inner));
            let mut queued = queued.into_iter().peekable();
            while queued.peek().is_some() {
                send(queued.by_ref().take(settings.max_batch).collect());
            }
            next = Instant::now() + delay;
            for ack in flushes {
                let _ = ack.send(());
            }
            if closed {
                break;
            }
        }
        std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
    }
    let _ = exporter.shutdown_with_timeout(timeout);
}
