//! Pad probes on the parsers, on GStreamer streaming threads: they read what the stream
//! carries (caps, SPS) for the master playlist, and ask the muxer to repeat PAT/PMT before
//! every IDR so that each segment starts with PAT, PMT, IDR. Nothing here blocks: the feed is
//! only `try_send`.

use crate::media::{AudioInfo, MediaInfo, VideoInfo, aac_codec_string, avc_codec_string};
use crate::stream::Feed;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// Collects the tracks of one pipeline run and sends [`Feed::Media`] when they change.
#[derive(Debug)]
pub(super) struct MediaTracker {
    feed: mpsc::Sender<Feed>,
    /// Latest known tracks; the lock is held only to compare and clone a few strings.
    info: Mutex<MediaInfo>,
    /// Nothing is announced while the instance does not feed the stream (a probe).
    gate: Arc<super::Gate>,
    /// The ladder rendition whose tracks these are (0 for a pass-through stream).
    rendition: usize,
}

impl MediaTracker {
    pub(super) fn new(
        feed: mpsc::Sender<Feed>,
        gate: Arc<super::Gate>,
        rendition: usize,
    ) -> Arc<Self> {
        Arc::new(MediaTracker {
            feed,
            info: Mutex::new(MediaInfo::default()),
            gate,
            rendition,
        })
    }

    fn update(&self, change: impl FnOnce(&mut MediaInfo)) {
        let mut info = self.info.lock().unwrap_or_else(PoisonError::into_inner);
        let before = info.clone();
        change(&mut info);
        if *info != before {
            drop(info);
            self.announce();
        }
    }

    /// Sends the current tracks to the stream (once it has video and the instance feeds it).
    pub(super) fn announce(&self) {
        if !self.gate.forward.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let info = self
            .info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if info.video.is_some() {
            // A full queue here only delays the master playlist until the next change.
            let _ = self.feed.try_send(Feed::Media(self.rendition, info));
        }
    }
}

/// On the H.264 parser's src pad: before each IDR, a downstream force-key-unit event with
/// `all_headers` (mpegtsmux then writes PAT+PMT first); from each IDR's SPS, the codec string.
pub(super) fn probe_video(parser: &gst::Element, tracker: Arc<MediaTracker>) {
    let Some(pad) = parser.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return gst::PadProbeReturn::Ok;
        }
        let running_time = pad.sticky_event::<gst::event::Segment>(0).and_then(|ev| {
            let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
            seg.to_running_time(buffer.pts())
        });
        let fku = gst_video::DownstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .running_time(running_time)
            .build();
        pad.push_event(fku);
        let codec = buffer
            .map_readable()
            .ok()
            .and_then(|map| avc_codec_string(map.as_slice()));
        if let (Some(codec), Some(caps)) = (codec, pad.current_caps()) {
            let s = caps.structure(0);
            let dim = |k: &str| s.and_then(|s| s.get::<i32>(k).ok()).unwrap_or(0).max(0) as u32;
            let frame_rate = s
                .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
                .and_then(|f| {
                    let (n, d) = (
                        u32::try_from(f.numer()).ok()?,
                        u32::try_from(f.denom()).ok()?,
                    );
                    (n > 0 && d > 0).then_some((n, d))
                });
            let video = VideoInfo {
                codec,
                width: dim("width"),
                height: dim("height"),
                frame_rate,
            };
            tracker.update(|i| i.video = Some(video));
        }
        gst::PadProbeReturn::Ok
    });
}

/// On the AAC parser's src pad: the audio track from its caps, for every rendition that
/// carries it.
pub(super) fn probe_audio(parser: &gst::Element, trackers: Vec<Arc<MediaTracker>>) {
    let Some(pad) = parser.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view())
            && let Some(s) = caps.caps().structure(0)
        {
            {
                let audio = AudioInfo {
                    codec: aac_codec_string(s.get::<&str>("profile").ok()),
                    channels: s.get::<i32>("channels").unwrap_or(0).max(0) as u32,
                    sample_rate: s.get::<i32>("rate").unwrap_or(0).max(0) as u32,
                };
                for tracker in &trackers {
                    tracker.update(|i| i.audio = Some(audio.clone()));
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}
