//! HTTP MPEG-TS publishing: `POST` or `PUT /NAME/mpegts` with a (chunked) TS body, as
//! Flussonic accepts. Allowed with administrator credentials (`edit_auth`) or the stream's
//! publish key (`?key=`). The body is handed to the stream's publish slot as it arrives; the
//! response (204) comes when the publisher ends its body.

use super::body::{Body, empty};
use super::{AppState, HttpError, Role, Route, route};
use crate::stats::names;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use metrics::counter;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// A publisher that sends nothing for this long is cut off.
const IDLE: Duration = Duration::from_secs(30);

pub(super) async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let method = if *req.method() == http::Method::POST {
        "POST"
    } else {
        "PUT"
    };
    let result = publish(state, req, peer).await;
    let response = result.unwrap_or_else(HttpError::into_response);
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    super::request_metrics::answered(method, "/:name/mpegts", status, elapsed, None);
    super::trace::answered(method, "/:name/mpegts", &response, elapsed);
    response
}

async fn publish(
    state: &AppState,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, HttpError> {
    let stream = match route(req.uri().path()) {
        Ok(Route::MpegTs { stream }) => stream,
        Ok(_) | Err(super::RouteError::NotFound) => return Err(HttpError::MethodNotAllowed),
        Err(super::RouteError::Malformed(why)) => return Err(HttpError::BadRequest(why)),
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let admin = matches!(state.auth.load().check(authorization), Ok(Role::Edit));
    let key = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key=")))
        .map(str::to_owned);
    // The `on_publish` backend decides before the stream's slot is claimed.
    let own = state.registry.get(&stream).map(|h| h.access.clone());
    let query = req.uri().query().unwrap_or("");
    if !state
        .access
        .publish(
            own.as_deref(),
            &stream,
            peer.ip(),
            "http",
            key.as_deref(),
            query,
        )
        .await
    {
        counter!(names::PUBLISH_REFUSED, "reason" => "on_publish").increment(1);
        return Err(HttpError::PlayForbidden);
    }
    let feed = match state.publishing.claim(&stream, key.as_deref(), admin) {
        Ok(feed) => feed,
        Err(refusal) => {
            counter!(names::PUBLISH_REFUSED, "reason" => refusal.label()).increment(1);
            warn!(%stream, reason = refusal.label(), "HTTP publish refused");
            return Err(match refusal {
                crate::stream::Refusal::UnknownStream => {
                    HttpError::NotFound("no such publish stream")
                }
                crate::stream::Refusal::BadKey => HttpError::Unauthorized,
                crate::stream::Refusal::Busy => HttpError::Conflict,
            });
        }
    };
    info!(%stream, "HTTP MPEG-TS publisher connected");
    let mut body = req.into_body();
    let mut bytes = 0u64;
    loop {
        match tokio::time::timeout(IDLE, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes += data.len() as u64;
                    feed.push(data.to_vec());
                }
                if feed.is_closed() {
                    info!(%stream, "the stream no longer takes this publisher; closing");
                    break;
                }
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                warn!(%stream, error = %e, "HTTP publisher's body broke off");
                break;
            }
            Err(_) => {
                warn!(%stream, "HTTP publisher idle, closing");
                break;
            }
        }
    }
    info!(%stream, bytes, "HTTP MPEG-TS publisher finished");
    drop(feed);
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(empty())
        .expect("static response"))
}
