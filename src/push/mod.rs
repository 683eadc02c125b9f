//! Stage 4b: a stream sent on to other servers (Flussonic's `pushes`). Each destination is a
//! task under its own supervisor that subscribes to the stream's chunk broadcast, so a slow or
//! dead destination loses only its own chunks (counted) and never the stream's viewers.
//!
//! ```text
//! stream actor --broadcast<Chunk>--> push task --UDP datagrams (paced by PCR)--> multicast/unicast
//!                                            \--SRT (caller, or a listener viewers call)
//!                                            \--RTMP (FLV tags, see packaging::flv)
//! ```

mod rtmp;
mod send;
pub mod ts;

use crate::config::{Push, PushUrl};
use crate::media::Chunk;
use crate::stream::{Audience, PushBoard, PushPhase, PushStatus, StreamCounters};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

/// Why one attempt of a push ended.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("network interface {0}: {1}")]
    Interface(String, String),
    #[error("SRT: {0}")]
    Srt(String),
    #[error("RTMP: {0}")]
    Rtmp(String),
    #[error("the destination closed the connection")]
    Closed,
    #[error("timed out {0}")]
    Timeout(&'static str),
}

/// A run that lasted this long counts as a success: the next failure retries after 1 s again.
const STABLE: Duration = Duration::from_secs(10);

/// One rendition of a stream as a push receives it.
#[derive(Debug)]
pub(crate) struct Feed {
    rx: broadcast::Receiver<Chunk>,
    rendition: usize,
    status: Arc<PushStatus>,
}

/// What [`Feed::next`] gives.
#[derive(Debug)]
pub(crate) enum Next {
    Chunk(Chunk),
    /// Chunks were lost (the push fell behind); start again at a keyframe.
    Lost,
    /// The stream is gone.
    End,
}

impl Feed {
    pub(crate) async fn next(&mut self) -> Next {
        loop {
            match self.rx.recv().await {
                Ok(c) if c.rendition == self.rendition => return Next::Chunk(c),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    StreamCounters::add(&self.status.dropped_chunks, n);
                    return Next::Lost;
                }
                Err(RecvError::Closed) => return Next::End,
            }
        }
    }
}

/// Subscribes to one rendition (each SRT viewer gets its own).
#[derive(Debug, Clone)]
pub(crate) struct Source {
    live: broadcast::Sender<Chunk>,
    rendition: usize,
    status: Arc<PushStatus>,
}

impl Source {
    pub(crate) fn subscribe(&self) -> Feed {
        Feed {
            rx: self.live.subscribe(),
            rendition: self.rendition,
            status: self.status.clone(),
        }
    }
}

/// A running push.
#[derive(Debug)]
struct Running {
    push: Push,
    status: Arc<PushStatus>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A stream's pushes, started and changed by its control-plane unit.
#[derive(Debug)]
pub struct Pushes {
    stream: Arc<str>,
    running: Vec<Running>,
    board: Arc<PushBoard>,
}

impl Pushes {
    /// Starts every push of `pushes` on the stream's broadcasts.
    pub fn start(
        stream: &str,
        pushes: &[Push],
        audience: &Audience,
        shutdown: &CancellationToken,
    ) -> Pushes {
        let mut p = Pushes {
            stream: stream.into(),
            running: Vec::new(),
            board: Arc::default(),
        };
        for (i, push) in pushes.iter().enumerate() {
            let r = p.launch(push, label(pushes, i), audience, shutdown);
            p.running.push(r);
        }
        p.publish();
        p
    }

    /// What the API and metrics read.
    pub fn board(&self) -> Arc<PushBoard> {
        self.board.clone()
    }

