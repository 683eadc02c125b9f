//! Play sessions: one viewer of one stream, known by stream + address + token (or, without
//! a token, user agent). A session lives while it keeps asking (within the session timeout)
//! or holds an open `/mpegts` connection; an ended one (API `DELETE`, a revoked answer)
//! stays as a refusal until its viewer has been quiet for the session timeout.

use super::policy::Grant;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio_util::sync::CancellationToken;

/// Hard cap on tracked sessions, so a flood of invented tokens cannot grow memory.
pub(super) const MAX_SESSIONS: usize = 200_000;
/// The table is swept of idle sessions at most this often.
const SWEEP_EVERY_MS: u64 = 1_000;

/// The protocol a session plays with (Flussonic's `proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Hls,
    Dash,
    Mpegts,
    Dvr,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Hls => "hls",
            Proto::Dash => "dash",
            Proto::Mpegts => "mpegts",
            Proto::Dvr => "dvr",
        }
    }
}

/// A session's backend answers: live playback and the archive are authorized separately
/// (`proto=dvr`). Read without locking on every request; written by the one request that
/// asks the backend.
#[derive(Debug, Default)]
pub struct Grants {
    live: ArcSwapOption<Grant>,
    dvr: ArcSwapOption<Grant>,
}

impl Grants {
    fn slot(&self, proto: Proto) -> &ArcSwapOption<Grant> {
        if proto == Proto::Dvr {
            &self.dvr
        } else {
            &self.live
        }
    }

    /// The answer for `proto`'s class, valid or not.
    pub fn get(&self, proto: Proto) -> Option<Arc<Grant>> {
        self.slot(proto).load_full()
    }

    pub fn set(&self, proto: Proto, grant: Arc<Grant>) {
        self.slot(proto).store(Some(grant));
    }
}

/// Rewritten playlists of one session, by the shared text they came from: a viewer that
/// polls a playlist gets the same rewrite until the playlist changes.
#[derive(Debug, Default)]
pub struct LinkCache(Mutex<Vec<(bytes::Bytes, bytes::Bytes)>>);

/// Playlists kept per session (master, media, audio, MPD).
const LINK_CACHE: usize = 4;

impl LinkCache {
    /// The rewrite of `source`, made by `rewrite` unless kept.
    pub fn get_or(
        &self,
        source: &bytes::Bytes,
        rewrite: impl FnOnce() -> bytes::Bytes,
    ) -> bytes::Bytes {
        let same = |(s, _): &(bytes::Bytes, bytes::Bytes)| {
            s.as_ptr() == source.as_ptr() && s.len() == source.len()
        };
        {
            let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, r)) = kept.iter().find(|e| same(e)) {
                return r.clone();
            }
        }
        // The kept source holds its allocation, so a pointer seen here is never reused.
        let rewritten = rewrite();
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= LINK_CACHE {
            kept.remove(0);
        }
        kept.push((source.clone(), rewritten.clone()));
        rewritten
    }
}

/// One viewer of one stream.
#[derive(Debug)]
pub struct PlaySession {
    /// 16 hex digits, unpredictable; what the API and the backend's `session_id` name.
    pub id: String,
    pub stream: Arc<str>,
    pub ip: IpAddr,
    pub user_agent: String,
    pub referer: String,
    pub token: Option<String>,
    /// The protocol of the session's first request.
    pub proto: Proto,
    pub opened_unix_ms: u64,
    pub opened_mono_ms: u64,
    /// Bytes of response bodies sent to this session.
    pub bytes: AtomicU64,
    /// Monotonic ms of its last request.
    last_seen_ms: AtomicU64,
    /// Open `/mpegts` connections (they keep the session alive while open).
    open: AtomicU32,
    /// Cancelled when the session is ended; open bodies stop on it.
    pub ended: CancellationToken,
    /// Why it was ended (set once).
    end_reason: OnceLock<&'static str>,
    /// The backend's user for this session (`X-UserId`), once known.
    user_id: Mutex<Option<String>>,
    /// Counted against its user's `X-Max-Sessions` (admitted once, kept while alive).
    admitted: AtomicBool,
    /// The backend's answers.
    pub grants: Grants,
    /// Held while the backend is asked (the value: calls made, `request_number`), so that
    /// concurrent requests of one session wait for one call instead of each making its own.
    pub asking: tokio::sync::Mutex<u64>,
    /// Playlists with the session's token written in.
    pub links: LinkCache,
}

