//! The Prometheus recorder and the latest rendered exposition. The stats thread renders once
//! per interval; the scrape handler only clones the cached bytes (no work per scrape).

use super::names;
use bytes::Bytes;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

/// The process-wide recorder handle and the cached text.
#[derive(Debug)]
pub struct Exposition {
    handle: PrometheusHandle,
    /// Last rendering and its number; replaced whole by the stats thread.
    latest: RwLock<(u64, Bytes)>,
    /// The OpenMetrics form of rendering number `.0`, made by the first scrape that asks for
    /// it (with the exemplars of that moment) and shared by scrapes until the next rendering.
    openmetrics: Mutex<(u64, Bytes)>,
}

impl Exposition {
    /// Installs the global recorder on first use (later calls share it).
    pub fn global() -> Arc<Exposition> {
        static EXPOSITION: OnceLock<Arc<Exposition>> = OnceLock::new();
        EXPOSITION
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Full(names::HTTP_DURATION.into()),
                        names::DURATION_BUCKETS,
                    )
                    .and_then(|b| {
                        b.set_buckets_for_metric(
                            Matcher::Full(names::HTTP_RESPONSE_SIZE.into()),
                            names::SIZE_BUCKETS,
                        )
                    })
                    .and_then(|b| {
                        b.set_buckets_for_metric(
                            Matcher::Full(names::AUTH_BACKEND_DURATION.into()),
                            names::DURATION_BUCKETS,
                        )
                    })
                    .expect("bucket lists are non-empty constants")
                    .build_recorder();
                let handle = recorder.handle();
                // Fails only if another recorder was installed first, which we never do.
                let _ = metrics::set_global_recorder(recorder);
                names::describe();
                Arc::new(Exposition {
                    handle,
                    latest: RwLock::new((0, Bytes::new())),
                    openmetrics: Mutex::new((0, Bytes::new())),
                })
            })
            .clone()
    }

    /// Drains histogram buckets and renders a fresh exposition (stats thread only), with the
    /// per-stream families rendered from this sample's own recorder after the global ones.
    pub fn refresh(&self, streams: &str) {
        self.handle.run_upkeep();
        let mut text = self.handle.render();
        text.push_str(streams);
        let text = Bytes::from(text);
        let mut latest = self.latest.write().unwrap_or_else(PoisonError::into_inner);
        *latest = (latest.0 + 1, text);
    }

    /// The latest rendering (a reference-counted copy).
    pub fn latest(&self) -> Bytes {
        self.latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// The latest rendering as OpenMetrics with exemplars (empty before the first rendering).
    pub fn latest_openmetrics(&self) -> Bytes {
        let (number, text) = self
            .latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if text.is_empty() {
            return text;
        }
        let mut cached = self
            .openmetrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cached.0 != number || cached.1.is_empty() {
            let converted = super::exemplars::openmetrics(&String::from_utf8_lossy(&text));
            *cached = (number, Bytes::from(converted));
        }
        cached.1.clone()
    }

    /// Renders now, for benchmarks and tests.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}
