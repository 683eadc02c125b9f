//! DVB capture. One tuner pipeline per configured card (`dvbsrc`, or a UDP-relayed multiplex)
//! delivers the whole multiplex; every stream that takes a program from that card gets the
//! same bytes through an `appsrc` of its own and picks its program in its demuxer. So one
//! tuner serves all programs of a transponder, and a stream's restart never retunes the card.
//!
//! `dvbsrc` posts `dvb-frontend-stats` element messages (signal, snr, ber, lock): signal
//! feeds `flussonic_dvb_card_strength`, and a loss of lock is logged once and counted.

use super::Backoff;
use crate::config::{DvbCard, DvbHw};
use crate::gst_util::{PipelineEvent, PipelineGuard};
use crate::stats::names;
use crate::stream::DvbCards;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// Reads between two `dvb-frontend-stats` messages.
const STATS_EVERY_READS: u32 = 50;

/// The streams fed by one card: their `appsrc`s, by attachment id.
#[derive(Debug, Default)]
pub struct Fanout {
    /// Lock held only to push one buffer to each attached appsrc (never blocks: leaky queues).
    outputs: Mutex<Vec<(u64, gst_app::AppSrc)>>,
    next_id: AtomicU64,
}

impl Fanout {
    pub(super) fn attach(&self, appsrc: gst_app::AppSrc) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, appsrc));
        id
    }

    pub(super) fn detach(&self, id: u64) {
        self.outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(i, _)| *i != id);
    }

    fn push(&self, buffer: &gst::Buffer) {
        for (_, src) in self
            .outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = src.push_buffer(buffer.clone());
        }
    }
}

/// Every configured card's fan-out, by card name.
#[derive(Debug, Default, Clone)]
pub struct Tuners {
    cards: Arc<HashMap<String, Arc<Fanout>>>,
}

impl Tuners {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Tuners {
            cards: Arc::new(names.into_iter().map(|n| (n, Arc::default())).collect()),
        }
    }

    pub fn fanout(&self, card: &str) -> Option<Arc<Fanout>> {
        self.cards.get(card).cloned()
    }
}

/// The source element of a card: `dvbsrc` with the card's tuning, or `udpsrc` for a relayed
/// multiplex.
pub fn card_source(card: &DvbCard) -> Result<gst::Element, String> {
    match card.hw {
        DvbHw::Dvb => {
            let src = gst::ElementFactory::make("dvbsrc")
                .name("dvbsrc")
                .build()
                .map_err(|_| {
                    "GStreamer element dvbsrc missing (gstreamer1.0-plugins-bad)".to_owned()
                })?;
            src.set_property("adapter", i32::from(card.adapter));
            src.set_property("frontend", i32::from(card.frontend));
            src.set_property("stats-reporting-interval", STATS_EVERY_READS);
            if let Some(system) = card.system {
                src.set_property_from_str("delsys", system.delsys());
            }
            if let Some(f) = card.frequency {
                src.set_property("frequency", f);
            }
            if let Some(sr) = card.symbol_rate {
                src.set_property("symbol-rate", sr);
            }
            if let Some(p) = card.polarization {
                src.set_property("polarity", p.as_str());
            }
            if let Some(m) = card.modulation {
                src.set_property_from_str("modulation", m.nick());
            }
            if let Some(bw) = card.bandwidth {
                src.set_property("bandwidth-hz", bw);
            }
            Ok(src)
        }
        DvbHw::Udp => {
            let device = card.device.ok_or("hw = \"udp\" needs a device")?;
            let src = gst::ElementFactory::make("udpsrc")
                .name("dvbsrc")
                .build()
                .map_err(|_| "GStreamer element udpsrc missing".to_owned())?;
            src.set_property("address", device.ip().to_string());
            src.set_property("port", i32::from(device.port()));
            src.set_property("buffer-size", 8 * 1024 * 1024i32);
            Ok(src)
        }
    }
}

/// Lock state of one card, for "lost lock" logging and counting.
#[derive(Debug, Default)]
pub struct LockWatch {
    /// Some(locked) once a stats message arrived.
    locked: Option<bool>,
}

impl LockWatch {
    /// Handles one `dvb-frontend-stats` structure of `card`: strength to `dvb`, lock changes
    /// logged once per change and losses counted.
    pub fn on_stats(&mut self, card: &str, s: &gst::StructureRef, dvb: &DvbCards) {
        if s.name() != "dvb-frontend-stats" {
            return;
        }
        super::on_element_message(card, s, dvb);
        let Ok(lock) = s.get::<bool>("lock") else {
            return;
        };
        match (self.locked, lock) {
            (Some(true), false) => {
                warn!(card, "DVB card lost lock");
                metrics::counter!(names::DVB_LOCK_LOST, "card" => names::sanitize_label(card))
                    .increment(1);
            }
            (Some(false) | None, true) => info!(card, "DVB card locked"),
            _ => {}
        }
        self.locked = Some(lock);
    }
}

