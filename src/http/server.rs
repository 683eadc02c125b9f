//! Accept loop with graceful shutdown: on cancel the listener closes, connections are asked
//! to finish, and whatever is still open after the drain period is aborted.

use super::AppState;
use super::service::handle;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Serves until `state.shutdown` fires, then drains for at most `drain`.
pub async fn serve(listener: TcpListener, state: AppState, drain: Duration) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    // Connection tasks are owned here, reaped as they finish, aborted after the drain.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let st = state.clone();
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        async move {
                            let publish = matches!(*req.method(), http::Method::POST | http::Method::PUT);
                            Ok::<_, Infallible>(if super::admin::is_write(req.method(), req.uri().path()) {
                                super::admin::handle(&st, req).await
                            } else if publish {
                                super::publish::handle(&st, req).await
                            } else {
                                handle(&st, &req, peer).await
                            })
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(tcp), svc).into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        if let Err(e) = conn.await {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, usually: wait instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    info!(open = connections.len(), "http: draining connections");
    tokio::select! {
        () = graceful.shutdown() => info!("http: all connections closed"),
        () = tokio::time::sleep(drain) => warn!(open = connections.len(), "http: drain timed out, closing the rest"),
    }
    connections.shutdown().await;
}
