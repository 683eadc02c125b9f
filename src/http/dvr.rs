//! Archive playback: Flussonic's `archive-…`, `timeshift_…`, `rewind-…` playlists, archived
//! segments, `.ts`/`.mp4` exports with `Range`, and `recording_status.json`. Reads only the
//! archive index and files under the stream's own folder (paths come from the index, never
//! from the URL).

use super::body::{Body, Counted};
use super::export::{Finished, TempDir};
use super::hls::{PLAYLIST_TYPE, TS_TYPE, bytes_response, playlist_cached, playlist_response};
use super::range::{RangeRequest, parse_range};
use super::{DvrRequest, HttpError};
use crate::dvr::playlist::{self, Kind};
use crate::dvr::{Archive, Entry};
use crate::media::SegmentName;
use crate::packaging::Tracks;
use crate::stream::StreamHandle;
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::{error, warn};

/// Export bodies are read from disk in pieces of this size.
const CHUNK: u64 = 256 * 1024;
/// A VOD playlist whose range ended this long ago no longer changes.
const SETTLED_MS: u64 = 60_000;

/// The bytes of an archived segment of rendition `rendition` named `name`, if recorded.
pub(super) async fn archived_segment(
    handle: &StreamHandle,
    rendition: usize,
    name: &SegmentName,
) -> Result<Option<Bytes>, HttpError> {
    let Some(Some(archive)) = handle.archives.get(rendition) else {
        return Ok(None);
    };
    let Some(entry) = archive
        .read()
        .find(name.second_ms, name.duration_ms)
        .copied()
    else {
        return Ok(None);
    };
    let file = archive.dir.join(entry.path());
    match tokio::fs::read(&file).await {
        Ok(data) => Ok(Some(Bytes::from(data))),
        // Retention deleted it between the lookup and the read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            error!(file = %file.display(), error = %e, "cannot read archived segment");
            Err(HttpError::Internal)
        }
    }
}

/// Serves an archive URL. With `tracks` (`/NAME/tracks-v2a1/…`) it reads that rendition's
/// archive; without, a ladder that records several renditions gets a master playlist over
/// them, and everything else reads the first recorded rendition.
pub(super) async fn serve(
    state: &super::AppState,
    handle: &StreamHandle,
    tracks: Option<Tracks>,
    request: DvrRequest,
    range: Option<&str>,
    query: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    let recorded: Vec<(usize, &Arc<Archive>)> = handle
        .archives
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((i, a.as_ref()?)))
        .collect();
    let Some(&(_, first)) = recorded.first() else {
        return Err(HttpError::NotFound("DVR is not enabled for this stream"));
    };
    let archive = match tracks {
        Some(t) => t
            .rendition()
            .and_then(|i| handle.archives.get(i))
            .and_then(Option::as_ref)
            .ok_or(HttpError::NotFound("this rendition is not recorded"))?,
        // Several renditions, or only others than the first: the playlist's relative segment
        // paths must name their rendition (`tracks-vNa1/…`), which a master over them does.
        None if recorded.len() > 1 || recorded[0].0 != 0 => {
            if let Some(file) = playlist_file(request) {
                return archive_master(handle, &recorded, &file);
            }
            first
        }
        None => first,
    };
    serve_archive(state, handle, archive, request, range, query).await
}

/// The file name of a playlist request, as the master's variants repeat it per rendition.
fn playlist_file(request: DvrRequest) -> Option<String> {
    Some(match request {
        DvrRequest::Playlist {
            from,
            duration: Some(d),
        } => format!("archive-{from}-{d}.m3u8"),
        DvrRequest::Playlist {
            from,
            duration: None,
        } => format!("archive-{from}-now.m3u8"),
        DvrRequest::TimeshiftAbs { from } => format!("timeshift_abs-{from}.m3u8"),
        DvrRequest::TimeshiftRel { ago } => format!("timeshift_rel-{ago}.m3u8"),
        DvrRequest::Rewind { ago } => format!("rewind-{ago}.m3u8"),
        DvrRequest::Export { .. } | DvrRequest::Status => return None,
    })
}

/// Segments whose sizes give an archived rendition's bandwidth in a master playlist.
const BANDWIDTH_SEGMENTS: usize = 30;

