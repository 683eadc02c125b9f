//! One request, start to end: route, dispatch (playback or API), HEAD handling, and the HTTP
//! metrics (requests, duration to the response head, size, in-flight until the body ends).

use super::body::{Body, empty};
use super::hls::{self, Client};
use super::{AppState, HttpError, Route, RouteError, api, route};
use crate::stats::names;
use http::{Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use metrics::{counter, gauge, histogram};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub(super) async fn handle<B>(
    state: &AppState,
    req: &Request<B>,
    peer: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let in_flight = InFlight::start();
    let routed = route(req.uri().path());
    let label = match &routed {
        Ok(r) => r.label(),
        Err(RouteError::Malformed(_)) => "malformed",
        Err(RouteError::NotFound) => "unmatched",
    };
    let head = *req.method() == Method::HEAD;
    let result = match (req.method(), routed) {
        (&Method::OPTIONS, _) => Ok(hls::preflight()),
        (m, _) if m != Method::GET && m != Method::HEAD => Err(HttpError::MethodNotAllowed),
        (_, Err(RouteError::Malformed(why))) => Err(HttpError::BadRequest(why)),
        (_, Err(RouteError::NotFound)) => Err(HttpError::NotFound("no such resource")),
        (_, Ok(Route::Api(api))) => api::serve(state, api, req.headers(), req.uri().query()),
        (_, Ok(Route::Time)) => Ok(hls::time()),
        (_, Ok(route)) => {
            let headers = req.headers();
            let client = Client {
                ip: peer.ip(),
                user_agent: headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                token: token(req.uri().query()),
                host: headers.get(header::HOST).and_then(|v| v.to_str().ok()),
            };
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            hls::serve(state, route, range, req.uri().query(), &client).await
        }
    };
    let mut response = result.unwrap_or_else(HttpError::into_response);
    if head {
        *response.body_mut() = empty();
    }
    let method = method_label(req.method());
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed().as_secs_f64();
    counter!(names::HTTP_REQUESTS, "method" => method, "route" => label, "status" => status)
        .increment(1);
    histogram!(names::HTTP_DURATION, "method" => method, "route" => label).record(elapsed);
    if let Some(len) = response.body().size_hint().exact() {
        histogram!(names::HTTP_RESPONSE_SIZE, "method" => method, "route" => label)
            .record(len as f64);
    }
    response.map(|body| {
        Guarded {
            body,
            _guard: in_flight,
        }
        .boxed()
    })
}

/// The `token` query parameter (Flussonic's playback session token), if any.
fn token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

/// Known methods by name, anything else as `other` (bounded label values).
pub(super) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Increments `requests_in_flight` now and decrements it when dropped.
#[derive(Debug)]
struct InFlight;

impl InFlight {
    fn start() -> Self {
        gauge!(names::HTTP_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(names::HTTP_IN_FLIGHT).decrement(1.0);
    }
}

/// A body that keeps the in-flight guard alive until the body is finished or dropped.
struct Guarded {
    body: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_method_labels() {
        assert_eq!(token(Some("a=1&token=abc")), Some("abc"));
        assert_eq!(token(Some("token=")), None);
        assert_eq!(token(None), None);
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
