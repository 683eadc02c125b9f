//! A stream's `pushes = [{ url = … }]`: destinations the stream is sent on to (Flussonic's
//! `push` list), parsed and validated once at load time like every other key.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;

/// One destination of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub url: PushUrl,
    /// Seconds to wait before reconnecting after the destination refused or dropped us
    /// (the first retries come sooner: 1 s, 2 s, … up to this).
    #[serde(default)]
    pub retry_timeout: RetryTimeout,
    /// Which rendition of a transcoder ladder to send, 1-based (default 1, the best).
    #[serde(default)]
    pub rendition: Rendition,
}

/// Seconds between reconnection attempts at most, 1..=300 (default 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "super::stream::Number")]
pub struct RetryTimeout(u32);

impl RetryTimeout {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.0))
    }
}

impl Default for RetryTimeout {
    fn default() -> Self {
        RetryTimeout(5)
    }
}

impl TryFrom<super::stream::Number> for RetryTimeout {
    type Error = String;
    fn try_from(v: super::stream::Number) -> Result<Self, String> {
        match u32::try_from(v.get()) {
            Ok(s @ 1..=300) => Ok(RetryTimeout(s)),
            _ => Err(format!(
                "`retry_timeout` must be 1..=300 seconds, got {}",
                v.get()
            )),
        }
    }
}

/// A rendition number, 1-based; checked against the ladder by the stream's loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "super::stream::Number")]
pub struct Rendition(u32);

impl Rendition {
    /// 0-based index.
    pub fn index(self) -> usize {
        self.0 as usize - 1
    }
    pub fn number(self) -> u32 {
        self.0
    }
}

impl Default for Rendition {
    fn default() -> Self {
        Rendition(1)
    }
}

impl TryFrom<super::stream::Number> for Rendition {
    type Error = String;
    fn try_from(v: super::stream::Number) -> Result<Self, String> {
        match u32::try_from(v.get()) {
            Ok(n @ 1..=16) => Ok(Rendition(n)),
            _ => Err(format!(
                "`rendition` is 1-based (1 is the best), got {}",
                v.get()
            )),
        }
    }
}

/// A validated destination address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PushUrl {
    /// `udp://ADDR:PORT[?ttl=N&iface=NAME]`: MPEG-TS, 7 packets per datagram, paced by PCR.
    /// A multicast ADDR leaves through `iface` (its first IPv4 address) with `ttl` hops.
    Udp {
        dest: SocketAddr,
        ttl: Option<u32>,
        iface: Option<String>,
    },
    /// `srt://HOST:PORT[?passphrase=…&streamid=…&latency=MS]`: we call the destination.
    SrtCaller {
        host: String,
        port: u16,
        srt: SrtOptions,
    },
    /// `srt://:PORT?mode=listener[&passphrase=…]`: viewers call us and receive the stream.
    SrtListener { port: u16, srt: SrtOptions },
    /// `rtmp://HOST[:PORT]/APP/KEY`: H.264 + AAC in FLV, published as KEY on APP.
    Rtmp {
        host: String,
        port: u16,
        app: String,
        key: String,
    },
}

/// SRT settings a push URL may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SrtOptions {
    /// 10..=79 characters (the SRT library's rule); never logged.
    pub passphrase: Option<String>,
    pub streamid: Option<String>,
    /// Receiver latency, ms (default 200).
    pub latency_ms: Option<u32>,
}

impl TryFrom<String> for PushUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        url.parse()
    }
}

