//! The runtime stream set: the one place that starts, changes and stops streams, at start-up
//! and at run time alike, and publishes the result to readers through the [`Registry`].
//! It also keeps what follows from the set: DVB tuners run while a stream tunes their card,
//! the RTMP listener is open once a stream takes publishers.

use super::ControlError;
use super::plan::{Action, Change, plan};
use super::unit::{Shared, StreamUnit, close_publishing};
use crate::config::{DvbCard, DvrConfig, StreamConfig, StreamFile};
use crate::ingest::dvb::run_tuner;
use crate::stream::{Registry, StreamHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// What applying one definition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Added,
    Changed(Change),
    Unchanged,
    Removed,
}

/// A background task of the set (a tuner, the RTMP listener) and its stop token.
#[derive(Debug)]
struct Task {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

impl Task {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.join.await;
    }
}

/// Every running stream; see the module docs.
#[derive(Debug)]
pub(super) struct StreamSet {
    /// Invariant: the registry lists exactly these (plus `archived`).
    units: BTreeMap<String, StreamUnit>,
    /// Deleted streams whose archive is still served by the archive URLs.
    archived: BTreeMap<String, StreamHandle>,
    registry: Registry,
    shared: Shared,
    /// Configured cards (fixed: changing them needs a restart).
    dvb_cards: BTreeMap<String, DvbCard>,
    /// Running tuners by card; invariant after each change: exactly the cards some unit uses.
    tuners: BTreeMap<String, Task>,
    rtmp_addr: SocketAddr,
    /// Opened with the first stream that takes publishers; then open until shutdown.
    rtmp: Option<Task>,
}

impl StreamSet {
    pub(super) fn new(
        shared: Shared,
        registry: Registry,
        dvb_cards: BTreeMap<String, DvbCard>,
        rtmp_addr: SocketAddr,
    ) -> Self {
        StreamSet {
            units: BTreeMap::new(),
            archived: BTreeMap::new(),
            registry,
            shared,
            dvb_cards,
            tuners: BTreeMap::new(),
            rtmp_addr,
            rtmp: None,
        }
    }

    /// The running definition of `name`.
    pub(super) fn config(&self, name: &str) -> Option<&StreamConfig> {
        self.units.get(name).map(|u| &u.config)
    }

    /// Starts `config` (read from `text`) as a new stream, or brings the running one to it.
    pub(super) async fn set(
        &mut self,
        config: StreamConfig,
        text: String,
    ) -> Result<Outcome, ControlError> {
        let outcome = self.apply(config, text.into()).await;
        self.publish().await;
        outcome
    }

    /// Brings the set to `desired`: new streams start, changed ones change, streams not
    /// listed stop — except those in `keep` (their file is invalid: they keep running with
    /// their last good definition).
    pub(super) async fn reconcile(
        &mut self,
        desired: Vec<StreamFile>,
        keep: &BTreeSet<String>,
    ) -> Vec<(String, Result<Outcome, ControlError>)> {
        let wanted: BTreeSet<String> = desired.iter().map(|f| f.config.name.clone()).collect();
        let gone: Vec<String> = self
            .units
            .keys()
            .filter(|n| !wanted.contains(*n) && !keep.contains(*n))
            .cloned()
            .collect();
        let mut report = Vec::new();
        for name in gone {
            self.stop_unit(&name).await;
            report.push((name, Ok(Outcome::Removed)));
        }
        for file in desired {
            let name = file.config.name.clone();
            let outcome = self.apply(file.config, file.text.into()).await;
            report.push((name, outcome));
        }
        self.publish().await;
        report
    }

    /// Stops and forgets stream `name`; its archive stays served.
    pub(super) async fn remove(&mut self, name: &str) -> Result<(), ControlError> {
        if !self.units.contains_key(name) {
            return Err(ControlError::NotFound);
        }
        self.stop_unit(name).await;
        self.publish().await;
        Ok(())
    }

    /// Restarts the source of stream `name` only.
    pub(super) async fn restart(&mut self, name: &str) -> Result<(), ControlError> {
        let unit = self.units.get_mut(name).ok_or(ControlError::NotFound)?;
        unit.restart_source(&self.shared).await;
        info!(
            stream = name,
            restarted = "source",
            "stream source restarted"
        );
        Ok(())
    }

    /// New server-wide archive settings: retention applies to every running writer at once
    /// (a new root applies to writers started from now on).
    pub(super) fn set_dvr(&mut self, dvr: DvrConfig) {
        self.shared.dvr = dvr;
        for unit in self.units.values() {
            unit.set_retention(&self.shared.dvr);
        }
    }

    /// Opens the RTMP listener when a stream takes publishers and it is not open yet.
    pub(super) async fn ensure_rtmp(&mut self) -> Result<(), ControlError> {
        if self.rtmp.is_some() || self.shared.publish.is_empty() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.rtmp_addr)
            .await
            .map_err(|e| ControlError::Rtmp(self.rtmp_addr, e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ControlError::Rtmp(self.rtmp_addr, e.to_string()))?;
        info!(rtmp = %addr, "RTMP publish listener");
        let stop = self.shared.shutdown.child_token();
        let join = tokio::spawn(crate::ingest::rtmp::serve(
            listener,
            self.shared.publish.clone(),
            self.shared.gate.clone(),
            stop.clone(),
        ));
        self.rtmp = Some(Task { stop, join });
        Ok(())
    }

