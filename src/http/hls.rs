//! Playback handlers: playlists and segments from the current snapshot, and the endless
//! `/NAME/mpegts` body from the stream's chunk broadcast.

use super::body::{Body, Counted, Holding, empty};
use super::range::{RangeRequest, parse_range};
use super::{AppState, HttpError, Route};
use crate::access::{Held, PlayRequest, PlaySession, Proto, Recheck, Refused, Visitor};
use crate::media::Chunk;
use crate::packaging::links::{self, Manifest};
use crate::packaging::{RenditionSnapshot, Snapshot, Tracks};
use crate::stats::names;
use crate::stream::StreamHandle;
use crate::stream::{StreamingClient, mono_ms, session_key};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use metrics::counter;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub(super) const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub(super) const TS_TYPE: &str = "video/mp2t";
/// Playlists change every segment; a caching proxy may hold one for about a second.
pub(super) const PLAYLIST_CACHE: &str = "public, max-age=1";
/// A segment URL names its start time and duration: its bytes never change.
pub(super) const SEGMENT_CACHE: &str = "public, max-age=31536000, immutable";

/// Who is asking, for client sessions and authorization.
#[derive(Debug)]
pub(super) struct Client<'a> {
    /// The viewer's address (`X-Forwarded-For` from a trusted proxy, else the peer).
    pub ip: std::net::IpAddr,
    pub user_agent: &'a str,
    pub referer: &'a str,
    pub token: Option<&'a str>,
    /// The `Host` header (DASH `UTCTiming` points back at it).
    pub host: Option<&'a str>,
    /// `http://` or `https://`, as the viewer reached us (or `[server] public_url`).
    pub origin_scheme: &'static str,
    /// `[server] public_url`, when set: absolute URLs start with it.
    pub public_url: Option<&'a str>,
    /// A `HEAD` request (it does not make its sender a viewer).
    pub head: bool,
}

/// The raw text of a playlist or manifest response, kept beside its body so that a
/// viewer's token can be written into its URLs.
#[derive(Debug, Clone)]
pub(super) struct PlaylistText(pub Bytes, pub Manifest);

/// Flussonic's `proto` of a playback route.
fn proto_of(route: &Route) -> Proto {
    match route {
        Route::MpegTs { .. } => Proto::Mpegts,
        Route::Dash { .. }
        | Route::Fragment {
            key: super::FragmentKey::Number(_),
            ..
        } => Proto::Dash,
        Route::Dvr { .. } => Proto::Dvr,
        _ => Proto::Hls,
    }
}

