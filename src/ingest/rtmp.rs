//! The RTMP publish server (OBS, ffmpeg, hardware encoders push `rtmp://HOST/APP/NAME`).
//! GStreamer 1.22 has no RTMP server element, so the protocol runs here on tokio with
//! `rml_rtmp` (sans-IO): handshake, session, then each audio/video message becomes an FLV tag
//! pushed into the stream's publish slot. `NAME?key=SECRET` carries the stream's publish key.

use super::publish::{Claim, PublishSlots};
use crate::stream::{PublishAttempt, PublishGate, Refusal};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A connection must finish the handshake and start publishing within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A publisher silent this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-connection cap, so a flood of connections cannot exhaust the server.
const MAX_CONNECTIONS: usize = 256;

/// Accepts publishers until cancelled.
pub async fn serve(
    listener: TcpListener,
    slots: PublishSlots,
    gate: Arc<dyn PublishGate>,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) if connections.len() < MAX_CONNECTIONS => {
                    let slots = slots.clone();
                    let gate = gate.clone();
                    let cancel = cancel.clone();
                    connections.spawn(async move {
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            result = connection(tcp, peer.ip(), &slots, gate.as_ref()) => if let Err(why) = result {
                                info!(%peer, %why, "RTMP connection closed");
                            }
                        }
                    });
                }
                Ok((_, peer)) => warn!(%peer, "too many RTMP connections, refusing"),
                Err(e) => {
                    warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn connection(
    mut tcp: TcpStream,
    ip: IpAddr,
    slots: &PublishSlots,
    gate: &dyn PublishGate,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    // Handshake.
    let mut handshake = Handshake::new(PeerType::Server);
    let leftover = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        loop {
            let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during handshake".to_owned());
            }
            match handshake
                .process_bytes(&buf[..n])
                .map_err(|e| format!("bad handshake: {e:?}"))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    tcp.write_all(&response_bytes)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    tcp.write_all(&response_bytes)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(remaining_bytes);
                }
            }
        }
    })
    .await
    .map_err(|_| "handshake timed out".to_owned())??;

    let (mut session, initial) =
        ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("{e:?}"))?;
    let mut publisher: Option<Publisher> = None;
    let mut pending = initial;
    let mut refused = false;
    let mut input = leftover;
    loop {
        if !input.is_empty() {
            let results = session
                .handle_input(&input)
                .map_err(|e| format!("bad RTMP data: {e:?}"))?;
            pending.extend(results);
            input.clear();
        }
        while !pending.is_empty() {
            let results = std::mem::take(&mut pending);
            for result in results {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => {
                        tcp.write_all(&packet.bytes)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    ServerSessionResult::RaisedEvent(
                        ServerSessionEvent::PublishStreamRequested {
                            request_id,
                            stream_key,
                            ..
                        },
                    ) => {
                        let (results, refuse) = on_publish(
                            &mut session,
                            request_id,
                            &stream_key,
                            ip,
                            slots,
                            gate,
                            &mut publisher,
                        )
                        .await?;
                        pending.extend(results);
                        refused |= refuse;
                    }
                    ServerSessionResult::RaisedEvent(event) => {
                        pending.extend(on_event(&mut session, event, &mut publisher)?);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
        if refused {
            // The refusal has been sent; the connection ends here.
            return Err("publish refused".to_owned());
        }
        if publisher.as_ref().is_some_and(|p| p.claim.is_closed()) {
            return Err(
                "the stream no longer takes this publisher (deleted or new key)".to_owned(),
            );
        }
        let timeout = if publisher.is_some() {
            READ_TIMEOUT
        } else {
            HANDSHAKE_TIMEOUT
        };
        let n = tokio::time::timeout(timeout, tcp.read(&mut buf))
            .await
            .map_err(|_| "publisher silent".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&buf[..n]);
    }
}

/// The stream a connection publishes to.
#[derive(Debug)]
struct Publisher {
    claim: Claim,
    name: String,
}

/// A publish request: the `on_publish` backend first, then the stream's slot (publish key,
/// one publisher at a time). Refusals are sent and end the connection (the `bool`).
async fn on_publish(
    session: &mut ServerSession,
    request_id: u32,
    stream_key: &str,
    ip: IpAddr,
    slots: &PublishSlots,
    gate: &dyn PublishGate,
    publisher: &mut Option<Publisher>,
) -> Result<(Vec<ServerSessionResult>, bool), String> {
    let rtmp_err = |e: rml_rtmp::sessions::ServerSessionError| format!("{e:?}");
    let (name, query) = stream_key.split_once('?').unwrap_or((stream_key, ""));
    let key = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("key="))
        .map(str::to_owned);
    let attempt = PublishAttempt {
        stream: name,
        ip,
        proto: "rtmp",
        key: key.as_deref(),
        query,
    };
    let refusal = if gate.allow(attempt).await {
        match slots.claim(name, key.as_deref()) {
            Ok(claim) => {
                info!(stream = %name, "RTMP publisher connected");
                let mut header = Vec::with_capacity(13);
                header.extend_from_slice(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
                claim.push(header);
                *publisher = Some(Publisher {
                    claim,
                    name: name.to_owned(),
                });
                return Ok((session.accept_request(request_id).map_err(rtmp_err)?, false));
            }
            Err(refusal) => (refusal.label(), refusal_text(refusal)),
        }
    } else {
        ("on_publish", "refused by the authorization backend")
    };
    metrics::counter!(crate::stats::names::PUBLISH_REFUSED, "reason" => refusal.0).increment(1);
    warn!(stream = %name, reason = refusal.0, "RTMP publish refused");
    // Send the refusal, then end the connection.
    let results = session
        .reject_request(request_id, "NetStream.Publish.BadName", refusal.1)
        .map_err(rtmp_err)?;
    Ok((results, true))
}

fn on_event(
    session: &mut ServerSession,
    event: ServerSessionEvent,
    publisher: &mut Option<Publisher>,
) -> Result<Vec<ServerSessionResult>, String> {
    let rtmp_err = |e: rml_rtmp::sessions::ServerSessionError| format!("{e:?}");
    let none = Ok(Vec::new());
    match event {
        ServerSessionEvent::ConnectionRequested { request_id, .. } => {
            Ok(session.accept_request(request_id).map_err(rtmp_err)?)
        }
        ServerSessionEvent::PublishStreamFinished { .. } => {
            if let Some(p) = publisher.take() {
                info!(stream = %p.name, "RTMP publisher finished");
            }
            none
        }
        ServerSessionEvent::VideoDataReceived {
            data, timestamp, ..
        } => {
            push_tag(publisher, 9, &data, timestamp.value);
            none
        }
        ServerSessionEvent::AudioDataReceived {
            data, timestamp, ..
        } => {
            push_tag(publisher, 8, &data, timestamp.value);
            none
        }
        // Others (release/FCPublish, metadata, ack sizes) need no action. They are not logged
        // with their fields: stream keys carry the publish key.
        _ => none,
    }
}

fn refusal_text(r: Refusal) -> &'static str {
    match r {
        Refusal::UnknownStream => "no such publish stream",
        Refusal::BadKey => "wrong publish key",
        Refusal::Busy => "stream already has a publisher",
    }
}

/// Wraps an RTMP audio (8) or video (9) message as an FLV tag.
fn push_tag(publisher: &Option<Publisher>, kind: u8, data: &[u8], ts: u32) {
    let Some(p) = publisher else {
        return;
    };
    p.claim.push(flv_tag(kind, data, ts));
}

/// An FLV tag: header (type, 24-bit size, 24+8-bit timestamp, stream id 0), data, and the
/// 32-bit size of the tag that follows it.
pub fn flv_tag(kind: u8, data: &[u8], ts: u32) -> Vec<u8> {
    let size = data.len() as u32;
    let mut tag = Vec::with_capacity(data.len() + 15);
    tag.push(kind);
    tag.extend_from_slice(&size.to_be_bytes()[1..]);
    tag.extend_from_slice(&(ts & 0x00ff_ffff).to_be_bytes()[1..]);
    tag.push((ts >> 24) as u8);
    tag.extend_from_slice(&[0, 0, 0]);
    tag.extend_from_slice(data);
    tag.extend_from_slice(&(size + 11).to_be_bytes());
    tag
}

#[cfg(test)]
mod tests {
    use super::flv_tag;

    #[test]
    fn flv_tag_layout() {
        let t = flv_tag(9, &[1, 2, 3], 0x0102_0304);
        assert_eq!(
            t,
            [
                9, 0, 0, 3, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14
            ]
        );
    }
}
