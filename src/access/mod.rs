//! Stage 4a, beside `http`: who may play and publish. Before a playback URL is served the
//! HTTP front end asks [`Access::play`]: the viewer's play session is found or opened, and
//! when the stream (or the server's `[auth]`) names an `on_play` backend, the session's
//! cached answer is used or the backend asked (Flussonic's protocol). Publishers are
//! checked by [`Access::publish`] against `on_publish`. Depends on `config` and `stats`
//! names only; the rules themselves are pure (`policy`).

mod backend;
pub mod policy;
mod session;

pub use backend::{Backend, BackendError, encode};
pub use session::{Held, PlaySession, Proto, SessionTable, Visitor};

use crate::config::{AuthSection, BackendUrl, PlayDefault, StreamAccess};
use crate::stats::names;
use arc_swap::ArcSwap;
use metrics::{counter, histogram};
use serde_json::json;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tracing::{info, warn};

/// The `on_publish` check for every publish front end: the stream's own backend or the
/// server's.
#[derive(Debug, Clone)]
pub struct Gate {
    pub access: Arc<Access>,
    pub registry: crate::stream::Registry,
}

impl crate::stream::PublishGate for Gate {
    fn allow<'a>(
        &'a self,
        a: crate::stream::PublishAttempt<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let handle = self.registry.get(a.stream);
            let own = handle.as_ref().map(|h| h.access.as_ref());
            self.access
                .publish(own, a.stream, a.ip, a.proto, a.key, a.query)
                .await
        })
    }
}

/// `flussonic_auth_cached_answers_total`, looked up once (it is counted on every request).
fn cached_counter() -> &'static metrics::Counter {
    static CACHED: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    CACHED.get_or_init(|| counter!(names::AUTH_CACHED))
}

/// Why a play request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the session was ended")]
    Ended,
    #[error("the authorization backend denied")]
    Denied,
    #[error("the authorization backend could not answer")]
    Unavailable,
    #[error("the user has reached X-Max-Sessions")]
    TooManySessions,
    #[error("too many sessions")]
    Full,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Ended => "ended",
            Refused::Denied => "denied",
            Refused::Unavailable => "backend_error",
            Refused::TooManySessions => "max_sessions",
            Refused::Full => "table_full",
        }
    }
}

/// One play request, as the backend is told about it.
#[derive(Debug)]
pub struct PlayRequest<'a> {
    pub visitor: Visitor<'a>,
    pub proto: Proto,
    /// The request's query string, passed on as `qs`.
    pub query: &'a str,
    /// The stream's own keys.
    pub stream: &'a StreamAccess,
}

/// What a long-lived connection (`/mpegts`) needs to ask again when its answer runs out:
/// the request it was opened with, owned.
#[derive(Debug, Clone)]
pub struct Recheck {
    pub access: Arc<Access>,
    pub stream: String,
    pub ip: IpAddr,
    pub token: Option<String>,
    pub user_agent: String,
    pub referer: String,
    pub query: String,
    pub own: Arc<StreamAccess>,
    pub proto: Proto,
}

impl Recheck {
    /// Monotonic ms until which the session's answer stands; `None` when no backend guards
    /// the stream (nothing to ask).
    pub fn valid_until(&self, session: &PlaySession) -> Option<u64> {
        if !self.access.guards_play(&self.own) {
            return None;
        }
        Some(session.grants.get(self.proto).map_or(0, |g| g.until_ms))
    }

    /// Asks again as the next request of the session would.
    pub async fn ask(&self, timeout_ms: u64) -> Result<(), Refused> {
        let request = PlayRequest {
            visitor: Visitor {
                stream: &self.stream,
                ip: self.ip,
                token: self.token.as_deref(),
                user_agent: &self.user_agent,
                referer: &self.referer,
            },
            proto: self.proto,
            query: &self.query,
            stream: &self.own,
        };
        self.access
            .play(&request, crate::stream::mono_ms(), timeout_ms)
            .await
            .map(|_| ())
    }
}

