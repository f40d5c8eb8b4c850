//! Large synthetic capture batches, built directly (no per-op hashing) for scale tests and
//! benches.
#![allow(dead_code)]

use torchlens_core::{CaptureBatch, NO_STR, NodeKind, OpRecord};

const STRINGS: [&str; 13] = [
    "none", "input", "linear", "__add__", "add", "__mul__", "mul", "relu", "fc", "input.x", "output", "sin", "cat",
];
const NONE: u32 = 0;
const INPUT: u32 = 1;
const LINEAR: u32 = 2;
const ADD_F: u32 = 3;
const ADD: u32 = 4;
const MUL_F: u32 = 5;
const MUL: u32 = 6;
const RELU: u32 = 7;
const FC: u32 = 8;
const ROLE_X: u32 = 9;
const OUTPUT: u32 = 10;
const SIN: u32 = 11;
const CAT: u32 = 12;

fn base(n_ops: usize) -> CaptureBatch {
    let mut b = CaptureBatch {
        strings: STRINGS.iter().map(|s| (*s).to_owned()).collect(),
        module_stacks: vec![vec![]],
        ..CaptureBatch::default()
    };
    b.records.reserve(n_ops + 1);
    b.records.push(OpRecord {
        kind: NodeKind::Input,
        func: NONE,
        layer_type: INPUT,
        arg_hash: 1,
        out_index: -1,
        module_stack: 0,
        params: vec![],
        parents: vec![],
        role: ROLE_X,
    });
    b
}

fn op(func: u32, layer_type: u32, arg_hash: u64, module_stack: u32, params: Vec<u32>, parent: u32) -> OpRecord {
    OpRecord {
        kind: NodeKind::Op,
        func,
        layer_type,
        arg_hash,
        out_index: -1,
        module_stack,
        params,
        parents: vec![parent],
        role: NO_STR,
    }
}

fn finish(mut b: CaptureBatch) -> CaptureBatch {
    let last = (b.records.len() - 1) as u32;
    b.outputs.push((last, OUTPUT, 1));
    b
}

/// `for _ in range(n_ops / 3): x = fc(x); x = x + 1; x = x * 2` (one module pass per iteration).
pub fn recurrent(n_ops: usize) -> CaptureBatch {
    let mut b = base(n_ops);
    let iters = n_ops / 3;
    for k in 0..iters {
        let stack = b.module_stacks.len() as u32;
        b.module_stacks.push(vec![(FC, k as u32 + 1)]);
        let x = (b.records.len() - 1) as u32;
        b.records.push(op(LINEAR, LINEAR, 0, stack, vec![0, 1], x));
        b.module_exits.push((x + 1, FC, k as u32 + 1));
        b.records.push(op(ADD_F, ADD, 7, 0, vec![], x + 1));
        b.records.push(op(MUL_F, MUL, 8, 0, vec![], x + 2));
    }
    b.module_passes.push((FC, iters as u32));
    finish(b)
}

/// A chain of `n_ops` ops that never repeat (distinct argument hashes).
pub fn no_repeats(n_ops: usize) -> CaptureBatch {
    let mut b = base(n_ops);
    for i in 0..n_ops {
        let x = (b.records.len() - 1) as u32;
        b.records.push(op(SIN, SIN, 1000 + i as u64, 0, vec![], x));
    }
    finish(b)
}

/// An MLP: `n_ops / 2` times a linear with its own weights followed by a functional relu.
pub fn mlp(n_ops: usize) -> CaptureBatch {
    let mut b = base(n_ops);
    for i in 0..n_ops / 2 {
        let x = (b.records.len() - 1) as u32;
        b.records
            .push(op(LINEAR, LINEAR, 0, 0, vec![2 * i as u32, 2 * i as u32 + 1], x));
        b.records.push(op(RELU, RELU, 9, 0, vec![], x + 1));
    }
    finish(b)
}

/// Two parameter-free branches of `n` ops with the same fingerprint sequence, joined by a cat:
/// every fingerprint has two members (the case the "already explored" guard keeps linear).
pub fn twin_branches(n: usize) -> CaptureBatch {
    let mut b = base(2 * n + 1);
    let mut ends = [0u32; 2];
    for end in &mut ends {
        let mut x = 0u32;
        for i in 0..n {
            b.records.push(op(SIN, SIN, i as u64, 0, vec![], x));
            x = (b.records.len() - 1) as u32;
        }
        *end = x;
    }
    let mut cat = op(CAT, CAT, 0, 0, vec![], ends[0]);
    cat.parents.push(ends[1]);
    b.records.push(cat);
    finish(b)
}
