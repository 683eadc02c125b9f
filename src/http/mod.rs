//! Stage 4: HTTP on hyper 1.x. Serves playback from the stream snapshots in memory:
//! `/NAME/index.m3u8`, `/NAME/[tracks-…/]mono.m3u8`, segments, and `/NAME/mpegts`.
//! API paths (`/flussonic/api/…`) need `view_auth`/`edit_auth`; playback asks `access`
//! (authorization backends, play sessions) first.
//! Depends on `stream`, `packaging`, `stats` (names, exposition) and the control plane's
//! request types, never on `ingest` or GStreamer.

mod admin;
mod api;
mod auth;
mod body;
mod conn;
mod dvr;
mod error;
mod export;
mod fmp4;
mod hls;
mod llhls;
mod publish;
mod range;
mod request_metrics;
mod router;
mod server;
mod service;
mod tls;
mod trace;

pub use auth::{ApiAuth, AuthFailure, Role, parse_authorization};
pub use error::HttpError;
pub use export::Exports;
pub use router::{ApiRoute, DvrRequest, FragmentKey, Route, RouteError, route};
pub use server::{Listeners, serve};
pub use tls::{TlsCertificate, TlsError};

use crate::stats::{Exposition, StatsHealth};
use crate::stream::Registry;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every request handler can see.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    /// Fires at shutdown; endless bodies (`/mpegts`) end on it.
    pub shutdown: CancellationToken,
    /// API credentials; replaced whole by a reload.
    pub auth: Arc<ArcSwap<ApiAuth>>,
    pub exposition: Arc<Exposition>,
    pub health: Arc<StatsHealth>,
    /// MP4 export of archive ranges.
    pub mp4: Arc<dyn crate::dvr::Mp4Export>,
    /// Where `POST /NAME/mpegts` publishers go.
    pub publishing: Arc<dyn crate::stream::Publishing>,
    /// `[stats]` settings (session timeout for client counts), changed by a reload.
    pub live: Arc<crate::stats::LiveSettings>,
    /// DVB cards' last signal readings.
    pub dvb: Arc<crate::stream::DvbCards>,
    /// Stream management writes go to the control plane.
    pub admin: crate::control::Admin,
    /// Play sessions and authorization backends.
    pub access: Arc<crate::access::Access>,
    /// Front door settings (trusted proxies, limits); replaced whole by a reload.
    pub front: Arc<ArcSwap<crate::config::FrontDoor>>,
    /// Archive export limits.
    pub exports: Arc<export::Exports>,
}
