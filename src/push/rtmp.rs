//! RTMP push: connect, publish KEY on APP, then the stream as FLV tags (see
//! [`crate::packaging::flv`]). `rml_rtmp` is sans-IO: this file does the socket work.

use super::{Feed, Next, PushError, running};
use crate::packaging::flv::{FlvMuxer, FlvTag};
use crate::stream::{PushStatus, StreamCounters};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

/// Connecting, the handshake and the publish request together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Kernel send buffer of the connection, bytes (about 2 s of a 1 Mbit/s stream).
const SEND_BUFFER: u32 = 256 * 1024;
/// Packets queued for the socket (about 2 s of video and audio messages); beyond, chunks are
/// left out.
const QUEUE_PACKETS: usize = 128;
/// A destination that takes no bytes for this long is dropped (and retried).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn rtmp_err(e: impl std::fmt::Debug) -> PushError {
    PushError::Rtmp(format!("{e:?}"))
}

/// Publishes the feed to `rtmp://host:port/app/key` until the stream ends (`Ok`) or the
/// destination fails.
pub(super) async fn publish(
    host: &str,
    port: u16,
    app: &str,
    key: &str,
    mut feed: Feed,
    status: &Arc<PushStatus>,
) -> Result<(), PushError> {
    let (tcp, mut session, mut input) =
        tokio::time::timeout(SETUP_TIMEOUT, setup(host, port, app, key))
            .await
            .map_err(|_| PushError::Timeout("connecting and asking to publish"))??;
    status.connections.store(1, Ordering::Relaxed);
    running(status);
    let (mut rd, mut wr) = tcp.into_split();
    // Serialized RTMP packets on their way to the socket, in order. Bounded: when the
    // destination cannot keep up, whole chunks are left out before they are serialized (the
    // session's header compression forbids dropping a packet once made) and the push resumes
    // at the next keyframe.
    let (queue, mut outgoing) = mpsc::channel::<Vec<u8>>(QUEUE_PACKETS);
    let writer = async {
        while let Some(packet) = outgoing.recv().await {
            tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&packet))
                .await
                .map_err(|_| PushError::Timeout("writing to the destination"))??;
            status
                .bytes
                .fetch_add(packet.len() as u64, Ordering::Relaxed);
        }
        Ok::<(), PushError>(())
    };
    let sender = async {
        let mut flv = FlvMuxer::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if !input.is_empty() {
                // Acknowledgements and pings: answer them, ignore the rest.
                let results = session.handle_input(&input).map_err(rtmp_err)?;
                input.clear();
                for r in results {
                    if let ClientSessionResult::OutboundResponse(p) = r {
                        queue.send(p.bytes).await.map_err(|_| PushError::Closed)?;
                    }
                }
            }
            tokio::select! {
                n = rd.read(&mut buf) => {
                    let n = n?;
                    if n == 0 {
                        return Err(PushError::Closed);
                    }
                    input.extend_from_slice(&buf[..n]);
                }
                next = feed.next() => match next {
                    Next::Chunk(chunk) => {
                        let tags = match flv.push(&chunk.data, chunk.keyframe) {
                            Ok(t) => t,
                            Err(e) => {
                                // One bad chunk: skip to the next keyframe.
                                debug!(error = %e, "chunk cannot be sent as FLV");
                                flv.restart();
                                continue;
                            }
                        };
                        if tags.len() > queue.capacity() {
                            StreamCounters::add(&status.dropped_chunks, 1);
                            flv.restart();
                            continue;
                        }
                        for tag in tags {
                            let ms = RtmpTimestamp::new(tag.ms());
                            let result = match tag {
                                FlvTag::Video { body, keyframe, .. } => {
                                    session.publish_video_data(body, ms, !keyframe)
                                }
                                FlvTag::Audio { body, .. } => {
                                    session.publish_audio_data(body, ms, false)
                                }
                            }
                            .map_err(rtmp_err)?;
                            if let ClientSessionResult::OutboundResponse(p) = result {
                                queue.try_send(p.bytes).map_err(|_| PushError::Closed)?;
                            }
                        }
                    }
                    Next::Lost => flv.restart(),
                    Next::End => return Ok(()),
                },
            }
        }
    };
    tokio::select! {
        r = writer => r.and(Err(PushError::Closed)),
        r = sender => r,
    }
}

/// Connects, shakes hands, connects to `app` and asks to publish `key`; returns the socket,
/// the session and bytes already read past the last answer.
async fn setup(
    host: &str,
    port: u16,
    app: &str,
    key: &str,
) -> Result<(TcpStream, ClientSession, Vec<u8>), PushError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|_| PushError::Resolve(host.into()))?
        .next()
        .ok_or_else(|| PushError::Resolve(host.into()))?;
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // Bounds what may wait in the kernel for a slow destination (the kernel would let it grow
    // to megabytes): beyond it the push's own queue drops chunks, counted.
    socket.set_send_buffer_size(SEND_BUFFER)?;
    let mut tcp = socket.connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake.generate_outbound_p0_and_p1().map_err(rtmp_err)?;
    tcp.write_all(&c0c1).await?;
    let mut input = loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err(PushError::Closed);
        }
        match handshake.process_bytes(&buf[..n]).map_err(rtmp_err)? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                tcp.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                tcp.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(format!("rtmp://{host}:{port}/{app}"));
    let (mut session, initial) = ClientSession::new(config).map_err(rtmp_err)?;
    let mut pending = initial;
    pending.push(
        session
            .request_connection(app.to_owned())
            .map_err(rtmp_err)?,
    );
    let mut asked_to_publish = false;
    let mut published = false;
    loop {
        for r in std::mem::take(&mut pending) {
            match r {
                ClientSessionResult::OutboundResponse(p) => tcp.write_all(&p.bytes).await?,
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted)
                    if !asked_to_publish =>
                {
                    asked_to_publish = true;
                    let r = session
                        .request_publishing(key.to_owned(), PublishRequestType::Live)
                        .map_err(rtmp_err)?;
                    if let ClientSessionResult::OutboundResponse(p) = r {
                        tcp.write_all(&p.bytes).await?;
                    }
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => {
                    return Err(PushError::Rtmp(format!(
                        "the server refused application {app}: {description}"
                    )));
                }
                // Packets after it in this batch are still written (the session's header
                // compression counts on every packet it made reaching the peer).
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    published = true;
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::UnhandleableOnStatusCode { code },
                ) if [
                    "BadName",
                    "Denied",
                    "Rejected",
                    "Failed",
                    "Error",
                    "Unauthorized",
                ]
                .iter()
                .any(|w| code.contains(w)) =>
                {
                    return Err(PushError::Rtmp(format!(
                        "the server refused to publish: {code}"
                    )));
                }
                _ => {}
            }
        }
        if published {
            return Ok((tcp, session, std::mem::take(&mut input)));
        }
        if !input.is_empty() {
            pending.extend(session.handle_input(&input).map_err(rtmp_err)?);
            input.clear();
            continue;
        }
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err(PushError::Closed);
        }
        input.extend_from_slice(&buf[..n]);
    }
}
