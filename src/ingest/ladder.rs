//! The tail of every ingest pipeline: one `mpegtsmux ! appsink` per rendition, and how the
//! parsed source tracks reach them. A pass-through stream has one rendition fed directly; a
//! transcoded stream decodes its video once, then per rendition scales and encodes:
//!
//! ```text
//! h264parse ! DECODER ! [force-key-unit probe] ! tee ─┬ queue ! videoscale ! videoconvert ! I420,WxH ! ENCODER ! h264parse ! mux0 ! sink0
//!                                                     └ queue ! …                                                        ! mux1 ! sink1
//! aacparse ! [avdec_aac ! audioconvert ! audioresample ! avenc_aac ! aacparse] ! tee ─┬ queue ! mux0
//!                                                                                     └ queue ! mux1
//! ```
//!
//! Keyframes line up across renditions because every encoder sees the same frames: either each
//! gets a downstream force-key-unit event before the same frame at every segment boundary, or
//! all use the same fixed `gop` without scene-cut keyframes.

use super::IngestError;
use super::codecs::CodecChoice;
use super::media::{MediaTracker, probe_audio, probe_video};
use crate::config::Transcoder;
use crate::config::transcoder::AudioBitrate;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Raw video queued per rendition: the slowest encoder paces the decoder, so a queue only
/// absorbs encoder jitter. Two seconds of frames at 360p is about 17 MB.
const RENDITION_QUEUE_NS: u64 = 2_000_000_000;
/// How long the live muxer waits for a late track before muxing without it.
const MUX_LATENCY_NS: u64 = 1_000_000_000;

/// What a transcoded stream encodes and with which elements.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub transcoder: Transcoder,
    pub codecs: CodecChoice,
    /// Segment duration: the forced keyframe interval when `gop` is not set.
    pub segment_ns: u64,
}

/// The muxers and sinks of one pipeline, one per rendition.
#[derive(Debug)]
pub(super) struct Outputs {
    pub muxes: Vec<gst::Element>,
    pub appsinks: Vec<gstreamer_app::AppSink>,
    /// One per rendition, in the same order.
    pub trackers: Vec<Arc<MediaTracker>>,
    plan: Option<Plan>,
}

impl Outputs {
    /// Adds `trackers.len()` muxer+sink pairs to `pipeline` (one for a pass-through stream).
    pub(super) fn new(
        pipeline: &gst::Pipeline,
        trackers: Vec<Arc<MediaTracker>>,
        plan: Option<Plan>,
        sync: bool,
        live: bool,
    ) -> Result<Self, IngestError> {
        let mut muxes = Vec::new();
        let mut appsinks = Vec::new();
        for i in 0..trackers.len() {
            let mux = make("mpegtsmux", &format!("mux{i}"))?;
            let appsink = gstreamer_app::AppSink::builder()
                .name(format!("sink{i}"))
                .buffer_list(true)
                .sync(sync)
                .max_buffers(64)
                .build();
            pipeline
                .add_many([&mux, appsink.upcast_ref()])
                .map_err(IngestError::from)?;
            mux.link(&appsink).map_err(IngestError::from)?;
            if live {
                // Network sources are live: the muxer must not wait forever for a silent track.
                mux.set_property("latency", MUX_LATENCY_NS);
            }
            muxes.push(mux);
            appsinks.push(appsink);
        }
        Ok(Outputs {
            muxes,
            appsinks,
            trackers,
            plan,
        })
    }

