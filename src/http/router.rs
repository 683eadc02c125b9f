//! Maps a request path to a typed [`Route`] in Flussonic's URL layout. Pure string work: a
//! path that could reach outside the known shapes (`..`, odd bytes, empty parts) is refused
//! here, before any handler runs, and nothing ever touches the filesystem.

use crate::config::valid_stream_name;

/// A playback resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/NAME/index.m3u8` (alias `playlist.m3u8`).
    Master { stream: String },
    /// `/NAME/mono.m3u8` or `/NAME/tracks-SPEC/mono.m3u8`.
    Media {
        stream: String,
        tracks: Option<String>,
    },
    /// `/NAME/[tracks-SPEC/]YYYY/MM/DD/HH/MM/SS-DDDDD.ts`; `path` is the part from YYYY on.
    Segment {
        stream: String,
        tracks: Option<String>,
        path: String,
    },
    /// `/NAME/mpegts`: endless HTTP MPEG-TS.
    MpegTs { stream: String },
    /// Anything under `/flussonic/api/` or `/streamer/api/` (always authenticated).
    Api(ApiRoute),
}

/// The management API resources served so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRoute {
    /// `/flussonic/api/metrics`: Prometheus exposition.
    Metrics,
    /// `…/api/v3/monitoring/liveness`
    Liveness,
    /// `…/api/v3/monitoring/readiness`
    Readiness,
    /// Any other API path: 404 once authenticated.
    Unknown,
}

