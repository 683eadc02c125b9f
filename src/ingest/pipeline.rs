//! Builds one source pipeline per input URL. Every pipeline ends the same way:
//! `… ! h264parse ! mpegtsmux ! appsink` (plus `aacparse ! mux.` for audio), so the stream
//! actor always receives whole-access-unit TS chunks.

use super::IngestError;
use super::media::{MediaTracker, probe_audio, probe_video};
use crate::config::InputUrl;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{info, warn};

/// Fixed look of `fake://fake`: small enough for many demo streams on one core.
const FAKE_WIDTH: u32 = 640;
const FAKE_HEIGHT: u32 = 360;
const FAKE_FPS: u32 = 25;
const FAKE_VIDEO_KBPS: u32 = 800;
/// Receive queues hold more than a GOP: when a pipeline joins mid-GOP the H.264 parser drops
/// frames until the next IDR while audio keeps flowing, and a smaller queue deadlocks the mux.
const QUEUE_NS: u64 = 5_000_000_000;
/// How long the live muxer waits for a late track before muxing without it.
const MUX_LATENCY_NS: u64 = 1_000_000_000;

/// A built, not yet playing, pipeline and its sink.
#[derive(Debug)]
pub(super) struct Built {
    pub pipeline: gst::Pipeline,
    pub appsink: gstreamer_app::AppSink,
    /// The element whose output is the raw input (UDP datagrams, file bytes); `None` for
    /// generated sources, whose input is what the muxer produces.
    pub source: Option<gst::Element>,
}

/// Builds the pipeline for `url`; `keyframe_ms` is the stream's segment duration.
pub(super) fn build(
    name: &str,
    url: &InputUrl,
    keyframe_ms: u32,
    tracker: &Arc<MediaTracker>,
) -> Result<Built, IngestError> {
    let pipeline = gst::Pipeline::builder().name(name).build();
    let mux = make("mpegtsmux", "mux")?;
    let appsink = gstreamer_app::AppSink::builder()
        .name("sink")
        .buffer_list(true)
        // A file is paced by the clock; live sources pace themselves.
        .sync(matches!(url, InputUrl::File { .. }))
        .max_buffers(64)
        .build();
    pipeline
        .add_many([&mux, appsink.upcast_ref()])
        .map_err(IngestError::from)?;
    mux.link(&appsink).map_err(IngestError::from)?;

    let source = match url {
        InputUrl::Fake => {
            build_fake(&pipeline, &mux, keyframe_ms, tracker)?;
            None
        }
        InputUrl::Udp { iface, addr, port } => {
            mux.set_property("latency", MUX_LATENCY_NS);
            let src = make("udpsrc", "src")?;
            src.set_property("address", addr.to_string());
            src.set_property("port", i32::from(*port));
            src.set_property("buffer-size", 4 * 1024 * 1024i32);
            if let Some(iface) = iface {
                src.set_property("multicast-iface", iface.as_str());
            }
            let caps = gst::Caps::builder("video/mpegts")
                .field("systemstream", true)
                .field("packetsize", 188i32)
                .build();
            src.set_property("caps", &caps);
            add_demuxed(&pipeline, &src, &mux, tracker)?;
            Some(src)
        }
        InputUrl::File { path } => {
            if !path.is_file() {
                return Err(IngestError::Source(format!(
                    "{} is not a readable file",
                    path.display()
                )));
            }
            let src = make("filesrc", "src")?;
            src.set_property("location", path.to_string_lossy().as_ref());
            add_demuxed(&pipeline, &src, &mux, tracker)?;
            Some(src)
        }
    };
    Ok(Built {
        pipeline,
        appsink,
        source,
    })
}

fn make(factory: &str, name: &str) -> Result<gst::Element, IngestError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| IngestError::MissingElement(factory.to_owned()))
}

/// `fake://fake`: test pattern with a running clock, 440 Hz tone; H.264 + AAC with a keyframe
/// every segment.
fn build_fake(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    keyframe_ms: u32,
    tracker: &Arc<MediaTracker>,
) -> Result<(), IngestError> {
    let key_int = (FAKE_FPS * keyframe_ms / 1000).max(1);
    let desc = format!(
        "videotestsrc is-live=true pattern=smpte \
         ! video/x-raw,format=I420,width={FAKE_WIDTH},height={FAKE_HEIGHT},framerate={FAKE_FPS}/1 \
         ! clockoverlay time-format=\"%Y-%m-%d %H:%M:%S\" halignment=center valignment=bottom font-desc=\"Sans 20\" \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={FAKE_VIDEO_KBPS} key-int-max={key_int} option-string=scenecut=0 \
         ! video/x-h264,profile=constrained-baseline \
         ! h264parse name=vparse config-interval=-1 ! queue name=vq \
         audiotestsrc is-live=true wave=sine freq=440 volume=0.2 \
         ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac bitrate=96000 \
         ! aacparse name=aparse ! queue name=aq"
    );
    let bin = gst::parse::bin_from_description(&desc, false).map_err(|e| {
        // parse errors name the element that is missing (x264enc, avenc_aac, clockoverlay…)
        IngestError::MissingElement(e.to_string())
    })?;
    let vq = bin.by_name("vq").expect("named in the description");
    let aq = bin.by_name("aq").expect("named in the description");
    let vparse = bin.by_name("vparse").expect("named in the description");
    let aparse = bin.by_name("aparse").expect("named in the description");
    let ghost = |q: &gst::Element, name: &str| -> Result<(), IngestError> {
        let pad = q.static_pad("src").expect("queue has a src pad");
        let ghost = gst::GhostPad::builder_with_target(&pad)
            .map_err(IngestError::from)?
            .name(name)
            .build();
        bin.add_pad(&ghost).map_err(IngestError::from)
    };
    ghost(&vq, "video")?;
    ghost(&aq, "audio")?;
    pipeline.add(&bin).map_err(IngestError::from)?;
    for pad in ["video", "audio"] {
        bin.link_pads(Some(pad), mux, None)
            .map_err(IngestError::from)?;
    }
    probe_video(&vparse, tracker.clone());
    probe_audio(&aparse, tracker.clone());
    Ok(())
}

