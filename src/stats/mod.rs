//! The stats thread: a dedicated `std::thread` that, every interval, samples the host, the
//! GPUs, DVB cards and every stream's counters, publishes them through the `metrics` facade,
//! and renders the Prometheus exposition once. Scrapes serve that rendering; nothing slow
//! happens on the scrape path, and the thread never takes a lock a hot path holds for long
//! (per-stream atomics, one short lock per stream's session table).

pub mod exemplars;
mod exporter;
mod gpu;
mod host;
pub mod names;
mod streams;

pub use exporter::Exposition;

use crate::stream::{DvbCards, Registry};
use metrics::{counter, gauge};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Why a sample failed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("reading {0}: {1}")]
    Proc(&'static str, std::io::Error),
    #[error("sysinfo: {0}")]
    Sysinfo(String),
}

impl StatsError {
    fn sysinfo(e: impl std::fmt::Display) -> Self {
        StatsError::Sysinfo(e.to_string())
    }
}

/// Settings of the stats thread.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    /// Interval and session timeout, changed at run time by a reload.
    pub live: Arc<LiveSettings>,
    pub dvr_roots: Vec<PathBuf>,
}

/// `[stats]` settings that a reload changes at run time; read by the stats thread at every
/// sample and by HTTP for its client counts.
#[derive(Debug)]
pub struct LiveSettings {
    /// Stats thread period, ms.
    pub interval_ms: AtomicU64,
    /// An HLS session idle this long no longer counts as a client, ms.
    pub session_timeout_ms: AtomicU64,
}

impl LiveSettings {
    pub fn new(interval_ms: u64, session_timeout_ms: u64) -> Self {
        LiveSettings {
            interval_ms: AtomicU64::new(interval_ms),
            session_timeout_ms: AtomicU64::new(session_timeout_ms),
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.load(Ordering::Relaxed))
    }

    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms.load(Ordering::Relaxed)
    }
}

/// Freshness of the stats thread, for health checks.
#[derive(Debug, Default)]
pub struct StatsHealth {
    /// Wall ms of the last successful sample; 0 before the first.
    pub last_success_ms: AtomicU64,
    /// The configured interval in ms.
    pub interval_ms: AtomicU64,
    /// DVR roots with the used percent of their filesystem (None: not measured).
    dvr: std::sync::Mutex<Vec<(PathBuf, Option<f64>)>>,
}

impl StatsHealth {
    pub fn new(dvr_roots: &[PathBuf]) -> Self {
        StatsHealth {
            dvr: std::sync::Mutex::new(dvr_roots.iter().map(|r| (r.clone(), None)).collect()),
            ..StatsHealth::default()
        }
    }

    /// A copy of the DVR filesystem readings.
    pub fn dvr_usage(&self) -> Vec<(PathBuf, Option<f64>)> {
        self.dvr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_dvr_usage(&self, usage: Vec<(PathBuf, Option<f64>)>) {
        *self
            .dvr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = usage;
    }

    /// Fresh when the last success is within three intervals.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        let last = self.last_success_ms.load(Ordering::Relaxed);
        let interval = self.interval_ms.load(Ordering::Relaxed);
        last > 0 && now_ms.saturating_sub(last) <= 3 * interval.max(1000)
    }
}

/// The running thread; [`StatsThread::stop`] ends it promptly.
#[derive(Debug)]
pub struct StatsThread {
    stop: mpsc::Sender<()>,
    join: JoinHandle<()>,
}

/// Everything a sample reads.
#[derive(Debug)]
pub struct StatsSources {
    pub registry: Registry,
    pub runtime: tokio::runtime::Handle,
    pub dvb: Arc<DvbCards>,
    pub health: Arc<StatsHealth>,
    pub exposition: Arc<Exposition>,
}

impl StatsThread {
    pub fn spawn(config: StatsConfig, sources: StatsSources) -> std::io::Result<StatsThread> {
        let (stop, stopped) = mpsc::channel();
        let join = std::thread::Builder::new()
            .name("headwater-stats".into())
            .spawn(move || run(&config, &sources, &stopped))?;
        Ok(StatsThread { stop, join })
    }