impl std::str::FromStr for PushUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        // The message shows the URL masked: a bad push URL may hold a stream key.
        let bad = |why: &str| format!("invalid push `url` {:?}: {why}", mask_url(url));
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("expected udp://, rtmp:// or srt://"));
        };
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let params: Vec<(&str, &str)> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .collect();
        let param = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let known = |allowed: &[&str]| match params.iter().find(|(k, _)| !allowed.contains(k)) {
            Some((k, _)) => Err(bad(&format!(
                "unknown parameter `{k}` (known: {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        };
        match scheme {
            "udp" => {
                known(&["ttl", "iface"])?;
                let dest: SocketAddr = main
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|_| bad("expected udp://ADDR:PORT with an IP address"))?;
                if dest.port() == 0 || dest.ip().is_unspecified() {
                    return Err(bad("a destination address and port are required"));
                }
                let ttl = match param("ttl") {
                    None => None,
                    Some(t) => match t.parse::<u32>() {
                        Ok(n @ 1..=255) => Some(n),
                        _ => return Err(bad(&format!("ttl `{t}` must be 1..=255"))),
                    },
                };
                let iface = match param("iface") {
                    None => None,
                    Some(i)
                        if !i.is_empty()
                            && i.len() <= 15
                            && i.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
                    {
                        Some(i.to_owned())
                    }
                    Some(i) => return Err(bad(&format!("`{i}` is not an interface name"))),
                };
                if iface.is_some() && !(dest.is_ipv4() && dest.ip().is_multicast()) {
                    return Err(bad("iface applies to an IPv4 multicast destination only"));
                }
                Ok(PushUrl::Udp { dest, ttl, iface })
            }
            "srt" => {
                known(&["mode", "passphrase", "streamid", "latency"])?;
                let passphrase = match param("passphrase") {
                    Some(p) if (10..=79).contains(&p.len()) => Some(p.to_owned()),
                    Some(_) => return Err(bad("passphrase must be 10..=79 characters")),
                    None => None,
                };
                let latency_ms = match param("latency") {
                    None => None,
                    Some(l) => match l.parse::<u32>() {
                        Ok(ms @ 20..=10_000) => Some(ms),
                        _ => return Err(bad(&format!("latency `{l}` must be 20..=10000 ms"))),
                    },
                };
                let srt = SrtOptions {
                    passphrase,
                    streamid: param("streamid").map(str::to_owned),
                    latency_ms,
                };
                let (host, port) = main
                    .trim_end_matches('/')
                    .rsplit_once(':')
                    .ok_or_else(|| bad("expected srt://HOST:PORT or srt://:PORT?mode=listener"))?;
                let port = match port.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(bad(&format!("`{port}` is not a port (1-65535)"))),
                };
                match param("mode") {
                    Some("listener") => {
                        if !host.is_empty() && host != "0.0.0.0" {
                            return Err(bad("a listener takes srt://:PORT?mode=listener"));
                        }
                        Ok(PushUrl::SrtListener { port, srt })
                    }
                    None | Some("caller") => {
                        if !valid_host(host) {
                            return Err(bad("an SRT caller needs a host"));
                        }
                        Ok(PushUrl::SrtCaller {
                            host: host.to_owned(),
                            port,
                            srt,
                        })
                    }
                    Some(m) => Err(bad(&format!("mode `{m}` must be caller or listener"))),
                }
            }
            "rtmp" => {
                known(&[])?;
                let mut parts = main.splitn(2, '/');
                let authority = parts.next().unwrap_or("");
                let path = parts.next().unwrap_or("");
                let (host, port) = match authority.rsplit_once(':') {
                    Some((h, p)) => match p.parse::<u16>() {
                        Ok(p) if p > 0 => (h, p),
                        _ => return Err(bad(&format!("`{p}` is not a port (1-65535)"))),
                    },
                    None => (authority, 1935),
                };
                if !valid_host(host) {
                    return Err(bad("expected rtmp://HOST[:PORT]/APP/KEY"));
                }
                // The key is the last path part; the application is everything before it
                // (`live`, or `app/instance`).
                let (app, key) = path
                    .trim_end_matches('/')
                    .rsplit_once('/')
                    .filter(|(a, k)| !a.is_empty() && !k.is_empty())
                    .ok_or_else(|| bad("expected rtmp://HOST[:PORT]/APP/KEY"))?;
                Ok(PushUrl::Rtmp {
                    host: host.to_owned(),
                    port,
                    app: app.to_owned(),
                    key: key.to_owned(),
                })
            }
            other => Err(bad(&format!(
                "unsupported scheme `{other}` (supported: udp, rtmp, srt)"
            ))),
        }
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c))
}

impl PushUrl {
    /// The protocol, as JSON stats and logs name it.
    pub fn protocol(&self) -> &'static str {
        match self {
            PushUrl::Udp { .. } => "udp",
            PushUrl::SrtCaller { .. } | PushUrl::SrtListener { .. } => "srt",
            PushUrl::Rtmp { .. } => "rtmp",
        }
    }

    /// Whether the destination is a multicast group.
    pub fn is_multicast(&self) -> bool {
        matches!(self, PushUrl::Udp { dest, .. } if dest.ip().is_multicast())
    }
}

/// Display is what logs, JSON stats and metric labels show: secrets as `***`.
impl fmt::Display for PushUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let srt_query = |f: &mut fmt::Formatter<'_>, first: char, srt: &SrtOptions| {
            let mut sep = first;
            if srt.passphrase.is_some() {
                write!(f, "{sep}passphrase=***")?;
                sep = '&';
            }
            // A stream id often carries a publish key (`#!::r=…,m=publish`).
            if srt.streamid.is_some() {
                write!(f, "{sep}streamid=***")?;
                sep = '&';
            }
            if let Some(l) = srt.latency_ms {
                write!(f, "{sep}latency={l}")?;
            }
            Ok(())
        };
        match self {
            PushUrl::Udp { dest, ttl, iface } => {
                write!(f, "udp://{dest}")?;
                let mut sep = '?';
                if let Some(t) = ttl {
                    write!(f, "{sep}ttl={t}")?;
                    sep = '&';
                }
                if let Some(i) = iface {
                    write!(f, "{sep}iface={i}")?;
                }
                Ok(())
            }
            PushUrl::SrtCaller { host, port, srt } => {
                write!(f, "srt://{host}:{port}")?;
                srt_query(f, '?', srt)
            }
            PushUrl::SrtListener { port, srt } => {
                write!(f, "srt://:{port}?mode=listener")?;
                srt_query(f, '&', srt)
            }
            PushUrl::Rtmp {
                host, port, app, ..
            } => write!(f, "rtmp://{host}:{port}/{app}/***"),
        }
    }
}