/// A container source (`udpsrc`, `filesrc`) into `parsebin`, whose elementary pads are linked
/// in code as they appear: the first H.264 and the first AAC track go to the muxer, anything
/// else into a `fakesink` with a warning.
fn add_demuxed(
    pipeline: &gst::Pipeline,
    src: &gst::Element,
    mux: &gst::Element,
    tracker: &Arc<MediaTracker>,
) -> Result<(), IngestError> {
    let parsebin = make("parsebin", "demux")?;
    pipeline
        .add_many([src, &parsebin])
        .map_err(IngestError::from)?;
    src.link(&parsebin).map_err(IngestError::from)?;
    let pipeline_weak = pipeline.downgrade();
    let mux_weak = mux.downgrade();
    let tracker = tracker.clone();
    let linked = Arc::new(Linked::default());
    parsebin.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(mux)) = (pipeline_weak.upgrade(), mux_weak.upgrade()) else {
            return;
        };
        if let Err(e) = link_track(&pipeline, &mux, pad, &tracker, &linked) {
            warn!(pad = %pad.name(), error = %e, "cannot link track");
        }
    });
    Ok(())
}

/// Which tracks of one pipeline already go to the muxer.
#[derive(Debug, Default)]
struct Linked {
    video: AtomicBool,
    audio: AtomicBool,
}

fn link_track(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    pad: &gst::Pad,
    tracker: &Arc<MediaTracker>,
    linked: &Linked,
) -> Result<(), IngestError> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let kind = caps
        .structure(0)
        .map(|s| {
            let name = s.name().as_str();
            // At pad-added the caps may still be unfixed (`mpegversion={ 2, 4 }`): only an
            // explicit MPEG-1 (MP2/MP3) is not AAC.
            let mpeg1 = s.get::<i32>("mpegversion").ok() == Some(1);
            match name {
                "video/x-h264" => "h264",
                "audio/mpeg" if !mpeg1 => "aac",
                _ => "other",
            }
        })
        .unwrap_or("other");
    let first = |flag: &AtomicBool| !flag.swap(true, Ordering::Relaxed);
    let parser = match kind {
        "h264" if first(&linked.video) => Some("h264parse"),
        "aac" if first(&linked.audio) => Some("aacparse"),
        _ => None,
    };
    let Some(parser_factory) = parser else {
        info!(caps = %caps, "track not carried (only the first H.264 and AAC tracks are)");
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .map_err(|_| IngestError::MissingElement("fakesink".into()))?;
        pipeline.add(&sink).map_err(IngestError::from)?;
        sink.sync_state_with_parent().map_err(IngestError::from)?;
        let sinkpad = sink.static_pad("sink").expect("fakesink has a sink pad");
        pad.link(&sinkpad)
            .map_err(|e| IngestError::Link(e.to_string()))?;
        return Ok(());
    };
    let queue = gst::ElementFactory::make("queue")
        .property("max-size-time", QUEUE_NS)
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .build()
        .map_err(|_| IngestError::MissingElement("queue".into()))?;
    let parser = gst::ElementFactory::make(parser_factory)
        .build()
        .map_err(|_| IngestError::MissingElement(parser_factory.into()))?;
    if kind == "h264" {
        parser.set_property("config-interval", -1i32);
        probe_video(&parser, tracker.clone());
    } else {
        probe_audio(&parser, tracker.clone());
    }
    pipeline
        .add_many([&queue, &parser])
        .map_err(IngestError::from)?;
    queue.link(&parser).map_err(IngestError::from)?;
    let mpad = mux
        .request_pad_simple("sink_%d")
        .ok_or_else(|| IngestError::Link("mpegtsmux refused a sink pad".into()))?;
    let ppad = parser.static_pad("src").expect("parser has a src pad");
    ppad.link(&mpad)
        .map_err(|e| IngestError::Link(e.to_string()))?;
    for e in [&parser, &queue] {
        e.sync_state_with_parent().map_err(IngestError::from)?;
    }
    let qpad = queue.static_pad("sink").expect("queue has a sink pad");
    pad.link(&qpad)
        .map_err(|e| IngestError::Link(e.to_string()))?;
    Ok(())
}