/// Authorization and sessions of the whole server.
#[derive(Debug)]
pub struct Access {
    /// `[auth]`; replaced whole by a reload.
    settings: ArcSwap<AuthSection>,
    pub sessions: SessionTable,
    backend: Backend,
    /// Makes "count the user's sessions, then admit" one step.
    admission: Mutex<()>,
}

impl Access {
    pub fn new(settings: AuthSection) -> Self {
        Access {
            settings: ArcSwap::from_pointee(settings),
            sessions: SessionTable::default(),
            backend: Backend::default(),
            admission: Mutex::new(()),
        }
    }

    /// Takes reloaded `[auth]` settings (answers already given stand until they expire).
    pub fn set_settings(&self, settings: AuthSection) {
        self.settings.store(Arc::new(settings));
    }

    /// Whether playback of a stream with these keys is authorized by a backend.
    pub fn guards_play(&self, stream: &StreamAccess) -> bool {
        stream.on_play.is_some() || self.settings.load().on_play.is_some()
    }

    /// Decides a play request at monotonic `now_ms` (`timeout_ms`: the session timeout) and
    /// returns the viewer's session when it may play.
    pub async fn play(
        &self,
        req: &PlayRequest<'_>,
        now_ms: u64,
        timeout_ms: u64,
    ) -> Result<Arc<PlaySession>, Refused> {
        let mut gone = Vec::new();
        let found = self
            .sessions
            .session(&req.visitor, req.proto, now_ms, timeout_ms, &mut gone);
        for s in gone {
            if s.end("idle") {
                counter!(names::SESSIONS_ENDED, "reason" => "idle").increment(1);
            }
        }
        let (session, _) = found.map_err(|_| Refused::Full)?;
        if session.is_ended() {
            return Err(Refused::Ended);
        }
        let settings = self.settings.load();
        let Some(url) = req.stream.on_play.as_ref().or(settings.on_play.as_ref()) else {
            session.admit();
            return Ok(session);
        };
        let default = req
            .stream
            .on_play_default
            .unwrap_or(settings.on_play_default);
        let grant = match session.grants.get(req.proto) {
            Some(g) if g.valid(now_ms).is_some() => {
                cached_counter().increment(1);
                g
            }
            _ => {
                let mut calls = session.asking.lock().await;
                // Another request of this session may have asked meanwhile.
                match session.grants.get(req.proto) {
                    Some(g) if g.valid(crate::stream::mono_ms()).is_some() => {
                        cached_counter().increment(1);
                        g
                    }
                    previous => {
                        let request_type = if previous.is_some() {
                            "update_session"
                        } else {
                            "new_session"
                        };
                        *calls += 1;
                        let params = self.play_params(
                            req,
                            &session,
                            request_type,
                            *calls,
                            now_ms,
                            timeout_ms,
                        );
                        let started = Instant::now();
                        let answer = self.backend.get(url, &params, settings.timeout()).await;
                        let result = match &answer {
                            Ok(a) if a.allowed => "allow",
                            Ok(_) => "deny",
                            Err(_) => "error",
                        };
                        counter!(names::AUTH_BACKEND_REQUESTS, "hook" => "on_play", "result" => result)
                            .increment(1);
                        histogram!(names::AUTH_BACKEND_DURATION, "hook" => "on_play")
                            .record(started.elapsed().as_secs_f64());
                        let grant = Arc::new(policy::after_call(
                            answer.ok(),
                            default,
                            crate::stream::mono_ms(),
                        ));
                        if grant.user_id.is_some() {
                            session.set_user(grant.user_id.clone());
                        }
                        session.grants.set(req.proto, grant.clone());
                        grant
                    }
                }
            }
        };
        if !grant.allowed {
            // A session the backend stops allowing (`update_session` denied) ends: its open
            // connections close.
            if !grant.fallback && session.is_admitted() && session.end("denied") {
                counter!(names::SESSIONS_ENDED, "reason" => "denied").increment(1);
                info!(session = %session.id, stream = %session.stream, "session ended: the backend no longer allows it");
            }
            return Err(if grant.fallback {
                Refused::Unavailable
            } else {
                Refused::Denied
            });
        }
        if !session.is_admitted() {
            let _one = self
                .admission
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let (Some(user), Some(max)) = (&grant.user_id, grant.max_sessions)
                && self
                    .sessions
                    .user_sessions(user, &session.id, now_ms, timeout_ms)
                    >= max as usize
            {
                return Err(Refused::TooManySessions);
            }
            session.admit();
        }
        Ok(session)
    }