impl PlaySession {
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    pub fn end_reason(&self) -> Option<&'static str> {
        self.end_reason.get().copied()
    }

    /// Ends the session; false when it had already ended.
    pub fn end(&self, reason: &'static str) -> bool {
        if self.end_reason.set(reason).is_err() {
            return false;
        }
        self.ended.cancel();
        true
    }

    pub fn user_id(&self) -> Option<String> {
        self.user_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_user(&self, user: Option<String>) {
        *self.user_id.lock().unwrap_or_else(PoisonError::into_inner) = user;
    }

    pub fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::Acquire)
    }

    pub fn admit(&self) {
        self.admitted.store(true, Ordering::Release);
    }

    /// Alive at `now_ms`: not ended, and recently active or holding a connection.
    pub fn alive(&self, now_ms: u64, timeout_ms: u64) -> bool {
        !self.is_ended()
            && (self.open.load(Ordering::Relaxed) > 0
                || now_ms.saturating_sub(self.last_seen_ms.load(Ordering::Relaxed)) <= timeout_ms)
    }

    /// Counts an open connection until the guard drops.
    pub fn hold(self: &Arc<Self>) -> Held {
        self.open.fetch_add(1, Ordering::Relaxed);
        Held {
            session: self.clone(),
        }
    }
}

/// An open connection of a session.
#[derive(Debug)]
pub struct Held {
    pub session: Arc<PlaySession>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.session.touch(crate::stream::mono_ms());
        self.session.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Who a request comes from, as the table keys it.
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    pub stream: &'a str,
    pub ip: IpAddr,
    pub token: Option<&'a str>,
    pub user_agent: &'a str,
    pub referer: &'a str,
}

/// Every play session of the server, in shards: a request locks only its viewer's shard,
/// so requests of different viewers (on different cores) do not wait for one another.
#[derive(Debug)]
pub struct SessionTable {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// Sessions in all shards; at most [`MAX_SESSIONS`].
    len: AtomicUsize,
    /// Monotonic ms of the last sweep of idle sessions (all shards, one after another).
    last_sweep_ms: AtomicU64,
    /// Sessions opened so far (makes each id unique).
    opened: AtomicU64,
}

/// Shards of the table: enough that two cores rarely meet on one.
const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Shard {
    by_key: HashMap<u64, Arc<PlaySession>>,
}

/// The table is full: the request is refused rather than tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

