//! The one place (beside `ingest`) that knows GStreamer lifecycle details: a guard that takes
//! a pipeline to `Null`, bus messages turned into [`PipelineEvent`]s, and errors converted once.

use futures_util::{Stream, StreamExt};
use gstreamer as gst;
use gstreamer::prelude::*;

/// Initialises GStreamer once per process; later calls are cheap.
pub fn init() -> Result<(), GstError> {
    gst::init().map_err(|e| GstError {
        element: "gstreamer".into(),
        message: e.to_string(),
        debug: None,
    })
}

/// Returns true when an element factory is registered (feature detection, e.g. encoders).
pub fn has_element(factory: &str) -> bool {
    gst::ElementFactory::find(factory).is_some()
}

/// A GStreamer error with the element that raised it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{element}: {message}")]
pub struct GstError {
    /// Path of the element in the pipeline, e.g. `/GstPipeline:demo/GstUDPSrc:udpsrc0`.
    pub element: String,
    pub message: String,
    /// GStreamer's debug string; may name files and internal state, so it is logged, not shown.
    pub debug: Option<String>,
}

impl GstError {
    pub fn new(element: &str, message: impl Into<String>) -> Self {
        GstError {
            element: element.to_owned(),
            message: message.into(),
            debug: None,
        }
    }
}

/// What the supervisor needs to know from a pipeline's bus.
#[derive(Debug)]
pub enum PipelineEvent {
    Error(GstError),
    Eos,
    Warning(GstError),
    /// An element message (e.g. a UDP timeout or DVB frontend stats) and who posted it.
    Element {
        source: String,
        structure: gst::Structure,
    },
}

/// Owns a pipeline and takes it to `Null` when dropped, so no element outlives its owner.
#[derive(Debug)]
pub struct PipelineGuard {
    pipeline: Option<gst::Pipeline>,
}

impl PipelineGuard {
    pub fn new(pipeline: gst::Pipeline) -> Self {
        PipelineGuard {
            pipeline: Some(pipeline),
        }
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        self.pipeline
            .as_ref()
            .expect("pipeline present until shutdown")
    }

    /// Starts the pipeline.
    pub fn play(&self) -> Result<(), GstError> {
        self.pipeline()
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|e| GstError::new(&self.pipeline().name(), e.to_string()))
    }

    /// Starts the pipeline; when that fails, waits briefly for the bus error that says why
    /// (e.g. `Device "/dev/dvb/adapter0/frontend0" does not exist`, "could not bind port").
    pub async fn play_or_reason(
        &self,
        events: &mut (impl Stream<Item = PipelineEvent> + Unpin),
    ) -> Result<(), GstError> {
        let Err(e) = self.play() else {
            return Ok(());
        };
        let reason = async {
            while let Some(ev) = events.next().await {
                if let PipelineEvent::Error(e) = ev {
                    return Some(e);
                }
            }
            None
        };
        Err(
            tokio::time::timeout(std::time::Duration::from_millis(500), reason)
                .await
                .ok()
                .flatten()
                .unwrap_or(e),
        )
    }

    /// Events from the pipeline's bus, driven on the async runtime.
    pub fn events(&self) -> impl Stream<Item = PipelineEvent> + Unpin + use<> {
        let bus = self.pipeline().bus().expect("a pipeline always has a bus");
        bus.stream()
            .filter_map(|msg| std::future::ready(to_event(&msg)))
    }

    /// Takes the pipeline to `Null` on a blocking thread (elements may take a while to stop).
    /// An element that never stops (a source stuck in a network call) is abandoned after a
    /// few seconds with an error log, so the supervisor can go on.
    pub async fn shutdown(mut self) {
        if let Some(p) = self.pipeline.take() {
            let name = p.name().to_string();
            let stop = tokio::task::spawn_blocking(move || p.set_state(gst::State::Null));
            if tokio::time::timeout(std::time::Duration::from_secs(5), stop)
                .await
                .is_err()
            {
                tracing::error!(pipeline = %name, "pipeline did not stop within 5 s; abandoned");
            }
        }
    }
}

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if let Some(p) = self.pipeline.take() {
            let _ = p.set_state(gst::State::Null);
        }
    }
}

