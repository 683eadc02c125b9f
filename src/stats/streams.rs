//! Per-stream figures, sampled from the stream counters and sessions.

use super::names;
use crate::stream::{Registry, StreamCounters, mono_ms};
use metrics::{counter, gauge};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

/// The bitrate is measured over this much recent input.
const BITRATE_WINDOW_MS: u64 = 10_000;
/// A stream is alive while its source delivered data this recently (Flussonic's threshold).
const ALIVE_MS: u64 = 12_000;

/// Sliding windows kept between samples.
#[derive(Debug, Default)]
pub(super) struct StreamSampler {
    /// Stream → (mono ms, bytes_in) samples covering at least the bitrate window.
    input: HashMap<String, VecDeque<(u64, u64)>>,
    /// Stream → (hw, decoder, encoder) labels it used: the current choice (last) and earlier
    /// ones, exported at 0.
    transcoders: HashMap<String, Vec<(String, String, String)>>,
}

impl StreamSampler {
    /// Publishes every stream's figures; returns the total client count.
    pub(super) fn sample(&mut self, registry: &Registry, session_timeout_ms: u64) -> u64 {
        let now = mono_ms();
        let mut clients = 0;
        // Windows and labels of streams that are gone are forgotten with them.
        let names = registry.names();
        self.input.retain(|n, _| names.binary_search(n).is_ok());
        self.transcoders
            .retain(|n, _| names.binary_search(n).is_ok());
        for stream in registry.iter() {
            let name = stream.name.to_string();
            let c = &stream.counters;
            let bytes_in = StreamCounters::get(&c.bytes_in);
            counter!(names::STREAM_BYTES_IN, "name" => name.clone()).absolute(bytes_in);
            counter!(names::STREAM_BYTES_OUT, "name" => name.clone())
                .absolute(StreamCounters::get(&c.bytes_out));
            counter!(names::STREAM_RETRY_COUNT, "name" => name.clone())
                .absolute(StreamCounters::get(&c.retries));

            let window = self.input.entry(name.clone()).or_default();
            window.push_back((now, bytes_in));
            while window.len() > 2 && window[1].0 + BITRATE_WINDOW_MS <= now {
                window.pop_front();
            }
            gauge!(names::STREAM_BITRATE, "name" => name.clone()).set(bitrate_kbytes(window));

            let count = stream.sessions.active(now, session_timeout_ms);
            clients += count;
            gauge!(names::STREAM_CLIENT_COUNT, "name" => name.clone()).set(count as f64);

            let last_input = c.last_input_ms.load(Ordering::Relaxed);
            let last_segment = c.last_segment_ms.load(Ordering::Relaxed);
            let delay = if last_segment == 0 {
                0
            } else {
                last_input.saturating_sub(last_segment)
            };
            gauge!(names::STREAM_CLIENT_DELAY, "name" => name.clone()).set(delay as f64);
            gauge!(names::STREAM_START_RUNNING_AT, "name" => name.clone())
                .set(c.running_since_ms.load(Ordering::Relaxed) as f64);
            let active = c.active_input.load(Ordering::Relaxed);
            for position in 1..=stream.inputs.len() as u64 {
                let state = if position == active { 1.0 } else { 0.0 };
                gauge!(names::STREAM_INPUT_ACTIVE, "name" => name.clone(), "input" => position.to_string())
                    .set(state);
            }
            if let Some(t) = c.transcoder() {
                let info = |(hw, decoder, encoder): &(String, String, String)| {
                    gauge!(names::STREAM_TRANSCODER, "name" => name.clone(), "hw" => hw.clone(),
                        "decoder" => decoder.clone(), "encoder" => encoder.clone())
                };
                let labels = (t.hw.clone(), t.decoder.clone(), t.encoder.clone());
                // An earlier choice (a GPU appeared or vanished) stays exported, at 0.
                let used = self.transcoders.entry(name.clone()).or_default();
                used.retain(|l| *l != labels);
                used.push(labels);
                for (i, l) in used.iter().enumerate() {
                    info(l).set(if i + 1 == used.len() { 1.0 } else { 0.0 });
                }
                gauge!(names::STREAM_TRANSCODER_UP, "name" => name.clone())
                    .set(if t.error.is_none() { 1.0 } else { 0.0 });
            }
            let snapshot = stream.current();
            for (i, r) in snapshot.renditions.iter().enumerate() {
                if r.live.is_empty() {
                    continue;
                }
                let (_, average) = crate::packaging::hls::segment_bitrates(&r.live);
                gauge!(names::STREAM_RENDITION_BITRATE, "name" => name.clone(), "track" => format!("v{}", i + 1))
                    .set(average as f64);
            }
            let alive = last_input > 0 && now.saturating_sub(last_input) <= ALIVE_MS;
            gauge!(names::STREAM_ALIVE, "name" => name.clone()).set(if alive { 1.0 } else { 0.0 });
            // Only recording streams have an archive to describe.
            if let Some(a) = &stream.archive {
                let index = a.read();
                gauge!(names::STREAM_DVR_DISK_SIZE, "name" => name.clone())
                    .set(index.bytes() as f64);
                gauge!(names::STREAM_DVR_DEPTH, "name" => name.clone())
                    .set(index.depth_ms() as f64 / 1000.0);
                gauge!(names::STREAM_DVR_DURATION, "name" => name.clone())
                    .set(index.duration_ms() as f64 / 1000.0);
            }
            for push in stream.pushes.list() {
                let labels = [("name", name.clone()), ("push", push.url.clone())];
                counter!(names::STREAM_PUSH_BYTES, &labels)
                    .absolute(StreamCounters::get(&push.bytes));
                counter!(names::STREAM_PUSH_RETRIES, &labels)
                    .absolute(StreamCounters::get(&push.retries));
                counter!(names::STREAM_PUSH_DROPPED, &labels)
                    .absolute(StreamCounters::get(&push.dropped_chunks));
                gauge!(names::STREAM_PUSH_UP, &labels).set(if push.up() { 1.0 } else { 0.0 });
            }
            if let Some(a) = &stream.archive {
                let c = &a.counters;
                counter!(names::DVR_WRITTEN, "name" => name.clone())
                    .absolute(c.written.load(Ordering::Relaxed));
                counter!(names::DVR_DROPPED, "name" => name.clone())
                    .absolute(c.dropped.load(Ordering::Relaxed));
                counter!(names::DVR_FAILED, "name" => name.clone())
                    .absolute(c.failed.load(Ordering::Relaxed));
                counter!(names::DVR_DELETED_BYTES, "name" => name)
                    .absolute(c.deleted_bytes.load(Ordering::Relaxed));
            }
        }
        clients
    }
}

/// kB/s (1000 B/s) between the oldest and newest sample of the window.
fn bitrate_kbytes(window: &VecDeque<(u64, u64)>) -> f64 {
    match (window.front(), window.back()) {
        (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
            b1.saturating_sub(b0) as f64 / (t1 - t0) as f64
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_over_the_window() {
        // 250,000 bytes per second = 250 kB/s.
        let w: VecDeque<(u64, u64)> = (0..=10).map(|s| (s * 1000, s * 250_000)).collect();
        assert!((bitrate_kbytes(&w) - 250.0).abs() < 1e-9);
        assert_eq!(bitrate_kbytes(&VecDeque::from([(5, 5)])), 0.0);
    }
}
