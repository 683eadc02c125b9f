//! One stream's running parts — DVR writers, stream actor, ingest supervisor, publish slot,
//! pushes —
//! started and stopped as one unit (at start-up and at run time alike), and changed in place
//! where a change allows it (see [`super::plan`]).

use super::ControlError;
use super::plan::{Action, Change};
use crate::config::{DvrConfig, InputUrl, StreamConfig};
use crate::dvr::retention::Limits;
use crate::dvr::{Archive, RecorderInput, RecorderSettings, recorder};
use crate::ingest::dvb::Tuners;
use crate::ingest::{IngestSupervisor, PublishSlots};
use crate::push::Pushes;
use crate::stream::{
    ActorControl, Audience, Continuity, DvbCards, Feed, StreamActor, StreamHandle,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

/// What every unit shares with the rest of the server.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub dvb: Arc<DvbCards>,
    pub tuners: Tuners,
    pub publish: PublishSlots,
    /// Server-wide archive settings (root, default expiration, disk limit).
    pub dvr: DvrConfig,
    /// The server's shutdown: every unit's tokens are its children.
    pub shutdown: CancellationToken,
    /// `on_publish` checks for publish front ends (RTMP, SRT listeners).
    pub gate: Arc<dyn crate::stream::PublishGate>,
}

/// One rendition's DVR writer.
#[derive(Debug)]
struct Recorder {
    rendition: usize,
    input: RecorderInput,
    join: std::thread::JoinHandle<()>,
}

/// The running ingest supervisor.
#[derive(Debug)]
struct Ingest {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A running stream.
#[derive(Debug)]
pub(super) struct StreamUnit {
    /// The definition it runs; replaced by every applied change.
    pub config: StreamConfig,
    /// What readers see; replaced when the definition changes (its text, `segment_count`, `inputs`).
    pub handle: StreamHandle,
    audience: Audience,
    actor: JoinHandle<Continuity>,
    actor_stop: CancellationToken,
    control: mpsc::Sender<ActorControl>,
    /// Kept to start new supervisors on the same actor (and to tell it of a break).
    feed: mpsc::Sender<Feed>,
    /// `None` only while a source restart is under way.
    ingest: Option<Ingest>,
    recorders: Vec<Recorder>,
    /// The destinations it is sent on to (readers of the audience's broadcast).
    pushes: Pushes,
}

/// What is left of a stopped unit.
#[derive(Debug)]
pub(super) struct Stopped {
    pub continuity: Continuity,
    pub audience: Audience,
    /// Its handle, for the archive URLs of a deleted stream.
    pub handle: StreamHandle,
}

impl StreamUnit {
    /// Starts every part of `config`. `audience` and `resume` carry a restarted stream's
    /// viewers and numbering over; `archives` are archives already open (reused by folder).
    pub(super) fn start(
        config: StreamConfig,
        text: Arc<str>,
        shared: &Shared,
        audience: Option<Audience>,
        resume: Option<Continuity>,
        archives: &[Arc<Archive>],
    ) -> Result<StreamUnit, ControlError> {
        let audience = audience.unwrap_or_default();
        let renditions = config.transcoder.as_ref().map_or(1, |t| t.video.0.len());
        let mut dvr = Vec::with_capacity(renditions);
        let mut recorders = Vec::new();
        for index in 0..renditions {
            let Some((dir, name)) = archive_place(&config, &shared.dvr, index) else {
                dvr.push(None);
                continue;
            };
            let archive = match archives.iter().find(|a| a.dir == dir.join(&name)) {
                Some(a) => a.clone(),
                None => Arc::new(Archive::open(&dir, &name).map_err(|e| {
                    ControlError::Start(config.name.clone(), format!("opening the archive: {e}"))
                })?),
            };
            let label = match index {
                0 => config.name.clone(),
                n => format!("{}/tracks-v{}a1", config.name, n + 1),
            };
            let settings = recorder_settings(&config, &shared.dvr);
            let (input, join) =
                recorder::start(&label, archive.clone(), settings).map_err(|e| {
                    ControlError::Start(config.name.clone(), format!("starting a DVR writer: {e}"))
                })?;
            recorders.push(Recorder {
                rendition: index,
                input: input.clone(),
                join,
            });
            dvr.push(Some((archive, input)));
        }
        let (actor, parts) = StreamActor::new(&config, audience.clone(), dvr, resume);
        let actor_stop = shared.shutdown.child_token();
        let span = info_span!("stream", stream = %config.name);
        let actor = tokio::spawn(actor.run(actor_stop.clone()).instrument(span));
        if let Some(key) = publish_key(&config) {
            shared.publish.open(&config.name, key);
        }
        let ingest = start_ingest(&config, shared, &parts.feed, &audience);
        let pushes = Pushes::start(&config.name, &config.pushes, &audience, &shared.shutdown);
        Ok(StreamUnit {
            config,
            handle: StreamHandle {
                definition: text,
                pushes: pushes.board(),
                ..parts.handle
            },
            pushes,
            audience,
            actor,
            actor_stop,
            control: parts.control,
            feed: parts.feed,
            ingest: Some(ingest),
            recorders,
        })
    }

