//! Who may play and publish, and how the front door behaves: authorization backends
//! (Flussonic's `on_play`, `on_publish`, `on_play_default`), the `[auth]` server defaults,
//! `[server]` limits (`max_connections`, timeouts, `trusted_proxies`), the HTTPS listener and
//! `[dvr]` export limits. Values are checked here, for files and API writes alike.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// An authorization backend: an `http://` URL (HTTPS backends are not supported yet).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BackendUrl(pub String);

impl TryFrom<String> for BackendUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let uri: http::Uri = s
            .parse()
            .map_err(|e| format!("authorization backend {s:?} is not a URL: {e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(h)) if !h.is_empty() => Ok(BackendUrl(s)),
            (Some("https"), _) => Err(format!(
                "authorization backend {s:?}: https:// backends are not supported; use http:// (a local proxy can add TLS)"
            )),
            _ => Err(format!(
                "authorization backend {s:?} must be http://HOST[:PORT]/PATH"
            )),
        }
    }
}

/// What a play request gets while the backend cannot answer and no earlier answer is valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayDefault {
    #[default]
    Deny,
    Allow,
}

/// A stream's own authorization keys (each overrides the server's `[auth]` default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamAccess {
    pub on_play: Option<BackendUrl>,
    pub on_publish: Option<BackendUrl>,
    pub on_play_default: Option<PlayDefault>,
}

/// `[auth]`: the server's default backends and how long a backend may take.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub on_play: Option<BackendUrl>,
    pub on_publish: Option<BackendUrl>,
    #[serde(default)]
    pub on_play_default: PlayDefault,
    /// How long a backend call may take, ms (100..=30000).
    #[serde(default = "default_backend_timeout")]
    pub timeout_ms: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            on_play: None,
            on_publish: None,
            on_play_default: PlayDefault::Deny,
            timeout_ms: default_backend_timeout(),
        }
    }
}

fn default_backend_timeout() -> u64 {
    2000
}

impl AuthSection {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(100..=30_000).contains(&self.timeout_ms) {
            return Err((
                "auth.timeout_ms",
                format!(
                    "[auth] timeout_ms must be 100..=30000, got {}",
                    self.timeout_ms
                ),
            ));
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// An address block: `10.0.0.0/8`, `::1/128`, or a bare address (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` lies in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The HTTP front door's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontDoor {
    /// Open connections (HTTP and HTTPS together) beyond which new ones are closed.
    pub max_connections: usize,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keepalive_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// `https://…` or `http://…` prefix for absolute URLs Headwater writes; else the request's
    /// own scheme and `Host`.
    pub public_url: Option<String>,
}

impl Default for FrontDoor {
    fn default() -> Self {
        FrontDoor {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
            public_url: None,
        }
    }
}

/// The optional HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key (absolute); read at start and on `SIGHUP`.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Checks a `public_url`: `http(s)://host[:port]` with no path, query or fragment.
pub fn check_public_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("public_url {url:?} is not a URL: {e}"))?;
    let ok = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some_and(|h| !h.is_empty())
        && matches!(uri.path(), "" | "/")
        && uri.query().is_none();
    if ok {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "public_url {url:?} must be http(s)://HOST[:PORT] with no path"
        ))
    }
}

/// The front door's settings from `[server]`: `(key, message)` for the first bad one.
pub(super) fn front_door(s: &super::ServerSection) -> Result<FrontDoor, (&'static str, String)> {
    let d = FrontDoor::default();
    let secs = |v: Option<u64>, key: &'static str, max: u64, dflt: Duration| match v {
        None => Ok(dflt),
        Some(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        Some(n) => Err((
            key,
            format!("[server] {} must be 1..={max} s, got {n}", &key[7..]),
        )),
    };
    let max_connections = match s.max_connections {
        None => d.max_connections,
        Some(n) if (1..=1_000_000).contains(&n) => n as usize,
        Some(n) => {
            return Err((
                "server.max_connections",
                format!("[server] max_connections must be 1..=1000000, got {n}"),
            ));
        }
    };
    Ok(FrontDoor {
        max_connections,
        header_read_timeout: secs(
            s.header_read_timeout,
            "server.header_read_timeout",
            600,
            d.header_read_timeout,
        )?,
        keepalive_timeout: secs(
            s.keepalive_timeout,
            "server.keepalive_timeout",
            3600,
            d.keepalive_timeout,
        )?,
        trusted_proxies: s.trusted_proxies.clone(),
        public_url: s
            .public_url
            .as_deref()
            .map(check_public_url)
            .transpose()
            .map_err(|m| ("server.public_url", m))?,
    })
}

/// The HTTPS listener from `[server] https`, `tls_cert`, `tls_key` (paths relative to the
/// config file's folder).
pub(super) fn tls(
    s: &super::ServerSection,
    base: &std::path::Path,
) -> Result<Option<Tls>, (&'static str, String)> {
    match (s.https, &s.tls_cert, &s.tls_key) {
        (None, None, None) => Ok(None),
        (Some(listen), Some(cert), Some(key)) => Ok(Some(Tls {
            listen,
            cert: super::clean_path(&base.join(cert)),
            key: super::clean_path(&base.join(key)),
        })),
        (None, _, _) => Err((
            "server.https",
            "[server] tls_cert/tls_key need https = \"ADDR:PORT\"".into(),
        )),
        (Some(_), None, _) => Err((
            "server.tls_cert",
            "[server] https needs tls_cert (a PEM certificate chain)".into(),
        )),
        (Some(_), _, None) => Err((
            "server.tls_key",
            "[server] https needs tls_key (a PEM private key)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_must_be_http_urls() {
        assert!(BackendUrl::try_from("http://127.0.0.1:9/auth?x=1".to_owned()).is_ok());
        for bad in ["https://a/b", "ftp://a/b", "/auth", "http://", "not a url"] {
            assert!(BackendUrl::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_blocks_match_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.9".parse().unwrap()),
            "mapped v4"
        );
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(host.prefix, 32);
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn public_urls_are_origins() {
        assert_eq!(
            check_public_url("https://tv.example.com/").unwrap(),
            "https://tv.example.com"
        );
        assert!(check_public_url("https://tv.example.com/live").is_err());
        assert!(check_public_url("tv.example.com").is_err());
    }
}
