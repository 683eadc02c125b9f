//! The DVB signal path without a card: a real pipeline posts real-shaped `dvb-frontend-stats`
//! element messages (the structure `dvbsrc` posts) on its bus; ingest's bus handler turns
//! them into card readings, and the stats thread exports `flussonic_dvb_card_strength`.
//! Also: with no NVIDIA driver, GPU series are absent and `flussonic_gpu_available` says why.

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use headwater::gst_util::{PipelineEvent, PipelineGuard};
use headwater::stats::{Exposition, StatsConfig, StatsHealth, StatsSources, StatsThread};
use headwater::stream::{DvbCards, Registry};
use std::sync::Arc;
use std::time::Duration;

fn frontend_stats(signal: i32) -> gst::Structure {
    gst::Structure::builder("dvb-frontend-stats")
        .field("status", 31i32)
        .field("signal", signal)
        .field("snr", 41_000i32)
        .field("ber", 0i32)
        .field("unc", 0i32)
        .field("lock", true)
        .build()
}

#[test]
fn dvb_frontend_stats_become_card_strength() {
    headwater::gst_util::init().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dvb = Arc::new(DvbCards::default());
    rt.block_on(async {
        let pipeline = gst::parse::launch("fakesrc name=dvbsrc0 is-live=true ! fakesink")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let guard = PipelineGuard::new(pipeline);
        let mut events = guard.events();
        guard.play().unwrap();
        let src = guard.pipeline().by_name("dvbsrc0").unwrap();
        for signal in [20_000, 52_000] {
            src.post_message(
                gst::message::Element::builder(frontend_stats(signal))
                    .src(&src)
                    .build(),
            )
            .unwrap();
        }
        // A message of another kind is ignored.
        src.post_message(
            gst::message::Element::builder(gst::Structure::new_empty("dvb-read-failure"))
                .src(&src)
                .build(),
        )
        .unwrap();
        let mut seen = 0;
        while seen < 3 {
            match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
                Ok(Some(PipelineEvent::Element { source, structure })) => {
                    headwater::ingest::on_element_message(&source, &structure, &dvb);
                    seen += 1;
                }
                Ok(Some(_)) => {}
                other => panic!("bus ended early: {other:?}"),
            }
        }
        guard.shutdown().await;
    });
    let readings = dvb.readings();
    assert_eq!(readings.len(), 1);
    assert_eq!(readings[0].0, "dvbsrc0");
    assert_eq!(readings[0].1.snr, Some(41_000));
    assert_eq!(readings[0].1.lock, Some(true));
    assert!(
        (readings[0].1.strength - 52_000.0 * 100.0 / 65_535.0).abs() < 1e-9,
        "{readings:?}"
    );

    // The stats thread exports it.
    let exposition = Exposition::global();
    let stats = StatsThread::spawn(
        StatsConfig {
            live: Arc::new(headwater::stats::LiveSettings::new(200, 30_000)),
            dvr_roots: vec![std::env::temp_dir()],
        },
        StatsSources {
            registry: Registry::default(),
            runtime: rt.handle().clone(),
            dvb: dvb.clone(),
            health: Arc::new(StatsHealth::default()),
            exposition: exposition.clone(),
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let text = String::from_utf8(exposition.latest().to_vec()).unwrap();
    // The tuner stops (its task forgets the reading): the series leaves within an interval.
    dvb.remove("dvbsrc0");
    std::thread::sleep(Duration::from_millis(600));
    let after = String::from_utf8(exposition.latest().to_vec()).unwrap();
    stats.stop();
    assert!(
        !after.contains("flussonic_dvb_card_strength{card=\"dvbsrc0\"}"),
        "a stopped tuner keeps its last value:\n{after}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("flussonic_dvb_card_strength{card=\"dvbsrc0\"}"))
        .unwrap_or_else(|| panic!("no DVB series in:\n{text}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - 79.35).abs() < 0.01, "{line}");

    // GPU detection on this machine: no driver library means no GPU series and a reason.
    let has_driver = std::process::Command::new("sh")
        .args(["-c", "ldconfig -p | grep -q libnvidia-ml.so.1"])
        .status()
        .unwrap()
        .success();
    if has_driver {
        assert!(
            text.contains("flussonic_gpu_available{reason=\"ok\"} 1")
                || text.contains("flussonic_gpu_available{reason=\"no_devices\"} 0"),
            "{text}"
        );
    } else {
        assert!(
            text.contains("flussonic_gpu_available{reason=\"no_driver\"} 0"),
            "{text}"
        );
        for absent in [
            "flussonic_gpu_temp",
            "flussonic_gpu_enc",
            "flussonic_gpu_dec",
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(absent)),
                "{absent} must be absent without a GPU"
            );
        }
    }
}