    /// Links a parsed H.264 track to every rendition: `parser` is its `h264parse`, `src` the
    /// pad that carries its output at the pipeline's level (the parser's, or a ghost pad).
    pub(super) fn link_video(
        &self,
        pipeline: &gst::Pipeline,
        parser: &gst::Element,
        src: &gst::Pad,
    ) -> Result<(), IngestError> {
        let Some(plan) = &self.plan else {
            probe_video(parser, self.trackers[0].clone());
            return link_to_mux(src, &self.muxes[0]);
        };
        let decoder = make(&plan.codecs.decoder, "decoder")?;
        let tee = make("tee", "vtee")?;
        pipeline
            .add_many([&decoder, &tee])
            .map_err(IngestError::from)?;
        decoder.link(&tee).map_err(IngestError::from)?;
        if plan.transcoder.gop.is_none() {
            force_keyframes(&decoder, plan.segment_ns);
        }
        let mut added = vec![decoder.clone(), tee.clone()];
        for (i, rung) in plan.transcoder.video.0.iter().enumerate() {
            let queue = time_queue(&format!("vq{i}"), RENDITION_QUEUE_NS)?;
            let scale = make("videoscale", &format!("scale{i}"))?;
            let convert = make("videoconvert", &format!("convert{i}"))?;
            let caps = make("capsfilter", &format!("size{i}"))?;
            caps.set_property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("width", rung.size.width as i32)
                    .field("height", rung.size.height as i32)
                    .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                    .build(),
            );
            let encoder = make(&plan.codecs.encoder, &format!("encoder{i}"))?;
            configure_encoder(&encoder, plan, rung.bitrate.kbps());
            let profile = make("capsfilter", &format!("profile{i}"))?;
            // Main profile plays everywhere (Safari, set-top boxes, MSE).
            profile.set_property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("profile", "main")
                    .build(),
            );
            let out_parser = make("h264parse", &format!("vparse{i}"))?;
            out_parser.set_property("config-interval", -1i32);
            let chain = [
                &queue,
                &scale,
                &convert,
                &caps,
                &encoder,
                &profile,
                &out_parser,
            ];
            pipeline.add_many(chain).map_err(IngestError::from)?;
            gst::Element::link_many(chain).map_err(IngestError::from)?;
            tee.link(&queue).map_err(IngestError::from)?;
            probe_video(&out_parser, self.trackers[i].clone());
            let out = out_parser.static_pad("src").expect("parser has a src pad");
            link_to_mux(&out, &self.muxes[i])?;
            added.extend(chain.into_iter().cloned());
        }
        for e in added.iter().rev() {
            e.sync_state_with_parent().map_err(IngestError::from)?;
        }
        let sink = decoder.static_pad("sink").expect("decoder has a sink pad");
        src.link(&sink)
            .map_err(|e| IngestError::Link(e.to_string()))?;
        Ok(())
    }

    /// Links a parsed AAC track (`parser` is its `aacparse`, `src` as for video) to every
    /// rendition, re-encoded once when the transcoder asks for an audio bitrate.
    pub(super) fn link_audio(
        &self,
        pipeline: &gst::Pipeline,
        parser: &gst::Element,
        src: &gst::Pad,
    ) -> Result<(), IngestError> {
        let Some(plan) = &self.plan else {
            probe_audio(parser, self.trackers.clone());
            return link_to_mux(src, &self.muxes[0]);
        };
        let mut added = Vec::new();
        // Where the parsed source audio enters: the tee (copy) or the decoder (re-encode).
        let mut entry = None;
        let out = match plan.transcoder.audio.bitrate {
            AudioBitrate::Copy => {
                probe_audio(parser, self.trackers.clone());
                src.clone()
            }
            AudioBitrate::Aac(bits) => {
                let chain = [
                    make("avdec_aac", "adec")?,
                    make("audioconvert", "aconvert")?,
                    make("audioresample", "aresample")?,
                    make("avenc_aac", "aenc")?,
                    make("aacparse", "aout")?,
                ];
                chain[3].set_property("bitrate", bits as i32);
                pipeline.add_many(&chain).map_err(IngestError::from)?;
                gst::Element::link_many(&chain).map_err(IngestError::from)?;
                probe_audio(&chain[4], self.trackers.clone());
                entry = Some(chain[0].static_pad("sink").expect("decoder has a sink pad"));
                let out = chain[4].static_pad("src").expect("parser has a src pad");
                added.extend(chain);
                out
            }
        };
        let tee = make("tee", "atee")?;
        pipeline.add(&tee).map_err(IngestError::from)?;
        added.push(tee.clone());
        for (i, mux) in self.muxes.iter().enumerate() {
            // Audio is small: hold more time than the video queues so it never limits them.
            let queue = time_queue(&format!("aq{i}"), RENDITION_QUEUE_NS * 2)?;
            pipeline.add(&queue).map_err(IngestError::from)?;
            tee.link(&queue).map_err(IngestError::from)?;
            link_to_mux(&queue.static_pad("src").expect("queue has a src pad"), mux)?;
            added.push(queue);
        }
        for e in added.iter().rev() {
            e.sync_state_with_parent().map_err(IngestError::from)?;
        }
        let tee_sink = tee.static_pad("sink").expect("tee has a sink pad");
        out.link(&tee_sink)
            .map_err(|e| IngestError::Link(e.to_string()))?;
        if let Some(sink) = entry {
            src.link(&sink)
                .map_err(|e| IngestError::Link(e.to_string()))?;
        }
        Ok(())
    }
}

