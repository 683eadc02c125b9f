//! A kept request's server span, made straight for the export queue: no `tracing` span, no
//! SDK span, no attribute visitors. A playlist request costs ~20 µs of CPU; going through the
//! `tracing-opentelemetry` bridge and the SDK doubled that for every sampled request, so a
//! tenth sampled cost ~10 %. Here a kept request costs its ids, a clock read and, when its
//! body is done, one [`SpanData`] with static attribute keys pushed on the queue.
//!
//! The span is the request's task-local context while its handler runs ([`RequestSpan::scope`]):
//! children made inside (an auth backend call, an MP4 export) take it as parent
//! ([`adopt_request_parent`]), and JSON log lines written inside carry its ids
//! ([`current_ids`]). It ends when the last holder lets go: the handler, then the body.

use super::export::Sender;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;
use tracing_opentelemetry::OpenTelemetrySpanExt;

tokio::task_local! {
    /// The request being handled by this task, while its handler runs and traces are
    /// exported: `Some` when it is traced, `None` when the sampler left it out (its children
    /// are left out with it).
    static CURRENT: Option<Arc<Open>>;
}

/// What a request span says about the request (all known when it arrives).
#[derive(Debug, Clone)]
pub struct RequestInfo<'a> {
    /// `GET`, `HEAD`, …, or `_OTHER` (a bounded set, as in the metrics).
    pub method: &'static str,
    /// The route template (`/:name/index.m3u8`); `None` when the path matched no route.
    pub route: Option<&'static str>,
    pub scheme: &'static str,
    pub path: &'a str,
    pub version: &'static str,
    pub stream: Option<&'a str>,
}

/// A request's server span; empty (and free) when the request is not traced.
#[derive(Debug, Clone, Default)]
pub struct RequestSpan(Option<Arc<Open>>);

/// A kept request's span while it is open. Ends (is queued for export) when dropped.
#[derive(Debug)]
struct Open {
    /// Trace id from the caller's `traceparent` or new; span id new; always sampled.
    context: SpanContext,
    /// The caller's span (`SpanId::INVALID` for a root).
    parent: SpanId,
    start: SystemTime,
    method: &'static str,
    route: Option<&'static str>,
    scheme: &'static str,
    /// Taken (moved into the exported span) when the span ends.
    path: String,
    version: &'static str,
    /// Taken (moved into the exported span) when the span ends.
    stream: Option<String>,
    /// The response status; 0 until answered.
    status: AtomicU16,
    /// Body bytes sent; `u64::MAX` until the body is done.
    bytes: AtomicU64,
    /// The export queue, taken when the span starts (a span outliving the exporter is lost).
    sender: Arc<Sender>,
}

/// The instrumentation scope every request span is reported under (as the SDK's tracer).
static SCOPE: LazyLock<InstrumentationScope> =
    LazyLock::new(|| InstrumentationScope::builder("headwater").build());

impl RequestSpan {
    /// The span of a request that arrived with `headers` and that [`super::keep_request`]
    /// kept (empty when no exporter is installed).
    pub fn kept(headers: &http::HeaderMap, info: &RequestInfo<'_>) -> RequestSpan {
        let Some(sender) = super::export::sender() else {
            return RequestSpan(None);
        };
        let ids = RandomIdGenerator::default();
        let (trace_id, parent, trace_state) = match remote_parent(headers) {
            Some(p) => (p.trace_id(), p.span_id(), p.trace_state().clone()),
            None => (ids.new_trace_id(), SpanId::INVALID, TraceState::default()),
        };
        let context = SpanContext::new(
            trace_id,
            ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            trace_state,
        );
        RequestSpan(Some(Arc::new(Open {
            context,
            parent,
            start: SystemTime::now(),
            method: info.method,
            route: info.route,
            scheme: info.scheme,
            path: info.path.to_owned(),
            version: info.version,
            stream: info.stream.map(str::to_owned),
            status: AtomicU16::new(0),
            bytes: AtomicU64::new(u64::MAX),
            sender,
        })))
    }

    /// An empty span (the request is not traced).
    pub fn none() -> RequestSpan {
        RequestSpan(None)
    }

    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Records the response status.
    pub fn answered(&self, status: u16) {
        if let Some(open) = &self.0 {
            open.status.store(status, Ordering::Relaxed);
        }
    }

    /// Records the size of the body sent (when the body is done).
    pub fn sent(&self, bytes: u64) {
        if let Some(open) = &self.0 {
            open.bytes.store(bytes, Ordering::Relaxed);
        }
    }

    /// The trace id (for exemplars).
    pub fn trace_id(&self) -> Option<u128> {
        self.0
            .as_ref()
            .map(|o| u128::from_be_bytes(o.context.trace_id().to_bytes()))
    }

    /// Runs `handler` with this span as the task's current request (nothing to do when
    /// traces are off).
    pub async fn scope<F: Future>(self, handler: F) -> F::Output {
        if super::enabled() {
            CURRENT.scope(self.0, handler).await
        } else {
            handler.await
        }
    }

    /// The span of the request this task is handling, if it is traced.
    pub fn current() -> RequestSpan {
        RequestSpan(CURRENT.try_with(Clone::clone).ok().flatten())
    }
}