/// Serves a playback route once the viewer may play it, and records the client's session.
pub(super) async fn serve(
    state: &AppState,
    route: Route,
    range: Option<&str>,
    query: Option<&str>,
    client: &Client<'_>,
) -> Result<Response<Body>, HttpError> {
    let stream = match &route {
        Route::Api(_) | Route::Time => return Err(HttpError::NotFound("no such resource")),
        playback => playback
            .stream()
            .ok_or(HttpError::NotFound("no such resource"))?
            .to_owned(),
    };
    let Some(handle) = state.registry.get_with_archive(&stream) else {
        return Err(HttpError::NotFound("unknown stream"));
    };
    let guarded = state.access.guards_play(&handle.access);
    let pair = client
        .token
        .filter(|_| guarded)
        .map(|t| format!("token={t}"));
    if pair.as_deref().is_some_and(|p| !links::safe_pair(p)) {
        counter!(names::PLAY_REFUSED, "reason" => "bad_token").increment(1);
        return Err(HttpError::BadRequest(
            "token has characters that cannot be used in URLs",
        ));
    }
    let request = PlayRequest {
        visitor: Visitor {
            stream: &stream,
            ip: client.ip,
            token: client.token,
            user_agent: client.user_agent,
            referer: client.referer,
        },
        proto: proto_of(&route),
        query: query.unwrap_or(""),
        stream: &handle.access,
    };
    let timeout_ms = state.live.session_timeout_ms();
    let session = match state.access.play(&request, mono_ms(), timeout_ms).await {
        Ok(session) => session,
        Err(refused) => {
            counter!(names::PLAY_REFUSED, "reason" => refused.label()).increment(1);
            debug!(%stream, ip = %client.ip, reason = refused.label(), "play refused");
            return Err(match refused {
                Refused::Full => HttpError::Busy,
                _ => HttpError::PlayForbidden,
            });
        }
    };
    let counters = handle.counters.clone();
    drop(handle);
    // A viewer is one person watching: an open `/mpegts` connection counts while it is open
    // (not also as a session), and HEAD requests and status polls are not watching.
    let watching = !client.head
        && !matches!(
            route,
            Route::MpegTs { .. }
                | Route::Dvr {
                    request: super::DvrRequest::Status,
                    ..
                }
        );
    let mut response = serve_route(state, route, range, query, client, &session).await?;
    if watching
        && response.status().is_success()
        && let Some(handle) = state.registry.get(&stream)
    {
        let key = session_key(client.ip, client.user_agent, client.token);
        handle.sessions.touch(key, mono_ms());
    }
    let text = response.extensions_mut().remove::<PlaylistText>();
    if let (true, Some(pair), Some(PlaylistText(text, manifest))) = (guarded, pair, text) {
        let rewritten = session.links.get_or(&text, || {
            Bytes::from(links::add_query(
                &String::from_utf8_lossy(&text),
                manifest,
                &pair,
            ))
        });
        let (mut parts, _) = response.into_parts();
        parts
            .headers
            .insert(header::CONTENT_LENGTH, rewritten.len().into());
        let body = Counted::new(http_body_util::Full::new(rewritten), counters).boxed();
        response = Response::from_parts(parts, body);
    }
    Ok(Holding::wrap(response, (), Some(session)))
}

async fn serve_route(
    state: &AppState,
    route: Route,
    range: Option<&str>,
    query: Option<&str>,
    client: &Client<'_>,
    session: &Arc<PlaySession>,
) -> Result<Response<Body>, HttpError> {
    let lookup = |name: &str| -> Result<Arc<StreamHandle>, HttpError> {
        state
            .registry
            .get(name)
            .ok_or(HttpError::NotFound("unknown stream"))
    };
    // Archive URLs (and the segments their playlists list) also find a deleted stream whose
    // archive is still on disk.
    let lookup_archive = |name: &str| -> Result<Arc<StreamHandle>, HttpError> {
        state
            .registry
            .get_with_archive(name)
            .ok_or(HttpError::NotFound("unknown stream"))
    };
    match route {
        Route::Master { stream } => {
            let handle = lookup(&stream)?;
            let snap = handle.current();
            let text = snap.master_playlist.clone().ok_or(HttpError::NotReady)?;
            Ok(playlist_response(&handle, PLAYLIST_TYPE, text))
        }
        Route::Media { stream, tracks } => {
            let handle = lookup(&stream)?;
            let snap = handle.current();
            let (_, rendition) = select(&snap, tracks)?;
            let text = rendition
                .media_playlist
                .clone()
                .ok_or(HttpError::NotReady)?;
            Ok(playlist_response(&handle, PLAYLIST_TYPE, text))
        }
        Route::Segment {
            stream,
            tracks,
            name,
        } => {
            let handle = lookup_archive(&stream)?;
            let snap = handle.current();
            let (index, rendition) = select(&snap, tracks)?;
            let data = match rendition.segment(&name) {
                Some(segment) => segment.data.clone(),
                None => super::dvr::archived_segment(&handle, index, &name)
                    .await?
                    .ok_or(HttpError::NotFound("segment expired or never existed"))?,
            };
            segment_response(&handle, data, range, TS_TYPE, SEGMENT_CACHE)
        }
        Route::Fmp4Master { .. }
        | Route::Fmp4Playlist { .. }
        | Route::Init { .. }
        | Route::Fragment { .. }
        | Route::Dash { .. } => {
            let (Route::Fmp4Master { stream }
            | Route::Fmp4Playlist { stream, .. }
            | Route::Init { stream, .. }
            | Route::Fragment { stream, .. }
            | Route::Dash { stream }) = &route
            else {
                return Err(HttpError::NotFound("no such resource"));
            };
            let handle = lookup(stream)?;
            super::fmp4::serve(&handle, route.clone(), range, client)
        }
        Route::LlMaster { .. } | Route::LlPlaylist { .. } | Route::LlResource { .. } => {
            let handle = lookup(route.stream().unwrap_or_default())?;
            super::llhls::serve(&handle, route, query).await
        }
        Route::MpegTs { stream } => {
            let handle = lookup(&stream)?;
            // An endless body asks the backend again whenever its answer runs out.
            let recheck = Recheck {
                access: state.access.clone(),
                stream: stream.clone(),
                ip: client.ip,
                token: client.token.map(str::to_owned),
                user_agent: client.user_agent.to_owned(),
                referer: client.referer.to_owned(),
                query: query.unwrap_or("").to_owned(),
                own: handle.access.clone(),
                proto: Proto::Mpegts,
            };
            Ok(mpegts(
                &handle,
                state.shutdown.clone(),
                session,
                recheck,
                state.live.clone(),
            ))
        }
        Route::Dvr {
            stream,
            tracks,
            request,
        } => {
            let handle = lookup_archive(&stream)?;
            super::dvr::serve(state, &handle, tracks, request, range, query).await
        }
        Route::Api(_) | Route::Time => Err(HttpError::NotFound("no such resource")),
    }
}