fn make(factory: &str, name: &str) -> Result<gst::Element, IngestError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| IngestError::MissingElement(factory.to_owned()))
}

/// A queue bounded by time only (`ns` of buffers).
fn time_queue(name: &str, ns: u64) -> Result<gst::Element, IngestError> {
    let queue = make("queue", name)?;
    queue.set_property("max-size-time", ns);
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    Ok(queue)
}

fn link_to_mux(src: &gst::Pad, mux: &gst::Element) -> Result<(), IngestError> {
    let mpad = mux
        .request_pad_simple("sink_%d")
        .ok_or_else(|| IngestError::Link("mpegtsmux refused a sink pad".into()))?;
    src.link(&mpad)
        .map_err(|e| IngestError::Link(e.to_string()))?;
    Ok(())
}

/// Rate control, speed and keyframes of one rendition's encoder.
fn configure_encoder(encoder: &gst::Element, plan: &Plan, kbps: u32) {
    let t = &plan.transcoder;
    // With forced keyframes the encoder's own interval is only a ceiling far above them.
    let gop = t.gop.map_or(0, |g| g.0);
    if plan.codecs.nvenc() {
        encoder.set_property("bitrate", kbps);
        encoder.set_property_from_str("preset", t.preset.nvenc());
        encoder.set_property_from_str("rc-mode", "cbr");
        encoder.set_property("gop-size", if gop == 0 { -1 } else { gop as i32 });
        if encoder.has_property("zerolatency") {
            encoder.set_property("zerolatency", true);
        }
        if encoder.has_property("bframes") {
            encoder.set_property("bframes", 0u32);
        }
    } else {
        encoder.set_property("bitrate", kbps);
        encoder.set_property_from_str("speed-preset", t.preset.x264());
        encoder.set_property_from_str("tune", "zerolatency");
        // A VBV of one second keeps each segment close to the target rate.
        encoder.set_property("vbv-buf-capacity", 1000u32);
        encoder.set_property("key-int-max", if gop == 0 { 600 } else { gop });
        // Scene-cut keyframes would differ between resolutions and break alignment.
        encoder.set_property("option-string", "scenecut=0");
    }
}

/// Pushes a downstream force-key-unit event before the first frame of every segment-length
/// interval of running time, on the decoder's output: every rendition's encoder receives it
/// before the same frame, so all renditions start a GOP together.
fn force_keyframes(decoder: &gst::Element, interval_ns: u64) {
    let Some(pad) = decoder.static_pad("src") else {
        return;
    };
    let next = Arc::new(AtomicU64::new(0));
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(running) = pad.sticky_event::<gst::event::Segment>(0).and_then(|ev| {
            let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
            seg.to_running_time(buffer.pts())
        }) else {
            return gst::PadProbeReturn::Ok;
        };
        let now = running.nseconds();
        let due = next.load(Ordering::Relaxed);
        if now >= due {
            // The next boundary on the interval grid after this frame.
            next.store((now / interval_ns + 1) * interval_ns, Ordering::Relaxed);
            // No running time: "the next frame". Encoders compare a timed request with their
            // own running time, which need not be the decoder's (x264's 1000 h offset shows
            // through in some pipelines) and then throttle every later request.
            let fku = gst_video::DownstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            let sent = pad.push_event(fku);
            tracing::debug!(
                running_ms = now / 1_000_000,
                sent,
                "forcing a keyframe in every rendition"
            );
        }
        gst::PadProbeReturn::Ok
    });
}
