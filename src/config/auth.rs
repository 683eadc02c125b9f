//! `"login:password"` credentials (`view_auth`, `edit_auth`). The password never reaches a log:
//! `Debug` redacts it and there is no `Display`.

use serde::Deserialize;
use std::fmt;

/// A login and password pair.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Credentials {
    pub login: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl TryFrom<String> for Credentials {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl std::str::FromStr for Credentials {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.split_once(':') {
            Some((login, password)) if !login.is_empty() && !password.is_empty() => {
                if login.chars().chain(password.chars()).any(char::is_control) {
                    return Err("credentials must not contain control characters".into());
                }
                Ok(Credentials {
                    login: login.to_owned(),
                    password: password.to_owned(),
                })
            }
            _ => Err("credentials must be \"login:password\" with both parts non-empty".into()),
        }
    }
}
