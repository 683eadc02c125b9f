//! LL-HLS playback: `index.ll.m3u8` (master), each track's `tracks-T/index.ll.m3u8` with
//! blocking playlist reload (`_HLS_msn`, `_HLS_part`) and delta updates (`_HLS_skip`), and
//! its parts, joined segments and init segments (`tracks-T/ll-…`), a request for the hinted
//! part held until the part exists.
//!
//! A held request waits on the stream's own snapshot channel (woken by the publication that
//! brings what it waits for) and on the stream's heartbeat (about once a second) for its
//! deadline: no polling and no timer per request. The stream stopping wakes it too.

use super::body::Body;
use super::hls::{PLAYLIST_TYPE, SEGMENT_CACHE, bytes_response, chunks_response, playlist_cached};
use super::{HttpError, Route};
use crate::packaging::llhls::{self, LlName};
use crate::packaging::{LlTrackSnapshot, Snapshot, Tracks};
use crate::stream::{StreamHandle, mono_ms};
use http::{Response, StatusCode};
use std::sync::Arc;

/// A playlist asked for without blocking: it changes with every part.
const LIVE_PLAYLIST_CACHE: &str = "no-cache";
/// A blocking request's answer is the same for everyone who asks with the same query, so a
/// cache may keep it (by its full URL) for a few target durations.
const BLOCKING_PLAYLIST_CACHE: &str = "public, max-age=6";
/// Init segments are named by run and version: never reused.
const INIT_CACHE: &str = SEGMENT_CACHE;
/// How many target durations a request may be held before it is answered 503 (the
/// specification's advice).
const HOLD_TARGETS: u64 = 3;

/// What a playlist request asks for (`_HLS_msn`, `_HLS_part`, `_HLS_skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Blocking {
    msn: Option<u64>,
    part: Option<u32>,
    skip: bool,
}

fn parse_query(query: Option<&str>) -> Result<Blocking, HttpError> {
    let mut b = Blocking::default();
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            (!value.is_empty() && value.len() <= 19 && value.bytes().all(|c| c.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
        };
        match key {
            "_HLS_msn" => {
                b.msn = Some(number().ok_or(HttpError::BadRequest("_HLS_msn must be a number"))?);
            }
            "_HLS_part" => {
                let n = number().ok_or(HttpError::BadRequest("_HLS_part must be a number"))?;
                b.part = Some(
                    u32::try_from(n).map_err(|_| HttpError::BadRequest("_HLS_part too large"))?,
                );
            }
            "_HLS_skip" => match value {
                "YES" | "v2" => b.skip = true,
                _ => return Err(HttpError::BadRequest("_HLS_skip must be YES or v2")),
            },
            _ => {}
        }
    }
    if b.part.is_some() && b.msn.is_none() {
        return Err(HttpError::BadRequest("_HLS_part needs _HLS_msn"));
    }
    Ok(b)
}

/// Whether part `part` of segment `msn` is more parts ahead of the newest one (`last`) than
/// RFC 8216bis's Advance Part Limit: three divided by the part target in seconds (three for a
/// target of a second or more). A part of a later segment is at least its index + 1 ahead.
fn beyond_advance_part_limit(
    last: Option<(u64, u32)>,
    msn: u64,
    part: u32,
    part_target_ms: u32,
) -> bool {
    let Some((last_msn, last_part)) = last else {
        return false;
    };
    let ahead = u64::from(match msn.cmp(&last_msn) {
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Equal => part.saturating_sub(last_part),
        std::cmp::Ordering::Greater => part.saturating_add(1),
    });
    if part_target_ms > 0 && part_target_ms < 1000 {
        // More than 3 / target parts: compared in ms, so 7.5 parts of 400 ms allow 7.
        ahead * u64::from(part_target_ms) > 3000
    } else {
        ahead > 3
    }
}

/// The LL view of `track` (`v1`, `a1` or `v1a1`) in `snap`: 404 for a rendition or audio
/// the stream does not have, 503 until it has parts.
fn track_of(snap: &Snapshot, track: Tracks) -> Result<&Arc<LlTrackSnapshot>, HttpError> {
    let exists =
        track.video.is_none_or(|v| v < snap.renditions.len()) && track.audio.is_none_or(|a| a == 0);
    if !exists {
        return Err(HttpError::NotFound("no such track"));
    }
    // Audio asked of a stream whose media has none (known once the media info is).
    if track.audio.is_some() && snap.media().is_some_and(|m| m.audio.is_none()) {
        return Err(HttpError::NotFound("the stream has no audio"));
    }
    snap.ll_track(track).ok_or(HttpError::NotReady)
}

/// Holds until `ready` says a snapshot has what is wanted; `Err(NotReady)` when the stream
/// stops or the deadline passes.
async fn hold<T>(
    handle: &StreamHandle,
    mut ready: impl FnMut(&Arc<Snapshot>) -> Result<Option<T>, HttpError>,
) -> Result<T, HttpError> {
    let mut snapshots = handle.snapshot.clone();
    let mut heartbeat = handle.heartbeat.clone();
    let deadline = mono_ms() + HOLD_TARGETS * u64::from(handle.segment_ms);
    loop {
        let snap = snapshots.borrow_and_update().clone();
        if let Some(answer) = ready(&snap)? {
            return Ok(answer);
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Err(HttpError::NotReady);
                }
            }
            beat = heartbeat.changed() => {
                if beat.is_err() || mono_ms() >= deadline {
                    return Err(HttpError::NotReady);
                }
            }
        }
    }
}