    /// Brings the running set to `pushes`: unchanged pushes go on untouched, the others stop
    /// and then (so that a listener's port or an RTMP key is free again) start.
    pub async fn apply(
        &mut self,
        pushes: &[Push],
        audience: &Audience,
        shutdown: &CancellationToken,
    ) {
        let mut old = std::mem::take(&mut self.running);
        let mut kept: Vec<Option<Running>> = pushes
            .iter()
            .enumerate()
            .map(|(i, push)| {
                let at = old
                    .iter()
                    .position(|r| r.push == *push && r.status.url == label(pushes, i))?;
                Some(old.remove(at))
            })
            .collect();
        for r in old {
            info!(stream = %self.stream, push = %r.status.url, "push removed");
            stop(r).await;
        }
        for (i, push) in pushes.iter().enumerate() {
            let r = match kept[i].take() {
                Some(r) => r,
                None => self.launch(push, label(pushes, i), audience, shutdown),
            };
            self.running.push(r);
        }
        self.publish();
    }

    /// Stops every push.
    pub async fn stop(self) {
        for r in self.running {
            stop(r).await;
        }
    }

    fn publish(&self) {
        self.board
            .set(self.running.iter().map(|r| r.status.clone()).collect());
    }

    fn launch(
        &self,
        push: &Push,
        label: String,
        audience: &Audience,
        shutdown: &CancellationToken,
    ) -> Running {
        let span = info_span!("push", stream = %self.stream, push = %label);
        let status = Arc::new(PushStatus::new(label, push.url.protocol()));
        let stop = shutdown.child_token();
        let source = Source {
            live: audience.chunks_of(push.rendition.index()).clone(),
            rendition: push.rendition.index(),
            status: status.clone(),
        };
        let task = tokio::spawn(
            supervise(push.clone(), source, status.clone(), stop.clone()).instrument(span),
        );
        Running {
            push: push.clone(),
            status,
            stop,
            task,
        }
    }
}

/// How push `i` of `pushes` is shown (API, logs, the `push` metric label): its masked URL,
/// with `#N` (its position) when another push masks the same, e.g. two keys on one server.
fn label(pushes: &[Push], i: usize) -> String {
    let url = pushes[i].url.to_string();
    if pushes
        .iter()
        .enumerate()
        .any(|(j, p)| j != i && p.url.to_string() == url)
    {
        format!("{url}#{}", i + 1)
    } else {
        url
    }
}

async fn stop(r: Running) {
    r.stop.cancel();
    if let Err(e) = r.task.await
        && e.is_panic()
    {
        tracing::error!(push = %r.status.url, error = %e, "push task panicked");
    }
}

/// Runs one push until stopped: each attempt until it fails, then a backoff of 1 s, 2 s, …
/// up to `retry_timeout`. Logs once per change of state.
async fn supervise(push: Push, source: Source, status: Arc<PushStatus>, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    let mut last_error: Option<String> = None;
    loop {
        status.set_phase(PushPhase::Connecting);
        let started = Instant::now();
        let attempt = run(&push.url, &source, &status);
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = attempt => outcome,
        };
        status
            .connections
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let error = match outcome {
            Ok(()) => return,
            Err(e) => e.to_string(),
        };
        let was_running = status.set_phase(PushPhase::Failed(error.clone())) == PushPhase::Running;
        if was_running {
            StreamCounters::add(&status.retries, 1);
        }
        if was_running || last_error.as_deref() != Some(error.as_str()) {
            warn!(error = %error, retry_in = ?backoff, "push failed");
            last_error = Some(error);
        }
        if was_running && started.elapsed() >= STABLE {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(push.retry_timeout.duration());
    }
}

/// Marks the push running (and logs it once per connection).
pub(crate) fn running(status: &PushStatus) {
    if status.set_phase(PushPhase::Running) != PushPhase::Running {
        info!("push running");
    }
}

/// One attempt: `Ok` only when the stream itself ended.
async fn run(url: &PushUrl, source: &Source, status: &Arc<PushStatus>) -> Result<(), PushError> {
    match url {
        PushUrl::Udp { dest, ttl, iface } => {
            send::udp(*dest, *ttl, iface.as_deref(), source.subscribe(), status).await
        }
        PushUrl::SrtCaller { host, port, srt } => {
            send::srt_call(host, *port, srt, source.subscribe(), status).await
        }
        PushUrl::SrtListener { port, srt } => send::srt_listen(*port, srt, source, status).await,
        PushUrl::Rtmp {
            host,
            port,
            app,
            key,
        } => rtmp::publish(host, *port, app, key, source.subscribe(), status).await,
    }
}
