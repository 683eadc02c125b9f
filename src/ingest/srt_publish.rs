//! The SRT publish listener (`[server] srt_publish`): encoders call
//! `srt://HOST:PORT?streamid=NAME?key=SECRET` (or the SRT access-control form
//! `#!::r=NAME,key=SECRET`) to push MPEG-TS into a `publish://` stream. Runs on tokio with
//! `srt-tokio`, because GStreamer 1.22's `srtsrc` never asks the application about a caller:
//! here every caller is decided during the handshake — `on_publish` first, then the stream's
//! slot (publish key, one publisher at a time) — so a refused one is rejected before it can
//! send a byte. An accepted caller's payloads go to the slot as an HTTP publisher's body does.

use super::publish::{Claim, PublishSlots};
use crate::stream::{PublishAttempt, PublishGate, Refusal};
use futures_util::StreamExt;
use srt_tokio::SrtListener;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A publisher silent this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Publishers at once, so a flood of callers cannot exhaust the server.
const MAX_PUBLISHERS: usize = 256;

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
#[error("SRT publish listener on {0}: {1}")]
pub struct SrtPublishError(SocketAddr, String);

/// A bound port, ready to [`serve`](SrtPublisher::serve).
#[derive(Debug)]
pub struct SrtPublisher {
    udp: tokio::net::UdpSocket,
    pub local_addr: SocketAddr,
}

impl SrtPublisher {
    /// Binds the UDP port (errors here stop the start, like a taken HTTP port).
    pub async fn bind(addr: SocketAddr) -> Result<Self, SrtPublishError> {
        let err = |e: std::io::Error| SrtPublishError(addr, e.to_string());
        // Bound here first, so that port 0 tells which port it got.
        let udp = tokio::net::UdpSocket::bind(addr).await.map_err(err)?;
        let local_addr = udp.local_addr().map_err(err)?;
        Ok(SrtPublisher { udp, local_addr })
    }

    /// Accepts publishers until cancelled.
    pub async fn serve(
        self,
        slots: PublishSlots,
        gate: Arc<dyn PublishGate>,
        cancel: CancellationToken,
    ) {
        let bound = SrtListener::builder()
            .latency(Duration::from_millis(200))
            .socket(self.udp)
            .bind(self.local_addr)
            .await;
        let (mut listener, mut incoming) = match bound {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(srt = %self.local_addr, error = %e, "SRT publish listener failed");
                return;
            }
        };
        let mut publishers = JoinSet::new();
        loop {
            let request = tokio::select! {
                () = cancel.cancelled() => break,
                r = incoming.incoming().next() => match r {
                    Some(r) => r,
                    None => break,
                },
                Some(_) = publishers.join_next(), if !publishers.is_empty() => continue,
            };
            let remote = request.remote();
            let stream_id = request
                .stream_id()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let decided = decide(&stream_id, remote, publishers.len(), &slots, gate.as_ref()).await;
            let (name, claim) = match decided {
                Ok(accepted) => accepted,
                Err((label, reason)) => {
                    metrics::counter!(crate::stats::names::PUBLISH_REFUSED, "reason" => label)
                        .increment(1);
                    warn!(%remote, reason = label, "SRT publish refused");
                    let _ = request.reject(RejectReason::Server(reason)).await;
                    continue;
                }
            };
            let socket = match request.accept(None).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(stream = %name, %remote, error = %e, "SRT publisher left during the handshake");
                    continue;
                }
            };
            info!(stream = %name, %remote, "SRT publisher connected");
            let stop = cancel.clone();
            publishers.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = publish(socket, &claim, &name) => {}
                }
            });
        }
        publishers.shutdown().await;
        listener.close().await;
    }
}

/// The `on_publish` backend, then the stream's slot; the refusal's label and SRT reason.
async fn decide(
    stream_id: &str,
    remote: SocketAddr,
    running: usize,
    slots: &PublishSlots,
    gate: &dyn PublishGate,
) -> Result<(String, Claim), (&'static str, ServerRejectReason)> {
    let (name, key) =
        parse_stream_id(stream_id).ok_or(("bad_stream_id", ServerRejectReason::BadRequest))?;
    if running >= MAX_PUBLISHERS {
        return Err(("overload", ServerRejectReason::Overload));
    }
    let attempt = PublishAttempt {
        stream: &name,
        ip: remote.ip(),
        proto: "srt",
        key: key.as_deref(),
        query: stream_id,
    };
    if !gate.allow(attempt).await {
        return Err(("on_publish", ServerRejectReason::Forbidden));
    }
    match slots.claim(&name, key.as_deref()) {
        Ok(claim) => Ok((name, claim)),
        Err(refusal) => Err((
            refusal.label(),
            match refusal {
                Refusal::UnknownStream => ServerRejectReason::Notfound,
                Refusal::BadKey => ServerRejectReason::Unauthorized,
                Refusal::Busy => ServerRejectReason::Conflict,
            },
        )),
    }
}

/// Forwards one publisher's payloads until it leaves, falls silent or the stream stops
/// taking it.
async fn publish(mut socket: srt_tokio::SrtSocket, claim: &Claim, name: &str) {
    let mut bytes = 0u64;
    loop {
        match tokio::time::timeout(READ_TIMEOUT, socket.next()).await {
            Ok(Some(Ok((_, data)))) => {
                bytes += data.len() as u64;
                claim.push(data.to_vec());
                if claim.is_closed() {
                    info!(
                        stream = name,
                        "the stream no longer takes this publisher; closing"
                    );
                    break;
                }
            }
            Ok(Some(Err(e))) => {
                warn!(stream = name, error = %e, "SRT publisher broke off");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                warn!(stream = name, "SRT publisher silent, closing");
                break;
            }
        }
    }
    info!(stream = name, bytes, "SRT publisher finished");
}

/// The stream name and key of a stream ID: `NAME`, `NAME?key=K`, or `#!::r=NAME,key=K`
/// (other `#!::` keys ignored). `None` when no valid stream name is in it.
fn parse_stream_id(id: &str) -> Option<(String, Option<String>)> {
    let (name, key) = match id.strip_prefix("#!::") {
        Some(pairs) => {
            let get = |k: &str| {
                pairs
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            };
            (get("r")?, get("key"))
        }
        None => match id.split_once('?') {
            Some((name, query)) => (
                name,
                query.split('&').find_map(|kv| kv.strip_prefix("key=")),
            ),
            None => (id, None),
        },
    };
    crate::config::valid_stream_name(name).then(|| {
        (
            name.to_owned(),
            key.filter(|k| !k.is_empty()).map(str::to_owned),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::parse_stream_id;

    #[test]
    fn stream_ids_name_the_stream_and_key() {
        let s = |n: &str, k: Option<&str>| Some((n.to_owned(), k.map(str::to_owned)));
        assert_eq!(parse_stream_id("cam1"), s("cam1", None));
        assert_eq!(parse_stream_id("cam1?key=abc"), s("cam1", Some("abc")));
        assert_eq!(
            parse_stream_id("#!::r=cam1,m=publish,key=abc"),
            s("cam1", Some("abc"))
        );
        assert_eq!(parse_stream_id("#!::m=publish"), None);
        assert_eq!(parse_stream_id("../etc"), None);
        assert_eq!(parse_stream_id(""), None);
    }
}
