//! The immutable per-stream view that HTTP serves: swapped whole after each new segment.

use crate::media::{MediaInfo, Segment};
use bytes::Bytes;
use std::sync::Arc;

/// Everything a reader needs, with playlists already rendered.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub media: Option<MediaInfo>,
    /// The live window, oldest first.
    pub live: Vec<Arc<Segment>>,
    /// Dropped from the playlist, still in their grace period.
    pub retired: Vec<Arc<Segment>>,
    /// `mono.m3u8` text; `None` until the first segment exists.
    pub media_playlist: Option<Bytes>,
    /// `index.m3u8` text; `None` until media info and a segment exist.
    pub master_playlist: Option<Bytes>,
}

impl Snapshot {
    /// Finds a segment by its Flussonic path (`YYYY/MM/DD/HH/MM/SS-DDDDD.ts`); newest wins.
    pub fn segment(&self, path: &str) -> Option<&Arc<Segment>> {
        self.live
            .iter()
            .rev()
            .chain(self.retired.iter().rev())
            .find(|s| s.path() == path)
    }
}