/// A master playlist over the recorded renditions: `tracks-vNa1/FILE` each, with the live
/// stream's resolution and codecs and the bandwidth of its newest archived segments.
fn archive_master(
    handle: &StreamHandle,
    recorded: &[(usize, &Arc<Archive>)],
    file: &str,
) -> Result<Response<Body>, HttpError> {
    let snap = handle.current();
    let unknown = crate::media::MediaInfo::default();
    let mut variants = Vec::new();
    for (i, archive) in recorded {
        let index = archive.read();
        if index.is_empty() {
            continue;
        }
        let (peak, average) = crate::packaging::hls::bitrates(
            index
                .iter()
                .rev()
                .take(BANDWIDTH_SEGMENTS)
                .map(|e| (e.size, e.duration_ms)),
        );
        let media = snap
            .renditions
            .get(*i)
            .and_then(|r| r.media.clone())
            .unwrap_or_else(|| unknown.clone());
        variants.push((media, peak, average, format!("tracks-v{}a1/{file}", i + 1)));
    }
    if variants.is_empty() {
        return Err(HttpError::NotFound("no recording in this range"));
    }
    let listed: Vec<crate::packaging::hls::Variant<'_>> = variants
        .iter()
        .map(
            |(media, peak, average, uri)| crate::packaging::hls::Variant {
                media,
                peak: *peak,
                average: *average,
                uri,
            },
        )
        .collect();
    let text = crate::packaging::hls::master_playlist(&listed);
    Ok(playlist_response(handle, PLAYLIST_TYPE, text.into()))
}

async fn serve_archive(
    state: &super::AppState,
    handle: &StreamHandle,
    archive: &Arc<Archive>,
    request: DvrRequest,
    range: Option<&str>,
    query: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    let now = crate::media::utc::now_ms();
    let target = handle.segment_ms;
    let no_recording = HttpError::NotFound("no recording in this range");
    match request {
        DvrRequest::Playlist {
            from,
            duration: Some(duration),
        } => {
            let (from_ms, to_ms) = (from * 1000, (from + duration) * 1000);
            let entries = archive.read().select(from_ms, to_ms);
            if entries.is_empty() {
                return Err(no_recording);
            }
            let text = playlist::render(&entries, Kind::Vod, target, 0);
            let cache = if to_ms + SETTLED_MS < now {
                "public, max-age=3600"
            } else {
                "public, max-age=1"
            };
            Ok(playlist_cached(handle, PLAYLIST_TYPE, cache, text.into()))
        }
        DvrRequest::Playlist {
            from,
            duration: None,
        }
        | DvrRequest::TimeshiftAbs { from } => {
            let entries = archive.read().select(from * 1000, u64::MAX);
            if entries.is_empty() {
                return Err(no_recording);
            }
            let text = playlist::render(&entries, Kind::Event, target, 0);
            Ok(playlist_response(handle, PLAYLIST_TYPE, text.into()))
        }
        DvrRequest::TimeshiftRel { ago } => {
            let cutoff = now.saturating_sub(ago * 1000);
            let index = archive.read();
            let mut entries = index.select(0, cutoff);
            let keep = handle.segment_count.max(3);
            entries.drain(..entries.len().saturating_sub(keep));
            live_window(handle, &index, &entries)
        }
        DvrRequest::Rewind { ago } => {
            let index = archive.read();
            let entries = index.select(now.saturating_sub(ago * 1000), u64::MAX);
            live_window(handle, &index, &entries)
        }
        DvrRequest::Export {
            from,
            duration,
            mp4,
        } => {
            if duration > state.exports.max_duration_s() {
                return Err(HttpError::BadRequest(
                    "export longer than the server's max_export_duration",
                ));
            }
            let entries = archive.read().select(from * 1000, (from + duration) * 1000);
            if entries.is_empty() {
                return Err(no_recording);
            }
            let name = format!("{}-{from}-{duration}", handle.name);
            let files: Vec<(PathBuf, u64)> = entries
                .iter()
                .map(|e| (archive.dir.join(e.path()), e.size))
                .collect();
            if mp4 {
                // A range still being recorded may change: only settled ones are kept.
                let settled = (from + duration) * 1000 + SETTLED_MS <= now;
                let key = (archive.dir.clone(), from, duration);
                let finished = match state.exports.find(&key) {
                    Some(f) => {
                        metrics::counter!(crate::stats::names::EXPORTS, "source" => "kept")
                            .increment(1);
                        f
                    }
                    None => {
                        let _running = state.exports.start().ok_or(HttpError::ExportsBusy)?;
                        metrics::counter!(crate::stats::names::EXPORTS, "source" => "remux")
                            .increment(1);
                        let f = export_mp4(state, &name, &files, from).await?;
                        if settled {
                            state.exports.keep(key, f.clone());
                        }
                        f
                    }
                };
                files_response(
                    handle,
                    vec![(finished.path.clone(), finished.size)],
                    range,
                    "video/mp4",
                    &format!("{name}.mp4"),
                    Some(finished.dir),
                )
            } else {
                files_response(handle, files, range, TS_TYPE, &format!("{name}.ts"), None)
            }
        }
        DvrRequest::Status => Ok(status(handle, archive, query)),
    }
}

