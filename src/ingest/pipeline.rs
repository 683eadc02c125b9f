//! Builds one source pipeline per input URL. Every pipeline ends the same way:
//! `… ! h264parse ! mpegtsmux ! appsink` (plus `aacparse ! mux.` for audio), so the stream
//! actor always receives whole-access-unit TS chunks.

use super::ladder::{Outputs, Plan};
use super::media::MediaTracker;
use super::{IngestError, InputMeter};
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

/// A built, not yet playing, pipeline and its sink.
#[derive(Debug)]
pub(super) struct Built {
    pub pipeline: gst::Pipeline,
    /// One per rendition (one for a pass-through stream).
    pub appsinks: Vec<gstreamer_app::AppSink>,
    /// True when input bytes are metered before the demuxer; false for generated sources,
    /// whose input is what the muxer produces (metered at the appsink).
    pub metered: bool,
    /// Where a publisher's FLV goes, for `publish://` inputs.
    pub appsrc: Option<gstreamer_app::AppSrc>,
}

/// Builds the pipeline for `url`; `keyframe_ms` is the stream's segment duration; `meter`
/// counts the raw input bytes (what the network or file delivered). `trackers` has one entry
/// per rendition; `plan` is the transcoder (`None` passes the source through).
pub(super) fn build(
    name: &str,
    url: &InputUrl,
    keyframe_ms: u32,
    trackers: Vec<Arc<MediaTracker>>,
    plan: Option<Plan>,
    meter: &Arc<InputMeter>,
    traceparent: Option<&str>,
) -> Result<Built, IngestError> {
    let pipeline = gst::Pipeline::builder().name(name).build();
    let outputs = Arc::new(Outputs::new(
        &pipeline,
        trackers,
        plan,
        // A file is paced by the clock; live sources pace themselves.
        matches!(url, InputUrl::File { .. }),
        !matches!(url, InputUrl::Fake | InputUrl::File { .. }),
    )?);
    let appsinks = outputs.appsinks.clone();
    let ctx = Demux {
        pipeline: &pipeline,
        outputs: &outputs,
        meter,
        guard_splices: !matches!(url, InputUrl::File { .. }),
    };
    match url {
        InputUrl::Fake => {
            build_fake(&pipeline, &outputs, keyframe_ms)?;
            return Ok(Built {
                pipeline,
                appsinks,
                metered: false,
                appsrc: None,
            });
        }
        InputUrl::Udp {
            iface,
            addr,
            port,
            program,
        } => {
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
            if let Some(program) = *program {
                select_program(&pipeline, program);
            }
            ctx.add_static(&src)?;
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
            ctx.add_static(&src)?;
        }
        InputUrl::Srt { url, .. } => {
            // A listener ends (EOS) when its publisher leaves and the supervisor starts a fresh
            // one at once. `keep-listening` is not used: in 1.22 a second caller was refused and
            // the element could not be stopped while it waited (seen in tests/inputs.rs).
            let src = make("srtsrc", "src")?;
            src.set_property("uri", url.as_str());
            ctx.add_static(&src)?;
        }
        InputUrl::Rtmp { url } => {
            let src = make("rtmp2src", "src")?;
            src.set_property("location", url.as_str());
            ctx.add_static(&src)?;
        }
        InputUrl::TsHttp { url } => {
            let src = make("souphttpsrc", "src")?;
            src.set_property("location", url.as_str());
            src.set_property("is-live", true);
            src.set_property("timeout", 10u32);
            if let Some(tp) = traceparent {
                src.set_property("extra-headers", traced_headers(tp));
            }
            ctx.add_static(&src)?;
        }
        InputUrl::Rtsp { url, tcp } => {
            let src = make("rtspsrc", "src")?;
            src.set_property("location", url.as_str());
            src.set_property("latency", 200u32);
            src.set_property_from_str("protocols", if *tcp { "tcp" } else { "udp" });
            ctx.add_dynamic(&src)?;
        }
        InputUrl::Publish => {
            // No caps: parsebin finds out whether a publisher sends FLV (RTMP) or MPEG-TS (HTTP).
            let src = pushed_bytes("publish", None);
            ctx.add_static(src.upcast_ref())?;
            return Ok(Built {
                pipeline,
                appsinks,
                metered: true,
                appsrc: Some(src),
            });
        }
        InputUrl::Dvb { program, .. } => {
            // The card's tuner pushes the whole multiplex here; this stream's demuxer picks
            // its program.
            let caps = gst::Caps::builder("video/mpegts")
                .field("systemstream", true)
                .field("packetsize", 188i32)
                .build();
            let src = pushed_bytes("multiplex", Some(&caps));
            if let Some(program) = *program {
                select_program(&pipeline, program);
            }
            ctx.add_static(src.upcast_ref())?;
            return Ok(Built {
                pipeline,
                appsinks,
                metered: true,
                appsrc: Some(src),
            });
        }
        InputUrl::Hls { url } => {
            // urisourcebin handles adaptive streams itself (it needs the streams-aware
            // context hlsdemux2 asks for); its output pads are demuxed like any other.
            let src = make("urisourcebin", "src")?;
            src.set_property("uri", url.as_str());
            if let Some(tp) = traceparent {
                // The playlist request (souphttpsrc) carries the trace; hlsdemux2 fetches
                // segments with its own client, which takes no extra headers.
                let headers = traced_headers(tp);
                src.connect("source-setup", false, move |args| {
                    if let Some(source) = args.get(1).and_then(|v| v.get::<gst::Element>().ok())
                        && source.find_property("extra-headers").is_some()
                    {
                        source.set_property("extra-headers", &headers);
                    }
                    None
                });
            }
            ctx.add_dynamic(&src)?;
        }
    }
    Ok(Built {
        pipeline,
        appsinks,
        metered: true,
        appsrc: None,
    })
}

