//! fMP4 playback: the HLS-fMP4 master and track playlists, init segments, fragments (by HLS
//! path or DASH number) and the live DASH manifest, all from the current snapshot.

use super::body::Body;
use super::hls::{
    PLAYLIST_TYPE, SEGMENT_CACHE, bytes_response, playlist_response, segment_response,
};
use super::{FragmentKey, HttpError, Route};
use crate::packaging::{Snapshot, Track, TrackSnapshot, dash};
use crate::stream::StreamHandle;
use http::{Response, StatusCode};

const MPD_TYPE: &str = "application/dash+xml";
/// Number-named fragments and init segments are reused by a restarted server (numbers and
/// codec configuration start again), so caches may keep them only for about a live window.
const RESTARTABLE_CACHE: &str = "public, max-age=30";

/// Serves one fMP4 or DASH route of `handle`'s stream.
pub(super) fn serve(
    handle: &StreamHandle,
    route: Route,
    range: Option<&str>,
    client: &super::hls::Client<'_>,
) -> Result<Response<Body>, HttpError> {
    let snap = handle.current();
    match route {
        Route::Fmp4Master { .. } => {
            let text = snap
                .fmp4_master_playlist
                .clone()
                .ok_or(HttpError::NotReady)?;
            Ok(playlist_response(handle, PLAYLIST_TYPE, text))
        }
        Route::Fmp4Playlist { track, .. } => {
            let text = track_of(&snap, track)?
                .playlist
                .clone()
                .ok_or(HttpError::NotReady)?;
            Ok(playlist_response(handle, PLAYLIST_TYPE, text))
        }
        Route::Init { track, version, .. } => {
            let t = track_of(&snap, track)?;
            let init = match (version, t.init_version(version)) {
                (_, Some(init)) => init.clone(),
                (None, None) => return Err(HttpError::NotReady),
                (Some(_), None) => {
                    return Err(HttpError::NotFound("init segment no longer in use"));
                }
            };
            Ok(bytes_response(
                handle,
                StatusCode::OK,
                media_type(track),
                RESTARTABLE_CACHE,
                init,
            ))
        }
        Route::Fragment { track, key, .. } => {
            let t = track_of(&snap, track)?;
            let (fragment, cache) = match &key {
                FragmentKey::Number(n) => (t.by_number(*n), RESTARTABLE_CACHE),
                FragmentKey::Name(name) => (t.by_name(name), SEGMENT_CACHE),
            };
            let fragment =
                fragment.ok_or(HttpError::NotFound("fragment expired or never existed"))?;
            segment_response(
                handle,
                fragment.data.clone(),
                range,
                media_type(track),
                cache,
            )
        }
        Route::Dash { .. } => {
            // The clock URL follows the scheme the viewer used (or `public_url`).
            let utc = match (client.public_url, client.host) {
                (Some(public), _) => format!("{public}/time"),
                (None, Some(h)) if valid_host(h) => format!("{}://{h}/time", client.origin_scheme),
                _ => "/time".to_owned(),
            };
            let text =
                dash::mpd(&snap, crate::media::utc::now_ms(), &utc).ok_or(HttpError::NotReady)?;
            Ok(playlist_response(handle, MPD_TYPE, text.into()))
        }
        _ => Err(HttpError::NotFound("no such resource")),
    }
}

/// The track a selector names; 503 while the stream has no fMP4 yet, 404 for a track it
/// does not have.
fn track_of(snap: &Snapshot, track: Track) -> Result<&TrackSnapshot, HttpError> {
    match snap.fmp4_track(track) {
        Some(t) => Ok(t),
        None if snap.fmp4_master_playlist.is_none() => Err(HttpError::NotReady),
        None => Err(HttpError::NotFound("no such track")),
    }
}

fn media_type(track: Track) -> &'static str {
    if track.is_audio() {
        "audio/mp4"
    } else {
        "video/mp4"
    }
}

/// A `Host` value safe to echo into the manifest: host name or address and an optional port.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}