    /// Stops everything (server shutdown): sources first, then actors and writers.
    pub(super) async fn stop_all(&mut self) {
        let names: Vec<String> = self.units.keys().cloned().collect();
        for name in names {
            if let Some(unit) = self.units.remove(&name) {
                unit.stop().await;
            }
        }
        for (_, tuner) in std::mem::take(&mut self.tuners) {
            tuner.stop().await;
        }
        if let Some(rtmp) = self.rtmp.take() {
            rtmp.stop().await;
        }
    }

    async fn apply(
        &mut self,
        config: StreamConfig,
        text: Arc<str>,
    ) -> Result<Outcome, ControlError> {
        let name = config.name.clone();
        let Some(unit) = self.units.get_mut(&name) else {
            let archives: Vec<_> = self
                .archived
                .get(&name)
                .map(|h| h.archives.iter().flatten().cloned().collect())
                .unwrap_or_default();
            let unit = StreamUnit::start(config, text, &self.shared, None, None, &archives)?;
            // Its archive is the running stream's again.
            self.archived.remove(&name);
            info!(stream = %name, inputs = unit.config.inputs.len(), "stream added");
            self.units.insert(name, unit);
            return Ok(Outcome::Added);
        };
        let change = plan(&unit.config, &config);
        match change.action {
            Action::None => {
                // Same meaning; the text (comments, layout) is what the API shows.
                unit.describe(text);
                return Ok(Outcome::Unchanged);
            }
            Action::Rebuild => self.rebuild(config, text, &change).await?,
            _ => unit.apply(config, text, &change, &self.shared).await,
        }
        info!(stream = %name, changed = %change.keys.join(","), restarted = change.action.restarts(), "stream changed");
        Ok(Outcome::Changed(change))
    }

    /// Replaces a stream's unit, carrying numbering, viewers and open archives over. When the
    /// new definition cannot start, the old one is started again.
    async fn rebuild(
        &mut self,
        config: StreamConfig,
        text: Arc<str>,
        change: &Change,
    ) -> Result<(), ControlError> {
        let Some(old) = self.units.remove(&config.name) else {
            return Err(ControlError::NotFound);
        };
        let archives = old.archives();
        let old_config = old.config.clone();
        let old_text = old.handle.definition.clone();
        let stopped = old.stop().await;
        let name = config.name.clone();
        match StreamUnit::start(
            config,
            text,
            &self.shared,
            Some(stopped.audience.clone()),
            Some(stopped.continuity),
            &archives,
        ) {
            Ok(unit) => {
                close_publishing(&unit.config, &self.shared, false);
                self.units.insert(name, unit);
                Ok(())
            }
            Err(e) => {
                error!(stream = %name, error = %e, changed = %change.keys.join(","), "cannot apply the change; restarting the previous definition");
                let unit = StreamUnit::start(
                    old_config,
                    old_text,
                    &self.shared,
                    Some(stopped.audience),
                    Some(stopped.continuity),
                    &archives,
                )?;
                self.units.insert(name, unit);
                Err(e)
            }
        }
    }

    async fn stop_unit(&mut self, name: &str) {
        let Some(unit) = self.units.remove(name) else {
            return;
        };
        close_publishing(&unit.config, &self.shared, true);
        let stopped = unit.stop().await;
        info!(stream = name, "stream removed");
        if stopped.handle.archives.iter().any(Option::is_some) {
            // Only the archive stays: open `/mpegts` connections end with the stream's
            // broadcast (this handle must not keep it alive), and the live window's memory
            // is freed (an empty snapshot keeps the renditions, to find archives by them).
            let last = stopped.handle.current();
            let empty = crate::packaging::Snapshot {
                renditions: vec![Default::default(); last.renditions.len()],
                target_ms: last.target_ms,
                ..Default::default()
            };
            drop(last);
            let handle = StreamHandle {
                live: tokio::sync::broadcast::channel(1).0,
                snapshot: tokio::sync::watch::channel(Arc::new(empty)).1,
                ..stopped.handle
            };
            self.archived.insert(name.to_owned(), handle);
        }
    }

    /// Publishes the set to readers and brings tuners and the RTMP listener in line.
    async fn publish(&mut self) {
        self.registry.replace(
            self.units.values().map(|u| u.handle.clone()),
            self.archived.values().cloned(),
        );
        let used: BTreeSet<String> = self
            .units
            .values()
            .flat_map(|u| u.dvb_cards().map(str::to_owned))
            .collect();
        let unused: Vec<String> = self
            .tuners
            .keys()
            .filter(|c| !used.contains(*c))
            .cloned()
            .collect();
        for card in unused {
            if let Some(t) = self.tuners.remove(&card) {
                t.stop().await;
            }
        }
        for card in used {
            if self.tuners.contains_key(&card) {
                continue;
            }
            let (Some(config), Some(fanout)) =
                (self.dvb_cards.get(&card), self.shared.tuners.fanout(&card))
            else {
                continue;
            };
            let stop = self.shared.shutdown.child_token();
            let join = tokio::spawn(run_tuner(
                card.clone(),
                config.clone(),
                fanout,
                self.shared.dvb.clone(),
                stop.clone(),
            ));
            self.tuners.insert(card, Task { stop, join });
        }
        if let Err(e) = self.ensure_rtmp().await {
            error!(error = %e, "RTMP publishers cannot connect");
        }
    }
}