pub fn to_event(msg: &gst::Message) -> Option<PipelineEvent> {
    use gst::MessageView;
    let element = || {
        msg.src()
            .map(|s| s.path_string().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    match msg.view() {
        MessageView::Eos(_) => Some(PipelineEvent::Eos),
        MessageView::Error(e) => Some(PipelineEvent::Error(GstError {
            element: element(),
            message: e.error().to_string(),
            debug: e.debug().map(|d| d.to_string()),
        })),
        MessageView::Warning(w) => Some(PipelineEvent::Warning(GstError {
            element: element(),
            message: w.error().to_string(),
            debug: w.debug().map(|d| d.to_string()),
        })),
        MessageView::Element(e) => e.structure().map(|s| PipelineEvent::Element {
            source: msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
            structure: s.to_owned(),
        }),
        _ => None,
    }
}

/// Remuxes MPEG-TS (already H.264/AAC) into MP4 with GStreamer: `filesrc ! parsebin`, then
/// `h264parse`/`aacparse` into `mp4mux faststart=true ! filesink`. Blocking; run it off the
/// async runtime.
#[derive(Debug, Default)]
pub struct GstMp4Export;

impl crate::dvr::Mp4Export for GstMp4Export {
    fn ts_to_mp4(
        &self,
        input: &std::path::Path,
        output: &std::path::Path,
        created: i64,
    ) -> Result<(), String> {
        remux_ts_to_mp4(input, output, created).map_err(|e| e.to_string())
    }
}

fn remux_ts_to_mp4(
    input: &std::path::Path,
    output: &std::path::Path,
    created: i64,
) -> Result<(), GstError> {
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| GstError::new(factory, "element missing"))
    };
    let pipeline = gst::Pipeline::builder().name("mp4-export").build();
    let src = make("filesrc")?;
    src.set_property("location", input.to_string_lossy().as_ref());
    let parsebin = make("parsebin")?;
    let mux = make("mp4mux")?;
    mux.set_property("faststart", true);
    // The creation time comes from the range, not the clock, so that the same range always
    // gives the same bytes (a player's Range requests stay consistent).
    if let (Some(setter), Ok(when)) = (
        mux.dynamic_cast_ref::<gst::TagSetter>(),
        gst::DateTime::from_unix_epoch_utc(created),
    ) {
        setter.add_tag::<gst::tags::DateTime>(&when, gst::TagMergeMode::Replace);
    }
    let sink = make("filesink")?;
    sink.set_property("location", output.to_string_lossy().as_ref());
    let add = |e: &gst::Element| {
        pipeline
            .add(e)
            .map_err(|e| GstError::new("mp4-export", e.to_string()))
    };
    for e in [&src, &parsebin, &mux, &sink] {
        add(e)?;
    }
    let link = |a: &gst::Element, b: &gst::Element| {
        a.link(b)
            .map_err(|e| GstError::new("mp4-export", e.to_string()))
    };
    link(&src, &parsebin)?;
    link(&mux, &sink)?;
    let weak_pipeline = pipeline.downgrade();
    let weak_mux = mux.downgrade();
    parsebin.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(mux)) = (weak_pipeline.upgrade(), weak_mux.upgrade()) else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let name = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let (parser, template) = match name.as_str() {
            "video/x-h264" => ("h264parse", "video_%u"),
            "audio/mpeg" => ("aacparse", "audio_%u"),
            _ => ("fakesink", ""),
        };
        // One streaming thread feeds both tracks: a queue per track keeps mp4mux, which waits
        // for data on every pad, from starving one while the other blocks.
        let (Ok(queue), Ok(element)) = (
            gst::ElementFactory::make("queue").build(),
            gst::ElementFactory::make(parser).build(),
        ) else {
            return;
        };
        if pipeline.add_many([&queue, &element]).is_err() || queue.link(&element).is_err() {
            return;
        }
        if !template.is_empty()
            && let Some(mpad) = mux.request_pad_simple(template)
            && let Some(src) = element.static_pad("src")
        {
            let _ = src.link(&mpad);
        }
        let _ = element.sync_state_with_parent();
        let _ = queue.sync_state_with_parent();
        if let Some(sinkpad) = queue.static_pad("sink") {
            let _ = pad.link(&sinkpad);
        }
    });
    let guard = PipelineGuard::new(pipeline);
    guard.play()?;
    let bus = guard.pipeline().bus().expect("a pipeline always has a bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    match msg.as_ref().map(to_event) {
        Some(Some(PipelineEvent::Eos)) => Ok(()),
        Some(Some(PipelineEvent::Error(e))) => Err(e),
        _ => Err(GstError::new("mp4-export", "timed out")),
    }
}