/// Runs the tuner pipeline of one card until cancelled, restarting it with backoff.
pub async fn run_tuner(
    name: String,
    card: DvbCard,
    fanout: Arc<Fanout>,
    dvb: Arc<DvbCards>,
    cancel: CancellationToken,
) {
    let span = info_span!("dvb", card = %name);
    async move {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut last_error: Option<String> = None;
        let mut watch = LockWatch::default();
        loop {
            let result = tune_once(&name, &card, &fanout, &dvb, &mut watch, &cancel).await;
            // A tuner that stopped or failed has no current reading.
            dvb.remove(&name);
            match result {
                Ok(()) => return,
                Err(e) => {
                    // Logged once per change: a missing card is one line, not one per retry.
                    if last_error.as_deref() != Some(e.as_str()) {
                        error!(error = %e, "DVB tuner failed; retrying");
                        last_error = Some(e);
                    } else {
                        debug!("DVB tuner failed again");
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff.fail()) => {}
            }
        }
    }
    .instrument(span)
    .await;
}

async fn tune_once(
    name: &str,
    card: &DvbCard,
    fanout: &Arc<Fanout>,
    dvb: &DvbCards,
    watch: &mut LockWatch,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let pipeline = gst::Pipeline::builder().name(format!("dvb-{name}")).build();
    let src = card_source(card)?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([&src, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    src.link(&sink).map_err(|e| e.to_string())?;
    let out = fanout.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                if let Some(buffer) = sample.buffer_owned() {
                    out.push(&buffer);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let guard = PipelineGuard::new(pipeline);
    let mut events = guard.events();
    if let Err(e) = guard.play_or_reason(&mut events).await {
        guard.shutdown().await;
        return Err(e.to_string());
    }
    info!("DVB tuner running");
    let result = loop {
        tokio::select! {
            () = cancel.cancelled() => break Ok(()),
            event = events.next() => match event {
                Some(PipelineEvent::Error(e)) => break Err(format!("{}: {}", e.element, e.message)),
                Some(PipelineEvent::Eos) => break Err("tuner stopped (end of stream)".into()),
                Some(PipelineEvent::Element { structure, .. }) => watch.on_stats(name, &structure, dvb),
                Some(PipelineEvent::Warning(_)) => {}
                None => break Err("bus closed".into()),
            },
        }
    };
    guard.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DvbSystem, Modulation, Polarization};

    #[test]
    fn dvbsrc_is_configured_from_the_card() {
        crate::gst_util::init().unwrap();
        let card = DvbCard {
            hw: DvbHw::Dvb,
            adapter: 3,
            frontend: 1,
            system: Some(DvbSystem::Dvbs2),
            frequency: Some(11_606_000),
            symbol_rate: Some(27_500),
            polarization: Some(Polarization::V),
            modulation: Some(Modulation::Psk8),
            bandwidth: None,
            device: None,
        };
        let src = card_source(&card).unwrap();
        assert_eq!(src.property::<i32>("adapter"), 3);
        assert_eq!(src.property::<i32>("frontend"), 1);
        assert_eq!(src.property::<u32>("frequency"), 11_606_000);
        assert_eq!(src.property::<u32>("symbol-rate"), 27_500);
        assert_eq!(src.property::<String>("polarity"), "V");
        let delsys = src.property_value("delsys");
        let delsys = gst::glib::EnumValue::from_value(&delsys).map(|(_, v)| v.nick().to_owned());
        assert_eq!(delsys.as_deref(), Some("dvb-s2"));
    }

    #[test]
    fn lock_loss_is_seen_once_per_change() {
        crate::gst_util::init().unwrap();
        let dvb = DvbCards::default();
        let mut watch = LockWatch::default();
        let stats = |lock: bool, signal: i32| {
            gst::Structure::builder("dvb-frontend-stats")
                .field("signal", signal)
                .field("lock", lock)
                .build()
        };
        watch.on_stats("sat", &stats(true, 60_000), &dvb);
        assert_eq!(watch.locked, Some(true));
        watch.on_stats("sat", &stats(false, 1000), &dvb);
        assert_eq!(watch.locked, Some(false));
        let (_, reading) = dvb.readings()[0].clone();
        assert!((reading.strength - 1000.0 * 100.0 / 65_535.0).abs() < 1e-9);
        assert_eq!(reading.lock, Some(false));
    }
}
