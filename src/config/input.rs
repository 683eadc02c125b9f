//! Input URLs an operator can write in `inputs = [{ url = … }]`, parsed once at load time.

use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// A validated source address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum InputUrl {
    /// `fake://fake`: Flussonic's built-in test source (test pattern, tone, running clock).
    Fake,
    /// `udp://[IFACE@]ADDR:PORT[?program=N]`: MPEG-TS over UDP; a multicast ADDR is joined
    /// on IFACE; `program` picks one program of a multi-program transport stream.
    Udp {
        iface: Option<String>,
        addr: IpAddr,
        port: u16,
        program: Option<u16>,
    },
    /// `file://PATH`: a media file played in real time, looped forever.
    File { path: PathBuf },
    /// `srt://HOST:PORT?…` (caller, pull) or `srt://:PORT?mode=listener` (encoders push);
    /// `passphrase`, `latency`, `streamid` pass through to the SRT library.
    Srt { url: String, listener: bool },
    /// `rtmp://HOST[:PORT]/APP/STREAM`: pull from an RTMP server.
    Rtmp { url: String },
    /// `rtsp://[USER:PASS@]HOST[:PORT]/PATH[?transport=tcp|udp]`: IP cameras (TCP by default).
    Rtsp { url: String, tcp: bool },
    /// `hls://HOST/PATH.m3u8` or `http(s)://…m3u8`: re-stream another origin's HLS (edge).
    Hls { url: String },
    /// `tshttp://HOST/PATH` or `http(s)://…`: endless HTTP MPEG-TS (e.g. another `/NAME/mpegts`).
    TsHttp { url: String },
    /// `publish://`: encoders push to us (RTMP `rtmp://HOST/APP/NAME`, HTTP `POST /NAME/mpegts`).
    Publish,
    /// `dvb://CARD[?program=N]`: one program of the multiplex a configured DVB card tunes.
    Dvb { card: String, program: Option<u16> },
}

impl TryFrom<String> for InputUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        url.parse()
    }
}

impl std::str::FromStr for InputUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid input `url` {url:?}: {why}");
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("expected SCHEME://…"));
        };
        match scheme {
            "fake" if rest == "fake" => Ok(InputUrl::Fake),
            "fake" => Err(bad("the only fake source is fake://fake")),
            "udp" => parse_udp(rest).map_err(|why| bad(&why)),
            "publish" if rest.is_empty() => Ok(InputUrl::Publish),
            "dvb" => {
                let (card, query) = split_query(rest);
                if card.is_empty()
                    || !card
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
                {
                    return Err(bad("expected dvb://CARD?program=N"));
                }
                let program = match query_param(query, "program") {
                    None => None,
                    Some(p) => match p.parse::<u16>() {
                        Ok(n) if n > 0 => Some(n),
                        _ => return Err(bad(&format!("program `{p}` is not a program number"))),
                    },
                };
                Ok(InputUrl::Dvb {
                    card: card.to_owned(),
                    program,
                })
            }
            "publish" => Err(bad("publish:// takes nothing after the scheme")),
            "file" if rest.is_empty() => Err(bad("file:// needs a path")),
            "file" if rest.contains('\0') => Err(bad("path contains NUL")),
            "file" => Ok(InputUrl::File {
                path: PathBuf::from(rest),
            }),
            "srt" => {
                let (authority, query) = split_query(rest);
                let (host, port) = host_port(authority, None).map_err(|w| bad(&w))?;
                let listener = query_param(query, "mode") == Some("listener") || host.is_empty();
                if !listener && host.is_empty() {
                    return Err(bad("an SRT caller needs a host"));
                }
                let mut url = format!(
                    "srt://{host}:{port}?mode={}",
                    if listener { "listener" } else { "caller" }
                );
                for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                    if k != "mode" {
                        url.push_str(&format!("&{k}={v}"));
                    }
                }
                Ok(InputUrl::Srt { url, listener })
            }
            "rtmp" => {
                let (authority, path) = rest
                    .split_once('/')
                    .ok_or_else(|| bad("expected rtmp://HOST/APP/STREAM"))?;
                host_port(without_userinfo(authority), Some(1935)).map_err(|w| bad(&w))?;
                if path.split('/').filter(|p| !p.is_empty()).count() < 2 {
                    return Err(bad("expected rtmp://HOST/APP/STREAM"));
                }
                Ok(InputUrl::Rtmp {
                    url: url.to_owned(),
                })
            }
            "rtsp" => {
                let (main, query) = split_query(rest);
                let authority = main.split('/').next().unwrap_or("");
                host_port(without_userinfo(authority), Some(554)).map_err(|w| bad(&w))?;
                let tcp = match query_param(query, "transport") {
                    None | Some("tcp") => true,
                    Some("udp") => false,
                    Some(_) => return Err(bad("transport must be tcp or udp")),
                };
                Ok(InputUrl::Rtsp {
                    url: format!("rtsp://{main}"),
                    tcp,
                })
            }
            "hls" | "tshttp" | "http" | "https" => {
                let authority = rest.split(['/', '?']).next().unwrap_or("");
                host_port(without_userinfo(authority), Some(80)).map_err(|w| bad(&w))?;
                let http_url = match scheme {
                    "hls" | "tshttp" => format!("http://{rest}"),
                    _ => url.to_owned(),
                };
                let playlist = split_query(&http_url).0.ends_with(".m3u8");
                if scheme == "hls" || (scheme != "tshttp" && playlist) {
                    Ok(InputUrl::Hls { url: http_url })
                } else {
                    Ok(InputUrl::TsHttp { url: http_url })
                }
            }
            other => Err(bad(&format!(
                "unsupported scheme `{other}` (supported: fake, publish, dvb, udp, file, srt, rtmp, rtsp, hls, tshttp, http, https)"
            ))),
        }
    }
}

fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn without_userinfo(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// `HOST:PORT` (IPv6 in brackets); the port may be omitted when there is a default.
fn host_port(authority: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{p}` is not a port (1-65535)")),
            Ok(p) => p,
        },
        (None, Some(d)) => d,
        (None, None) => return Err("a port is required".into()),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok = bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    if !ok {
        return Err(format!("`{host}` is not a host name or address"));
    }
    if host.is_empty() && default_port.is_some() {
        return Err("a host is required".into());
    }
    Ok((host.to_owned(), port))
}

/// The URL with any password (`user:pass@`, `passphrase=`) replaced by `***`, for logs.
pub fn mask_credentials(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            out = format!("{scheme}://{user}:***@{}", &rest[at + 1..]);
        }
    }
    for key in ["passphrase=", "password=", "key="] {
        mask_param(&mut out, key);
    }
    out
}

/// Replaces the value of every `key=…` in `url` (up to the next `&`) by `***`: a repeated
/// parameter must not leak either.
pub(super) fn mask_param(url: &mut String, key: &str) {
    let mut from = 0;
    while let Some(i) = url[from..].find(key) {
        let start = from + i + key.len();
        let end = url[start..].find('&').map_or(url.len(), |e| start + e);
        url.replace_range(start..end, "***");
        from = start + 3;
    }
}

fn parse_udp(rest: &str) -> Result<InputUrl, String> {
    let (rest, query) = split_query(rest);
    let program = match query_param(query, "program") {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("program `{p}` is not a program number")),
        },
    };
    let (iface, hostport) = match rest.split_once('@') {
        Some((iface, hp)) if valid_iface(iface) => (Some(iface.to_owned()), hp),
        Some(_) => return Err("bad interface before `@`".into()),
        None => (None, rest),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or("expected ADDR:PORT after udp://")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addr: IpAddr = host
        .parse()
        .map_err(|_| format!("`{host}` is not an IP address"))?;
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => return Err(format!("`{port}` is not a port (1-65535)")),
        Ok(p) => p,
    };
    Ok(InputUrl::Udp {
        iface,
        addr,
        port,
        program,
    })
}

fn valid_iface(iface: &str) -> bool {
    !iface.is_empty()
        && iface.len() <= 64
        && iface
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
}

impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputUrl::Fake => f.write_str("fake://fake"),
            InputUrl::Udp {
                iface,
                addr,
                port,
                program,
            } => {
                f.write_str("udp://")?;
                if let Some(i) = iface {
                    write!(f, "{i}@")?;
                }
                match addr {
                    IpAddr::V4(a) => write!(f, "{a}:{port}")?,
                    IpAddr::V6(a) => write!(f, "[{a}]:{port}")?,
                }
                match program {
                    Some(p) => write!(f, "?program={p}"),
                    None => Ok(()),
                }
            }
            InputUrl::File { path } => write!(f, "file://{}", path.display()),
            InputUrl::Publish => f.write_str("publish://"),
            InputUrl::Dvb { card, program } => match program {
                Some(p) => write!(f, "dvb://{card}?program={p}"),
                None => write!(f, "dvb://{card}"),
            },
            // Display is what logs show: never a password.
            InputUrl::Srt { url, .. }
            | InputUrl::Rtmp { url }
            | InputUrl::Rtsp { url, .. }
            | InputUrl::Hls { url }
            | InputUrl::TsHttp { url } => f.write_str(&mask_credentials(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InputUrl;

    #[test]
    fn good_urls() {
        assert_eq!("fake://fake".parse(), Ok(InputUrl::Fake));
        let u: InputUrl = "udp://eth1@239.0.0.1:1234".parse().unwrap();
        assert_eq!(u.to_string(), "udp://eth1@239.0.0.1:1234");
        let u: InputUrl = "udp://[::1]:5000".parse().unwrap();
        assert_eq!(u.to_string(), "udp://[::1]:5000");
        let u: InputUrl = "file:///srv/media/a.ts".parse().unwrap();
        assert_eq!(u.to_string(), "file:///srv/media/a.ts");
    }

    #[test]
    fn network_pulls_and_pushes() {
        let srt: InputUrl = "srt://:9000?mode=listener&passphrase=secret123456"
            .parse()
            .unwrap();
        assert_eq!(
            srt,
            InputUrl::Srt {
                url: "srt://:9000?mode=listener&passphrase=secret123456".into(),
                listener: true
            }
        );
        assert_eq!(srt.to_string(), "srt://:9000?mode=listener&passphrase=***");
        let caller: InputUrl = "srt://10.0.0.1:9000?latency=200".parse().unwrap();
        assert!(matches!(
            caller,
            InputUrl::Srt {
                listener: false,
                ..
            }
        ));
        let rtsp: InputUrl = "rtsp://admin:hunter2@cam.local/stream1?transport=udp"
            .parse()
            .unwrap();
        assert_eq!(
            rtsp,
            InputUrl::Rtsp {
                url: "rtsp://admin:hunter2@cam.local/stream1".into(),
                tcp: false
            }
        );
        assert_eq!(rtsp.to_string(), "rtsp://admin:***@cam.local/stream1");
        assert!(matches!(
            "hls://origin:8080/ch1/index.m3u8".parse(),
            Ok(InputUrl::Hls { .. })
        ));
        assert_eq!(
            "http://origin/ch1/index.m3u8".parse::<InputUrl>(),
            Ok(InputUrl::Hls {
                url: "http://origin/ch1/index.m3u8".into()
            })
        );
        assert_eq!(
            "tshttp://origin:8080/ch1/mpegts".parse::<InputUrl>(),
            Ok(InputUrl::TsHttp {
                url: "http://origin:8080/ch1/mpegts".into()
            })
        );
        assert!(matches!(
            "rtmp://127.0.0.1:1935/live/test".parse(),
            Ok(InputUrl::Rtmp { .. })
        ));
        let udp: InputUrl = "udp://239.1.1.1:1234?program=2".parse().unwrap();
        assert_eq!(udp.to_string(), "udp://239.1.1.1:1234?program=2");
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "fake://other",
            "udp://239.0.0.1",
            "udp://239.0.0.1:0",
            "udp://239.0.0.1:70000",
            "udp://notanip:1234",
            "udp://@1.2.3.4:5",
            "file://",
            "rtmp://x/y",
            "rtmp://host:99999/live/a",
            "239.0.0.1:1234",
            "srt://host",
            "rtsp://cam/a?transport=quic",
            "hls://",
            "udp://1.2.3.4:5?program=x",
            "gopher://x/y",
        ] {
            assert!(bad.parse::<InputUrl>().is_err(), "{bad} should be refused");
        }
    }
}
