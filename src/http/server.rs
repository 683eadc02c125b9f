//! Accept loops (HTTP, and HTTPS when configured) with the front door's limits and graceful
//! shutdown: on cancel the listeners close, connections are asked to finish, and whatever is
//! still open after the drain period is aborted. Each connection gets a place under
//! `max_connections` (or is closed at once), the deadlines of [`Timed`], and bounded request
//! heads (16 KiB: larger ones get 431 from hyper).

use super::AppState;
use super::conn::{Busy, Connections, Timed};
use super::service::handle;
use super::tls::TlsCertificate;
use crate::stats::names;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Largest request head (request line and headers) taken.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// The sockets to serve on.
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    /// The HTTPS listener and its certificate.
    pub https: Option<(TcpListener, Arc<TlsCertificate>)>,
}

/// How the viewer reached us (for absolute URLs written back to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Http,
    Https,
}

/// Serves until `state.shutdown` fires, then drains for at most `drain`.
pub async fn serve(listeners: Listeners, state: AppState, drain: Duration) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEAD)
        .header_read_timeout(None)
        .http2()
        .max_header_list_size(MAX_HEAD as u32);
    let builder = Arc::new(builder);
    // Shared by every connection and request: one reference count per request, not one per
    // field of the state.
    let state = Arc::new(state);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Connections::default());
    // Connection tasks are owned here, reaped as they finish, aborted after the drain.
    let mut connections = JoinSet::new();
    let Listeners { http, https } = listeners;
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => break,
            a = http.accept() => a.map(|(tcp, peer)| (tcp, peer, None)),
            a = accept_tls(https.as_ref()) => a.map(|(tcp, peer, tls)| (tcp, peer, Some(tls))),
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, peer, tls) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, usually: wait instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let front = state.front.load();
        let Some(place) = open.open(front.max_connections) else {
            metrics::counter!(names::CONNECTIONS_REFUSED, "reason" => "max_connections")
                .increment(1);
            debug!(%peer, "max_connections reached; connection closed");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let busy = Arc::new(Busy::default());
        let timed = Timed::new(
            tcp,
            busy.clone(),
            front.header_read_timeout,
            front.keepalive_timeout,
        );
        let st = state.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _place = place;
            match tls {
                None => serve_one(timed, peer, Scheme::Http, st, busy, &builder, watcher).await,
                Some(acceptor) => match acceptor.accept(timed).await {
                    Ok(stream) => {
                        serve_one(stream, peer, Scheme::Https, st, busy, &builder, watcher).await;
                    }
                    Err(e) => debug!(%peer, error = %e, "TLS handshake failed"),
                },
            }
        });
    }
    drop(http);
    drop(https);
    info!(open = connections.len(), "http: draining connections");
    tokio::select! {
        () = graceful.shutdown() => info!("http: all connections closed"),
        () = tokio::time::sleep(drain) => warn!(open = connections.len(), "http: drain timed out, closing the rest"),
    }
    connections.shutdown().await;
}

/// Accepts on the HTTPS listener; never ready without one.
async fn accept_tls(
    https: Option<&(TcpListener, Arc<TlsCertificate>)>,
) -> std::io::Result<(TcpStream, SocketAddr, tokio_rustls::TlsAcceptor)> {
    match https {
        Some((listener, cert)) => {
            let (tcp, peer) = listener.accept().await?;
            Ok((tcp, peer, cert.acceptor()))
        }
        None => std::future::pending().await,
    }
}

async fn serve_one<IO>(
    io: IO,
    peer: SocketAddr,
    scheme: Scheme,
    state: Arc<AppState>,
    busy: Arc<Busy>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let st = state.clone();
        let guard = busy.start();
        let span = super::trace::start(&req, scheme);
        async move {
            let publish = matches!(*req.method(), http::Method::POST | http::Method::PUT);
            let respond = async {
                if super::admin::is_write(req.method(), req.uri().path()) {
                    super::admin::handle(&st, req).await
                } else if publish {
                    super::publish::handle(&st, req, peer).await
                } else {
                    handle(&st, &req, peer, scheme).await
                }
            };
            let response = span.clone().scope(respond).await;
            Ok::<_, Infallible>(super::body::keep_until_sent_traced(response, guard, span))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}
