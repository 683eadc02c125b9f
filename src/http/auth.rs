//! API authentication: HTTP Basic, or `Bearer base64(login:password)` as Flussonic accepts,
//! checked against `view_auth` / `edit_auth` in constant time. Nothing here logs a credential.

use crate::config::Credentials;
use base64::Engine;

/// Longest `Authorization` header considered; longer is malformed.
const MAX_HEADER: usize = 4096;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    View,
    Edit,
}

/// Why authentication failed: the `reason` label of `flussonic_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Not Basic/Bearer, bad base64, not UTF-8, no colon, too long.
    Malformed,
    /// Well-formed, but no configured login matches.
    Invalid,
    /// The server has no API credentials configured at all.
    NotConfigured,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Invalid => "invalid",
            AuthFailure::NotConfigured => "not_configured",
        }
    }
}

/// The configured API credentials.
#[derive(Debug, Clone, Default)]
pub struct ApiAuth {
    pub view: Option<Credentials>,
    pub edit: Option<Credentials>,
}

impl ApiAuth {
    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<Role, AuthFailure> {
        if self.view.is_none() && self.edit.is_none() {
            return Err(AuthFailure::NotConfigured);
        }
        let header = header.ok_or(AuthFailure::Missing)?;
        let (login, password) = parse_authorization(header)?;
        let matches = |c: &Option<Credentials>| {
            c.as_ref().is_some_and(|c| {
                // Both compared, always, so timing does not tell which part was wrong.
                let l = ct_eq(c.login.as_bytes(), login.as_bytes());
                let p = ct_eq(c.password.as_bytes(), password.as_bytes());
                l & p
            })
        };
        let edit = matches(&self.edit);
        let view = matches(&self.view);
        if edit {
            Ok(Role::Edit)
        } else if view {
            Ok(Role::View)
        } else {
            Err(AuthFailure::Invalid)
        }
    }
}

/// `Basic <b64>` or `Bearer <b64>` with `login:password` inside.
pub fn parse_authorization(header: &[u8]) -> Result<(String, String), AuthFailure> {
    if header.len() > MAX_HEADER {
        return Err(AuthFailure::Malformed);
    }
    let text = std::str::from_utf8(header).map_err(|_| AuthFailure::Malformed)?;
    let (scheme, value) = text.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") && !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| AuthFailure::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthFailure::Malformed)?;
    let (login, password) = decoded.split_once(':').ok_or(AuthFailure::Malformed)?;
    Ok((login.to_owned(), password.to_owned()))
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn auth() -> ApiAuth {
        ApiAuth {
            view: Some("viewer:v1ew".parse().unwrap()),
            edit: Some("admin:s3cret".parse().unwrap()),
        }
    }

    #[test]
    fn basic_and_bearer() {
        let a = auth();
        let basic = format!("Basic {}", b64("viewer:v1ew"));
        assert_eq!(a.check(Some(basic.as_bytes())), Ok(Role::View));
        let bearer = format!("Bearer {}", b64("admin:s3cret"));
        assert_eq!(a.check(Some(bearer.as_bytes())), Ok(Role::Edit));
        let lower = format!("basic {}", b64("admin:s3cret"));
        assert_eq!(a.check(Some(lower.as_bytes())), Ok(Role::Edit));
    }

    #[test]
    fn failures_by_reason() {
        let a = auth();
        assert_eq!(a.check(None), Err(AuthFailure::Missing));
        let wrong = format!("Basic {}", b64("admin:wrong"));
        assert_eq!(a.check(Some(wrong.as_bytes())), Err(AuthFailure::Invalid));
        let prefix = format!("Basic {}", b64("admin:s3cre"));
        assert_eq!(a.check(Some(prefix.as_bytes())), Err(AuthFailure::Invalid));
        for bad in [
            "Basic !!!notbase64".to_owned(),
            format!("Basic {}", b64("nocolon")),
            format!("Digest {}", b64("admin:s3cret")),
            "Basic".to_owned(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b':', b'x'])
            ),
            format!("Basic {}", "A".repeat(10_000)),
        ] {
            assert_eq!(
                a.check(Some(bad.as_bytes())),
                Err(AuthFailure::Malformed),
                "{bad:.40}"
            );
        }
        assert_eq!(a.check(Some(&[0xff, 0x00])), Err(AuthFailure::Malformed));
        assert_eq!(
            ApiAuth::default().check(None),
            Err(AuthFailure::NotConfigured)
        );
    }

    #[test]
    fn unicode_credentials() {
        let a = ApiAuth {
            view: Some("оператор:пароль✓".parse().unwrap()),
            edit: None,
        };
        let h = format!("Basic {}", b64("оператор:пароль✓"));
        assert_eq!(a.check(Some(h.as_bytes())), Ok(Role::View));
        let h = format!("Basic {}", b64("оператор:пароль"));
        assert_eq!(a.check(Some(h.as_bytes())), Err(AuthFailure::Invalid));
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }
}
