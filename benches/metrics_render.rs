//! Rendering `/flussonic/api/metrics` with 1,000 streams (what the stats thread does once per
//! interval), and the live playlist render (once per segment per stream).
//! Run: `cargo bench --bench metrics_render`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use headwater::media::Segment;
use headwater::packaging::hls;
use headwater::stats::{Exposition, names};
use metrics::{counter, gauge};
use std::hint::black_box;
use std::sync::Arc;

const STREAMS: usize = 1000;

fn populate() -> Arc<Exposition> {
    let exposition = Exposition::global();
    for i in 0..STREAMS {
        let name = format!("channel-{i:04}");
        for g in [
            names::STREAM_CLIENT_DELAY,
            names::STREAM_BITRATE,
            names::STREAM_START_RUNNING_AT,
            names::STREAM_CLIENT_COUNT,
            names::STREAM_DVR_DISK_SIZE,
            names::STREAM_DVR_DEPTH,
            names::STREAM_DVR_DURATION,
            names::STREAM_ALIVE,
        ] {
            gauge!(g, "name" => name.clone()).set(i as f64);
        }
        for c in [
            names::STREAM_BYTES_IN,
            names::STREAM_BYTES_OUT,
            names::STREAM_RETRY_COUNT,
        ] {
            counter!(c, "name" => name.clone()).absolute(i as u64 * 1000);
        }
    }
    exposition
}

fn bench(c: &mut Criterion) {
    let exposition = populate();
    let text = exposition.render();
    println!(
        "exposition: {} streams, {} lines, {} bytes",
        STREAMS,
        text.lines().count(),
        text.len()
    );
    c.bench_function("render /flussonic/api/metrics, 1000 streams", |b| {
        b.iter(|| black_box(exposition.render()));
    });
    c.bench_function("serve cached exposition (scrape path)", |b| {
        exposition.refresh("");
        b.iter(|| black_box(exposition.latest()));
    });
    let segments: Vec<Arc<Segment>> = (0..6)
        .map(|i| {
            Arc::new(Segment {
                sequence: 1000 + i,
                start_ms: 1_795_305_600_000 + i * 2000,
                duration_ms: 2000,
                discontinuity: false,
                data: Bytes::from_static(&[0x47; 188]),
            })
        })
        .collect();
    c.bench_function("media playlist, 6 segments", |b| {
        b.iter(|| black_box(hls::media_playlist(&segments, 2000, 0)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