    /// Stops every part: the source first, then the actor (which flushes nothing: a partial
    /// segment is dropped), then the DVR writers once their queue is written. The publish
    /// slot stays (a rebuilt stream keeps its publisher): [`close_publishing`] ends it.
    pub(super) async fn stop(self) -> Stopped {
        self.pushes.stop().await;
        if let Some(ingest) = self.ingest {
            stop_ingest(ingest).await;
        }
        self.actor_stop.cancel();
        let continuity = self.actor.await.unwrap_or_else(|e| {
            tracing::error!(stream = %self.config.name, error = %e, "stream actor panicked");
            Continuity::default()
        });
        drop(self.feed);
        drop(self.control);
        let joins: Vec<_> = self
            .recorders
            .into_iter()
            .map(|r| {
                drop(r.input);
                r.join
            })
            .collect();
        // The writers end when the last sender is gone (the actor's went with it).
        let _ = tokio::task::spawn_blocking(move || {
            for j in joins {
                let _ = j.join();
            }
        })
        .await;
        Stopped {
            continuity,
            audience: self.audience,
            handle: self.handle,
        }
    }

    /// The archives this unit has open (to reuse across a rebuild).
    pub(super) fn archives(&self) -> Vec<Arc<Archive>> {
        self.handle.archives.iter().flatten().cloned().collect()
    }

    /// Restarts only the source: the actor ends the current run (a discontinuity) and a new
    /// supervisor starts from the top-priority input.
    pub(super) async fn restart_source(&mut self, shared: &Shared) {
        if let Some(ingest) = self.ingest.take() {
            stop_ingest(ingest).await;
        }
        // The actor is running (or stopping with the server): a closed feed is harmless.
        let _ = self.feed.send(Feed::Break).await;
        match publish_key(&self.config) {
            Some(key) => shared.publish.open(&self.config.name, key),
            None => shared.publish.close(&self.config.name),
        }
        self.ingest = Some(start_ingest(
            &self.config,
            shared,
            &self.feed,
            &self.audience,
        ));
    }

    /// Keeps `text` as the stream's stored definition (same meaning, other words).
    pub(super) fn describe(&mut self, text: Arc<str>) {
        self.handle.definition = text;
    }

    /// Applies a change that needs no rebuild ([`Action::Rebuild`] is the caller's).
    pub(super) async fn apply(
        &mut self,
        config: StreamConfig,
        text: Arc<str>,
        change: &Change,
        shared: &Shared,
    ) {
        debug_assert!(change.action < Action::Rebuild);
        let old = std::mem::replace(&mut self.config, config);
        if old.segment_count != self.config.segment_count {
            let count = self.config.segment_count.get();
            let _ = self.control.send(ActorControl::Resize(count)).await;
        }
        if old.dvr != self.config.dvr {
            self.set_retention(&shared.dvr);
        }
        if old.pushes != self.config.pushes {
            self.pushes
                .apply(&self.config.pushes, &self.audience, &shared.shutdown)
                .await;
        }
        if change.action == Action::Source {
            self.restart_source(shared).await;
        }
        self.handle = StreamHandle {
            segment_count: self.config.segment_count.get(),
            inputs: self
                .config
                .inputs
                .iter()
                .map(|i| i.url.to_string())
                .collect(),
            definition: text,
            access: Arc::new(self.config.access.clone()),
            ..self.handle.clone()
        };
    }

