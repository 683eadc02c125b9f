//! Stage 4: HTTP on hyper 1.x. Serves playback from the stream snapshots in memory:
//! `/NAME/index.m3u8`, `/NAME/[tracks-…/]mono.m3u8`, segments, and `/NAME/mpegts`.
//! API paths (`/flussonic/api/…`) need `view_auth`/`edit_auth`; playback stays open.
//! Depends on `stream`, `packaging` and `stats` (names, exposition), never on `ingest` or GStreamer.

mod api;
mod auth;
mod body;
mod dvr;
mod error;
mod fmp4;
mod hls;
mod publish;
mod range;
mod router;
mod server;
mod service;

pub use auth::{ApiAuth, AuthFailure, Role, parse_authorization};
pub use error::HttpError;
pub use router::{ApiRoute, DvrRequest, FragmentKey, Route, RouteError, route};
pub use server::serve;

use crate::stats::{Exposition, StatsHealth};
use crate::stream::Registry;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every request handler can see.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    /// Fires at shutdown; endless bodies (`/mpegts`) end on it.
    pub shutdown: CancellationToken,
    pub auth: ApiAuth,
    pub exposition: Arc<Exposition>,
    pub health: Arc<StatsHealth>,
    /// MP4 export of archive ranges.
    pub mp4: Arc<dyn crate::dvr::Mp4Export>,
    /// Where `POST /NAME/mpegts` publishers go.
    pub publishing: Arc<dyn crate::stream::Publishing>,
    /// An HLS session idle this long no longer counts as a client, ms.
    pub session_timeout_ms: u64,
    /// DVB cards' last signal readings.
    pub dvb: Arc<crate::stream::DvbCards>,
}
