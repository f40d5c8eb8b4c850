//! Graph building, orphan removal and input validation.

// Synthetic graphs read best with the one-letter names of the model code they mimic.
#![allow(clippy::many_single_char_names)]

mod common;

use common::Stream;
use torchlens_core::{CaptureBatch, CoreError, NodeKind, Options, finalize};

const SHAPE: u64 = 0x5EED;

#[test]
fn orphans_are_removed_and_internal_roots_kept() {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let dead = s.op("zeros", &[]); // internally initialised, never used
    let _dead_child = s.op("sin", &[dead]);
    let ones = s.op("ones", &[]); // internally initialised, merges with the input branch
    let y = s.op("__add__", &[x, ones, x]);
    let _dead_end = s.op("exp", &[y]); // dead end but connected: kept
    s.output(y, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(fin.removed(), &[1, 2]);
    assert_eq!(fin.node_ids(), &[0, 3, 4, 5, 6]);
    assert_eq!(fin.labels(), ["input_1", "ones_1_1", "add_1_2", "exp_1_3", "output_1"]);
    assert_eq!(fin.parents().get(2), &[0, 1], "parents de-duplicated in argument order");
    assert_eq!(fin.children().get(2), &[3, 4]);
    assert_eq!(fin.kinds()[4], NodeKind::Output);
}

#[test]
fn empty_batch_is_fine() {
    let batch = CaptureBatch {
        module_stacks: vec![vec![]],
        ..CaptureBatch::default()
    };
    let fin = finalize(&batch, &Options::default()).unwrap();
    assert_eq!(fin.len(), 0);
    assert_eq!(fin.num_operations(), 0);
    assert_eq!(fin.lookup("x"), None);
}

fn expect_invalid(batch: &CaptureBatch, needle: &str) {
    match finalize(batch, &Options::default()) {
        Err(CoreError::InvalidInput(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        Ok(_) => panic!("accepted invalid batch, expected {needle:?}"),
        Err(other) => panic!("unexpected error {other:?}, expected {needle:?}"),
    }
}

fn valid() -> CaptureBatch {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let y = s.module("fc", |s| s.op_p("linear", &[0], &[x]));
    s.output(y, "output", SHAPE);
    s.batch()
}

#[test]
fn invalid_inputs_are_rejected() {
    assert!(finalize(&valid(), &Options::default()).is_ok());

    let mut b = valid();
    b.records[1].parents = vec![1];
    expect_invalid(&b, "parent id 1 >= own id 1");

    let mut b = valid();
    b.records[1].parents = vec![7];
    expect_invalid(&b, "parent id 7 >= own id 1");

    let mut b = valid();
    b.records[1].module_stack = 9;
    expect_invalid(&b, "module stack 9 out of range");

    let mut b = valid();
    b.module_stacks.clear();
    expect_invalid(&b, "entry 0 must be the empty stack");

    let mut b = valid();
    b.module_stacks.swap(0, 1);
    expect_invalid(&b, "module stack 0 must be the empty stack");

    let mut b = valid();
    b.records[1].layer_type = 1000;
    expect_invalid(&b, "string id 1000 out of range");

    let mut b = valid();
    b.records[0].role = 1000;
    expect_invalid(&b, "record 0: string id 1000");

    let mut b = valid();
    b.records[1].kind = NodeKind::Output;
    expect_invalid(&b, "reserved");

    let mut b = valid();
    b.records[1].out_index = -2;
    expect_invalid(&b, "out_index -2");

    let mut b = valid();
    b.outputs[0].0 = 5;
    expect_invalid(&b, "output 0: producer id 5 out of range");

    let mut b = valid();
    b.module_exits[0].0 = 5;
    expect_invalid(&b, "module exit 0: node id 5 out of range");

    let mut b = valid();
    b.module_exits[0].2 = 0;
    expect_invalid(&b, "1-based");

    let mut b = valid();
    b.module_stacks[1][0].1 = 0;
    expect_invalid(&b, "module stack 1: pass numbers are 1-based");

    let mut b = valid();
    b.module_passes[0].0 = 1000;
    expect_invalid(&b, "module pass count 0");

    let mut b = valid();
    b.records[0].parents = vec![];
    b.records.push(b.records[1].clone());
    b.records[2].kind = NodeKind::Input;
    expect_invalid(&b, "record 2: inputs and buffers cannot have parents");
}