impl Default for SessionTable {
    fn default() -> Self {
        SessionTable {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
            last_sweep_ms: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }
}

impl SessionTable {
    fn key(&self, v: &Visitor<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        v.stream.hash(&mut h);
        v.ip.hash(&mut h);
        match v.token {
            Some(t) => ("token", t).hash(&mut h),
            None => ("ua", v.user_agent).hash(&mut h),
        }
        h.finish()
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        // The key is a keyed hash: its high bits are as even as its low ones (the shard's
        // map hashes it again for its own buckets).
        self.shards[(key >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f` with each shard's sessions in turn.
    fn each(&self, mut f: impl FnMut(&HashMap<u64, Arc<PlaySession>>)) {
        for shard in &self.shards {
            f(&shard.lock().unwrap_or_else(PoisonError::into_inner).by_key);
        }
    }

    /// Forgets idle sessions (each shard locked in turn) when the last sweep is
    /// [`SWEEP_EVERY_MS`] old; the one request that wins the turn does it.
    fn sweep(&self, now_ms: u64, timeout_ms: u64, ended: &mut Vec<Arc<PlaySession>>) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.by_key.len();
            shard.by_key.retain(|_, s| {
                let keep = s.open.load(Ordering::Relaxed) > 0
                    || now_ms.saturating_sub(s.last_seen_ms.load(Ordering::Relaxed)) <= timeout_ms;
                if !keep {
                    ended.push(s.clone());
                }
                keep
            });
            self.len
                .fetch_sub(before - shard.by_key.len(), Ordering::Relaxed);
        }
    }

    /// The visitor's session, opened now when it has none; idle sessions are swept first.
    /// Returns the session and whether it is new. `ended` tells the caller of sessions the
    /// sweep removed (for counting).
    pub fn session(
        &self,
        v: &Visitor<'_>,
        proto: Proto,
        now_ms: u64,
        timeout_ms: u64,
        ended: &mut Vec<Arc<PlaySession>>,
    ) -> Result<(Arc<PlaySession>, bool), TableFull> {
        self.sweep(now_ms, timeout_ms, ended);
        let key = self.key(v);
        let mut shard = self.shard(key);
        if let Some(s) = shard.by_key.get(&key) {
            s.touch(now_ms);
            return Ok((s.clone(), false));
        }
        if self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_SESSIONS).then_some(n + 1)
            })
            .is_err()
        {
            return Err(TableFull);
        }
        let opened = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("{:016x}", self.hasher.hash_one((key, opened)));
        let session = Arc::new(PlaySession {
            id,
            stream: Arc::from(v.stream),
            ip: v.ip,
            user_agent: v.user_agent.chars().take(256).collect(),
            referer: v.referer.chars().take(512).collect(),
            token: v.token.map(str::to_owned),
            proto,
            opened_unix_ms: crate::media::utc::now_ms(),
            opened_mono_ms: now_ms,
            bytes: AtomicU64::new(0),
            last_seen_ms: AtomicU64::new(now_ms),
            open: AtomicU32::new(0),
            ended: CancellationToken::new(),
            end_reason: OnceLock::new(),
            user_id: Mutex::new(None),
            admitted: AtomicBool::new(false),
            grants: Grants::default(),
            asking: tokio::sync::Mutex::new(0),
            links: LinkCache::default(),
        });
        shard.by_key.insert(key, session.clone());
        Ok((session, true))
    }

    /// Every session (alive or ended but not yet forgotten).
    pub fn all(&self) -> Vec<Arc<PlaySession>> {
        let mut all = Vec::new();
        self.each(|sessions| all.extend(sessions.values().cloned()));
        all
    }

    pub fn find(&self, id: &str) -> Option<Arc<PlaySession>> {
        let mut found = None;
        self.each(|sessions| {
            if found.is_none() {
                found = sessions.values().find(|s| s.id == id).cloned();
            }
        });
        found
    }

    /// Alive sessions: of `stream`, and in all.
    pub fn clients(&self, stream: &str, now_ms: u64, timeout_ms: u64) -> (u64, u64) {
        let mut of_stream = 0;
        let mut total = 0;
        self.each(|sessions| {
            for s in sessions.values() {
                if s.alive(now_ms, timeout_ms) {
                    total += 1;
                    if &*s.stream == stream {
                        of_stream += 1;
                    }
                }
            }
        });
        (of_stream, total)
    }

    /// Other admitted, alive sessions of `user`.
    pub fn user_sessions(&self, user: &str, except: &str, now_ms: u64, timeout_ms: u64) -> usize {
        let mut count = 0;
        self.each(|sessions| {
            count += sessions
                .values()
                .filter(|s| {
                    s.id != except
                        && s.is_admitted()
                        && s.alive(now_ms, timeout_ms)
                        && s.user_id().as_deref() == Some(user)
                })
                .count();
        });
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor<'a>(ip: &str, token: Option<&'a str>, ua: &'a str) -> Visitor<'a> {
        Visitor {
            stream: "s",
            ip: ip.parse().unwrap(),
            token,
            user_agent: ua,
            referer: "",
        }
    }

    #[test]
    fn one_session_per_viewer_and_idle_ones_go() {
        let t = SessionTable::default();
        let mut gone = Vec::new();
        let (a, new) = t
            .session(
                &visitor("10.0.0.1", Some("x"), "ua"),
                Proto::Hls,
                0,
                30_000,
                &mut gone,
            )
            .unwrap();
        assert!(new);
        let (a2, new) = t
            .session(
                &visitor("10.0.0.1", Some("x"), "other ua"),
                Proto::Hls,
                1_000,
                30_000,
                &mut gone,
            )
            .unwrap();
        assert!(!new, "the token names the session, not the agent");
        assert_eq!(a.id, a2.id);
        let (b, _) = t
            .session(
                &visitor("10.0.0.2", Some("x"), "ua"),
                Proto::Hls,
                1_000,
                30_000,
                &mut gone,
            )
            .unwrap();
        assert_ne!(a.id, b.id, "another address is another viewer");
        let held = b.hold();
        assert_eq!(
            t.clients("s", 40_000, 30_000),
            (1, 1),
            "only the held one is alive"
        );
        t.session(
            &visitor("10.0.0.3", None, "ua"),
            Proto::Hls,
            40_000,
            30_000,
            &mut gone,
        )
        .unwrap();
        assert_eq!(gone.len(), 1, "the idle one was swept");
        assert_eq!(gone[0].id, a.id);
        drop(held);
        assert!(t.find(&b.id).is_some());
    }

    #[test]
    fn ended_sessions_stay_refused_and_users_are_counted() {
        let t = SessionTable::default();
        let mut gone = Vec::new();
        let (a, _) = t
            .session(
                &visitor("10.0.0.1", Some("a"), ""),
                Proto::Hls,
                0,
                30_000,
                &mut gone,
            )
            .unwrap();
        a.set_user(Some("u".into()));
        a.admit();
        assert_eq!(t.user_sessions("u", "other", 1_000, 30_000), 1);
        assert_eq!(t.user_sessions("u", &a.id, 1_000, 30_000), 0);
        assert!(a.end("api"));
        assert!(!a.end("api"), "ends once");
        assert_eq!(t.user_sessions("u", "other", 1_000, 30_000), 0);
        let (again, new) = t
            .session(
                &visitor("10.0.0.1", Some("a"), ""),
                Proto::Hls,
                2_000,
                30_000,
                &mut gone,
            )
            .unwrap();
        assert!(!new && again.is_ended(), "still the ended session");
    }
}
