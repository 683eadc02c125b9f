//! Composition root: starts the control plane (which starts every stream from a [`Config`]
//! and changes the set at run time), the HTTP server and the stats thread, owns their tasks
//! in one `JoinSet`, and shuts down in order.
//!
//! Shutdown order: the token fires → HTTP stops accepting and endless bodies end → the
//! control plane stops each stream: ingest pipelines go to `Null`, then its actor, then its
//! DVR writers finish their queue → HTTP drains open connections (bounded) → the stats
//! thread stops.

use crate::access::Access;
use crate::config::{Config, Overrides};
use crate::control::{self, ControlPlane, LiveHandles};
use crate::http::ApiAuth;
use crate::http::{AppState, Exports, Listeners, TlsCertificate, serve};
use crate::ingest::PublishSlots;
use crate::stats::{Exposition, LiveSettings, StatsConfig, StatsHealth, StatsSources, StatsThread};
use crate::stream::{DvbCards, Registry};
use anyhow::Context;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// A running server.
#[derive(Debug)]
pub struct App {
    /// The control plane (which owns every stream's parts) and the HTTP server.
    tasks: JoinSet<()>,
    /// Stopped after the tasks, so the last figures cover the shutdown.
    stats: Option<StatsThread>,
    shutdown: CancellationToken,
    /// The address actually bound (useful with port 0).
    pub local_addr: std::net::SocketAddr,
}

impl App {
    /// Binds the listener and starts every stream. Fails only on start-up problems.
    pub async fn start(config: Config, overrides: Overrides) -> anyhow::Result<App> {
        crate::gst_util::init().context("initialising GStreamer")?;
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let dvb = Arc::new(DvbCards::default());
        let registry = Registry::default();
        let live = LiveHandles {
            auth: Arc::new(ArcSwap::from_pointee(ApiAuth {
                view: config.server.view_auth.clone(),
                edit: config.server.edit_auth.clone(),
            })),
            stats: Arc::new(LiveSettings::new(
                config.server.stats_interval_ms,
                config.server.session_timeout_s * 1000,
            )),
            access: Arc::new(Access::new(config.server.auth.clone())),
            front: Arc::new(ArcSwap::from_pointee(config.server.front.clone())),
            exports: Arc::new(Exports::new(
                config.dvr.max_exports,
                config.dvr.max_export_s,
            )),
            tls: match &config.server.tls {
                Some(t) => Some(Arc::new(
                    TlsCertificate::load(&t.cert, &t.key)
                        .context("loading the HTTPS certificate")?,
                )),
                None => None,
            },
        };
        // Every DVR root a stream may record under is watched by the stats thread.
        let mut dvr_roots = vec![config.dvr.root.clone()];
        for root in config
            .streams
            .iter()
            .filter_map(|s| s.dvr.as_ref()?.root.clone())
        {
            if !dvr_roots.contains(&root) {
                dvr_roots.push(root);
            }
        }
        let listen = config.server.listen;
        let drain = Duration::from_millis(config.server.shutdown_drain_ms);
        let streams = config.streams.len();
        // Bound first: a port in use stops the start before any stream runs.
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding HTTP listener on {listen}"))?;
        let local_addr = listener.local_addr()?;
        let https = match (&config.server.tls, &live.tls) {
            (Some(t), Some(cert)) => {
                let l = TcpListener::bind(t.listen)
                    .await
                    .with_context(|| format!("binding HTTPS listener on {}", t.listen))?;
                info!(https = %l.local_addr()?, "HTTPS listener");
                Some((l, cert.clone()))
            }
            _ => None,
        };
        let srt_publish = match config.server.srt_publish {
            Some(addr) => {
                let p = crate::ingest::srt_publish::SrtPublisher::bind(addr).await?;
                info!(srt = %p.local_addr, "SRT publish listener");
                Some(p)
            }
            None => None,
        };
        let (admin, inbox) = control::channel();
        let publish = PublishSlots::default();
        let control = ControlPlane::start(
            config,
            overrides,
            registry.clone(),
            publish.clone(),
            dvb.clone(),
            live.clone(),
            inbox,
            shutdown.clone(),
        )
        .await
        .context("starting the streams")?;
        if let Some(p) = srt_publish {
            let gate = Arc::new(crate::access::Gate {
                access: live.access.clone(),
                registry: registry.clone(),
            });
            tasks.spawn(p.serve(publish.clone(), gate, shutdown.clone()));
        }
        tasks.spawn(control.run());
        let exposition = Exposition::global();
        let health = Arc::new(StatsHealth::new(&dvr_roots));
        let stats = StatsThread::spawn(
            StatsConfig {
                live: live.stats.clone(),
                dvr_roots,
            },
            StatsSources {
                registry: registry.clone(),
                runtime: tokio::runtime::Handle::current(),
                dvb: dvb.clone(),
                health: health.clone(),
                exposition: exposition.clone(),
            },
        )
        .context("starting the stats thread")?;
        let state = AppState {
            registry,
            shutdown: shutdown.clone(),
            auth: live.auth,
            exposition,
            health,
            mp4: Arc::new(crate::gst_util::GstMp4Export),
            publishing: Arc::new(publish),
            live: live.stats,
            dvb: dvb.clone(),
            admin,
            access: live.access,
            front: live.front,
            exports: live.exports,
        };
        let listeners = Listeners {
            http: listener,
            https,
        };
        tasks.spawn(serve(listeners, state, drain));
        info!(%local_addr, streams, "headwater started");
        Ok(App {
            tasks,
            stats: Some(stats),
            shutdown,
            local_addr,
        })
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown is requested, then for every task to finish.
    pub async fn run_until_stopped(mut self) {
        self.shutdown.cancelled().await;
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = res
                && e.is_panic()
            {
                tracing::error!(error = %e, "a task panicked");
            }
        }
        if let Some(stats) = self.stats.take() {
            tokio::task::spawn_blocking(move || stats.stop()).await.ok();
        }
        info!("headwater stopped");
    }
}
