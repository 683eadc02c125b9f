//! Per-stream counters: atomics written by ingest and the actor, read by the stats thread.
//! Relaxed ordering everywhere: each value is independent and only ever sampled.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Milliseconds on a process-wide monotonic clock (starts near 0 at first use).
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Live figures of one stream.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Bytes of muxed TS received from the source pipeline.
    pub bytes_in: AtomicU64,
    /// Bytes of playback payload sent to clients.
    pub bytes_out: AtomicU64,
    /// Pipeline restarts after an error, an unexpected end or a source timeout.
    pub retries: AtomicU64,
    /// Chunks lost because the actor's queue was full (should stay 0).
    pub dropped_chunks: AtomicU64,
    /// Source PES packets whose AAC ended in a cut-off or corrupt frame (dropped before the
    /// parser; see `ingest::adts`).
    pub broken_audio_frames: AtomicU64,
    /// Source PES packets cut short (a continuity gap before the next PES start) that were
    /// dropped before the demuxer (see `ingest::splice`).
    pub broken_pes: AtomicU64,
    /// Segments produced.
    pub segments: AtomicU64,
    /// [`mono_ms`] of the last chunk from the source; 0 before any.
    pub last_input_ms: AtomicU64,
    /// Wall-clock ms since the epoch when the current source run delivered its first data.
    pub running_since_ms: AtomicU64,
    /// [`mono_ms`] when the newest segment was published (the live edge clients can reach).
    pub last_segment_ms: AtomicU64,
    /// Position (1-based, priority order) of the input feeding the stream; 0 while none.
    pub active_input: AtomicU64,
    /// Where the transcoder runs; `None` for a pass-through stream or before its first start.
    pub transcoder: std::sync::Mutex<Option<TranscoderStatus>>,
}

/// The codec pair a transcoded stream chose at its last start, or why it could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscoderStatus {
    /// `nvenc`, `nvdec` (GPU decode, CPU encode) or `cpu`; `none` when no pair was possible.
    pub hw: String,
    /// Decoder and encoder factory names (empty when none was chosen).
    pub decoder: String,
    pub encoder: String,
    /// Renditions encoded.
    pub renditions: usize,
    /// Why the transcoder cannot run (for example NVENC required but absent).
    pub error: Option<String>,
}

/// The last `dvb-frontend-stats` of a card.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DvbReading {
    /// Signal strength, percent of the 16-bit maximum.
    pub strength: f64,
    /// Raw driver figures, when the message carried them.
    pub snr: Option<i32>,
    pub ber: Option<i32>,
    /// Uncorrected blocks.
    pub unc: Option<i32>,
    pub lock: Option<bool>,
}

/// Signal of DVB cards, from `dvb-frontend-stats` bus messages; read by the stats thread and
/// the JSON API. Empty when no card has reported (no hardware means no series).
#[derive(Debug, Default)]
pub struct DvbCards {
    /// Card name → last reading.
    readings: std::sync::Mutex<std::collections::BTreeMap<String, DvbReading>>,
}

impl DvbCards {
    pub fn set(&self, card: &str, reading: DvbReading) {
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(card.to_owned(), reading);
    }

    /// Forgets a card's reading (its tuner stopped or failed): its series leave the metrics.
    pub fn remove(&self, card: &str) {
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(card);
    }

    /// A copy of the current readings.
    pub fn readings(&self) -> Vec<(String, DvbReading)> {
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

impl StreamCounters {
    /// Records the transcoder's current choice (or failure).
    pub fn set_transcoder(&self, status: TranscoderStatus) {
        *self
            .transcoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// A copy of the transcoder status.
    pub fn transcoder(&self) -> Option<TranscoderStatus> {
        self.transcoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
