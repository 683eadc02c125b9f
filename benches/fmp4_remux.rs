//! Packaging a TS segment as fMP4 (what the stream actor does once per segment per rendition),
//! reading the parameter sets of a keyframe (once per keyframe) and rendering a live DASH
//! manifest (once per MPD request).
//! Run: `cargo bench --bench fmp4_remux`.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headwater::media::{AudioInfo, MediaInfo, VideoInfo};
use headwater::packaging::fmp4::{AudioTrack, VideoTrack, demux, parameter_sets};
use headwater::packaging::{
    FragmentEntry, InitSegment, RenditionSnapshot, Snapshot, TrackSnapshot, dash,
};
use std::hint::black_box;
use std::sync::Arc;

/// Three 1 s keyframe-aligned segments of 160x90 H.264 (B-frames) + AAC from mpegtsmux.
const SEGMENTS: [&[u8]; 3] = [
    include_bytes!("../tests/fixtures/fmp4/seg0.ts"),
    include_bytes!("../tests/fixtures/fmp4/seg1.ts"),
    include_bytes!("../tests/fixtures/fmp4/seg2.ts"),
];

fn snapshot(renditions: usize, fragments: u64) -> Snapshot {
    let init = |timescale: u32| {
        Arc::new(InitSegment {
            data: Bytes::from_static(b"init"),
            codec: if timescale == 90_000 {
                "avc1.4d401f"
            } else {
                "mp4a.40.2"
            }
            .into(),
            sample_rate: if timescale == 90_000 { 0 } else { timescale },
            channels: 2,
            ..InitSegment::default()
        })
    };
    let frag = |init: &Arc<InitSegment>, seq: u64, timescale: u32, d: u64| {
        Arc::new(FragmentEntry {
            sequence: seq,
            start_ms: 1_795_305_600_000 + seq * 2000,
            duration_ms: 2000,
            discontinuity: false,
            data: Bytes::from_static(b"x"),
            base_time: seq * d,
            duration: d,
            timescale,
            init: init.clone(),
        })
    };
    let track = |timescale: u32, d: u64| {
        let init = init(timescale);
        TrackSnapshot {
            live: (0..fragments)
                .map(|s| frag(&init, s, timescale, d))
                .collect(),
            init: Some(init),
            peak_bitrate: 1_000_000,
            ..Default::default()
        }
    };
    Snapshot {
        renditions: (0..renditions)
            .map(|i| RenditionSnapshot {
                media: Some(MediaInfo {
                    video: Some(VideoInfo {
                        codec: "avc1.4d401f".into(),
                        width: 1280 >> i,
                        height: 720 >> i,
                        frame_rate: Some((25, 1)),
                    }),
                    audio: Some(AudioInfo {
                        codec: "mp4a.40.2".into(),
                        channels: 2,
                        sample_rate: 48000,
                    }),
                }),
                video: track(90_000, 180_000),
                ..Default::default()
            })
            .collect(),
        audio: Some(track(48_000, 96_256)),
        epoch_ms: 1_795_305_600_000,
        target_ms: 2000,
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let bytes: u64 = SEGMENTS.iter().map(|s| s.len() as u64).sum();
    let mut group = c.benchmark_group("fmp4");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("demux + video and audio fragments, 3 TS segments", |b| {
        b.iter(|| {
            let mut video = VideoTrack::new();
            let mut audio = AudioTrack::new(48_000);
            for (seq, ts) in SEGMENTS.iter().enumerate() {
                let d = demux(black_box(ts)).unwrap();
                black_box(video.fragment(seq as u64, None, &d.video).unwrap());
                black_box(audio.fragment(seq as u64, None, &d.audio).unwrap());
            }
        });
    });
    group.finish();
    // The segmenter reads the SPS/PPS of every keyframe chunk; a whole 1 s segment is an
    // upper bound of one such chunk (PAT, PMT and one IDR picture).
    c.bench_function("parameter sets of a 1 s TS segment", |b| {
        b.iter(|| black_box(parameter_sets(black_box(SEGMENTS[0]))))
    });
    let snap = snapshot(3, 6);
    let text = dash::mpd(&snap, 1_795_305_700_000, "http://h/time").unwrap();
    println!(
        "MPD of 3 renditions + audio, 6 segments: {} bytes",
        text.len()
    );
    c.bench_function("DASH MPD, 3 renditions + audio, 6 segments", |b| {
        b.iter(|| {
            black_box(dash::mpd(
                black_box(&snap),
                1_795_305_700_000,
                "http://h/time",
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
