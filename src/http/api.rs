//! `/flussonic/api/…` (and `/streamer/api/…`): always behind authentication. Serves the
//! cached Prometheus exposition and Flussonic's liveness/readiness probes.

use super::body::{Body, full};
use super::{ApiRoute, AppState, HttpError};
use crate::stats::names;
use crate::stream::{StreamCounters, mono_ms};
use http::{HeaderMap, Response, StatusCode, header};
use serde_json::json;
use tracing::debug;

/// A source that delivered data this recently counts as up for readiness (as for `alive`).
const STREAM_UP_MS: u64 = 12_000;
/// Readiness fails when the DVR filesystem is fuller than this.
const DVR_DISK_FULL_PERCENT: f64 = 98.0;

pub(super) fn serve(
    state: &AppState,
    api: ApiRoute,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(failure) = state.auth.load().check(authorization) {
        metrics::counter!(names::AUTH_FAILURES, "reason" => failure.label()).increment(1);
        debug!(reason = failure.label(), "API request refused");
        return Err(HttpError::Unauthorized);
    }
    match api {
        ApiRoute::Metrics => {
            // OpenMetrics (with exemplars) for scrapers that ask for it, else Prometheus text.
            let openmetrics = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let (text, kind) = if openmetrics {
                (
                    state.exposition.latest_openmetrics(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    state.exposition.latest(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            if text.is_empty() {
                return Err(HttpError::NotReady);
            }
            Ok(Response::builder()
                .header(header::CONTENT_TYPE, kind)
                .header(header::CACHE_CONTROL, "no-store")
                .header(header::CONTENT_LENGTH, text.len())
                .body(full(text))
                .expect("static headers are valid"))
        }
        ApiRoute::Liveness => Ok(health(&liveness(state))),
        ApiRoute::Readiness => Ok(health(&readiness(state))),
        ApiRoute::DvrRanges(name) => {
            let handle = state
                .registry
                .get(&name)
                .ok_or(HttpError::NotFound("unknown stream"))?;
            let archive = handle
                .archive
                .as_ref()
                .ok_or(HttpError::NotFound("DVR is not enabled for this stream"))?;
            let ranges: Vec<serde_json::Value> = archive
                .read()
                .ranges()
                .iter()
                .map(|r| json!({ "from": r.from_ms / 1000, "duration": r.duration_ms.div_ceil(1000) }))
                .collect();
            Ok(Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-store")
                .body(full(json!({ "ranges": ranges }).to_string()))
                .expect("static headers are valid"))
        }
        ApiRoute::Streams => {
            let list = ListQuery::parse(query)?;
            let matching: Vec<_> = state
                .registry
                .iter()
                .filter(|h| list.q.as_ref().is_none_or(|q| h.name.contains(q.as_str())))
                .collect();
            let after_cursor = matching
                .iter()
                .filter(|h| list.cursor.as_ref().is_none_or(|c| *h.name > **c));
            let page: Vec<_> = after_cursor.take(list.limit + 1).collect();
            // The cursor of the next page is the last name of this one (names are unique
            // and listed in order, so a page never repeats or skips a stream).
            let next = (page.len() > list.limit).then(|| page[list.limit - 1].name.to_string());
            let streams: Vec<serde_json::Value> = page
                .into_iter()
                .take(list.limit)
                .map(|h| stream_json(state, h))
                .collect();
            Ok(json_response(&json!({
                "streams": streams, "next": next, "estimated_count": matching.len(),
            })))
        }
        ApiRoute::StreamRestart(_) | ApiRoute::ConfigValidate => Err(HttpError::MethodNotAllowed),
        ApiRoute::Sessions => {
            let stream = query.and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("name="))
                    .filter(|n| !n.is_empty())
            });
            let now = mono_ms();
            let timeout = state.live.session_timeout_ms();
            let mut sessions: Vec<_> = state
                .access
                .sessions
                .all()
                .into_iter()
                .filter(|s| s.is_admitted() && s.alive(now, timeout))
                .filter(|s| stream.is_none_or(|n| *s.stream == *n))
                .collect();
            sessions.sort_by_key(|s| s.opened_unix_ms);
            let list: Vec<_> = sessions.iter().map(|s| session_json(s)).collect();
            Ok(json_response(
                &json!({ "sessions": list, "estimated_count": list.len() }),
            ))
        }
        ApiRoute::Session(id) => {
            let s = state
                .access
                .sessions
                .find(&id)
                .filter(|s| s.is_admitted() && !s.is_ended())
                .ok_or(HttpError::NotFound("no such session"))?;
            Ok(json_response(&session_json(&s)))
        }
        ApiRoute::Stream(name) => {
            let handle = state
                .registry
                .get(&name)
                .ok_or(HttpError::NotFound("unknown stream"))?;
            Ok(json_response(&stream_json(state, &handle)))
        }
        ApiRoute::DvbCards => {
            let cards: Vec<serde_json::Value> = state
                .dvb
                .readings()
                .into_iter()
                .map(|(name, r)| {
                    json!({ "name": name, "stats": {
                        "strength": r.strength, "snr": r.snr, "ber": r.ber, "unc": r.unc, "lock": r.lock,
                    }})
                })
                .collect();
            Ok(json_response(&json!({ "dvb_cards": cards })))
        }
        ApiRoute::Unknown => Err(HttpError::NotFound("no such API resource")),
    }
}

/// A play session in Flussonic's API shape.
fn session_json(s: &crate::access::PlaySession) -> serde_json::Value {
    json!({
        "id": s.id,
        "name": &*s.stream,
        "type": "play",
        "proto": s.proto.as_str(),
        "ip": s.ip.to_string(),
        "user_agent": s.user_agent,
        "referer": s.referer,
        "user_id": s.user_id(),
        "token": s.token,
        "opened_at": s.opened_unix_ms,
        "bytes": s.bytes.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// A stream in Flussonic's API shape: configuration keys plus a `stats` object with the same
/// figures the metrics export (read from the same counters, so the two never disagree).
fn stream_json(state: &AppState, h: &crate::stream::StreamHandle) -> serde_json::Value {
    let c = &h.counters;
    let now = mono_ms();
    let last_input = StreamCounters::get(&c.last_input_ms);
    let alive = last_input > 0 && now.saturating_sub(last_input) <= STREAM_UP_MS;
    let started = StreamCounters::get(&c.running_since_ms);
    let snapshot = h.current();
    let media = snapshot.media().map(|first| {
        let mut tracks = Vec::new();
        for (i, r) in snapshot.renditions.iter().enumerate() {
            if let Some(v) = r.media.as_ref().and_then(|m| m.video.as_ref()) {
                // Video alone (the fMP4 track), kbit/s over the live window.
                let bitrate = r.video.average_bitrate;
                tracks.push(json!({
                    "track_id": format!("v{}", i + 1), "content": "video", "codec": v.codec,
                    "width": v.width, "height": v.height, "bitrate": bitrate / 1000,
                    "fps": v.frame_rate.map(|(n, d)| f64::from(n) / f64::from(d)),
                }));
            }
        }
        if let Some(a) = &first.audio {
            tracks.push(json!({ "track_id": "a1", "content": "audio", "codec": a.codec, "channels": a.channels, "sample_rate": a.sample_rate }));
        }
        json!({ "flow_type": "stream", "tracks": tracks })
    });
    let transcoder = c.transcoder().map(|t| {
        json!({
            "hw": t.hw, "decoder": t.decoder, "encoder": t.encoder,
            "renditions": t.renditions, "error": t.error,
        })
    });
    let dvr_info = h.archive.as_ref().map(|a| {
        let index = a.read();
        json!({
            "from": index.first().map_or(0, |e| e.start_ms / 1000),
            "depth": index.depth_ms() / 1000,
            "duration": index.duration_ms() / 1000,
            "bytes": index.bytes(),
            "disk_size": index.bytes(),
        })
    });
    let active = StreamCounters::get(&c.active_input);
    // The stored definition (secrets masked), its inputs in priority order as they run, each
    // with its live state under `stats` (read-only: a PUT of this JSON ignores it).
    let mut definition = crate::control::definition_json(&h.name, &h.definition);
    let mut inputs: Vec<serde_json::Value> = match definition.get_mut("inputs") {
        Some(serde_json::Value::Array(stored)) if stored.len() == h.inputs.len() => {
            std::mem::take(stored)
        }
        _ => h.inputs.iter().map(|url| json!({ "url": url })).collect(),
    };
    inputs.sort_by_key(|i| {
        i.get("priority")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1)
    });
    for (i, input) in inputs.iter_mut().enumerate() {
        input["stats"] = json!({ "active": active == i as u64 + 1, "position": i + 1 });
    }
    // Pushes as stored (masked), each with its live state under `stats`, in file order.
    let boards = h.pushes.list();
    let pushes: Vec<serde_json::Value> = match definition.get_mut("pushes") {
        Some(serde_json::Value::Array(stored)) if stored.len() == boards.len() => {
            std::mem::take(stored)
        }
        _ => boards.iter().map(|p| json!({ "url": p.url })).collect(),
    };
    let pushes: Vec<serde_json::Value> = pushes
        .into_iter()
        .zip(&boards)
        .map(|(mut push, p)| {
            push["stats"] = push_stats(p);
            push
        })
        .collect();
    // Top-level keys are the definition as stored (so that sending this JSON back changes
    // nothing); values in force, defaults included, are under `stats`.
    let mut out = json!({
        "name": h.name.as_ref(),
        "inputs": inputs,
        "stats": {
            "segment_duration": h.segment_ms,
            "segment_count": h.segment_count,
            "alive": alive,
            "status": if alive { "running" } else { "waiting" },
            "bytes_in": StreamCounters::get(&c.bytes_in),
            "bytes_out": StreamCounters::get(&c.bytes_out),
            "retry_count": StreamCounters::get(&c.retries),
            "broken_audio_frames": StreamCounters::get(&c.broken_audio_frames),
            "broken_pes": StreamCounters::get(&c.broken_pes),
            "online_clients": h.sessions.active(now, state.live.session_timeout_ms()),
            "start_running_at": started,
            "lifetime": if started > 0 { crate::media::utc::now_ms().saturating_sub(started) } else { 0 },
            "ts_delay": (last_input > 0).then(|| now.saturating_sub(last_input)),
            "segments": StreamCounters::get(&c.segments),
            "dvr_enabled": h.archive.is_some(),
            "dvr_info": dvr_info,
            "media_info": media,
            "transcoder": transcoder,
        },
    });
    if !pushes.is_empty() {
        out["pushes"] = serde_json::Value::Array(pushes);
    }
    // The other stored keys (title, dvr, transcoder, publish_key masked, …) as written.
    if let (Some(out), serde_json::Value::Object(stored)) = (out.as_object_mut(), definition) {
        for (key, value) in stored {
            out.entry(key).or_insert(value);
        }
    }
    out
}

/// One push's live state: `status` (`connecting`, `running`, `failed` with `error`), bytes
/// sent, retries, chunks dropped because the destination was slow, connections.
fn push_stats(p: &crate::stream::PushStatus) -> serde_json::Value {
    use crate::stream::{PushPhase, StreamCounters};
    let (status, error) = match p.phase() {
        PushPhase::Connecting => ("connecting", None),
        PushPhase::Running => ("running", None),
        PushPhase::Failed(e) => ("failed", Some(e)),
    };
    json!({
        "url": p.url,
        "protocol": p.protocol,
        "status": status,
        "error": error,
        "bytes": StreamCounters::get(&p.bytes),
        "retries": StreamCounters::get(&p.retries),
        "dropped_chunks": StreamCounters::get(&p.dropped_chunks),
        "connections": StreamCounters::get(&p.connections),
    })
}

/// `GET …/streams?limit=N&cursor=NAME&q=TEXT`.
#[derive(Debug)]
struct ListQuery {
    /// Streams per page, 1..=1000 (default 100).
    limit: usize,
    /// List the streams after this name (the previous page's `next`).
    cursor: Option<String>,
    /// Only streams whose name contains this.
    q: Option<String>,
}

impl ListQuery {
    fn parse(query: Option<&str>) -> Result<ListQuery, HttpError> {
        let mut list = ListQuery {
            limit: 100,
            cursor: None,
            q: None,
        };
        for (key, value) in query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
        {
            match key {
                "limit" => {
                    list.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or(HttpError::BadRequest("limit must be 1..=1000"))?;
                }
                "cursor" if crate::config::valid_stream_name(value) => {
                    list.cursor = Some(value.to_owned());
                }
                "cursor" => return Err(HttpError::BadRequest("bad cursor")),
                "q" if crate::config::valid_stream_name(value) => list.q = Some(value.to_owned()),
                "q" => return Err(HttpError::BadRequest("q: letters, digits, _ and - only")),
                _ => {}
            }
        }
        Ok(list)
    }
}

fn json_response(body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(body.to_string()))
        .expect("static headers are valid")
}

/// A component's verdict and details.
type Component = (bool, serde_json::Value);

/// The process answers and its stats thread is sampling.
fn liveness(state: &AppState) -> Vec<(&'static str, Component)> {
    vec![("stats_thread", stats_component(state))]
}

/// Ready to serve viewers: stats sampling, at least one stream with a live source (when any
/// stream is configured), and a usable DVR filesystem.
fn readiness(state: &AppState) -> Vec<(&'static str, Component)> {
    let now = mono_ms();
    let total = state.registry.len();
    let up = state
        .registry
        .iter()
        .filter(|s| {
            let last = StreamCounters::get(&s.counters.last_input_ms);
            last > 0 && now.saturating_sub(last) <= STREAM_UP_MS
        })
        .count();
    let streams = (
        total == 0 || up > 0,
        json!({ "total": total, "with_live_source": up }),
    );
    vec![
        ("streams", streams),
        ("stats_thread", stats_component(state)),
        ("dvr_disk", dvr_component(state)),
    ]
}

fn stats_component(state: &AppState) -> Component {
    let now = crate::media::utc::now_ms();
    let last = state
        .health
        .last_success_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let age = (last > 0).then(|| now.saturating_sub(last));
    (
        state.health.is_fresh(now),
        json!({ "last_success_age_ms": age }),
    )
}

fn dvr_component(state: &AppState) -> Component {
    let mut ok = true;
    let mut roots = Vec::new();
    for (root, usage) in state.health.dvr_usage() {
        // A root not created yet is fine if its parent is a writable directory.
        let dir = if root.exists() {
            root.clone()
        } else {
            root.parent().map(|p| p.to_path_buf()).unwrap_or_default()
        };
        let writable =
            std::fs::metadata(&dir).is_ok_and(|m| m.is_dir() && !m.permissions().readonly());
        let full = usage.is_some_and(|u| u >= DVR_DISK_FULL_PERCENT);
        ok &= writable && !full;
        roots.push(json!({ "path": root.display().to_string(), "writable": writable, "usage_percent": usage }));
    }
    // Streams whose last archive write failed (disk full, read-only): degraded until it works.
    let failing: Vec<String> = state
        .registry
        .iter()
        .filter(|s| {
            s.archive
                .as_ref()
                .is_some_and(|a| a.failing.load(std::sync::atomic::Ordering::Relaxed))
        })
        .map(|s| s.name.to_string())
        .collect();
    ok &= failing.is_empty();
    (ok, json!({ "roots": roots, "failing_streams": failing }))
}

fn health(components: &[(&'static str, Component)]) -> Response<Body> {
    let ok = components.iter().all(|(_, (ok, _))| *ok);
    let mut body = serde_json::Map::new();
    body.insert("status".into(), json!(if ok { "ok" } else { "fail" }));
    let mut parts = serde_json::Map::new();
    for (name, (ok, detail)) in components {
        let mut c = json!({ "status": if *ok { "ok" } else { "fail" } });
        if let (Some(c), Some(d)) = (c.as_object_mut(), detail.as_object()) {
            c.extend(d.clone());
        }
        parts.insert((*name).into(), c);
    }
    body.insert("components".into(), serde_json::Value::Object(parts));
    Response::builder()
        .status(if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        })
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(serde_json::Value::Object(body).to_string()))
        .expect("static headers are valid")
}