    /// Gives the DVR writers the retention settings of the current definition and `dvr`
    /// (the server's defaults may have changed).
    pub(super) fn set_retention(&self, dvr: &DvrConfig) {
        let settings = recorder_settings(&self.config, dvr);
        for r in &self.recorders {
            tracing::debug!(stream = %self.config.name, rendition = r.rendition + 1, ?settings, "retention settings");
            r.input.set_settings(settings);
        }
    }

    /// DVB cards this stream's inputs tune.
    pub(super) fn dvb_cards(&self) -> impl Iterator<Item = &str> {
        self.config.inputs.iter().filter_map(|i| match &i.url {
            InputUrl::Dvb { card, .. } => Some(card.as_str()),
            _ => None,
        })
    }
}

/// Ends publishing to `config`'s stream when it no longer takes publishers (removed, or no
/// `publish://` input any more).
pub(super) fn close_publishing(config: &StreamConfig, shared: &Shared, removed: bool) {
    if removed || publish_key(config).is_none() {
        shared.publish.close(&config.name);
    }
}

/// `Some(key)` when the stream takes publishers (a `publish://` input).
fn publish_key(config: &StreamConfig) -> Option<Option<String>> {
    config
        .inputs
        .iter()
        .any(|i| matches!(i.url, InputUrl::Publish))
        .then(|| config.publish_key.clone())
}

fn start_ingest(
    config: &StreamConfig,
    shared: &Shared,
    feed: &mpsc::Sender<Feed>,
    audience: &Audience,
) -> Ingest {
    let supervisor = IngestSupervisor::new(
        config.clone(),
        feed.clone(),
        audience.counters.clone(),
        shared.dvb.clone(),
        &shared.publish,
        shared.tuners.clone(),
    );
    let stop = shared.shutdown.child_token();
    let task = tokio::spawn(supervisor.run(stop.clone()));
    Ingest { stop, task }
}

async fn stop_ingest(ingest: Ingest) {
    ingest.stop.cancel();
    if let Err(e) = ingest.task.await
        && e.is_panic()
    {
        tracing::error!(error = %e, "ingest supervisor panicked");
    }
}

/// Where rendition `index` records: `(folder, name)` with the archive in `folder/name`, or
/// `None` when it does not record. The first rendition records in `ROOT/NAME` (as a
/// pass-through stream does), the others beside it in `ROOT/NAME/tracks-vNa1`.
pub(super) fn archive_place(
    config: &StreamConfig,
    dvr: &DvrConfig,
    index: usize,
) -> Option<(PathBuf, String)> {
    let settings = config.dvr.as_ref().filter(|d| d.records(index))?;
    let root = settings.root.clone().unwrap_or_else(|| dvr.root.clone());
    Some(match index {
        0 => (root, config.name.clone()),
        n => (root.join(&config.name), format!("tracks-v{}a1", n + 1)),
    })
}

/// The retention of a stream's archive: its own limits, else the server's defaults.
pub(super) fn recorder_settings(config: &StreamConfig, dvr: &DvrConfig) -> RecorderSettings {
    let own = config.dvr.as_ref();
    RecorderSettings {
        limits: Limits {
            expiration_ms: Some(
                own.and_then(|d| d.expiration)
                    .map_or(dvr.expiration_s, |s| s.0)
                    * 1000,
            ),
            storage_limit: own.and_then(|d| d.storage_limit).map(|b| b.0),
        },
        disk_usage_limit: dvr.disk_usage_limit,
    }
}