/// Any URL with its secrets as `***`: credentials and passphrases (see
/// [`super::mask_credentials`]) and an RTMP stream key (the last path part).
pub fn mask_url(url: &str) -> String {
    let mut masked = super::mask_credentials(url);
    super::input::mask_param(&mut masked, "streamid=");
    let Some(rest) = masked
        .strip_prefix("rtmp://")
        .or_else(|| masked.strip_prefix("rtmps://"))
    else {
        return masked;
    };
    let scheme = &masked[..masked.len() - rest.len()];
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let q = if query.is_empty() { "" } else { "?***" };
    match main.trim_end_matches('/').rsplit_once('/') {
        Some((before, key)) if before.contains('/') && !key.is_empty() => {
            format!("{scheme}{before}/***{q}")
        }
        // One path part: it may be the key of a mistyped URL.
        Some((host, part)) if !part.is_empty() => format!("{scheme}{host}/***{q}"),
        _ => masked,
    }
}

/// A configuration line with every quoted URL in it masked (for error messages that quote
/// the offending line): TOML basic (`"…"`) and literal (`'…'`) strings alike.
pub fn mask_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find(['"', '\'']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=start]);
        rest = &rest[start + 1..];
        let end = rest.find(quote).unwrap_or(rest.len());
        let value = &rest[..end];
        if value.contains("://") {
            out.push_str(&mask_url(value));
        } else {
            out.push_str(value);
        }
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix(quote) {
            out.push(quote);
            rest = r;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<PushUrl, String> {
        url.parse()
    }

    #[test]
    fn every_kind_parses_and_shows_no_secret() {
        let udp = parse("udp://239.0.0.1:1234?ttl=4&iface=eth0").unwrap();
        assert!(udp.is_multicast());
        assert_eq!(udp.to_string(), "udp://239.0.0.1:1234?ttl=4&iface=eth0");
        let rtmp = parse("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl").unwrap();
        assert_eq!(
            rtmp,
            PushUrl::Rtmp {
                host: "a.rtmp.youtube.com".into(),
                port: 1935,
                app: "live2".into(),
                key: "abcd-efgh-ijkl".into()
            }
        );
        assert_eq!(rtmp.to_string(), "rtmp://a.rtmp.youtube.com:1935/live2/***");
        let srt = parse("srt://10.0.0.5:9000?passphrase=0123456789ab&streamid=cam").unwrap();
        assert_eq!(
            srt.to_string(),
            "srt://10.0.0.5:9000?passphrase=***&streamid=***"
        );
        let listener = parse("srt://:9001?mode=listener").unwrap();
        assert_eq!(
            listener,
            PushUrl::SrtListener {
                port: 9001,
                srt: SrtOptions::default()
            }
        );
        assert_eq!(listener.to_string(), "srt://:9001?mode=listener");
    }

    #[test]
    fn bad_urls_are_refused_with_the_key_masked() {
        for (url, why) in [
            ("http://x/y", "unsupported scheme"),
            ("udp://239.0.0.1", "ADDR:PORT"),
            ("udp://239.0.0.1:1234?ttl=0", "ttl"),
            ("udp://127.0.0.1:1234?iface=eth0", "multicast"),
            ("udp://127.0.0.1:1234?bogus=1", "unknown parameter `bogus`"),
            ("rtmp://host/onlyapp", "APP/KEY"),
            ("srt://host:9000?passphrase=short", "10..=79"),
            ("srt://:9000", "caller needs a host"),
        ] {
            let e = parse(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        let e = parse("rtmp://host/app/SECRETKEY?x=1").unwrap_err();
        assert!(!e.contains("SECRETKEY"), "{e}");
    }

    #[test]
    fn lines_quoting_urls_are_masked() {
        assert_eq!(
            mask_line(
                r#"pushes = [{ url = "rtmp://h/live/SECRET" }, { url = "srt://h:1?passphrase=0123456789" }]"#
            ),
            r#"pushes = [{ url = "rtmp://h/live/***" }, { url = "srt://h:1?passphrase=***" }]"#
        );
        assert_eq!(mask_line("title = \"a\""), "title = \"a\"");
        assert_eq!(
            mask_line("pushes = [{ url = 'rtmp://h/live/SECRET' }]"),
            "pushes = [{ url = 'rtmp://h/live/***' }]"
        );
        assert_eq!(
            mask_url("srt://h:1?streamid=#!::r=live/k,m=publish&passphrase=a&passphrase=b"),
            "srt://h:1?streamid=***&passphrase=***&passphrase=***"
        );
    }
}
