//! Million-op streams: finalize must stay near-linear.
//!
//! The budget is 5 s per stream in release (`cargo test --release -p torchlens-core --test
//! scale`); debug builds get a looser bound so that the default `cargo test` still checks
//! against quadratic blow-ups.

// Synthetic graphs read best with the one-letter names of the model code they mimic.
#![allow(clippy::many_single_char_names)]

mod common;

use std::time::Instant;

use common::{Stream, synthetic};
use torchlens_core::{CaptureBatch, Options, finalize};

const N: usize = 1_000_000;
const BUDGET_S: f64 = if cfg!(debug_assertions) { 40.0 } else { 5.0 };

fn timed(batch: &CaptureBatch, detect_loops: bool) -> (torchlens_core::Finalized, f64) {
    let start = Instant::now();
    let fin = finalize(batch, &Options { detect_loops }).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        secs < BUDGET_S,
        "finalize took {secs:.2}s on {} records",
        batch.records.len()
    );
    (fin, secs)
}

#[test]
fn million_op_recurrent_chain() {
    let batch = synthetic::recurrent(N);
    let (fin, _) = timed(&batch, true);
    let iters = N / 3;
    assert_eq!(fin.len(), 3 * iters + 2);
    assert_eq!(fin.num_layers(), 5);
    assert_eq!(fin.num_passes()[1] as usize, iters);
    let labels = fin.labels();
    assert_eq!(labels[1], "linear_1_1:1");
    assert_eq!(labels[3 * iters], format!("mul_1_3:{iters}"));
    assert_eq!(fin.lookup("fc:2"), Some(4));
}

#[test]
fn million_op_chain_without_repeats() {
    let batch = synthetic::no_repeats(N);
    let (fin, _) = timed(&batch, true);
    assert_eq!(fin.num_layers(), N + 2);
    assert_eq!(fin.labels()[N], format!("sin_{N}_{N}"));
}

#[test]
fn million_op_mlp_both_modes() {
    let batch = synthetic::mlp(N);
    let (full, _) = timed(&batch, true);
    let (reduced, _) = timed(&batch, false);
    assert_eq!(full.num_layers(), N + 2);
    assert_eq!(full.labels(), reduced.labels());
}

#[test]
fn long_identical_parameter_free_branches_stay_linear() {
    // Two branches with the same fingerprint sequence: every fingerprint has two members, and
    // without the "already explored" guard each would re-expand both branches (quadratic).
    let n = 100_000;
    let mut s = Stream::new();
    let x = s.input("input.x", 1);
    let (mut a, mut b) = (x, x);
    for i in 0..n {
        a = s.op_h("sin", i, &[a]);
    }
    for i in 0..n {
        b = s.op_h("sin", i, &[b]);
    }
    let c = s.op("cat", &[a, b]);
    s.output(c, "output", 1);
    let (fin, _) = timed(&s.batch(), true);
    assert_eq!(fin.num_layers(), 2 * n as usize + 3);
}
