//! Stage 4: HTTP on hyper 1.x. Serves playback from the stream snapshots in memory:
//! `/NAME/index.m3u8`, `/NAME/[tracks-…/]mono.m3u8`, segments, and `/NAME/mpegts`.
//! Depends on `stream` and `packaging` only, never on `ingest` or GStreamer.

mod body;
mod error;
mod hls;
mod range;
mod router;
mod server;

pub use error::HttpError;
pub use router::{Route, RouteError, route};
pub use server::serve;

use crate::stream::Registry;
use tokio_util::sync::CancellationToken;

/// What every request handler can see.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    /// Fires at shutdown; endless bodies (`/mpegts`) end on it.
    pub shutdown: CancellationToken,
}
