//! Stage 0: the control plane. One task owns the running stream set and changes it at run
//! time — from the API (`/streamer/api/v3/streams`), from `SIGHUP` and from edits in
//! `streams/` — so that only what changed restarts.
//!
//! ```text
//! http (API writes) --AdminRequest (bounded)--\
//! SIGHUP, streams/ watcher (debounced) --------> ControlPlane --> StreamSet --> units (ingest, actor, DVR)
//!                                                    |                 \--> Registry (ArcSwap) --> http, stats
//!                                                    \--> streams/NAME.toml (atomic writes)
//! ```
//!
//! Every definition, from a file or from the API, goes through the file loader's own
//! validation ([`Config::stream_from_text`]); a write lands on disk before it is applied.

mod admin;
mod plan;
mod set;
mod store;
mod unit;

pub use admin::{
    ADMIN_QUEUE, Admin, AdminCall, AdminError, AdminInbox, AdminRequest, Definition,
    DefinitionKind, channel,
};
pub use plan::{Action, Change, plan};
pub use set::Outcome;

use crate::config::{Config, ConfigError, FieldError, Overrides, StreamFile};
use crate::http::ApiAuth;
use crate::stats::LiveSettings;
use crate::stats::names;
use arc_swap::ArcSwap;
use serde_json::Value;
use set::StreamSet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use unit::Shared;

/// Why a change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no such stream")]
    NotFound,
    #[error("stream {0}: cannot start: {1}")]
    Start(String, String),
    #[error("cannot open the RTMP listener on {0}: {1}")]
    Rtmp(SocketAddr, String),
}

/// Edits in `streams/` are applied once they have been quiet this long (an editor's save is
/// several events; a `cp` of many files is many).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The stream set's definition as API JSON, secrets masked (for the API's reads).
pub fn definition_json(name: &str, text: &str) -> Value {
    store::to_json(name, text)
}

/// Settings HTTP and the stats thread read that a reload changes in place.
#[derive(Debug, Clone)]
pub struct LiveHandles {
    pub auth: Arc<ArcSwap<ApiAuth>>,
    pub stats: Arc<LiveSettings>,
    /// Authorization backends (`[auth]`) and play sessions.
    pub access: Arc<crate::access::Access>,
    /// `[server]` front door settings.
    pub front: Arc<ArcSwap<crate::config::FrontDoor>>,
    /// `[dvr]` export limits.
    pub exports: Arc<crate::http::Exports>,
    /// The HTTPS certificate, reloaded with the configuration.
    pub tls: Option<Arc<crate::http::TlsCertificate>>,
}

/// The task that owns the stream set; see the module docs.
#[derive(Debug)]
pub struct ControlPlane {
    set: StreamSet,
    /// The server configuration in force (its `streams` are the start-up set only).
    config: Config,
    overrides: Overrides,
    live: LiveHandles,
    /// Invalid stream files by path with the message last logged: logged once per change.
    invalid: BTreeMap<std::path::PathBuf, String>,
    /// Definitions that were valid but could not start, by stream, with the text tried: a
    /// reload does not retry the same text (each try would stop and restart the stream).
    failed: BTreeMap<String, String>,
    inbox: AdminInbox,
    shutdown: CancellationToken,
    /// `SIGHUP`, installed before any stream starts (its default action would end the
    /// process); `None` where it cannot be (then edits in `streams/` still reload).
    hangup: Option<tokio::signal::unix::Signal>,
    /// Edits in `streams/` wake this; the watcher is kept alive with it.
    watch: (mpsc::Receiver<()>, Option<notify::RecommendedWatcher>),
}

