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
    /// `udp://[IFACE@]ADDR:PORT`: MPEG-TS over UDP; a multicast ADDR is joined on IFACE.
    Udp {
        iface: Option<String>,
        addr: IpAddr,
        port: u16,
    },
    /// `file://PATH`: a media file played in real time, looped forever.
    File { path: PathBuf },
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
            "file" if rest.is_empty() => Err(bad("file:// needs a path")),
            "file" if rest.contains('\0') => Err(bad("path contains NUL")),
            "file" => Ok(InputUrl::File {
                path: PathBuf::from(rest),
            }),
            other => Err(bad(&format!(
                "unsupported scheme `{other}` (supported: fake, udp, file)"
            ))),
        }
    }
}

fn parse_udp(rest: &str) -> Result<InputUrl, String> {
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
    Ok(InputUrl::Udp { iface, addr, port })
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
            InputUrl::Udp { iface, addr, port } => {
                f.write_str("udp://")?;
                if let Some(i) = iface {
                    write!(f, "{i}@")?;
                }
                match addr {
                    IpAddr::V4(a) => write!(f, "{a}:{port}"),
                    IpAddr::V6(a) => write!(f, "[{a}]:{port}"),
                }
            }
            InputUrl::File { path } => write!(f, "file://{}", path.display()),
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
            "239.0.0.1:1234",
        ] {
            assert!(bad.parse::<InputUrl>().is_err(), "{bad} should be refused");
        }
    }
}
