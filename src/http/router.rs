//! Maps a request path to a typed [`Route`] in Flussonic's URL layout. Pure string work: a
//! path that could reach outside the known shapes (`..`, odd bytes, empty parts) is refused
//! here, before any handler runs, and nothing ever touches the filesystem.

use crate::config::valid_stream_name;
use crate::media::SegmentName;
use crate::packaging::{Track, Tracks};

/// A playback resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/NAME/index.m3u8` (alias `playlist.m3u8`).
    Master { stream: String },
    /// `/NAME/mono.m3u8` or `/NAME/tracks-SPEC/mono.m3u8`.
    Media {
        stream: String,
        tracks: Option<Tracks>,
    },
    /// `/NAME/[tracks-SPEC/]YYYY/MM/DD/HH/MM/SS-DDDDD.ts`; `name` is the part from YYYY on.
    Segment {
        stream: String,
        tracks: Option<Tracks>,
        name: SegmentName,
    },
    /// `/NAME/mpegts`: endless HTTP MPEG-TS.
    MpegTs { stream: String },
    /// `/NAME/index.fmp4.m3u8`: HLS master over fMP4.
    Fmp4Master { stream: String },
    /// `/NAME/tracks-v2/index.fmp4.m3u8` (video rendition) or `tracks-a1/…` (audio).
    Fmp4Playlist { stream: String, track: Track },
    /// `/NAME/tracks-TRACK/init.mp4` (version 0 while listed, else the current) or
    /// `init-N.mp4` (version N): a track's fMP4 init segment.
    Init {
        stream: String,
        track: Track,
        version: Option<u32>,
    },
    /// `/NAME/tracks-TRACK/N.m4s` (DASH `$Number$`) or `…/YYYY/MM/DD/HH/MM/SS-DDDDD.m4s` (HLS).
    Fragment {
        stream: String,
        track: Track,
        key: FragmentKey,
    },
    /// `/NAME/index.ll.m3u8`: LL-HLS master.
    LlMaster { stream: String },
    /// `/NAME/tracks-v1a1/index.ll.m3u8` (video and audio), `tracks-v1/…` or `tracks-a1/…`:
    /// a track's LL-HLS playlist.
    LlPlaylist { stream: String, track: Tracks },
    /// `/NAME/tracks-T/ll-RUN-N.m4s` (part), `…/ll-RUN-sMSN.m4s` (segment), `…/ll-RUN-iV.mp4`
    /// (init segment).
    LlResource {
        stream: String,
        track: Tracks,
        name: crate::packaging::llhls::LlName,
    },
    /// `/NAME/index.mpd` or `/NAME/Manifest.mpd`: live DASH.
    Dash { stream: String },
    /// `/time`: the server clock (ISO 8601), DASH `UTCTiming`.
    Time,
    /// Archive playback and export under `/NAME/…` or, for one rendition of a ladder,
    /// `/NAME/tracks-v2a1/…`.
    Dvr {
        stream: String,
        tracks: Option<Tracks>,
        request: DvrRequest,
    },
    /// Anything under `/flussonic/api/` or `/streamer/api/` (always authenticated).
    Api(ApiRoute),
}

/// How a fragment URL names its fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentKey {
    /// Media sequence number.
    Number(u64),
    /// `YYYY/MM/DD/HH/MM/SS-DDDDD.m4s`.
    Name(SegmentName),
}

/// Earliest and latest archive times a URL may name (2000-01-01 .. 2100-01-01, UNIX s).
const MIN_TIME: u64 = 946_684_800;
const MAX_TIME: u64 = 4_102_444_800;
/// Longest range an archive playlist may cover (7 days) and an export (24 hours: the
/// server's `max_export_duration`, 6 h by default, is checked by the handler).
const MAX_PLAYLIST_S: u64 = 7 * 86_400;
const MAX_EXPORT_S: u64 = 24 * 3600;
/// Longest look-back of rewind/timeshift_rel (30 days).
const MAX_AGO_S: u64 = 30 * 86_400;