/// `extra-headers` for `souphttpsrc`: the W3C trace context of the pull.
fn traced_headers(traceparent: &str) -> gst::Structure {
    gst::Structure::builder("extra-headers")
        .field("traceparent", traceparent)
        .build()
}

/// A live `appsrc` that something outside the pipeline pushes container bytes into (a
/// publisher, a DVB tuner). Pushes never block: a stalled pipeline drops the newest data
/// rather than grow without bound.
fn pushed_bytes(name: &str, caps: Option<&gst::Caps>) -> gstreamer_app::AppSrc {
    let builder = gstreamer_app::AppSrc::builder()
        .name(name)
        .is_live(true)
        .format(gst::Format::Bytes)
        .max_bytes(8 << 20)
        .block(false)
        .leaky_type(gstreamer_app::AppLeakyType::Upstream);
    match caps {
        Some(caps) => builder.caps(caps).build(),
        None => builder.build(),
    }
}

/// Makes the MPEG-TS demuxer that `parsebin` plugs output only program `program`.
fn select_program(pipeline: &gst::Pipeline, program: u16) {
    pipeline.connect_deep_element_added(move |_, _, element| {
        if element.factory().is_some_and(|f| f.name() == "tsdemux") {
            element.set_property("program-number", i32::from(program));
        }
    });
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
    outputs: &Outputs,
    keyframe_ms: u32,
) -> Result<(), IngestError> {
    let key_int = (FAKE_FPS * keyframe_ms / 1000).max(1);
    let desc = format!(
        "videotestsrc is-live=true pattern=smpte \
         ! video/x-raw,format=I420,width={FAKE_WIDTH},height={FAKE_HEIGHT},framerate={FAKE_FPS}/1 \
         ! clockoverlay time-format=\"%Y-%m-%d %H:%M:%S\" halignment=center valignment=bottom font-desc=\"Sans 20\" \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={FAKE_VIDEO_KBPS} key-int-max={key_int} option-string=scenecut=0 \
         ! video/x-h264,profile=constrained-baseline \
         ! queue ! h264parse name=vparse config-interval=-1 \
         audiotestsrc is-live=true wave=sine freq=440 volume=0.2 \
         ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac bitrate=96000 \
         ! queue ! aacparse name=aparse"
    );
    let bin = gst::parse::bin_from_description(&desc, false).map_err(|e| {
        // parse errors name the element that is missing (x264enc, avenc_aac, clockoverlay…)
        IngestError::MissingElement(e.to_string())
    })?;
    let vparse = bin.by_name("vparse").expect("named in the description");
    let aparse = bin.by_name("aparse").expect("named in the description");
    let ghost = |parser: &gst::Element, name: &str| -> Result<gst::Pad, IngestError> {
        let pad = parser.static_pad("src").expect("parser has a src pad");
        let ghost = gst::GhostPad::builder_with_target(&pad)
            .map_err(IngestError::from)?
            .name(name)
            .build();
        bin.add_pad(&ghost).map_err(IngestError::from)?;
        Ok(ghost.upcast())
    };
    let video = ghost(&vparse, "video")?;
    let audio = ghost(&aparse, "audio")?;
    pipeline.add(&bin).map_err(IngestError::from)?;
    outputs.link_video(pipeline, &vparse, &video)?;
    outputs.link_audio(pipeline, &aparse, &audio)?;
    Ok(())
}

