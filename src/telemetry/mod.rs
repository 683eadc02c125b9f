//! Traces: where spans go and how a trace crosses process boundaries. Not part of the data
//! flow: `main` installs it beside logging, before anything runs.
//!
//! Configured only by the standard variables (`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`,
//! `…_PROTOCOL` `grpc` | `http/protobuf`, `…_HEADERS`, `…_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`).
//! No endpoint: no exporter, no spans made for requests, no cost.
//!
//! Spans are ordinary `tracing` spans with target [`TARGET`]; only those reach OpenTelemetry
//! (`logging` filters the layer), so the long-lived per-stream spans never become traces and
//! each traced operation that is not part of a request starts a trace of its own. Requests'
//! server spans are not `tracing` spans: they are made straight for the export queue
//! ([`RequestSpan`], the cost of a sampled request) and take their parent from an incoming
//! W3C `traceparent`; spans made inside a request adopt it ([`adopt_request_parent`]);
//! outgoing requests (pulls, auth backends) carry a `traceparent` ([`traceparent`]).

mod export;
mod request;
mod sampling;

pub use request::{RequestInfo, RequestSpan, adopt_request_parent, current_ids};
pub use sampling::{Policy, Root};

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span exported as a trace.
pub const TARGET: &str = "headwater::trace";

/// Set once an exporter is installed; read on hot paths to skip span work when off.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The sampler requests are decided by (set with `ENABLED`).
static POLICY: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();

/// Whether a request with these headers is traced (decided before any span is made).
pub fn keep_request(headers: &http::HeaderMap) -> bool {
    if !enabled() {
        return false;
    }
    let policy = POLICY.get().copied().unwrap_or_default();
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(sampling::parent_flag);
    policy.keep(parent, sampling::uniform())
}

/// Whether spans are exported (an endpoint is configured and the SDK is not disabled).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What is wrong with the `OTEL_*` settings (the process refuses to start).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TelemetryError {
    #[error("{var}={value:?}: {why}")]
    Invalid {
        var: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("building the OTLP exporter: {0}")]
    Exporter(String),
}

/// The wire protocol to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// What the environment asks for, checked before anything starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub endpoint: String,
    pub protocol: Protocol,
    /// The batch queue: spans beyond it are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue: usize,
    /// Spans per export call (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_batch: usize,
    /// Longest a span waits in the queue before its batch is sent (`OTEL_BSP_SCHEDULE_DELAY`).
    pub delay_ms: u64,
    /// Longest one export call may take (`OTEL_BSP_EXPORT_TIMEOUT`).
    pub export_timeout_ms: u64,
    /// `OTEL_TRACES_SAMPLER[_ARG]`.
    pub sampling: Policy,
}

impl Settings {
    /// Reads the settings through `var` (the process environment in `main`, a map in tests).
    /// `Ok(None)`: tracing is off.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, TelemetryError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
            return Ok(None);
        }
        let Some((endpoint_var, endpoint)) = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|n| get(n).map(|v| (n, v))) else {
            return Ok(None);
        };
        if !endpoint.starts_with("http://") {
            return Err(TelemetryError::Invalid {
                var: if endpoint_var.contains("TRACES") {
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
                } else {
                    "OTEL_EXPORTER_OTLP_ENDPOINT"
                },
                value: endpoint,
                why: "must be an http:// URL (TLS to the collector is not built in: send to a local collector)",
            });
        }
        let protocol = match [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .into_iter()
        .find_map(|n| get(n).map(|v| (n, v)))
        {
            None => Protocol::HttpProtobuf,
            Some((_, v)) if v == "grpc" => Protocol::Grpc,
            Some((_, v)) if v == "http/protobuf" => Protocol::HttpProtobuf,
            Some((n, v)) => {
                return Err(TelemetryError::Invalid {
                    var: if n.contains("TRACES") {
                        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                    } else {
                        "OTEL_EXPORTER_OTLP_PROTOCOL"
                    },
                    value: v,
                    why: "must be grpc or http/protobuf",
                });
            }
        };
        let sampler = get("OTEL_TRACES_SAMPLER");
        let sampler_arg = get("OTEL_TRACES_SAMPLER_ARG");
        check_sampler(sampler.clone(), sampler_arg.clone())?;
        let number = |name: &'static str, default: u64, min: u64| match get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(TelemetryError::Invalid {
                    var: name,
                    value: v,
                    why: "must be a positive whole number",
                }),
            },
        };
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1)? as usize;
        let max_batch = (number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1)? as usize).min(max_queue);
        Ok(Some(Settings {
            endpoint,
            protocol,
            max_queue,
            max_batch,
            delay_ms: number("OTEL_BSP_SCHEDULE_DELAY", 5000, 1)?,
            export_timeout_ms: number("OTEL_BSP_EXPORT_TIMEOUT", 30_000, 1)?,
            sampling: Policy::parse(sampler.as_deref(), sampler_arg.as_deref()),
        }))
    }
}

