//! Composition root: builds the stream actors, their ingest supervisors and the HTTP server
//! from a [`Config`], owns every task in one `JoinSet`, and shuts down in order.
//!
//! Shutdown order: the token fires → HTTP stops accepting and endless bodies end → ingest
//! pipelines go to `Null` → stream actors stop (DVR writers finish their queue and stop) →
//! HTTP drains open connections (bounded) → the stats thread stops.

use crate::config::Config;
use crate::config::InputUrl;
use crate::dvr::retention::Limits;
use crate::dvr::{Archive, RecorderSettings, recorder};
use crate::http::ApiAuth;
use crate::http::{AppState, serve};
use crate::ingest::dvb::{Tuners, run_tuner};
use crate::ingest::{IngestSupervisor, PublishSlots};
use crate::stats::{Exposition, StatsConfig, StatsHealth, StatsSources, StatsThread};
use crate::stream::{DvbCards, Registry, StreamActor, StreamCounters};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

/// A running server.
#[derive(Debug)]
pub struct App {
    tasks: JoinSet<()>,
    /// DVR writer threads; they end when their stream actors drop the queue.
    recorders: Vec<std::thread::JoinHandle<()>>,
    /// Stopped after the tasks, so the last figures cover the shutdown.
    stats: Option<StatsThread>,
    shutdown: CancellationToken,
    /// The address actually bound (useful with port 0).
    pub local_addr: std::net::SocketAddr,
}

impl App {
    /// Binds the listener and starts every stream. Fails only on start-up problems.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        crate::gst_util::init().context("initialising GStreamer")?;
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut handles = Vec::new();
        let dvb = Arc::new(DvbCards::default());
        let mut recorders = Vec::new();
        // One tuner per card that some stream uses.
        let used_cards: Vec<String> = config
            .dvb
            .keys()
            .filter(|card| {
                config.streams.iter().any(|s| {
                    s.inputs
                        .iter()
                        .any(|i| matches!(&i.url, InputUrl::Dvb { card: c, .. } if c == *card))
                })
            })
            .cloned()
            .collect();
        let tuners = Tuners::new(used_cards.iter().cloned());
        let publish = PublishSlots::new(
            config
                .streams
                .iter()
                .filter(|s| s.inputs.iter().any(|i| matches!(i.url, InputUrl::Publish)))
                .map(|s| (s.name.clone(), s.publish_key.clone())),
        );
        let mut dvr_roots = vec![config.dvr.root.clone()];
        for stream in &config.streams {
            let counters = Arc::new(StreamCounters::default());
            let renditions = stream.transcoder.as_ref().map_or(1, |t| t.video.0.len());
            let mut dvr = Vec::with_capacity(renditions);
            for index in 0..renditions {
                let Some(settings) = stream.dvr.as_ref().filter(|d| d.records(index)) else {
                    dvr.push(None);
                    continue;
                };
                let root = settings
                    .root
                    .clone()
                    .unwrap_or_else(|| config.dvr.root.clone());
                if !dvr_roots.contains(&root) {
                    dvr_roots.push(root.clone());
                }
                // The first rendition records in ROOT/NAME (as a pass-through stream does),
                // the others beside it in ROOT/NAME/tracks-vNa1.
                let (dir, name) = match index {
                    0 => (root.clone(), stream.name.clone()),
                    n => (root.join(&stream.name), format!("tracks-v{}a1", n + 1)),
                };
                let archive = Arc::new(
                    Archive::open(&dir, &name)
                        .with_context(|| format!("opening the archive of {}", stream.name))?,
                );
                let limits = Limits {
                    expiration_ms: Some(
                        settings.expiration.map_or(config.dvr.expiration_s, |s| s.0) * 1000,
                    ),
                    storage_limit: settings.storage_limit.map(|b| b.0),
                };
                let label = match index {
                    0 => stream.name.clone(),
                    n => format!("{}/tracks-v{}a1", stream.name, n + 1),
                };
                let (input, join) = recorder::start(
                    &label,
                    archive.clone(),
                    RecorderSettings {
                        limits,
                        disk_usage_limit: config.dvr.disk_usage_limit,
                    },
                )
                .context("starting a DVR writer thread")?;
                recorders.push(join);
                dvr.push(Some((archive, input)));
            }
            let (actor, handle, feed) = StreamActor::new(stream, counters.clone(), dvr);
            handles.push(handle);
            let span = info_span!("stream", stream = %stream.name);
            tasks.spawn(actor.run(shutdown.clone()).instrument(span));
            let supervisor = IngestSupervisor::new(
                stream.clone(),
                feed,
                counters,
                dvb.clone(),
                &publish,
                tuners.clone(),
            );
            tasks.spawn(supervisor.run(shutdown.clone()));
        }
        for name in used_cards {
            let card = config.dvb[&name].clone();
            let fanout = tuners.fanout(&name).expect("registered above");
            tasks.spawn(run_tuner(name, card, fanout, dvb.clone(), shutdown.clone()));
        }
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding HTTP listener on {}", config.server.listen))?;
        let local_addr = listener.local_addr()?;
        if !publish.is_empty() {
            let rtmp = TcpListener::bind(config.server.rtmp)
                .await
                .with_context(|| format!("binding the RTMP listener on {}", config.server.rtmp))?;
            info!(rtmp = %rtmp.local_addr()?, "RTMP publish listener");
            tasks.spawn(crate::ingest::rtmp::serve(
                rtmp,
                publish.clone(),
                shutdown.clone(),
            ));
        }
        let registry = Registry::new(handles);
        let exposition = Exposition::global();
        let health = Arc::new(StatsHealth::new(&dvr_roots));
        let stats = StatsThread::spawn(
            StatsConfig {
                interval: Duration::from_millis(config.server.stats_interval_ms),
                session_timeout: Duration::from_secs(config.server.session_timeout_s),
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
            auth: ApiAuth {
                view: config.server.view_auth.clone(),
                edit: config.server.edit_auth.clone(),
            },
            exposition,
            health,
            mp4: Arc::new(crate::gst_util::GstMp4Export),
            publishing: Arc::new(publish.clone()),
            session_timeout_ms: config.server.session_timeout_s * 1000,
            dvb: dvb.clone(),
        };
        let drain = Duration::from_millis(config.server.shutdown_drain_ms);
        tasks.spawn(serve(listener, state, drain));
        info!(%local_addr, streams = config.streams.len(), "headwater started");
        Ok(App {
            tasks,
            recorders,
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
        let recorders = std::mem::take(&mut self.recorders);
        tokio::task::spawn_blocking(move || {
            for r in recorders {
                let _ = r.join();
            }
        })
        .await
        .ok();
        if let Some(stats) = self.stats.take() {
            tokio::task::spawn_blocking(move || stats.stop()).await.ok();
        }
        info!("headwater stopped");
    }
}
