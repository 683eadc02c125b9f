//! The authorization rules as pure functions over times and answers (no sockets, no clock):
//! what a backend's answer means, how long it is trusted, what stands when the backend
//! cannot answer. Tested with fake time.

use crate::config::PlayDefault;

/// How long an answer without `X-AuthDuration` is trusted.
pub const DEFAULT_AUTH_MS: u64 = 30_000;
/// Longest `X-AuthDuration` taken (a day): a typo cannot pin a decision forever.
const MAX_AUTH_MS: u64 = 86_400_000;
/// While the backend fails, its fallback verdict is reused this long before asking again, so
/// a dead backend does not make every segment request wait for the timeout.
pub const ERROR_RETRY_MS: u64 = 5_000;

/// What a backend said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub allowed: bool,
    /// `X-AuthDuration`, ms.
    pub duration_ms: u64,
    /// `X-UserId`.
    pub user_id: Option<String>,
    /// `X-Max-Sessions`.
    pub max_sessions: Option<u32>,
}

/// Reads a backend's response: 200 or 302 allow, any 4xx denies; anything else is not an
/// answer (`None`: the backend failed).
pub fn read_answer(status: u16, header: impl Fn(&str) -> Option<String>) -> Option<Answer> {
    let allowed = match status {
        200 | 302 => true,
        400..=499 => false,
        _ => return None,
    };
    let duration_ms = header("x-authduration")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_AUTH_MS, |s| s.saturating_mul(1000).min(MAX_AUTH_MS));
    let user_id = header("x-userid")
        .map(|v| v.trim().chars().take(128).collect::<String>())
        .filter(|v| !v.is_empty());
    let max_sessions = header("x-max-sessions").and_then(|v| v.trim().parse::<u32>().ok());
    Some(Answer {
        allowed,
        duration_ms,
        user_id,
        max_sessions,
    })
}

/// A verdict and until when it stands (monotonic ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub allowed: bool,
    pub until_ms: u64,
    pub user_id: Option<String>,
    pub max_sessions: Option<u32>,
    /// Made by `on_play_default` because the backend failed (not the backend's word).
    pub fallback: bool,
}

impl Grant {
    /// The verdict, while it is still valid at `now_ms`.
    pub fn valid(&self, now_ms: u64) -> Option<bool> {
        (now_ms < self.until_ms).then_some(self.allowed)
    }
}

/// The grant that follows a backend call made at `now_ms`: its answer, or when it failed,
/// `default`'s verdict for a short while.
pub fn after_call(answer: Option<Answer>, default: PlayDefault, now_ms: u64) -> Grant {
    match answer {
        Some(a) => Grant {
            allowed: a.allowed,
            until_ms: now_ms + a.duration_ms,
            user_id: a.user_id,
            max_sessions: a.max_sessions,
            fallback: false,
        },
        None => Grant {
            allowed: default == PlayDefault::Allow,
            until_ms: now_ms + ERROR_RETRY_MS,
            user_id: None,
            max_sessions: None,
            fallback: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let list: Vec<(String, String)> = list
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            list.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn statuses_allow_deny_or_fail() {
        assert!(read_answer(200, headers(&[])).unwrap().allowed);
        assert!(read_answer(302, headers(&[])).unwrap().allowed);
        assert!(!read_answer(403, headers(&[])).unwrap().allowed);
        assert!(!read_answer(404, headers(&[])).unwrap().allowed);
        assert_eq!(read_answer(500, headers(&[])), None);
        assert_eq!(read_answer(204, headers(&[])), None);
    }

    #[test]
    fn headers_set_duration_user_and_limit() {
        let a = read_answer(
            200,
            headers(&[
                ("X-AuthDuration", "120"),
                ("X-UserId", " u42 "),
                ("X-Max-Sessions", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(a.duration_ms, 120_000);
        assert_eq!(a.user_id.as_deref(), Some("u42"));
        assert_eq!(a.max_sessions, Some(1));
        let a = read_answer(200, headers(&[("X-AuthDuration", "junk")])).unwrap();
        assert_eq!(a.duration_ms, DEFAULT_AUTH_MS);
        let a = read_answer(200, headers(&[("X-AuthDuration", "99999999999")])).unwrap();
        assert_eq!(a.duration_ms, MAX_AUTH_MS);
    }

    #[test]
    fn grants_expire_and_failures_fall_back_briefly() {
        let answer = read_answer(200, headers(&[("X-AuthDuration", "10")]));
        let g = after_call(answer, PlayDefault::Deny, 1_000);
        assert_eq!(g.valid(1_000), Some(true));
        assert_eq!(g.valid(10_999), Some(true));
        assert_eq!(g.valid(11_000), None, "expired: ask again");
        let down = after_call(None, PlayDefault::Deny, 50_000);
        assert_eq!(down.valid(50_000), Some(false));
        assert!(down.fallback);
        assert_eq!(down.valid(50_000 + ERROR_RETRY_MS), None);
        let open = after_call(None, PlayDefault::Allow, 50_000);
        assert_eq!(open.valid(50_001), Some(true));
    }
}
