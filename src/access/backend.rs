//! Calls to authorization backends over HTTP/1.1: `on_play` as a GET with Flussonic's query
//! parameters, `on_publish` as a POST of JSON. Every call has a deadline; a failure is a
//! value (`None`), never a panic or a hang.

use super::policy::{Answer, read_answer};
use crate::config::BackendUrl;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::Instrument;
use tracing::{debug, info, warn};

/// Most of a backend's response body that is read (and ignored).
const MAX_BODY: usize = 64 * 1024;

/// A pooled HTTP client for backends.
#[derive(Debug, Clone)]
pub struct Backend {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Whether the last call failed: failures and recoveries are logged once per change.
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Backend {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(connector);
        Backend {
            client,
            failing: Default::default(),
        }
    }
}

/// Why a call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered {0}, which is neither allow (200, 302) nor deny (4xx)")]
    Status(u16),
    #[error("bad backend URL")]
    Url,
}

impl Backend {
    /// `GET url?params` (appended to the URL's own query).
    pub async fn get(
        &self,
        url: &BackendUrl,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Answer, BackendError> {
        let mut target = url.0.clone();
        let mut sep = if target.contains('?') { '&' } else { '?' };
        for (k, v) in params {
            target.push(sep);
            sep = '&';
            target.push_str(k);
            target.push('=');
            target.push_str(&encode(v));
        }
        let req = Request::get(target)
            .header(
                header::USER_AGENT,
                concat!("Headwater/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|_| BackendError::Url)?;
        self.call(req, timeout).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &BackendUrl,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Answer, BackendError> {
        let req = Request::post(url.0.as_str())
            .header(
                header::USER_AGENT,
                concat!("Headwater/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| BackendError::Url)?;
        self.call(req, timeout).await
    }

    async fn call(
        &self,
        mut req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, BackendError> {
        // A client span of its own; the backend sees it as the caller (`traceparent`).
        let span = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "auth.backend",
            otel.name = %format_args!("{} auth backend", req.method()),
            otel.kind = "client",
            http.request.method = %req.method(),
            server.address = req.uri().host().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        crate::telemetry::adopt_request_parent(&span);
        if let Some(tp) = crate::telemetry::traceparent(&span)
            && let Ok(v) = http::HeaderValue::from_str(&tp)
        {
            req.headers_mut().insert("traceparent", v);
        }
        let traced = span.clone();
        let call = async move {
            let response = self
                .client
                .request(req)
                .await
                .map_err(|e| BackendError::Request(e.to_string()))?;
            let status = response.status().as_u16();
            traced.record("http.response.status_code", status);
            let headers = response.headers().clone();
            // Read (a bounded part of) the body so the connection can be reused.
            let _ = http_body_util::Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await;
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            read_answer(status, header).ok_or(BackendError::Status(status))
        };
        let result = match tokio::time::timeout(timeout, call.instrument(span.clone())).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Timeout(timeout)),
        };
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        drop(span);
        let was_failing = self.failing.swap(result.is_err(), Ordering::Relaxed);
        match &result {
            Ok(answer) if was_failing => {
                info!(
                    allowed = answer.allowed,
                    "authorization backend answers again"
                );
            }
            Ok(answer) => debug!(allowed = answer.allowed, "authorization backend answered"),
            Err(e) if !was_failing => warn!(error = %e, "authorization backend failed"),
            Err(e) => debug!(error = %e, "authorization backend still failing"),
        }
        result
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(super::encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(super::encode("Safe-._~1"), "Safe-._~1");
    }
}