/// Serves one LL-HLS route of `handle`'s stream.
pub(super) async fn serve(
    handle: &StreamHandle,
    route: Route,
    query: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    match route {
        Route::LlMaster { .. } => {
            let text = handle
                .current()
                .ll_master_playlist
                .clone()
                .ok_or(HttpError::NotReady)?;
            Ok(playlist_cached(
                handle,
                PLAYLIST_TYPE,
                LIVE_PLAYLIST_CACHE,
                text,
            ))
        }
        Route::LlPlaylist { track, .. } => {
            let blocking = parse_query(query)?;
            let text = hold(handle, |snap| {
                let ll = track_of(snap, track)?;
                let Some((last_msn, _)) = ll.last() else {
                    return Ok(None);
                };
                if let Some(msn) = blocking.msn {
                    // Two segments ahead can never be waited for (the specification's 400).
                    if msn > last_msn + 2 {
                        return Err(HttpError::BadRequest(
                            "_HLS_msn is more than two segments ahead",
                        ));
                    }
                    if let Some(part) = blocking.part
                        && beyond_advance_part_limit(ll.last(), msn, part, ll.part_target_ms)
                    {
                        return Err(HttpError::BadRequest(
                            "_HLS_part is further ahead than the Advance Part Limit",
                        ));
                    }
                    if !llhls::has(ll.listed(), msn, blocking.part) {
                        return Ok(None);
                    }
                }
                let text = if blocking.skip {
                    ll.playlist_skip.clone()
                } else {
                    ll.playlist.clone()
                };
                Ok(text)
            })
            .await?;
            let cache = if blocking.msn.is_some() {
                BLOCKING_PLAYLIST_CACHE
            } else {
                LIVE_PLAYLIST_CACHE
            };
            Ok(playlist_cached(handle, PLAYLIST_TYPE, cache, text))
        }
        Route::LlResource { track, name, .. } => {
            let media_type = if track.video.is_none() {
                "audio/mp4"
            } else {
                "video/mp4"
            };
            let gone = HttpError::NotFound("expired, never existed or not of this run");
            match name {
                LlName::Init { run, version } => {
                    let snap = handle.current();
                    let ll = track_of(&snap, track)?;
                    let init = ll.init(version).filter(|_| ll.run == run).ok_or(gone)?;
                    Ok(bytes_response(
                        handle,
                        StatusCode::OK,
                        media_type,
                        INIT_CACHE,
                        init.clone(),
                    ))
                }
                LlName::Segment { run, sequence } => {
                    let snap = handle.current();
                    let ll = track_of(&snap, track)?;
                    let segment = ll.segment(sequence).filter(|_| ll.run == run).ok_or(gone)?;
                    Ok(chunks_response(
                        handle,
                        media_type,
                        SEGMENT_CACHE,
                        segment.parts.iter().flat_map(|p| p.pieces()),
                    ))
                }
                LlName::Part { run, number } => {
                    // The hinted part (the next one) is held until it exists.
                    let data = hold(handle, |snap| {
                        let ll = track_of(snap, track)?;
                        if ll.run != run || number > ll.next_part {
                            return Err(HttpError::NotFound(
                                "expired, never existed or not of this run",
                            ));
                        }
                        match ll.part(number) {
                            Some(p) => Ok(Some(p.clone())),
                            None if number == ll.next_part => Ok(None),
                            None => Err(HttpError::NotFound("part expired")),
                        }
                    })
                    .await?;
                    // A muxed part goes out as the video part's bytes and then its audio.
                    Ok(chunks_response(
                        handle,
                        media_type,
                        SEGMENT_CACHE,
                        data.pieces(),
                    ))
                }
            }
        }
        _ => Err(HttpError::NotFound("no such resource")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advance_part_limit_is_three_seconds_of_parts() {
        // 250 ms parts: 12 parts; the newest part is 7.2.
        let last = Some((7, 2));
        assert!(!beyond_advance_part_limit(last, 7, 14, 250));
        assert!(beyond_advance_part_limit(last, 7, 15, 250));
        assert!(!beyond_advance_part_limit(last, 8, 11, 250));
        assert!(beyond_advance_part_limit(last, 8, 12, 250));
        assert!(
            !beyond_advance_part_limit(last, 6, 40, 250),
            "an older part"
        );
        // 1 s parts (or more): three.
        assert!(!beyond_advance_part_limit(last, 7, 5, 1000));
        assert!(beyond_advance_part_limit(last, 7, 6, 1000));
        assert!(beyond_advance_part_limit(last, 8, 3, 2000));
        // 300 ms: ten; 400 ms: 7.5, so seven.
        assert!(!beyond_advance_part_limit(last, 7, 12, 300));
        assert!(beyond_advance_part_limit(last, 7, 13, 300));
        assert!(!beyond_advance_part_limit(last, 7, 9, 400));
        assert!(beyond_advance_part_limit(last, 7, 10, 400));
        assert!(
            !beyond_advance_part_limit(None, 9, 99, 250),
            "nothing listed yet"
        );
    }

    #[test]
    fn blocking_parameters_are_read_strictly() {
        assert_eq!(
            parse_query(Some("_HLS_msn=12&_HLS_part=3&token=x")).unwrap(),
            Blocking {
                msn: Some(12),
                part: Some(3),
                skip: false
            }
        );
        assert!(parse_query(Some("_HLS_skip=v2")).unwrap().skip);
        assert!(
            parse_query(Some("_HLS_part=1")).is_err(),
            "part without msn"
        );
        assert!(parse_query(Some("_HLS_msn=x")).is_err());
        assert!(parse_query(Some("_HLS_skip=NO")).is_err());
        assert_eq!(parse_query(None).unwrap(), Blocking::default());
    }
}
