//! The control plane's door for the HTTP API: write requests queued to the one task that owns
//! the stream set, each answered when it has been applied (so concurrent writes are
//! serialised and every answer shows the state after its own write).

use crate::config::FieldError;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the control plane. A client that fills it is told to retry (503):
/// writes are an operator's, not a crowd's.
pub const ADMIN_QUEUE: usize = 64;

/// What the API asks of the control plane.
#[derive(Debug)]
pub enum AdminRequest {
    /// Create stream `name` or update it with `body` (see [`super::store::merge`]).
    Put { name: String, body: Value },
    /// Stop stream `name` and remove its file.
    Delete { name: String },
    /// Restart the source of stream `name`.
    Restart { name: String },
    /// Validate a stream (`kind` stream, named `name`) or server definition; change nothing.
    Validate {
        kind: DefinitionKind,
        name: String,
        body: Definition,
    },
}

/// A definition as sent: JSON, or TOML text.
#[derive(Debug)]
pub enum Definition {
    Json(Value),
    Toml(String),
}

/// Which file a definition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionKind {
    Stream,
    Server,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such stream")]
    NotFound,
    #[error("invalid definition")]
    Invalid(Vec<FieldError>),
    #[error("the control plane is busy or stopping")]
    Unavailable,
    /// Logged where it happened; the client learns only that it failed.
    #[error("the change could not be applied")]
    Failed,
}

type Call = (AdminRequest, oneshot::Sender<Result<Value, AdminError>>);

/// The API's handle on the control plane; cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    tx: mpsc::Sender<Call>,
}

/// The control plane's end.
#[derive(Debug)]
pub struct AdminInbox {
    rx: mpsc::Receiver<Call>,
}

/// A request with its reply slot, as the control plane receives it.
#[derive(Debug)]
pub struct AdminCall {
    pub request: AdminRequest,
    reply: oneshot::Sender<Result<Value, AdminError>>,
}

impl AdminCall {
    pub fn answer(self, result: Result<Value, AdminError>) {
        // The client may have gone; the change stands either way.
        let _ = self.reply.send(result);
    }
}

/// A connected pair.
pub fn channel() -> (Admin, AdminInbox) {
    let (tx, rx) = mpsc::channel(ADMIN_QUEUE);
    (Admin { tx }, AdminInbox { rx })
}

impl Admin {
    /// Queues `request` and waits for its answer.
    pub async fn call(&self, request: AdminRequest) -> Result<Value, AdminError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send((request, reply))
            .map_err(|_| AdminError::Unavailable)?;
        answer.await.map_err(|_| AdminError::Unavailable)?
    }
}

impl AdminInbox {
    pub async fn recv(&mut self) -> Option<AdminCall> {
        let (request, reply) = self.rx.recv().await?;
        Some(AdminCall { request, reply })
    }
}
