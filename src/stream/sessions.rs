//! Who is watching a stream. HTTP playback is polling, so an HLS client is a *session*: a key
//! (the `token` query parameter when present, else client IP + User-Agent) that made a
//! playback request within the session timeout. A `/mpegts` client is one open connection.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Hard cap on tracked sessions per stream, so a flood of fake user agents cannot grow memory.
const MAX_SESSIONS: usize = 100_000;

/// A session key: hashed, so no client address or agent string is kept.
pub fn session_key(ip: IpAddr, user_agent: &str, token: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    match token {
        Some(t) => ("token", t).hash(&mut h),
        None => ("ip-ua", ip, user_agent).hash(&mut h),
    }
    h.finish()
}

/// Sessions of one stream, in shards: a request locks only its viewer's shard (the stats
/// thread sweeps them one after another).
#[derive(Debug)]
pub struct Sessions {
    /// Key → monotonic ms of the last request, in [`SHARDS`] maps chosen by key. A lock is
    /// held only for one insert or one shard's sweep.
    last_seen: Box<[Mutex<HashMap<u64, u64>>]>,
    /// Sessions in all shards; at most [`MAX_SESSIONS`] (counted across shards: the key is
    /// an unkeyed hash, so a flood could aim at one shard).
    len: AtomicUsize,
    /// Open `/mpegts` connections.
    streaming: AtomicU64,
}

/// Shards per stream: a few more than the cores that serve one stream's viewers at once.
const SHARDS: usize = 16;

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            last_seen: (0..SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
            streaming: AtomicU64::new(0),
        }
    }
}

impl Sessions {
    /// Records a playback request at monotonic time `now_ms`.
    pub fn touch(&self, key: u64, now_ms: u64) {
        let mut map = self.last_seen[(key >> 60) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(seen) = map.get_mut(&key) {
            *seen = now_ms;
        } else if self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_SESSIONS).then_some(n + 1)
            })
            .is_ok()
        {
            map.insert(key, now_ms);
        }
    }

    /// Drops sessions idle for longer than `timeout_ms` and returns how many clients are
    /// connected: live HLS sessions plus open `/mpegts` connections.
    pub fn active(&self, now_ms: u64, timeout_ms: u64) -> u64 {
        let mut sessions = 0;
        for shard in &self.last_seen {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, seen| now_ms.saturating_sub(*seen) <= timeout_ms);
            self.len.fetch_sub(before - map.len(), Ordering::Relaxed);
            sessions += map.len() as u64;
        }
        sessions + self.streaming.load(Ordering::Relaxed)
    }

    /// Counts an open `/mpegts` connection until the guard drops.
    pub fn open_stream(self: &Arc<Self>) -> StreamingClient {
        self.streaming.fetch_add(1, Ordering::Relaxed);
        StreamingClient {
            sessions: self.clone(),
        }
    }
}

/// Held by an endless response body; dropping it (client gone) ends the count.
#[derive(Debug)]
pub struct StreamingClient {
    sessions: Arc<Sessions>,
}

impl Drop for StreamingClient {
    fn drop(&mut self) {
        self.sessions.streaming.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_streams_count_while_open() {
        let s = Arc::new(Sessions::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        s.touch(session_key(ip, "a", None), 1000);
        s.touch(session_key(ip, "a", None), 2000); // same client polling
        s.touch(session_key(ip, "b", None), 2000);
        s.touch(session_key(ip, "a", Some("tok")), 2500); // token beats ip+ua
        assert_eq!(s.active(3000, 5000), 3);
        let guard = s.open_stream();
        assert_eq!(s.active(3000, 5000), 4);
        drop(guard);
        assert_eq!(
            s.active(7100, 5000),
            1,
            "only the token session (seen at 2500) is left"
        );
        assert_eq!(s.active(20_000, 5000), 0);
    }
}