    /// Asks the thread to finish and waits for it.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.join.join();
    }
}

fn run(config: &StatsConfig, src: &StatsSources, stopped: &mpsc::Receiver<()>) {
    let boot = crate::media::utc::now_ms();
    gauge!(names::VERSION_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(names::BOOT_TIME).set(boot as f64 / 1000.0);
    let gpu = gpu::GpuMonitor::detect();
    let mut host = match host::Host::new(config.dvr_roots.clone()) {
        Ok(h) => Some(h),
        Err(e) => {
            warn!(error = %e, "host metrics unavailable");
            None
        }
    };
    let mut streams = streams::StreamSampler::default();
    let mut scheduler = SchedulerLoad::new(&src.runtime);
    info!(
        interval_ms = config.live.interval().as_millis() as u64,
        "stats thread started"
    );
    loop {
        let started = Instant::now();
        let interval = config.live.interval();
        src.health
            .interval_ms
            .store(interval.as_millis() as u64, Ordering::Relaxed);
        let host_result = host.as_mut().map_or(Ok(Vec::new()), host::Host::sample);
        if let Ok(usage) = &host_result {
            src.health.set_dvr_usage(usage.clone());
        }
        // Series of things that may go away (a stream, an input position, a DVB tuner that
        // stopped, a GPU whose read failed) go to a recorder made for this sample alone, so
        // that they leave the exposition with the sample after the change.
        let stream_recorder =
            metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let clients = metrics::with_local_recorder(&stream_recorder, || {
            names::describe();
            gpu.sample();
            for (card, reading) in src.dvb.readings() {
                gauge!(names::DVB_STRENGTH, "card" => names::sanitize_label(&card))
                    .set(reading.strength);
            }
            streams.sample(&src.registry, config.live.session_timeout_ms())
        });
        gauge!(names::CLIENTS).set(clients as f64);
        gauge!(names::STREAMS).set(src.registry.len() as f64);
        gauge!(names::SCHEDULER_LOAD).set(scheduler.sample(&src.runtime));
        match host_result {
            Ok(_) if host.is_some() => {
                let now = crate::media::utc::now_ms();
                src.health.last_success_ms.store(now, Ordering::Relaxed);
                gauge!(names::STATS_LAST_SUCCESS).set(now as f64 / 1000.0);
            }
            Ok(_) => counter!(names::STATS_ERRORS).increment(1),
            Err(e) => {
                warn!(error = %e, "stats sample failed");
                counter!(names::STATS_ERRORS).increment(1);
            }
        }
        counter!(names::STATS_ERRORS).increment(0);
        gauge!(names::STATS_DURATION).set(started.elapsed().as_secs_f64());
        src.exposition.refresh(&stream_recorder.handle().render());
        match stopped.recv_timeout(interval.saturating_sub(started.elapsed())) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    info!("stats thread stopped");
}

/// Busy share of the async runtime's workers between two samples.
#[derive(Debug)]
struct SchedulerLoad {
    busy: Duration,
    at: Instant,
}

impl SchedulerLoad {
    fn new(rt: &tokio::runtime::Handle) -> Self {
        SchedulerLoad {
            busy: total_busy(rt),
            at: Instant::now(),
        }
    }

    /// Percent: Σ worker busy time / (workers × wall time) since the previous sample.
    fn sample(&mut self, rt: &tokio::runtime::Handle) -> f64 {
        let busy = total_busy(rt);
        let now = Instant::now();
        let wall = now.duration_since(self.at).as_secs_f64() * rt.metrics().num_workers() as f64;
        let load = if wall > 0.0 {
            (busy.saturating_sub(self.busy).as_secs_f64() / wall * 100.0).min(100.0)
        } else {
            0.0
        };
        self.busy = busy;
        self.at = now;
        load
    }
}

fn total_busy(rt: &tokio::runtime::Handle) -> Duration {
    let m = rt.metrics();
    (0..m.num_workers())
        .map(|w| m.worker_total_busy_duration(w))
        .sum()
}
