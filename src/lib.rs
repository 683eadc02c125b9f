//! Headwater: a live streaming origin server.
//!
//! ```text
//!  API writes, SIGHUP, streams/ edits --> control (the stream set: starts, changes, stops streams)
//!                                               |
//!  GStreamer threads          tokio tasks       v                            readers
//!  ingest (appsink) --try_send--> stream (per-stream actor) --> packaging (segments, playlists) --> http <-- access
//!                                     |
//!                                     \-- counters (atomics) <-- stats thread --> metrics --> /flussonic/api/metrics
//! ```
//!
//! Only `ingest` and `gst_util` import GStreamer; `http` never depends on `ingest`;
//! `media` and `packaging` are pure data. `access` decides who may play (asked by `http`) and
//! publish (asked by the publish front ends through `stream::PublishGate`).

pub mod access;
pub mod app;
pub mod config;
pub mod control;
pub mod dvr;
pub mod gst_util;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod media;
pub mod packaging;
pub mod push;
pub mod stats;
pub mod stream;
pub mod telemetry;