/// The server's clock for DASH clients (`UTCTiming` http-iso): ISO 8601 UTC, never cached.
pub(super) fn time() -> Response<Body> {
    let now = crate::media::utc::Civil::from_unix_ms(crate::media::utc::now_ms()).iso8601();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(super::body::full(now))
        .expect("static headers are valid")
}

/// A whole segment, or the part a `Range` asks for.
pub(super) fn segment_response(
    handle: &StreamHandle,
    data: Bytes,
    range: Option<&str>,
    content_type: &'static str,
    cache: &'static str,
) -> Result<Response<Body>, HttpError> {
    let len = data.len() as u64;
    let (status, body, content_range) = match parse_range(range, len) {
        RangeRequest::Full => (StatusCode::OK, data, None),
        RangeRequest::Partial(r) => (
            StatusCode::PARTIAL_CONTENT,
            data.slice(r.start as usize..r.end as usize),
            Some(format!("bytes {}-{}/{len}", r.start, r.end - 1)),
        ),
        RangeRequest::Unsatisfiable => return Err(HttpError::RangeNotSatisfiable { len }),
    };
    let mut r = bytes_response(handle, status, content_type, cache, body);
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(cr) = content_range {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).expect("digits are a valid header"),
        );
    }
    Ok(r)
}

/// The rendition `tracks-…` selects (`v2a1`: the second rendition with its audio); no
/// selector is the first. Before the first media info any selector waits (503).
fn select(
    snap: &Snapshot,
    tracks: Option<Tracks>,
) -> Result<(usize, &RenditionSnapshot), HttpError> {
    if snap.renditions.is_empty() {
        return Err(HttpError::NotReady);
    }
    snap.rendition(tracks)
        .ok_or(HttpError::NotFound("track selection not available"))
}

/// A live playlist or manifest (changes every segment: cached for about a second).
pub(super) fn playlist_response(
    handle: &StreamHandle,
    content_type: &'static str,
    text: Bytes,
) -> Response<Body> {
    playlist_cached(handle, content_type, PLAYLIST_CACHE, text)
}

/// A playlist or manifest with its own `Cache-Control`; its text is kept beside the body so
/// that a viewer's token can be written into its URLs.
pub(super) fn playlist_cached(
    handle: &StreamHandle,
    content_type: &'static str,
    cache: &'static str,
    text: Bytes,
) -> Response<Body> {
    let manifest = if content_type == PLAYLIST_TYPE {
        Manifest::Hls
    } else {
        Manifest::Dash
    };
    let mut r = bytes_response(handle, StatusCode::OK, content_type, cache, text.clone());
    r.extensions_mut().insert(PlaylistText(text, manifest));
    r
}

