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

    /// Events from the pipeline's bus, driven on the async runtime.
    pub fn events(&self) -> impl Stream<Item = PipelineEvent> + Unpin + use<> {
        let bus = self.pipeline().bus().expect("a pipeline always has a bus");
        bus.stream()
            .filter_map(|msg| std::future::ready(to_event(&msg)))
    }

    /// Takes the pipeline to `Null` on a blocking thread (elements may take a while to stop).
    pub async fn shutdown(mut self) {
        if let Some(p) = self.pipeline.take() {
            let _ = tokio::task::spawn_blocking(move || p.set_state(gst::State::Null)).await;
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
