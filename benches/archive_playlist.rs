//! Building a 24 h archive playlist: 43,200 segments of 2 s (select from the index + render).
//! Run: `cargo bench --bench archive_playlist`.

use criterion::{Criterion, criterion_group, criterion_main};
use headwater::dvr::ArchiveIndex;
use headwater::dvr::playlist::{Kind, render};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut index = ArchiveIndex::default();
    let t0 = 1_795_305_600_000;
    for i in 0..43_200u64 {
        index.insert(t0 + i * 2000, 2000, 250_000, i % 5000 == 0);
    }
    let text = render(&index.select(t0, t0 + 86_400_000), Kind::Vod, 2000, 0);
    println!(
        "24 h playlist: {} segments, {} bytes",
        text.matches("#EXTINF").count(),
        text.len()
    );
    c.bench_function("archive playlist, 24 h of 2 s segments", |b| {
        b.iter(|| {
            let entries = index.select(black_box(t0), t0 + 86_400_000);
            black_box(render(&entries, Kind::Vod, 2000, 0))
        });
    });
    c.bench_function("archive ranges, 24 h", |b| {
        b.iter(|| black_box(index.ranges()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
