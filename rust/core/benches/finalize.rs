//! Criterion benches of the whole core pipeline on synthetic streams of 10k, 100k and 1M ops
//! (the shapes of `tests/scale.rs`, whose timings live here rather than in `cargo test`).
//!
//! Run with `cargo bench -p torchlens-core` (release profile).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use torchlens_core::{Options, finalize};

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

fn bench_finalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("finalize");
    group.sample_size(10);
    for &n in &[10_000usize, 100_000, 1_000_000] {
        group.throughput(Throughput::Elements(n as u64));
        let streams = [
            ("recurrent", synthetic::recurrent(n)),
            ("no_repeats", synthetic::no_repeats(n)),
            ("mlp", synthetic::mlp(n)),
        ];
        for (name, batch) in &streams {
            group.bench_with_input(BenchmarkId::new(*name, n), batch, |b, batch| {
                b.iter(|| finalize(batch, &Options::default()).map(|f| f.len()));
            });
        }
        let (_, batch) = &streams[0];
        group.bench_with_input(BenchmarkId::new("recurrent_reduced", n), batch, |b, batch| {
            b.iter(|| finalize(batch, &Options { detect_loops: false }).map(|f| f.len()));
        });
    }
    // The scale tests' twin-branch shape: quadratic without the "already explored" guard.
    for &n in &[10_000usize, 100_000] {
        let batch = synthetic::twin_branches(n);
        group.throughput(Throughput::Elements(2 * n as u64));
        group.bench_with_input(BenchmarkId::new("twin_branches", 2 * n), &batch, |b, batch| {
            b.iter(|| finalize(batch, &Options::default()).map(|f| f.len()));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_finalize);
criterion_main!(benches);
