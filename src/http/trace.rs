//! A request's trace span (OpenTelemetry HTTP server conventions): made when the request
//! arrives (child of an incoming `traceparent`), named and given its route, stream and status
//! by the handler, and ended with the body's size when the body is done. When traces are not
//! exported, or the sampler does not keep the request, nothing is made ([`Span::none`]).

use super::server::Scheme;
use crate::telemetry;
use http::Response;
use tracing::Span;
use tracing::field::Empty;

/// The span for a request that just arrived, named after its route template (the span's
/// name is fixed once it starts, so the path is routed here too; only when tracing is on).
pub(super) fn start<B>(req: &http::Request<B>, scheme: Scheme) -> Span {
    // Not traced, or not sampled: no span at all (the cost of an unsampled request is one
    // random number).
    if !telemetry::keep_request(req.headers()) {
        return Span::none();
    }
    let method = super::service::method_label(req.method());
    let routed = super::route(req.uri().path());
    let label = match &routed {
        Ok(r) => r.label(),
        Err(_) => "unmatched",
    };
    let route = template(label);
    let stream = routed.as_ref().ok().and_then(super::Route::stream);
    let span = tracing::info_span!(
        target: telemetry::TARGET,
        "request",
        otel.name = %Name(method, route),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        url.scheme = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        },
        url.path = req.uri().path(),
        network.protocol.version = version(req.version()),
        stream = stream,
    );
    telemetry::adopt_remote_parent(&span, req.headers());
    span
}

/// `GET /:name/index.m3u8`, or only the method when the path matched no route.
struct Name(&'static str, Option<&'static str>);

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(route) => write!(f, "{} {route}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Records the outcome on the current request span; keeps an exemplar of `seconds` for the
/// duration histogram when the trace is sampled.
pub(super) fn answered<B>(
    method: &'static str,
    label: &'static str,
    response: &Response<B>,
    seconds: f64,
) {
    if !telemetry::enabled() {
        return;
    }
    let span = Span::current();
    if span.is_none() {
        return;
    }
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(trace_id) = telemetry::sampled_trace_id(&span) {
        crate::stats::exemplars::record(method, label, seconds, trace_id);
    }
}

/// The route template for `http.route` (the metric label where it already is one).
fn template(label: &'static str) -> Option<&'static str> {
    match label {
        "segment" => Some("/:name/:segment.ts"),
        "fragment" => Some("/:name/tracks/:fragment.m4s"),
        "health" => Some("/flussonic/api/v3/monitoring/:check"),
        "api" => Some("/flussonic/api/*"),
        "malformed" | "unmatched" => None,
        route => Some(route),
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_never_carry_names() {
        assert_eq!(template("/:name/index.m3u8"), Some("/:name/index.m3u8"));
        assert_eq!(template("segment"), Some("/:name/:segment.ts"));
        assert_eq!(template("unmatched"), None);
    }
}
