//! Where log lines go and in what shape: human text (the default) or one JSON object per line
//! (`HEADWATER_LOG_FORMAT=json` or `--log-format json`) for Loki and friends:
//! `{"time", "level", "target", "message", "fields": {…}, "stream", "span"}`, where `stream`
//! comes from the enclosing stream span and `span` names the innermost span; inside a traced
//! operation also `trace_id` and `span_id` (for Loki's derived fields to Tempo). Not part of
//! the data flow: installed once by `main` before anything logs, with the OpenTelemetry layer
//! when `telemetry` exports traces (its own filter: spans of [`crate::telemetry::TARGET`] and
//! warnings inside them, whatever `HEADWATER_LOG` says).

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Write;
use std::sync::OnceLock;
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format must be text or json, got {other:?}")),
        }
    }
}

/// Installs the global subscriber: `filter` (`HEADWATER_LOG`) and `format`, to standard error,
/// and spans to `traces` when they are exported.
pub fn init(
    format: LogFormat,
    filter: EnvFilter,
    traces: Option<opentelemetry_sdk::trace::Tracer>,
) {
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => JsonLines::default().boxed(),
    };
    let otel = traces.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Spans' trace context is read from the span itself (`telemetry::traceparent`),
            // never from OpenTelemetry's thread-local: no context switch on every poll.
            .with_context_activation(false)
            .with_filter(filter_fn(traced))
    });
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(otel)
        .init();
}

/// What the OpenTelemetry layer sees: traced spans, and warnings and errors (span events).
fn traced(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        meta.target() == crate::telemetry::TARGET
    } else {
        *meta.level() <= Level::WARN
    }
}

/// A span's fields, kept in its extensions for the events inside it.
#[derive(Debug, Default)]
struct SpanFields(Map<String, Value>);

/// Writes each event as one JSON line on standard error.
#[derive(Debug, Default)]
pub struct JsonLines {
    /// The subscriber this layer is part of, to read spans' trace context.
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut Collect(&mut fields.0));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Collect(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        let line = render(event, &ctx, dispatch.as_ref());
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
    }
}

fn render<S>(event: &Event<'_>, ctx: &Context<'_, S>, dispatch: Option<&Dispatch>) -> String
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut fields = Map::new();
    event.record(&mut Collect(&mut fields));
    let message = fields.remove("message").unwrap_or(Value::Null);
    let meta = event.metadata();
    let mut line = Map::new();
    line.insert(
        "time".into(),
        crate::media::utc::Civil::from_unix_ms(crate::media::utc::now_ms())
            .iso8601()
            .into(),
    );
    line.insert("level".into(), meta.level().as_str().into());
    line.insert("target".into(), meta.target().into());
    line.insert("message".into(), message);
    // The innermost span's name, and `stream` from the nearest span that has one.
    if let Some(scope) = ctx.event_scope(event) {
        let mut stream = fields.get("stream").cloned();
        let mut traced = None;
        for (depth, span) in scope.enumerate() {
            if depth == 0 {
                line.insert("span".into(), span.name().into());
            }
            if traced.is_none() && span.metadata().target() == crate::telemetry::TARGET {
                traced = Some(span.id());
            }
            if stream.is_none()
                && let Some(f) = span.extensions().get::<SpanFields>()
            {
                stream = f.0.get("stream").cloned();
            }
        }
        if let Some(s) = stream {
            line.insert("stream".into(), s);
        }
        // The innermost traced span's ids, read once no span extensions are borrowed.
        if let (Some(id), Some(dispatch)) = (traced, dispatch)
            && let Some(cx) = tracing_opentelemetry::get_otel_context(&id, dispatch)
        {
            let otel = cx.span();
            let sc = otel.span_context();
            if sc.is_valid() {
                line.insert("trace_id".into(), sc.trace_id().to_string().into());
                line.insert("span_id".into(), sc.span_id().to_string().into());
            }
        }
    } else if let Some(s) = fields.get("stream") {
        line.insert("stream".into(), s.clone());
    }
    // Inside a traced request and no traced span of its own: the request's ids.
    if !line.contains_key("trace_id")
        && let Some((trace_id, span_id)) = crate::telemetry::current_ids()
    {
        line.insert("trace_id".into(), trace_id.into());
        line.insert("span_id".into(), span_id.into());
    }
    line.insert("fields".into(), Value::Object(fields));
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    text
}

/// Records fields as JSON values (numbers and booleans stay typed).
struct Collect<'a>(&'a mut Map<String, Value>);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("TEXT".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