/// Flussonic's archive URLs; all times are UNIX seconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DvrRequest {
    /// `archive-FROM-DURATION.m3u8` (alias `index-…`): VOD; `duration: None` is `-now` (EVENT).
    Playlist { from: u64, duration: Option<u64> },
    /// `timeshift_abs-FROM.m3u8`: play from an absolute time onwards (EVENT).
    TimeshiftAbs { from: u64 },
    /// `timeshift_rel-AGO.m3u8`: live delayed by AGO seconds (sliding window).
    TimeshiftRel { ago: u64 },
    /// `rewind-AGO.m3u8`: live with AGO seconds to rewind into (sliding window).
    Rewind { ago: u64 },
    /// `archive-FROM-DURATION.ts` / `.mp4`: a download.
    Export { from: u64, duration: u64, mp4: bool },
    /// `recording_status.json`.
    Status,
}

/// The management API resources served so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRoute {
    /// `/flussonic/api/metrics`: Prometheus exposition.
    Metrics,
    /// `…/api/v3/monitoring/liveness`
    Liveness,
    /// `…/api/v3/monitoring/readiness`
    Readiness,
    /// `…/api/v3/streams`: every stream with its stats (JSON).
    Streams,
    /// `…/api/v3/dvb_cards`: DVB cards with their signal (JSON).
    DvbCards,
    /// `…/api/v3/streams/NAME`: one stream with its stats (JSON).
    Stream(String),
    /// `…/api/v3/streams/NAME/dvr/ranges`
    DvrRanges(String),
    /// `…/api/v3/streams/NAME/restart` (POST): restart the stream's source.
    StreamRestart(String),
    /// `…/api/v3/config/validate` (POST): validate a definition, change nothing.
    ConfigValidate,
    /// `…/api/v3/sessions`: play sessions (`?name=STREAM` filters).
    Sessions,
    /// `…/api/v3/sessions/ID` (GET, DELETE).
    Session(String),
    /// Any other API path: 404 once authenticated.
    Unknown,
}

impl Route {
    /// The stream the request is about, if any.
    pub fn stream(&self) -> Option<&str> {
        match self {
            Route::Master { stream }
            | Route::Media { stream, .. }
            | Route::Segment { stream, .. }
            | Route::MpegTs { stream }
            | Route::Fmp4Master { stream }
            | Route::Fmp4Playlist { stream, .. }
            | Route::Init { stream, .. }
            | Route::Fragment { stream, .. }
            | Route::LlMaster { stream }
            | Route::LlPlaylist { stream, .. }
            | Route::LlResource { stream, .. }
            | Route::Dash { stream }
            | Route::Dvr { stream, .. } => Some(stream),
            Route::Api(
                ApiRoute::Stream(s) | ApiRoute::DvrRanges(s) | ApiRoute::StreamRestart(s),
            ) => Some(s),
            Route::Time | Route::Api(_) => None,
        }
    }