pub(super) fn bytes_response(
    handle: &StreamHandle,
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    data: Bytes,
) -> Response<Body> {
    let len = data.len();
    let body = Counted::new(http_body_util::Full::new(data), handle.counters.clone()).boxed();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(body)
        .expect("static headers are valid")
}

/// Like [`bytes_response`], the body being `chunks` in a row.
pub(super) fn chunks_response(
    handle: &StreamHandle,
    content_type: &'static str,
    cache: &'static str,
    chunks: impl IntoIterator<Item = Bytes>,
) -> Response<Body> {
    let body = super::body::Chunks::new(chunks);
    let len = hyper::body::Body::size_hint(&body).exact().unwrap_or(0);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(Counted::new(body, handle.counters.clone()).boxed())
        .expect("static headers are valid")
}

pub(super) fn preflight() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")
        .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "Range")
        .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
        .body(empty())
        .expect("static headers are valid")
}

/// State of one `/mpegts` client.
struct Follower {
    rx: tokio::sync::broadcast::Receiver<Chunk>,
    /// False until a keyframe chunk (PAT, PMT, IDR) has been sent; again after a lag.
    synced: bool,
    shutdown: CancellationToken,
    /// Cancelled when the viewer's session is ended (API `DELETE`, revoked by the backend).
    ended: CancellationToken,
    stream: std::sync::Arc<str>,
    /// Counts this connection as a client while the body lives.
    _client: StreamingClient,
    /// Keeps the play session alive while the connection is open.
    _held: Held,
    /// Asks the backend again when the session's answer runs out.
    recheck: Recheck,
    /// The session timeout, for that request.
    live: Arc<crate::stats::LiveSettings>,
}

/// An endless chunked MPEG-TS body that starts at the next keyframe. A client too slow for
/// the broadcast buffer loses the chunks it missed and resumes at the next keyframe.
fn mpegts(
    handle: &StreamHandle,
    shutdown: CancellationToken,
    session: &Arc<PlaySession>,
    recheck: Recheck,
    live: Arc<crate::stats::LiveSettings>,
) -> Response<Body> {
    let follower = Follower {
        recheck,
        live,
        rx: handle.live.subscribe(),
        synced: false,
        shutdown,
        ended: session.ended.clone(),
        _held: session.hold(),
        stream: handle.name.clone(),
        _client: handle.sessions.open_stream(),
    };
    let frames = futures_util::stream::unfold(follower, |mut f| async move {
        loop {
            let answer_left = f
                .recheck
                .valid_until(&f._held.session)
                .map(|until| Duration::from_millis(until.saturating_sub(mono_ms())));
            let next = tokio::select! {
                () = f.shutdown.cancelled() => return None,
                () = f.ended.cancelled() => return None,
                () = tokio::time::sleep(answer_left.unwrap_or_default()), if answer_left.is_some() => {
                    if let Err(refused) = f.recheck.ask(f.live.session_timeout_ms()).await {
                        debug!(stream = %f.stream, reason = refused.label(), "mpegts viewer no longer allowed; closing");
                        return None;
                    }
                    continue;
                }
                next = f.rx.recv() => next,
            };
            match next {
                Ok(chunk) if f.synced || chunk.keyframe => {
                    f.synced = true;
                    return Some((Ok::<_, Infallible>(Frame::data(chunk.data)), f));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    warn!(stream = %f.stream, missed, "mpegts client too slow, skipping to next keyframe");
                    f.synced = false;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let body = Counted::new(StreamBody::new(Box::pin(frames)), handle.counters.clone()).boxed();
    Response::builder()
        .header(header::CONTENT_TYPE, TS_TYPE)
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(body)
        .expect("static headers are valid")
}