/// A sliding archive window (rewind, timeshift_rel) with its discontinuity sequence.
fn live_window(
    handle: &StreamHandle,
    index: &crate::dvr::ArchiveIndex,
    entries: &[Entry],
) -> Result<Response<Body>, HttpError> {
    let first = entries
        .first()
        .ok_or(HttpError::NotFound("no recording in this range"))?;
    let mut discontinuities = 0;
    let mut prev: Option<&Entry> = None;
    for e in index.iter().take_while(|e| e.start_ms <= first.start_ms) {
        if prev.is_some_and(|p| playlist::breaks(p, e)) {
            discontinuities += 1;
        }
        prev = Some(e);
    }
    let text = playlist::render(entries, Kind::Live, handle.segment_ms, discontinuities);
    Ok(playlist_response(handle, PLAYLIST_TYPE, text.into()))
}

/// `recording_status.json`: the `dvr_info` object, or with `request=ranges` the legacy array
/// `[{"stream": NAME, "ranges": [...]}]` limited to `from`..`to` (UNIX s, `to` may be `now`).
fn status(handle: &StreamHandle, archive: &Archive, query: Option<&str>) -> Response<Body> {
    let param = |k: &str| {
        query?
            .split('&')
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    let index = archive.read();
    let ranges: Vec<serde_json::Value> = index
        .ranges()
        .iter()
        .filter(|r| {
            let from_ok = param("from")
                .and_then(|f| f.parse::<u64>().ok())
                .is_none_or(|f| r.from_ms + r.duration_ms > f * 1000);
            let to_ok = param("to")
                .and_then(|t| t.parse::<u64>().ok())
                .is_none_or(|t| r.from_ms < t * 1000);
            from_ok && to_ok
        })
        .map(|r| json!({ "from": r.from_ms / 1000, "duration": r.duration_ms.div_ceil(1000) }))
        .collect();
    let body = if param("request").is_some() {
        json!([{ "stream": handle.name.as_ref(), "ranges": ranges }])
    } else {
        json!({
            "from": index.first().map_or(0, |e| e.start_ms / 1000),
            "depth": index.depth_ms() / 1000,
            "duration": index.duration_ms() / 1000,
            "bytes": index.bytes(),
            "disk_size": index.bytes(),
            "ranges": ranges,
        })
    };
    bytes_response(
        handle,
        StatusCode::OK,
        "application/json",
        "no-cache",
        body.to_string().into(),
    )
}

/// Concatenates the range's TS files and remuxes them to MP4 in a private temporary folder
/// (GStreamer, on a blocking thread), within a place of `[dvr] max_exports`.
async fn export_mp4(
    state: &super::AppState,
    name: &str,
    files: &[(PathBuf, u64)],
    created: u64,
) -> Result<Finished, HttpError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("headwater-export-{}-{n}", std::process::id()));
    let temp = TempDir(dir.clone());
    let mp4 = state.mp4.clone();
    let files: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
    let out = dir.join(format!("{name}.mp4"));
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        "dvr.export",
        stream = name,
        segments = files.len(),
        bytes = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::telemetry::adopt_request_parent(&span);
    let result = tokio::task::spawn_blocking({
        let out = out.clone();
        let span = span.clone();
        move || -> Result<u64, String> {
            let _entered = span.enter();
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let ts = dir.join("input.ts");
            let mut joined = std::fs::File::create(&ts).map_err(|e| e.to_string())?;
            for f in &files {
                let mut part =
                    std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
                std::io::copy(&mut part, &mut joined).map_err(|e| e.to_string())?;
            }
            drop(joined);
            mp4.ts_to_mp4(&ts, &out, created as i64)?;
            let _ = std::fs::remove_file(&ts);
            std::fs::metadata(&out)
                .map(|m| m.len())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    match &result {
        Ok(Ok(size)) => span.record("bytes", size),
        _ => span.record("otel.status_code", "ERROR"),
    };
    drop(span);
    match result {
        Ok(Ok(size)) if size > 0 => Ok(Finished {
            path: out,
            size,
            dir: Arc::new(temp),
        }),
        Ok(Ok(_)) => {
            error!(export = name, "MP4 export produced an empty file");
            Err(HttpError::Internal)
        }
        Ok(Err(e)) => {
            error!(export = name, error = %e, "MP4 export failed");
            Err(HttpError::Internal)
        }
        Err(e) => {
            error!(export = name, error = %e, "MP4 export task failed");
            Err(HttpError::Internal)
        }
    }
}

/// The concatenation of `files` as one download, honouring a single `Range`. `temp` is kept
/// alive until the body is done.
pub(super) fn files_response(
    handle: &StreamHandle,
    files: Vec<(PathBuf, u64)>,
    range: Option<&str>,
    content_type: &'static str,
    filename: &str,
    temp: Option<Arc<TempDir>>,
) -> Result<Response<Body>, HttpError> {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let (status, wanted, content_range) = match parse_range(range, total) {
        RangeRequest::Full => (StatusCode::OK, 0..total, None),
        RangeRequest::Partial(r) => {
            let cr = format!("bytes {}-{}/{total}", r.start, r.end - 1);
            (StatusCode::PARTIAL_CONTENT, r, Some(cr))
        }
        RangeRequest::Unsatisfiable => return Err(HttpError::RangeNotSatisfiable { len: total }),
    };
    // The part of each file that falls into the wanted range.
    let mut slices = VecDeque::new();
    let mut offset = 0;
    for (path, size) in files {
        let (start, end) = (offset.max(wanted.start), (offset + size).min(wanted.end));
        if start < end {
            slices.push_back((path, start - offset, end - start));
        }
        offset += size;
    }
    let len = wanted.end - wanted.start;
    let body = Counted::new(
        StreamBody::new(Box::pin(read_slices(slices, temp))),
        handle.counters.clone(),
    )
    .boxed();
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        );
    if let Some(cr) = content_range {
        builder = builder.header(header::CONTENT_RANGE, cr);
    }
    Ok(builder.body(body).expect("headers are valid"))
}

/// Reads `(file, offset, length)` slices in order, a chunk at a time. A file deleted by
/// retention meanwhile ends the body early (the client sees a short download).
fn read_slices(
    slices: VecDeque<(PathBuf, u64, u64)>,
    temp: Option<Arc<TempDir>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    struct State {
        slices: VecDeque<(PathBuf, u64, u64)>,
        file: Option<(tokio::fs::File, u64)>,
        _temp: Option<Arc<TempDir>>,
    }
    let state = State {
        slices,
        file: None,
        _temp: temp,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some((file, remaining)) = &mut st.file
                && *remaining > 0
            {
                let n = (*remaining).min(CHUNK);
                let mut buf = vec![0; n as usize];
                if let Err(e) = file.read_exact(&mut buf).await {
                    warn!(error = %e, "archive export cut short");
                    return None;
                }
                *remaining -= n;
                return Some((Ok(Frame::data(Bytes::from(buf))), st));
            }
            let (path, offset, len) = st.slices.pop_front()?;
            let opened = async {
                let mut f = tokio::fs::File::open(&path).await?;
                f.seek(std::io::SeekFrom::Start(offset)).await?;
                Ok::<_, std::io::Error>(f)
            };
            match opened.await {
                Ok(f) => st.file = Some((f, len)),
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "archive export cut short");
                    return None;
                }
            }
        }
    })
}
