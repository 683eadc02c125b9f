//! Stage 3a: chunks in, segments and playlist text out — pure data, no sockets, no GStreamer.
//!
//! The stream actor feeds [`Segmenter`] with ingest chunks; finished segments go into a
//! [`Window`]; after each change the actor publishes an immutable [`Snapshot`] (segments plus
//! pre-rendered playlists) that HTTP readers clone without doing any work per request.

pub mod dash;
pub mod flv;
pub mod fmp4;
pub mod hls;
mod ladder;
pub mod links;
pub mod llhls;
pub mod parts;
mod segmenter;
mod snapshot;
mod tracks;
mod window;

pub use ladder::{LadderSegmenter, SAME_INSTANT};
pub use segmenter::{CUT_AT_PERCENT, Segmenter};
pub use snapshot::{
    FragmentEntry, InitSegment, LlTrackSnapshot, RenditionSnapshot, Snapshot, TrackSnapshot,
    consecutive_tail, init_name,
};
pub use tracks::{Track, Tracks};
pub use window::Window;