/// The SDK falls back to sampling everything on a bad sampler setting; an operator who asked
/// for a tenth should hear about a typo instead.
fn check_sampler(sampler: Option<String>, arg: Option<String>) -> Result<(), TelemetryError> {
    let Some(sampler) = sampler else {
        return Ok(());
    };
    match sampler.as_str() {
        "always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off" => Ok(()),
        "traceidratio" | "parentbased_traceidratio" => match arg {
            None => Ok(()),
            Some(a) => match a.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
                _ => Err(TelemetryError::Invalid {
                    var: "OTEL_TRACES_SAMPLER_ARG",
                    value: a,
                    why: "must be a ratio from 0 to 1",
                }),
            },
        },
        _ => Err(TelemetryError::Invalid {
            var: "OTEL_TRACES_SAMPLER",
            value: sampler,
            why: "must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio",
        }),
    }
}

/// The installed pipeline: spans → bounded queue → export thread → collector. Dropping it
/// flushes what is queued (bounded by the export timeout) and stops the thread.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Starts the export thread and the tracer provider (sampler from `OTEL_TRACES_SAMPLER*`,
    /// requests decided ahead by [`keep_request`]).
    pub fn start(settings: &Settings) -> Result<Traces, TelemetryError> {
        let resource = resource();
        let processor = export::QueueProcessor::start(settings, resource.clone())?;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_processor(processor)
            .with_sampler(sampling::Head::new(settings.sampling))
            .build();
        let _ = POLICY.set(settings.sampling);
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Traces { provider })
    }

    /// The tracer the `tracing` layer records into.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("headwater")
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        let _ = self.provider.shutdown();
    }
}

/// `service.name` from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`, else `headwater`;
/// plus `service.version`.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if named {
        builder.build()
    } else {
        builder.with_service_name("headwater").build()
    }
}

/// The W3C `traceparent` of `span` for an outgoing request, when it is being traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<Option<Settings>, TelemetryError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn no_endpoint_or_disabled_means_off() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(
            read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "TRUE")
            ]),
            Ok(None)
        );
        assert_eq!(
            read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_EXPORTER", "none")
            ]),
            Ok(None)
        );
    }

    #[test]
    fn endpoint_and_protocol_follow_the_standard() {
        let s = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf, "the spec's default");
        assert_eq!((s.max_queue, s.max_batch, s.delay_ms), (2048, 512, 5000));
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            s.endpoint, "http://t:4317",
            "the signal's own variable wins"
        );
        assert_eq!(s.protocol, Protocol::Grpc);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        let e = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("OTEL_TRACES_SAMPLER_ARG"), "{e}");
        assert!(
            read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_SAMPLER", "sometimes"),
            ])
            .is_err()
        );
        assert!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]).is_err());
        assert!(
            read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ])
            .is_err()
        );
    }
}