/// The caller's span context from a valid `traceparent` (and `tracestate`).
fn remote_parent(headers: &http::HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&super::Headers(headers));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Makes `span` (a `tracing` span of [`super::TARGET`] made inside a request's handler) a
/// child of the request's span: sampled with it when the request is traced, left out with
/// it when the sampler left the request out. Outside a request, `span` stays a root.
pub fn adopt_request_parent(span: &tracing::Span) {
    if !super::enabled() {
        return;
    }
    let parent = CURRENT.try_with(|request| match request {
        Some(open) => open.context.clone(),
        // A local parent that is not sampled: the SDK's parent-based sampler drops the child.
        None => {
            let ids = RandomIdGenerator::default();
            SpanContext::new(
                ids.new_trace_id(),
                ids.new_span_id(),
                TraceFlags::default(),
                false,
                TraceState::default(),
            )
        }
    });
    if let Ok(sc) = parent {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

/// The trace and span ids (hex) of the request this task is handling, if it is traced.
pub fn current_ids() -> Option<(String, String)> {
    CURRENT
        .try_with(|request| {
            request.as_ref().map(|open| {
                (
                    open.context.trace_id().to_string(),
                    open.context.span_id().to_string(),
                )
            })
        })
        .ok()
        .flatten()
}

/// `"GET /:name/index.m3u8"`: made once per method and route template (both come from
/// bounded sets) and kept for the life of the process.
fn span_name(method: &'static str, route: &'static str) -> &'static str {
    type Names = std::collections::HashMap<(&'static str, &'static str), &'static str>;
    static NAMES: std::sync::RwLock<Option<Names>> = std::sync::RwLock::new(None);
    let key = (method, route);
    if let Some(name) = NAMES
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .and_then(|n| n.get(&key))
    {
        return name;
    }
    NAMES
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(Default::default)
        .entry(key)
        .or_insert_with(|| Box::leak(format!("{method} {route}").into_boxed_str()))
}

impl Open {
    /// The span as the exporter takes it (its path and stream moved out).
    fn data(&mut self) -> SpanData {
        let status = self.status.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let name = match self.route {
            Some(route) => Cow::Borrowed(span_name(self.method, route)),
            None => Cow::Borrowed(self.method),
        };
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new("http.request.method", self.method));
        if let Some(route) = self.route {
            attributes.push(KeyValue::new("http.route", route));
        }
        attributes.push(KeyValue::new("url.scheme", self.scheme));
        attributes.push(KeyValue::new("url.path", std::mem::take(&mut self.path)));
        attributes.push(KeyValue::new("network.protocol.version", self.version));
        if let Some(stream) = self.stream.take() {
            attributes.push(KeyValue::new("stream", stream));
        }
        if status != 0 {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if bytes != u64::MAX {
            attributes.push(KeyValue::new(
                "http.response.body.size",
                i64::try_from(bytes).unwrap_or(i64::MAX),
            ));
        }
        SpanData {
            span_context: self.context.clone(),
            parent_span_id: self.parent,
            parent_span_is_remote: self.parent != SpanId::INVALID,
            span_kind: SpanKind::Server,
            name,
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // Server spans: 5xx is an error, 4xx is the client's (semantic conventions).
            status: if status >= 500 {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: SCOPE.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let data = self.data();
        self.sender.submit(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceId;

    fn info() -> RequestInfo<'static> {
        RequestInfo {
            method: "GET",
            route: Some("/:name/index.m3u8"),
            scheme: "http",
            path: "/demo/index.m3u8",
            version: "1.1",
            stream: Some("demo"),
        }
    }

    fn open(parent: SpanId) -> Open {
        Open {
            context: SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("b7ad6b7169203331").unwrap(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent,
            start: SystemTime::now(),
            method: info().method,
            route: info().route,
            scheme: "http",
            path: "/demo/index.m3u8".into(),
            version: "1.1",
            stream: Some("demo".into()),
            status: AtomicU16::new(0),
            bytes: AtomicU64::new(u64::MAX),
            sender: Arc::new(Sender::detached()),
        }
    }

    #[test]
    fn a_span_says_what_was_served() {
        let mut o = open(SpanId::from_hex("00f067aa0ba902b7").unwrap());
        o.status.store(503, Ordering::Relaxed);
        o.bytes.store(1234, Ordering::Relaxed);
        let d = o.data();
        assert_eq!(d.name, "GET /:name/index.m3u8");
        assert_eq!(d.span_kind, SpanKind::Server);
        assert!(d.parent_span_is_remote);
        assert_eq!(d.status, Status::error(""));
        let attr = |k: &str| {
            d.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attr("http.route").as_deref(), Some("/:name/index.m3u8"));
        assert_eq!(attr("http.response.status_code").as_deref(), Some("503"));
        assert_eq!(attr("http.response.body.size").as_deref(), Some("1234"));
        assert_eq!(attr("stream").as_deref(), Some("demo"));
        assert_eq!(attr("url.path").as_deref(), Some("/demo/index.m3u8"));
    }

    #[test]
    fn unanswered_and_unrouted_spans_say_only_what_is_known() {
        let mut o = open(SpanId::INVALID);
        o.route = None;
        let d = o.data();
        assert_eq!(d.name, "GET");
        assert!(!d.parent_span_is_remote);
        assert_eq!(d.status, Status::Unset);
        assert!(d.attributes.iter().all(|kv| {
            !matches!(
                kv.key.as_str(),
                "http.route" | "http.response.status_code" | "http.response.body.size"
            )
        }));
    }

    #[test]
    fn traces_off_make_no_span() {
        // No exporter is installed in unit tests.
        let span = RequestSpan::kept(&http::HeaderMap::new(), &info());
        assert!(span.is_none());
        assert!(RequestSpan::current().is_none());
        assert_eq!(current_ids(), None);
    }
}
