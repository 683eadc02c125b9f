//! MPEG-TS pushes: UDP (unicast or multicast) and SRT (caller, or a listener viewers call),
//! all paced by PCR in datagrams of seven packets.

use super::ts::{Continuity, Pacer};
use super::{Feed, Next, PushError, Source, running};
use crate::config::SrtOptions;
use crate::stream::PushStatus;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use srt_tokio::{SrtListener, SrtSocket};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{debug, info};

/// Output runs this far behind the stream, to even out the source's own jitter (an encoder
/// that sends audio in 0.4 s bursts, a muxer that interleaves late).
const PACING_DELAY: Duration = Duration::from_millis(500);
/// Datagrams due within this much of a wake-up go out with it: one wake-up per datagram would
/// cost more than the sending (a 4 Mbit/s push has one every 2.6 ms).
const SEND_SLACK: Duration = Duration::from_millis(5);
/// SRT viewers of one listener push at most.
const MAX_VIEWERS: usize = 64;
/// How long an SRT caller waits for the destination's handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where paced datagrams go.
trait Datagrams {
    async fn send(&mut self, datagram: Bytes) -> Result<(), PushError>;
}

struct Udp {
    socket: tokio::net::UdpSocket,
    dest: SocketAddr,
}

impl Datagrams for Udp {
    async fn send(&mut self, datagram: Bytes) -> Result<(), PushError> {
        self.socket.send_to(&datagram, self.dest).await?;
        Ok(())
    }
}

struct Srt(SrtSocket);

impl Datagrams for Srt {
    async fn send(&mut self, datagram: Bytes) -> Result<(), PushError> {
        self.0
            .send((std::time::Instant::now(), datagram))
            .await
            .map_err(|_| PushError::Closed)
    }
}