    fn play_params(
        &self,
        req: &PlayRequest<'_>,
        session: &PlaySession,
        request_type: &str,
        number: u64,
        now_ms: u64,
        timeout_ms: u64,
    ) -> Vec<(&'static str, String)> {
        let v = &req.visitor;
        let (stream_clients, total_clients) = self.sessions.clients(v.stream, now_ms, timeout_ms);
        vec![
            ("name", v.stream.to_owned()),
            ("proto", req.proto.as_str().to_owned()),
            ("ip", v.ip.to_string()),
            ("token", v.token.unwrap_or("").to_owned()),
            ("session_id", session.id.clone()),
            ("request_type", request_type.to_owned()),
            ("request_number", number.to_string()),
            ("user_agent", v.user_agent.to_owned()),
            ("referer", v.referer.to_owned()),
            ("qs", req.query.to_owned()),
            (
                "duration",
                (now_ms.saturating_sub(session.opened_mono_ms) / 1000).to_string(),
            ),
            (
                "bytes",
                session
                    .bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            ("stream_clients", stream_clients.to_string()),
            ("total_clients", total_clients.to_string()),
        ]
    }

    /// Ends session `id` now (API `DELETE`); false when there is no such live session.
    pub fn end_session(&self, id: &str) -> bool {
        match self.sessions.find(id) {
            Some(s) if s.end("api") => {
                counter!(names::SESSIONS_ENDED, "reason" => "api").increment(1);
                info!(session = %s.id, stream = %s.stream, "session ended by the API");
                true
            }
            _ => false,
        }
    }

    /// Asks the stream's (or the server's) `on_publish` backend whether a publisher may
    /// push to `name`; true without a backend. A backend that cannot answer refuses.
    pub async fn publish(
        &self,
        stream: Option<&StreamAccess>,
        name: &str,
        ip: IpAddr,
        proto: &str,
        key: Option<&str>,
        query: &str,
    ) -> bool {
        let settings = self.settings.load();
        let url: Option<&BackendUrl> = stream
            .and_then(|s| s.on_publish.as_ref())
            .or(settings.on_publish.as_ref());
        let Some(url) = url else {
            return true;
        };
        let body = json!({
            "name": name,
            "ip": ip.to_string(),
            "proto": proto,
            "key": key.unwrap_or(""),
            "qs": query,
            "request_type": "publish",
        });
        let started = Instant::now();
        let answer = self.backend.post_json(url, &body, settings.timeout()).await;
        let result = match &answer {
            Ok(a) if a.allowed => "allow",
            Ok(_) => "deny",
            Err(_) => "error",
        };
        counter!(names::AUTH_BACKEND_REQUESTS, "hook" => "on_publish", "result" => result)
            .increment(1);
        histogram!(names::AUTH_BACKEND_DURATION, "hook" => "on_publish")
            .record(started.elapsed().as_secs_f64());
        if result != "allow" {
            warn!(stream = name, %ip, proto, result, "publisher refused by on_publish");
        }
        result == "allow"
    }

    /// The `on_play_default` a stream with these keys gets.
    pub fn play_default(&self, stream: &StreamAccess) -> PlayDefault {
        stream
            .on_play_default
            .unwrap_or(self.settings.load().on_play_default)
    }
}