impl ControlPlane {
    /// Starts every configured stream (the same path a reload takes) and returns the plane,
    /// ready to [`run`](Self::run).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        config: Config,
        overrides: Overrides,
        registry: crate::stream::Registry,
        publish: crate::ingest::PublishSlots,
        dvb: Arc<crate::stream::DvbCards>,
        live: LiveHandles,
        inbox: AdminInbox,
        shutdown: CancellationToken,
    ) -> Result<ControlPlane, ControlError> {
        let shared = Shared {
            dvb,
            tuners: crate::ingest::dvb::Tuners::new(config.dvb.keys().cloned()),
            publish,
            dvr: config.dvr.clone(),
            shutdown: shutdown.clone(),
            gate: Arc::new(crate::access::Gate {
                access: live.access.clone(),
                registry: registry.clone(),
            }),
        };
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; reload by editing streams/");
                None
            }
        };
        let (watch_tx, watch_rx) = mpsc::channel::<()>(1);
        let watcher = watch(&config.paths.streams_dir, watch_tx);
        remove_stale_temporaries(&config.paths.streams_dir);
        let mut set = StreamSet::new(shared, registry, config.dvb.clone(), config.server.rtmp);
        let files: Vec<StreamFile> = config
            .streams
            .iter()
            .map(|s| StreamFile {
                config: s.clone(),
                text: config.texts.get(&s.name).cloned().unwrap_or_default(),
            })
            .collect();
        let mut started = Ok(());
        for (name, result) in set.reconcile(files, &BTreeSet::new()).await {
            if let Err(e) = result {
                started = Err(ControlError::Start(name, e.to_string()));
                break;
            }
        }
        if started.is_ok() {
            started = set.ensure_rtmp().await;
        }
        if let Err(e) = started {
            // Nothing started may outlive a failed start.
            set.stop_all().await;
            return Err(e);
        }
        for result in ["ok", "error"] {
            metrics::counter!(names::CONFIG_RELOADS, "result" => result).increment(0);
        }
        Ok(ControlPlane {
            set,
            config,
            overrides,
            live,
            invalid: BTreeMap::new(),
            failed: BTreeMap::new(),
            inbox,
            shutdown,
            hangup,
            watch: (watch_rx, watcher),
        })
    }

    /// Serves API writes, `SIGHUP` and edits in `streams/` until shutdown, then stops every
    /// stream (sources first).
    pub async fn run(mut self) {
        let mut hangup = self.hangup.take();
        let (mut watch_rx, _watcher) =
            std::mem::replace(&mut self.watch, (mpsc::channel(1).1, None));
        let mut reload_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                call = self.inbox.recv() => match call {
                    Some(call) => self.on_call(call).await,
                    None => break,
                },
                Some(()) = recv_signal(&mut hangup) => {
                    // Reads everything: a pending edit is part of it.
                    reload_at = None;
                    self.reload("SIGHUP").await;
                }
                // Each edit moves the reload later; API writes are served meanwhile.
                Some(()) = watch_rx.recv() => {
                    reload_at = Some(tokio::time::Instant::now() + DEBOUNCE);
                }
                () = sleep_until(reload_at) => {
                    reload_at = None;
                    self.reload("streams/ changed").await;
                }
            }
        }
        self.set.stop_all().await;
        debug!("control plane stopped");
    }

    async fn on_call(&mut self, call: AdminCall) {
        let result = match &call.request {
            AdminRequest::Put { name, body } => self.put(name, body).await,
            AdminRequest::Delete { name } => self.delete(name).await,
            AdminRequest::Restart { name } => self
                .set
                .restart(name)
                .await
                .map(|()| Value::Null)
                .map_err(|_| AdminError::NotFound),
            AdminRequest::Validate { kind, name, body } => self.validate(*kind, name, body),
        };
        call.answer(result);
    }

    /// Creates or updates a stream: merge, validate, write, apply.
    async fn put(&mut self, name: &str, body: &Value) -> Result<Value, AdminError> {
        let file = self.config.stream_file(name);
        let current = match std::fs::read_to_string(&file) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                // Not knowing the stored definition, a partial update could drop its keys.
                error!(stream = name, file = %file.display(), error = %e, "cannot read the stream file; nothing changed");
                return Err(AdminError::Failed);
            }
        };
        let text =
            store::merge(current.as_deref(), body).map_err(|e| AdminError::Invalid(vec![e]))?;
        let stream = self
            .config
            .stream_from_text(name, &text, &file)
            .map_err(|e| AdminError::Invalid(vec![json_origin(e.field_error())]))?;
        self.write(name, Some(&text)).await?;
        if let Err(e) = self.set.set(stream, text.clone()).await {
            error!(stream = name, error = %e, "the stored change could not be applied; restoring the file");
            if self.write(name, current.as_deref()).await.is_err() {
                // The new text stays on disk; remember that it failed so that reloads
                // do not retry it until the file changes again.
                self.failed.insert(name.to_owned(), text);
            }
            return Err(AdminError::Failed);
        }
        self.failed.remove(name);
        Ok(store::to_json(name, &text))
    }

    async fn delete(&mut self, name: &str) -> Result<Value, AdminError> {
        let running = self.set.config(name).is_some();
        if !running && !self.config.stream_file(name).exists() {
            return Err(AdminError::NotFound);
        }
        // The file goes first: a crash in between must not bring the stream back.
        self.write(name, None).await?;
        if running {
            self.set
                .remove(name)
                .await
                .map_err(|_| AdminError::NotFound)?;
        }
        Ok(Value::Null)
    }

    /// Writes (or with `None` removes) a stream's file, off the async runtime.
    async fn write(&self, name: &str, text: Option<&str>) -> Result<(), AdminError> {
        let dir = self.config.paths.streams_dir.clone();
        let (file, text) = (name.to_owned(), text.map(str::to_owned));
        let result = tokio::task::spawn_blocking(move || match text {
            Some(t) => store::write_atomic(&dir, &file, &t),
            None => store::remove(&dir, &file),
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        result.map_err(|e| {
            error!(stream = name, error = %e, dir = %self.config.paths.streams_dir.display(), "cannot write the stream file; nothing changed");
            AdminError::Failed
        })
    }

    /// Validates a definition with the loader's own code and changes nothing.
    fn validate(
        &self,
        kind: DefinitionKind,
        name: &str,
        body: &Definition,
    ) -> Result<Value, AdminError> {
        let invalid = |e: FieldError| AdminError::Invalid(vec![e]);
        let (text, json) = match body {
            Definition::Toml(t) => (t.clone(), false),
            Definition::Json(v) => (store::merge(None, v).map_err(invalid)?, true),
        };
        let result = match kind {
            DefinitionKind::Stream => self
                .config
                .stream_from_text(name, &text, Path::new(&format!("{name}.toml")))
                .map(|_| ()),
            DefinitionKind::Server => {
                Config::parse_server(&self.config.paths.file, &text, &Overrides::default())
                    .map(|_| ())
            }
        };
        result.map_err(|e| {
            let e = e.field_error();
            invalid(if json { json_origin(e) } else { e })
        })?;
        Ok(serde_json::json!({ "valid": true }))
    }

    /// Reads the server file and `streams/` again and applies the differences.
    async fn reload(&mut self, cause: &str) {
        let mut ok = true;
        match Config::load_server(&self.config.paths.file, &self.overrides) {
            Ok(server) => self.adopt_server(server),
            Err(e) => {
                ok = false;
                error!(cause, error = %e, "server configuration not reloaded; keeping the running one");
            }
        }
        let (files, invalid) = match self.config.scan_streams() {
            Ok(scan) => scan,
            Err(e) => {
                metrics::counter!(names::CONFIG_RELOADS, "result" => "error").increment(1);
                error!(cause, error = %e, "streams not reloaded");
                return;
            }
        };
        ok &= invalid.is_empty();
        let mut keep = self.note_invalid(&invalid);
        // A definition that already failed to start is not tried again until its file changes.
        self.failed.retain(|name, text| {
            files
                .iter()
                .any(|f| f.config.name == *name && f.text == *text)
        });
        let (retry, tries): (Vec<StreamFile>, Vec<StreamFile>) = files
            .into_iter()
            .partition(|f| self.failed.contains_key(&f.config.name));
        keep.extend(retry.into_iter().map(|f| f.config.name));
        let texts: BTreeMap<String, String> = tries
            .iter()
            .map(|f| (f.config.name.clone(), f.text.clone()))
            .collect();
        let mut changes = 0;
        for (name, result) in self.set.reconcile(tries, &keep).await {
            match result {
                Ok(Outcome::Unchanged) => {}
                Ok(_) => changes += 1,
                Err(e) => {
                    ok = false;
                    error!(stream = %name, error = %e, "stream change not applied; it runs as before");
                    if let Some(text) = texts.get(&name) {
                        self.failed.insert(name, text.clone());
                    }
                }
            }
        }
        let result = if ok { "ok" } else { "error" };
        metrics::counter!(names::CONFIG_RELOADS, "result" => result).increment(1);
        if changes > 0 || !ok {
            info!(cause, changes, result, "configuration reloaded");
        } else {
            debug!(cause, "configuration reloaded, nothing changed");
        }
    }

    /// Logs invalid stream files once per change; returns the running streams they keep.
    fn note_invalid(&mut self, invalid: &[crate::config::InvalidFile]) -> BTreeSet<String> {
        let mut now = BTreeMap::new();
        let mut keep = BTreeSet::new();
        for (name, e) in invalid {
            let path = match e {
                ConfigError::Read { file, .. }
                | ConfigError::Invalid { file, .. }
                | ConfigError::File { file, .. } => file.clone(),
            };
            let message = e.to_string();
            if self.invalid.get(&path) != Some(&message) {
                let keeps = name.as_ref().is_some_and(|n| self.set.config(n).is_some());
                error!(error = %message, keeps_running = keeps, "invalid stream file refused");
            }
            if let Some(n) = name {
                keep.insert(n.clone());
            }
            now.insert(path, message);
        }
        self.invalid = now;
        keep
    }

    /// Applies what of a new server file can apply live; says what needs a restart.
    fn adopt_server(&mut self, new: Config) {
        let old = &self.config;
        let restart_needed: Vec<&str> = [
            ("listen", old.server.listen != new.server.listen),
            ("rtmp", old.server.rtmp != new.server.rtmp),
            (
                "srt_publish",
                old.server.srt_publish != new.server.srt_publish,
            ),
            (
                "https",
                old.server.tls.as_ref().map(|t| t.listen)
                    != new.server.tls.as_ref().map(|t| t.listen),
            ),
            (
                "shutdown_drain",
                old.server.shutdown_drain_ms != new.server.shutdown_drain_ms,
            ),
            ("streams", old.paths.streams_dir != new.paths.streams_dir),
            ("dvr.root", old.dvr.root != new.dvr.root),
            ("dvb", old.dvb != new.dvb),
        ]
        .into_iter()
        .filter_map(|(k, changed)| changed.then_some(k))
        .collect();
        if !restart_needed.is_empty() {
            warn!(settings = %restart_needed.join(","), "changed settings apply after a restart");
        }
        if old.server.view_auth != new.server.view_auth
            || old.server.edit_auth != new.server.edit_auth
        {
            self.live.auth.store(Arc::new(ApiAuth {
                view: new.server.view_auth.clone(),
                edit: new.server.edit_auth.clone(),
            }));
            info!("API credentials changed");
        }
        if old.server.stats_interval_ms != new.server.stats_interval_ms
            || old.server.session_timeout_s != new.server.session_timeout_s
        {
            let s = &self.live.stats;
            s.interval_ms
                .store(new.server.stats_interval_ms, Ordering::Relaxed);
            s.session_timeout_ms
                .store(new.server.session_timeout_s * 1000, Ordering::Relaxed);
            info!(
                interval_ms = new.server.stats_interval_ms,
                session_timeout_s = new.server.session_timeout_s,
                "[stats] changed"
            );
        }
        if old.server.auth != new.server.auth {
            self.live.access.set_settings(new.server.auth.clone());
            info!("[auth] changed");
        }
        if old.server.front != new.server.front {
            self.live.front.store(Arc::new(new.server.front.clone()));
            info!("[server] limits changed (new connections take them)");
        }
        if old.dvr.max_exports != new.dvr.max_exports
            || old.dvr.max_export_s != new.dvr.max_export_s
        {
            self.live
                .exports
                .set_limits(new.dvr.max_exports, new.dvr.max_export_s);
            info!(
                max_exports = new.dvr.max_exports,
                max_export_duration_s = new.dvr.max_export_s,
                "[dvr] export limits changed"
            );
        }
        // A renewed certificate under the same names is read again on every reload.
        match (&self.live.tls, &new.server.tls) {
            (Some(cert), Some(tls)) => {
                let _ = cert.reload(&tls.cert, &tls.key);
            }
            (None, Some(_)) | (Some(_), None) => {
                warn!("enabling or disabling HTTPS applies after a restart");
            }
            (None, None) => {}
        }
        let retention_changed = old.dvr.expiration_s != new.dvr.expiration_s
            || old.dvr.disk_usage_limit != new.dvr.disk_usage_limit;
        if self.config.defaults != new.defaults {
            info!("[defaults] changed");
        }
        // What applies live is taken; the rest stays as running until a restart.
        let c = &mut self.config;
        c.server.view_auth = new.server.view_auth;
        c.server.edit_auth = new.server.edit_auth;
        c.server.auth = new.server.auth;
        c.server.front = new.server.front;
        c.dvr.max_exports = new.dvr.max_exports;
        c.dvr.max_export_s = new.dvr.max_export_s;
        c.server.stats_interval_ms = new.server.stats_interval_ms;
        c.server.session_timeout_s = new.server.session_timeout_s;
        c.defaults = new.defaults;
        c.dvr.expiration_s = new.dvr.expiration_s;
        c.dvr.disk_usage_limit = new.dvr.disk_usage_limit;
        if retention_changed {
            self.set.set_dvr(self.config.dvr.clone());
            info!("[dvr] retention changed");
        }
    }
}

/// A mistake found in the TOML made from a JSON body: its line and column would point into
/// text the client never saw, so only the key path and message are reported.
fn json_origin(e: FieldError) -> FieldError {
    FieldError {
        line: None,
        column: None,
        ..e
    }
}

/// Removes `.NAME.toml.tmp` files that a crash left between write and rename (the stream's
/// file is the old one, whole).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".toml.tmp"));
        if stale {
            match std::fs::remove_file(&path) {
                Ok(()) => info!(file = %path.display(), "removed an unfinished stream file write"),
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "cannot remove an unfinished stream file write")
                }
            }
        }
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Watches `dir` for changes of stream files (`NAME.toml`, not the API's temporary files);
/// each change wakes the control plane (a full channel means a wake-up is already pending).
/// `None` when the platform refuses a watcher: `SIGHUP` still reloads.
fn watch(dir: &Path, wake: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |event: notify::Result<notify::Event>| {
        // Only writes, creations, renames and removals: reading the files (our own reload
        // does) must not wake us again.
        let relevant = event.is_ok_and(|e| {
            !matches!(
                e.kind,
                notify::EventKind::Access(_) | notify::EventKind::Other
            ) && e.paths.iter().any(|p| {
                p.extension().is_some_and(|x| x == "toml")
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
        });
        if relevant {
            let _ = wake.try_send(());
        }
    };
    let result = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot watch the streams folder; reload with SIGHUP");
            None
        }
    }
}