/// Sends the feed paced until the stream ends (`Ok`) or the destination fails.
async fn paced(
    mut feed: Feed,
    out: &mut impl Datagrams,
    bytes: &std::sync::atomic::AtomicU64,
) -> Result<(), PushError> {
    let mut continuity = Continuity::new();
    let mut pacer = Pacer::new(PACING_DELAY);
    let mut synced = false;
    loop {
        let due = pacer.next_due().map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            () = sleep_until(due), if due.is_some() => {
                let now = std::time::Instant::now() + SEND_SLACK;
                while let Some(d) = pacer.pop_due(now) {
                    let n = d.len() as u64;
                    out.send(d).await?;
                    bytes.fetch_add(n, Ordering::Relaxed);
                }
            }
            next = feed.next() => match next {
                Next::Chunk(chunk) => {
                    // Start (and start again after a loss) at a keyframe with its PAT/PMT.
                    if !synced && !chunk.keyframe {
                        continue;
                    }
                    synced = true;
                    let mut data = chunk.data.to_vec();
                    continuity.rewrite(&mut data);
                    pacer.push(&data, std::time::Instant::now());
                }
                Next::Lost => {
                    synced = false;
                    continuity.mark_break();
                }
                Next::End => return Ok(()),
            },
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// MPEG-TS over UDP to `dest`; a multicast group leaves through `iface` with `ttl` hops.
pub(super) async fn udp(
    dest: SocketAddr,
    ttl: Option<u32>,
    iface: Option<&str>,
    feed: Feed,
    status: &Arc<PushStatus>,
) -> Result<(), PushError> {
    let local: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(dest),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if dest.ip().is_multicast() {
        match dest.ip() {
            IpAddr::V4(_) => {
                socket.set_multicast_ttl_v4(ttl.unwrap_or(1))?;
                if let Some(name) = iface {
                    socket.set_multicast_if_v4(&interface_v4(name)?)?;
                }
            }
            IpAddr::V6(_) => socket.set_multicast_hops_v6(ttl.unwrap_or(1))?,
        }
    } else if let Some(t) = ttl {
        match dest.ip() {
            IpAddr::V4(_) => socket.set_ttl_v4(t)?,
            IpAddr::V6(_) => socket.set_unicast_hops_v6(t)?,
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    let socket = tokio::net::UdpSocket::from_std(socket.into())?;
    running(status);
    paced(feed, &mut Udp { socket, dest }, &status.bytes).await
}

/// The first IPv4 address of interface `name`.
fn interface_v4(name: &str) -> Result<Ipv4Addr, PushError> {
    let networks = sysinfo::Networks::new_with_refreshed_list()
        .map_err(|e| PushError::Interface(name.into(), e.to_string()))?;
    let Some(data) = networks.get(std::ffi::OsStr::new(name)) else {
        return Err(PushError::Interface(
            name.into(),
            "no such interface".into(),
        ));
    };
    data.ip_networks()
        .iter()
        .find_map(|n| match n.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| PushError::Interface(name.into(), "it has no IPv4 address".into()))
}

fn srt_latency(srt: &SrtOptions) -> Duration {
    Duration::from_millis(u64::from(srt.latency_ms.unwrap_or(200)))
}

/// Calls the SRT destination and sends until it goes away.
pub(super) async fn srt_call(
    host: &str,
    port: u16,
    srt: &SrtOptions,
    feed: Feed,
    status: &Arc<PushStatus>,
) -> Result<(), PushError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let remote = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| PushError::Resolve(host.into()))?
        .next()
        .ok_or_else(|| PushError::Resolve(host.into()))?;
    let mut builder = SrtSocket::builder().latency(srt_latency(srt));
    if let Some(p) = &srt.passphrase {
        builder = builder.encryption(0, p.clone());
    }
    let socket = tokio::time::timeout(
        CONNECT_TIMEOUT,
        builder.call(remote, srt.streamid.as_deref()),
    )
    .await
    .map_err(|_| PushError::Timeout("waiting for the SRT handshake"))?
    .map_err(|e| PushError::Srt(e.to_string()))?;
    status.connections.store(1, Ordering::Relaxed);
    running(status);
    let mut out = Srt(socket);
    let result = paced(feed, &mut out, &status.bytes).await;
    let _ = out.0.close().await;
    result
}

/// Listens for SRT viewers; each gets the stream from its next keyframe. Runs until the
/// stream ends or the port cannot be bound.
pub(super) async fn srt_listen(
    port: u16,
    srt: &SrtOptions,
    source: &Source,
    status: &Arc<PushStatus>,
) -> Result<(), PushError> {
    let mut builder = SrtListener::builder().latency(srt_latency(srt));
    if let Some(p) = &srt.passphrase {
        builder = builder.encryption(0, p.clone());
    }
    let (mut listener, mut incoming) = builder
        .bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .await
        .map_err(|e| PushError::Srt(format!("cannot listen on port {port}: {e}")))?;
    running(status);
    let mut viewers = JoinSet::new();
    let result = loop {
        let request = tokio::select! {
            r = incoming.incoming().next() => match r {
                Some(r) => r,
                None => break Err(PushError::Srt(format!("the listener on port {port} closed"))),
            },
            Some(_) = viewers.join_next(), if !viewers.is_empty() => {
                status.connections.store(viewers.len() as u64, Ordering::Relaxed);
                continue;
            }
        };
        let remote = request.remote();
        if viewers.len() >= MAX_VIEWERS {
            info!(%remote, "SRT viewer refused: {MAX_VIEWERS} viewers already");
            let _ = request
                .reject(srt_tokio::access::RejectReason::Server(
                    srt_tokio::access::ServerRejectReason::Overload,
                ))
                .await;
            continue;
        }
        let socket = match request.accept(None).await {
            Ok(s) => s,
            Err(e) => {
                debug!(%remote, error = %e, "SRT viewer left during the handshake");
                continue;
            }
        };
        info!(%remote, "SRT viewer connected");
        let feed = source.subscribe();
        let viewer_status = status.clone();
        viewers.spawn(async move {
            let mut out = Srt(socket);
            let outcome = paced(feed, &mut out, &viewer_status.bytes).await;
            let _ = out.0.close().await;
            info!(%remote, outcome = ?outcome.err().map(|e| e.to_string()), "SRT viewer left");
        });
        status
            .connections
            .store(viewers.len() as u64, Ordering::Relaxed);
    };
    viewers.shutdown().await;
    listener.close().await;
    result
}
