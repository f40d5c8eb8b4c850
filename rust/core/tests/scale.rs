//! Million-op streams: finalize handles them and labels them right.
//!
//! Only results are asserted here. How long they take is measured by the criterion bench
//! (`cargo bench -p torchlens-core --bench finalize`, which includes these shapes): a wall-clock
//! budget inside `cargo test` fails on a busy machine and passes on a quadratic regression that
//! a fast machine hides.

// Synthetic graphs read best with the one-letter names of the model code they mimic.
#![allow(clippy::many_single_char_names)]

mod common;

use common::synthetic;
use torchlens_core::{CaptureBatch, Options, finalize};

const N: usize = 1_000_000;

fn run(batch: &CaptureBatch, detect_loops: bool) -> torchlens_core::Finalized {
    finalize(batch, &Options { detect_loops }).unwrap()
}

#[test]
fn million_op_recurrent_chain() {
    let batch = synthetic::recurrent(N);
    let fin = run(&batch, true);
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
    let fin = run(&batch, true);
    assert_eq!(fin.num_layers(), N + 2);
    assert_eq!(fin.labels()[N], format!("sin_{N}_{N}"));
}

#[test]
fn million_op_mlp_both_modes() {
    let batch = synthetic::mlp(N);
    let full = run(&batch, true);
    let reduced = run(&batch, false);
    assert_eq!(full.num_layers(), N + 2);
    assert_eq!(full.labels(), reduced.labels());
}

#[test]
fn long_identical_parameter_free_branches_stay_linear() {
    // Two branches with the same fingerprint sequence: every fingerprint has two members, and
    // without the "already explored" guard each would re-expand both branches (quadratic; the
    // bench's `twin_branches` case times it).
    let n = 100_000;
    let fin = run(&synthetic::twin_branches(n), true);
    assert_eq!(fin.num_layers(), 2 * n + 3);
}