    /// The low-cardinality `route` label: a template, never a raw path or stream name.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Master { .. } => "/:name/index.m3u8",
            Route::Media { tracks: None, .. } => "/:name/mono.m3u8",
            Route::Media { .. } => "/:name/tracks/mono.m3u8",
            Route::Segment { .. } => "segment",
            Route::MpegTs { .. } => "/:name/mpegts",
            Route::Fmp4Master { .. } => "/:name/index.fmp4.m3u8",
            Route::Fmp4Playlist { .. } => "/:name/tracks/index.fmp4.m3u8",
            Route::Init { .. } => "/:name/tracks/init.mp4",
            Route::Fragment { .. } => "fragment",
            Route::LlMaster { .. } => "/:name/index.ll.m3u8",
            Route::LlPlaylist { .. } => "/:name/tracks/index.ll.m3u8",
            Route::LlResource { .. } => "part",
            Route::Dash { .. } => "/:name/index.mpd",
            Route::Time => "/time",
            Route::Dvr { request, .. } => match request {
                DvrRequest::Playlist { .. } => "/:name/archive.m3u8",
                DvrRequest::TimeshiftAbs { .. } | DvrRequest::TimeshiftRel { .. } => {
                    "/:name/timeshift.m3u8"
                }
                DvrRequest::Rewind { .. } => "/:name/rewind.m3u8",
                DvrRequest::Export { mp4: false, .. } => "/:name/archive.ts",
                DvrRequest::Export { mp4: true, .. } => "/:name/archive.mp4",
                DvrRequest::Status => "/:name/recording_status.json",
            },
            Route::Api(ApiRoute::DvrRanges(_)) => "/flussonic/api/v3/streams/:name/dvr/ranges",
            Route::Api(ApiRoute::Streams) => "/flussonic/api/v3/streams",
            Route::Api(ApiRoute::DvbCards) => "/flussonic/api/v3/dvb_cards",
            Route::Api(ApiRoute::Stream(_)) => "/flussonic/api/v3/streams/:name",
            Route::Api(ApiRoute::StreamRestart(_)) => "/flussonic/api/v3/streams/:name/restart",
            Route::Api(ApiRoute::ConfigValidate) => "/flussonic/api/v3/config/validate",
            Route::Api(ApiRoute::Metrics) => "/flussonic/api/metrics",
            Route::Api(ApiRoute::Sessions) => "/flussonic/api/v3/sessions",
            Route::Api(ApiRoute::Session(_)) => "/flussonic/api/v3/sessions/:id",
            Route::Api(ApiRoute::Liveness | ApiRoute::Readiness) => "health",
            Route::Api(ApiRoute::Unknown) => "api",
        }
    }
}

/// Why a path has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("malformed path: {0}")]
    Malformed(&'static str),
    #[error("no such resource")]
    NotFound,
}

const MAX_PATH: usize = 1024;