impl Route {
    /// The low-cardinality `route` label: a template, never a raw path or stream name.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Master { .. } => "/:name/index.m3u8",
            Route::Media { tracks: None, .. } => "/:name/mono.m3u8",
            Route::Media { .. } => "/:name/tracks/mono.m3u8",
            Route::Segment { .. } => "segment",
            Route::MpegTs { .. } => "/:name/mpegts",
            Route::Api(ApiRoute::Metrics) => "/flussonic/api/metrics",
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
        return Ok(Route::Api(match api {
            "metrics" => ApiRoute::Metrics,
            "v3/monitoring/liveness" => ApiRoute::Liveness,
            "v3/monitoring/readiness" => ApiRoute::Readiness,
            _ => ApiRoute::Unknown,
        }));
    }
    let (last, before) = parts.split_last().ok_or(RouteError::NotFound)?;
    match *last {
        "index.m3u8" | "playlist.m3u8" => Ok(Route::Master {
            stream: stream_name(before)?,
        }),
        "mpegts" => Ok(Route::MpegTs {
            stream: stream_name(before)?,
        }),
        "mono.m3u8" => {
            let (tracks, name) = split_tracks(before)?;
            Ok(Route::Media {
                stream: stream_name(name)?,
                tracks,
            })
        }
        file if file.ends_with(".ts") => {
            if before.len() < 5 || !segment_path(&parts[parts.len() - 6..]) {
                return Err(RouteError::Malformed(
                    "segment path is not YYYY/MM/DD/HH/MM/SS-DDDDD.ts",
                ));
            }
            let (tracks, name) = split_tracks(&parts[..parts.len() - 6])?;
            Ok(Route::Segment {
                stream: stream_name(name)?,
                tracks,
                path: parts[parts.len() - 6..].join("/"),
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

/// `tracks-v1a1` as the last part of `parts` is split off and checked.
fn split_tracks<'a>(parts: &'a [&'a str]) -> Result<(Option<String>, &'a [&'a str]), RouteError> {
    match parts.split_last() {
        Some((last, name)) if last.starts_with("tracks-") => {
            let spec = &last["tracks-".len()..];
            if valid_tracks(spec) {
                Ok((Some(spec.to_owned()), name))
            } else {
                Err(RouteError::Malformed("bad track selector"))
            }
        }
        _ => Ok((None, parts)),
    }
}

/// `v1`, `a1`, `v1a1`, `v2a1a2`…: letters `v`/`a`/`t` each followed by a track number.
fn valid_tracks(spec: &str) -> bool {
    let b = spec.as_bytes();
    let mut i = 0;
    if b.is_empty() || b.len() > 32 {
        return false;
    }
    while i < b.len() {
        if !matches!(b[i], b'v' | b'a' | b't') {
            return false;
        }
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 2 {
            return false;
        }
        i += digits;
    }
    true
}

/// `YYYY MM DD HH MM SS-DDDDD.ts`, all digits and in range.
fn segment_path(p: &[&str]) -> bool {
    let num = |s: &str, len: usize, max: u32| {
        s.len() == len
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|v| v <= max)
    };
    let Some((sec, dur)) = p[5].strip_suffix(".ts").and_then(|f| f.split_once('-')) else {
        return false;
    };
    num(p[0], 4, 9999)
        && num(p[1], 2, 12)
        && num(p[2], 2, 31)
        && num(p[3], 2, 23)
        && num(p[4], 2, 59)
        && num(sec, 2, 60)
        && num(dur, 5, 99_999)
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
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn good_paths() {
        assert_eq!(
            route("/demo/index.m3u8"),
            Ok(Route::Master { stream: s("demo") })
        );
        assert_eq!(
            route("/demo/playlist.m3u8"),
            Ok(Route::Master { stream: s("demo") })
        );
        assert_eq!(
            route("/demo/mono.m3u8"),
            Ok(Route::Media {
                stream: s("demo"),
                tracks: None
            })
        );
        assert_eq!(
            route("/demo/tracks-v1a1/mono.m3u8"),
            Ok(Route::Media {
                stream: s("demo"),
                tracks: Some(s("v1a1"))
            })
        );
        assert_eq!(
            route("/demo/mpegts"),
            Ok(Route::MpegTs { stream: s("demo") })
        );
        assert_eq!(
            route("/demo/2026/11/22/01/37/18-02000.ts"),
            Ok(Route::Segment {
                stream: s("demo"),
                tracks: None,
                path: s("2026/11/22/01/37/18-02000.ts")
            })
        );
        assert_eq!(
            route("/a/b/tracks-v1a1/2026/11/22/01/37/18-02000.ts"),
            Ok(Route::Segment {
                stream: s("a/b"),
                tracks: Some(s("v1a1")),
                path: s("2026/11/22/01/37/18-02000.ts")
            })
        );
    }

    #[test]
    fn malformed_paths_are_400() {
        for bad in [
            "/../etc/passwd",
            "/demo/../index.m3u8",
            "/demo/./index.m3u8",
            "//index.m3u8",
            "/demo//mono.m3u8",
            "/demo/index.m3u8%00",
            "/de mo/index.m3u8",
            "/dé/index.m3u8",
            "/demo/tracks-x9/mono.m3u8",
            "/demo/tracks-/mono.m3u8",
            "/demo/2026/11/22/01/37/18-2000.ts",
            "/demo/2026/13/22/01/37/18-02000.ts",
            "/demo/2026/11/22/01/37/xx-02000.ts",
            "/demo/11/22/01/37/18-02000.ts",
            "/de.mo/index.m3u8",
            "demo/index.m3u8",
        ] {
            assert!(
                matches!(route(bad), Err(RouteError::Malformed(_))),
                "{bad}: {:?}",
                route(bad)
            );
        }
        assert!(matches!(
            route(&format!("/{}", "a".repeat(2000))),
            Err(RouteError::Malformed(_))
        ));
    }

    #[test]
    fn api_paths_and_labels() {
        assert_eq!(
            route("/flussonic/api/metrics"),
            Ok(Route::Api(ApiRoute::Metrics))
        );
        assert_eq!(
            route("/streamer/api/v3/monitoring/readiness"),
            Ok(Route::Api(ApiRoute::Readiness))
        );
        assert_eq!(
            route("/flussonic/api/v3/streams"),
            Ok(Route::Api(ApiRoute::Unknown))
        );
        assert!(matches!(
            route("/flussonic/api/../x"),
            Err(RouteError::Malformed(_))
        ));
        // Labels never carry the stream name or the segment path.
        let labels: Vec<&str> = [
            "/secret-name/index.m3u8",
            "/secret-name/tracks-v1a1/mono.m3u8",
            "/secret-name/2026/11/22/01/37/18-02000.ts",
            "/flussonic/api/v3/monitoring/liveness",
        ]
        .iter()
        .map(|p| route(p).unwrap().label())
        .collect();
        assert_eq!(
            labels,
            [
                "/:name/index.m3u8",
                "/:name/tracks/mono.m3u8",
                "segment",
                "health"
            ]
        );
        assert!(labels.iter().all(|l| !l.contains("secret")));
    }

    #[test]
    fn unknown_resources_are_404() {
        for missing in [
            "/",
            "/demo",
            "/demo/index.mpd",
            "/demo/other.m3u8",
            "/index.m3u8",
            "/mpegts",
        ] {
            assert_eq!(route(missing), Err(RouteError::NotFound), "{missing}");
        }
    }
}