/// What demuxing needs: a source's bytes go into `parsebin`, whose elementary pads are
/// linked in code as they appear: the first H.264 and the first AAC track go to the muxer,
/// anything else into a `fakesink` with a log line.
struct Demux<'a> {
    pipeline: &'a gst::Pipeline,
    outputs: &'a Arc<Outputs>,
    meter: &'a Arc<InputMeter>,
    /// Guard the demuxer against PES cut short by lost packets or a restarting sender
    /// ([`super::splice`]). Not for a file: it loses nothing, and its end (where it loops)
    /// is no failure.
    guard_splices: bool,
}

impl Demux<'_> {
    /// A source with a static src pad (`udpsrc`, `filesrc`, `srtsrc`…).
    fn add_static(&self, src: &gst::Element) -> Result<(), IngestError> {
        self.pipeline.add(src).map_err(IngestError::from)?;
        let parsebin = self.parsebin(Arc::new(Linked::default()))?;
        src.link(&parsebin).map_err(IngestError::from)?;
        Ok(())
    }

    /// A source whose pads appear at run time (`rtspsrc`, `urisourcebin`): one `parsebin` per
    /// pad, sharing which tracks are taken.
    fn add_dynamic(&self, src: &gst::Element) -> Result<(), IngestError> {
        self.pipeline.add(src).map_err(IngestError::from)?;
        let pipeline_weak = self.pipeline.downgrade();
        let outputs = self.outputs.clone();
        let meter = self.meter.clone();
        let guard_splices = self.guard_splices;
        let linked = Arc::new(Linked::default());
        src.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            let demux = Demux {
                pipeline: &pipeline,
                outputs: &outputs,
                meter: &meter,
                guard_splices,
            };
            let result = demux.parsebin(linked.clone()).and_then(|parsebin| {
                parsebin
                    .sync_state_with_parent()
                    .map_err(IngestError::from)?;
                let sink = parsebin
                    .static_pad("sink")
                    .expect("parsebin has a sink pad");
                pad.link(&sink)
                    .map_err(|e| IngestError::Link(e.to_string()))?;
                Ok(())
            });
            if let Err(e) = result {
                warn!(pad = %pad.name(), error = %e, "cannot demux source pad");
            }
        });
        Ok(())
    }

    /// A `parsebin` in the pipeline whose input bytes are metered and whose outputs are linked.
    fn parsebin(&self, linked: Arc<Linked>) -> Result<gst::Element, IngestError> {
        let parsebin = gst::ElementFactory::make("parsebin")
            .build()
            .map_err(|_| IngestError::MissingElement("parsebin".into()))?;
        self.pipeline.add(&parsebin).map_err(IngestError::from)?;
        if let Some(sink) = parsebin.static_pad("sink") {
            meter_pad(&sink, self.meter.clone());
        }
        if let Some(bin) = parsebin.downcast_ref::<gst::Bin>() {
            super::adts::repair_demuxed_aac(bin, self.meter.clone());
            if self.guard_splices {
                super::splice::guard_demuxer_input(bin, self.meter.clone());
            }
        }
        let pipeline_weak = self.pipeline.downgrade();
        let outputs = self.outputs.clone();
        parsebin.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            if let Err(e) = link_track(&pipeline, &outputs, pad, &linked) {
                warn!(pad = %pad.name(), error = %e, "cannot link track");
            }
        });
        Ok(parsebin)
    }
}

/// Counts the bytes entering a demuxer (a streaming-thread probe: one atomic add per buffer).
fn meter_pad(pad: &gst::Pad, meter: Arc<InputMeter>) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            let bytes = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => b.size(),
                Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                _ => 0,
            };
            meter.add(bytes as u64);
            gst::PadProbeReturn::Ok
        },
    );
}

/// Which tracks of one pipeline already go to the muxer.
#[derive(Debug, Default)]
struct Linked {
    video: AtomicBool,
    audio: AtomicBool,
}

fn link_track(
    pipeline: &gst::Pipeline,
    outputs: &Outputs,
    pad: &gst::Pad,
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
    }
    pipeline
        .add_many([&queue, &parser])
        .map_err(IngestError::from)?;
    queue.link(&parser).map_err(IngestError::from)?;
    let src = parser.static_pad("src").expect("parser has a src pad");
    if kind == "h264" {
        outputs.link_video(pipeline, &parser, &src)?;
    } else {
        outputs.link_audio(pipeline, &parser, &src)?;
    }
    for e in [&parser, &queue] {
        e.sync_state_with_parent().map_err(IngestError::from)?;
    }
    let qpad = queue.static_pad("sink").expect("queue has a sink pad");
    pad.link(&qpad)
        .map_err(|e| IngestError::Link(e.to_string()))?;
    Ok(())
}