/// Parses a request path (without the query).
pub fn route(path: &str) -> Result<Route, RouteError> {
    if path.len() > MAX_PATH {
        return Err(RouteError::Malformed("path too long"));
    }
    let rest = path
        .strip_prefix('/')
        .ok_or(RouteError::Malformed("path must start with /"))?;
    if rest.is_empty() {
        return Err(RouteError::NotFound);
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
    {
        return Err(RouteError::Malformed("unexpected character"));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(RouteError::Malformed("empty or dot path segment"));
    }
    if let Some(api) = rest
        .strip_prefix("flussonic/api/")
        .or_else(|| rest.strip_prefix("streamer/api/"))
    {
        let dvr_ranges = api
            .strip_prefix("v3/streams/")
            .and_then(|r| r.strip_suffix("/dvr/ranges"));
        let restart = api
            .strip_prefix("v3/streams/")
            .and_then(|r| r.strip_suffix("/restart"))
            .filter(|name| !name.contains('/'));
        return Ok(Route::Api(match api {
            "metrics" => ApiRoute::Metrics,
            "v3/monitoring/liveness" => ApiRoute::Liveness,
            "v3/monitoring/readiness" => ApiRoute::Readiness,
            "v3/streams" => ApiRoute::Streams,
            "v3/dvb_cards" => ApiRoute::DvbCards,
            "v3/config/validate" => ApiRoute::ConfigValidate,
            "v3/sessions" => ApiRoute::Sessions,
            _ if api.starts_with("v3/sessions/") => {
                let id = &api["v3/sessions/".len()..];
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(RouteError::Malformed("bad session id"));
                }
                ApiRoute::Session(id.to_owned())
            }
            _ => match (dvr_ranges, api.strip_prefix("v3/streams/")) {
                (None, Some(_)) if restart.is_some() => {
                    ApiRoute::StreamRestart(stream_name(&[restart.unwrap_or_default()])?)
                }
                (Some(name), _) => {
                    ApiRoute::DvrRanges(stream_name(&name.split('/').collect::<Vec<_>>())?)
                }
                (None, Some(name)) if !name.contains('/') => {
                    ApiRoute::Stream(stream_name(&[name])?)
                }
                _ => ApiRoute::Unknown,
            },
        }));
    }
    if rest == "time" {
        return Ok(Route::Time);
    }
    let (last, before) = parts.split_last().ok_or(RouteError::NotFound)?;
    if let Some(request) = dvr_request(last)? {
        let (tracks, name) = split_tracks(before)?;
        return Ok(Route::Dvr {
            stream: stream_name(name)?,
            tracks,
            request,
        });
    }
    match *last {
        "index.m3u8" | "playlist.m3u8" => Ok(Route::Master {
            stream: stream_name(before)?,
        }),
        "mpegts" => Ok(Route::MpegTs {
            stream: stream_name(before)?,
        }),
        "index.mpd" | "Manifest.mpd" => Ok(Route::Dash {
            stream: stream_name(before)?,
        }),
        "index.fmp4.m3u8" => match split_tracks(before)? {
            (None, name) => Ok(Route::Fmp4Master {
                stream: stream_name(name)?,
            }),
            (Some(track), name) => Ok(Route::Fmp4Playlist {
                stream: stream_name(name)?,
                track: single_track(track)?,
            }),
        },
        "index.ll.m3u8" => match split_tracks(before)? {
            (None, name) => Ok(Route::LlMaster {
                stream: stream_name(name)?,
            }),
            (Some(track), name) => Ok(Route::LlPlaylist {
                stream: stream_name(name)?,
                track: ll_track(track)?,
            }),
        },
        file if file.starts_with("ll-") => {
            let name = crate::packaging::llhls::parse_name(file).ok_or(RouteError::Malformed(
                "not an LL-HLS part, segment or init name",
            ))?;
            match split_tracks(before)? {
                (Some(track), stream) => Ok(Route::LlResource {
                    stream: stream_name(stream)?,
                    track: ll_track(track)?,
                    name,
                }),
                (None, _) => Err(RouteError::Malformed("an LL-HLS part needs tracks-TRACK/")),
            }
        }
        file if file == "init.mp4" || file.starts_with("init-") && file.ends_with(".mp4") => {
            let version = match file
                .strip_prefix("init-")
                .and_then(|f| f.strip_suffix(".mp4"))
            {
                None => None,
                Some(v) => Some(digits(v).and_then(|v| u32::try_from(v).ok()).ok_or(
                    RouteError::Malformed("init segment version must be a number"),
                )?),
            };
            match split_tracks(before)? {
                (Some(track), name) => Ok(Route::Init {
                    stream: stream_name(name)?,
                    track: single_track(track)?,
                    version,
                }),
                (None, _) => Err(RouteError::NotFound),
            }
        }
        file if file.ends_with(".m4s") => {
            let number = digits(&file[..file.len() - 4]);
            let (key, prefix) = match number {
                Some(n) => (FragmentKey::Number(n), before),
                None => {
                    let name = (before.len() >= 5)
                        .then(|| SegmentName::from_parts(&parts[parts.len() - 6..], ".m4s"))
                        .flatten()
                        .ok_or(RouteError::Malformed(
                            "fragment path is not N.m4s or YYYY/MM/DD/HH/MM/SS-DDDDD.m4s",
                        ))?;
                    (FragmentKey::Name(name), &parts[..parts.len() - 6])
                }
            };
            match split_tracks(prefix)? {
                (Some(track), name) => Ok(Route::Fragment {
                    stream: stream_name(name)?,
                    track: single_track(track)?,
                    key,
                }),
                (None, _) => Err(RouteError::Malformed("a fragment needs tracks-TRACK/")),
            }
        }
        "mono.m3u8" => {
            let (tracks, name) = split_tracks(before)?;
            Ok(Route::Media {
                stream: stream_name(name)?,
                tracks,
            })
        }
        file if file.ends_with(".ts") => {
            let segment = (before.len() >= 5)
                .then(|| SegmentName::from_parts(&parts[parts.len() - 6..], ".ts"))
                .flatten()
                .ok_or(RouteError::Malformed(
                    "segment path is not YYYY/MM/DD/HH/MM/SS-DDDDD.ts",
                ))?;
            let (tracks, name) = split_tracks(&parts[..parts.len() - 6])?;
            Ok(Route::Segment {
                stream: stream_name(name)?,
                tracks,
                name: segment,
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

/// Recognises the archive file names; `Ok(None)` when `file` is not one of them.
fn dvr_request(file: &str) -> Result<Option<DvrRequest>, RouteError> {
    if file == "recording_status.json" {
        return Ok(Some(DvrRequest::Status));
    }
    let (stem, ext) = match file.rsplit_once('.') {
        Some((stem, ext @ ("m3u8" | "ts" | "mp4"))) => (stem, ext),
        _ => return Ok(None),
    };
    let Some((kind, args)) = stem.split_once('-') else {
        return Ok(None);
    };
    let request = match (kind, ext) {
        ("archive" | "index", _) => {
            let (from, duration) = args
                .split_once('-')
                .ok_or(RouteError::Malformed("archive range must be FROM-DURATION"))?;
            let from = time(from)?;
            let duration = match duration {
                "now" if ext == "m3u8" => None,
                "now" => return Err(RouteError::Malformed("an export needs a fixed duration")),
                d => Some(seconds(
                    d,
                    if ext == "m3u8" {
                        MAX_PLAYLIST_S
                    } else {
                        MAX_EXPORT_S
                    },
                )?),
            };
            match (ext, duration) {
                ("m3u8", duration) => DvrRequest::Playlist { from, duration },
                (_, Some(duration)) if kind == "archive" => DvrRequest::Export {
                    from,
                    duration,
                    mp4: ext == "mp4",
                },
                _ => return Ok(None),
            }
        }
        ("timeshift_abs", "m3u8") => DvrRequest::TimeshiftAbs { from: time(args)? },
        ("timeshift_rel", "m3u8") => DvrRequest::TimeshiftRel {
            ago: seconds(args, MAX_AGO_S)?,
        },
        ("rewind", "m3u8") => DvrRequest::Rewind {
            ago: seconds(args, MAX_AGO_S)?,
        },
        _ => return Ok(None),
    };
    Ok(Some(request))
}

/// A UNIX time in seconds within the archive's plausible span.
fn time(s: &str) -> Result<u64, RouteError> {
    let t = digits(s).ok_or(RouteError::Malformed("time must be UNIX seconds"))?;
    if (MIN_TIME..MAX_TIME).contains(&t) {
        Ok(t)
    } else {
        Err(RouteError::Malformed("time out of range"))
    }
}

/// A positive number of seconds up to `max`.
fn seconds(s: &str, max: u64) -> Result<u64, RouteError> {
    match digits(s) {
        None => Err(RouteError::Malformed("duration must be whole seconds")),
        Some(0) => Err(RouteError::Malformed("duration must be positive")),
        Some(d) if d > max => Err(RouteError::Malformed("duration too long")),
        Some(d) => Ok(d),
    }
}

fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `tracks-v1a1` as the last part of `parts` is split off and parsed.
fn split_tracks<'a>(parts: &'a [&'a str]) -> Result<(Option<Tracks>, &'a [&'a str]), RouteError> {
    match parts.split_last() {
        Some((last, name)) if last.starts_with("tracks-") => {
            let tracks = Tracks::parse(&last["tracks-".len()..])
                .ok_or(RouteError::Malformed("bad track selector"))?;
            Ok((Some(tracks), name))
        }
        _ => Ok((None, parts)),
    }
}

/// One fMP4 track: `vN` or `aN`.
fn single_track(tracks: Tracks) -> Result<Track, RouteError> {
    tracks
        .single()
        .ok_or(RouteError::Malformed("an fMP4 track is one of vN or aN"))
}

/// An LL-HLS track: `vN`, `aN`, or `vNa1` (a rendition's video with the audio).
fn ll_track(tracks: Tracks) -> Result<Tracks, RouteError> {
    if tracks.single().is_some() || tracks.rendition().is_some() {
        Ok(tracks)
    } else {
        Err(RouteError::Malformed(
            "an LL-HLS track is one of vN, aN or vNa1",
        ))
    }
}

fn stream_name(parts: &[&str]) -> Result<String, RouteError> {
    if parts.is_empty() {
        return Err(RouteError::NotFound);
    }
    if parts.iter().all(|p| valid_stream_name(p)) {
        Ok(parts.join("/"))
    } else {
        Err(RouteError::Malformed("bad stream name"))
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
