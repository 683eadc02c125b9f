//! A request's trace span (OpenTelemetry HTTP server conventions): made when the request
//! arrives (child of an incoming `traceparent`), named and given its route, stream and status
//! by the handler, and ended with the body's size when the body is done. When traces are not
//! exported, or the sampler does not keep the request, nothing is made ([`Span::none`]).

use super::server::Scheme;
use crate::telemetry::{self, RequestInfo, RequestSpan};
use http::Response;

/// The span for a request that just arrived, named after its route template (routed here
/// only when the request is kept).
pub(super) fn start<B>(req: &http::Request<B>, scheme: Scheme) -> RequestSpan {
    // Not traced, or not sampled: no span at all (the cost of an unsampled request is one
    // random number).
    if !telemetry::keep_request(req.headers()) {
        return RequestSpan::none();
    }
    let routed = super::route(req.uri().path());
    let label = match &routed {
        Ok(r) => r.label(),
        Err(_) => "unmatched",
    };
    RequestSpan::kept(
        req.headers(),
        &RequestInfo {
            method: super::service::method_label(req.method()),
            route: template(label),
            scheme: match scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            },
            path: req.uri().path(),
            version: version(req.version()),
            stream: routed.as_ref().ok().and_then(super::Route::stream),
        },
    )
}

/// Records the outcome on the current request's span; keeps an exemplar of `seconds` for
/// the duration histogram when the request is traced.
pub(super) fn answered<B>(
    method: &'static str,
    label: &'static str,
    response: &Response<B>,
    seconds: f64,
) {
    if !telemetry::enabled() {
        return;
    }
    let span = RequestSpan::current();
    span.answered(response.status().as_u16());
    if let Some(trace_id) = span.trace_id() {
        crate::stats::exemplars::record(method, label, seconds, trace_id);
    }
}

/// The route template for `http.route` (the metric label where it already is one).
fn template(label: &'static str) -> Option<&'static str> {
    match label {
        "segment" => Some("/:name/:segment.ts"),
        "fragment" => Some("/:name/tracks/:fragment.m4s"),
        "part" => Some("/:name/tracks/:part"),
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
