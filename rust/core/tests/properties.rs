//! Property tests: random DAG streams always give unique labels, passes 1..n per layer and
//! consistent parents/children, in both loop-detection modes.

// Synthetic graphs read best with the one-letter names of the model code they mimic.
#![allow(clippy::many_single_char_names)]

mod common;

use common::{Stream, check};
use proptest::prelude::*;

/// One generated op: function index, argument-hash index, parameter set index (0 = none),
/// module index (0 = none), parent picks (as fractions of the nodes so far).
type OpSpec = (usize, u64, usize, usize, Vec<u32>);

const FUNCS: [&str; 5] = ["sin", "__add__", "relu", "linear", "cat"];
const MODULES: [&str; 3] = ["", "a", "a.b"];

fn stream(inputs: usize, ops: &[OpSpec], outputs: &[u32]) -> Stream {
    let mut s = Stream::new();
    let mut nodes = Vec::new();
    for i in 0..inputs {
        nodes.push(s.input(&format!("input.x{i}"), 1));
    }
    for (func, hash, params, module, picks) in ops {
        let parents: Vec<u32> = picks.iter().map(|&p| nodes[p as usize % nodes.len()]).collect();
        let params: Vec<u32> = match params {
            0 => vec![],
            k => vec![*k as u32, *k as u32 + 10],
        };
        let module = MODULES[*module];
        if !module.is_empty() {
            s.enter(module);
        }
        let id = s.op_full(FUNCS[*func], *hash, -1, &params, &parents);
        if !module.is_empty() {
            s.exit(id);
        }
        nodes.push(id);
    }
    for (k, &o) in outputs.iter().enumerate() {
        let producer = nodes[o as usize % nodes.len()];
        s.output(producer, &format!("output.{k}"), 2);
    }
    s
}

fn op_spec() -> impl Strategy<Value = OpSpec> {
    (
        0..FUNCS.len(),
        0..3u64,
        0..3usize,
        0..MODULES.len(),
        prop::collection::vec(any::<u32>(), 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_are_consistent(
        inputs in 1..3usize,
        ops in prop::collection::vec(op_spec(), 0..60),
        outputs in prop::collection::vec(any::<u32>(), 0..3),
    ) {
        let s = stream(inputs, &ops, &outputs);
        for detect in [true, false] {
            let fin = s.finalize_with(detect);
            check(&fin);
            let labels = fin.labels();
            for (pos, label) in labels.iter().enumerate() {
                prop_assert_eq!(fin.lookup(label), Some(pos as u32));
                prop_assert!(fin.lookup_keys(pos).unwrap().contains(label));
                prop_assert!(fin.lookup_ci(&label.to_uppercase()).is_some_and(|p| p as usize <= pos));
            }
            // The hashed exact index agrees with the sorted one on every key.
            let all = fin.find_substring("");
            for (key, owner) in &all {
                prop_assert_eq!(fin.lookup(key), Some(*owner));
                prop_assert!(fin.lookup_keys(*owner as usize).unwrap().contains(key));
            }
            prop_assert_eq!(fin.lookup("no such key"), None);
            prop_assert_eq!(fin.len() + fin.removed().len(), inputs + ops.len() + outputs.len());
            let ops_kept = fin.kinds().iter().filter(|k| **k == torchlens_core::NodeKind::Op).count();
            prop_assert_eq!(fin.num_operations() as usize, ops_kept);
            // Type numbers count layers of a type in first-appearance order.
            let mut seen = std::collections::HashMap::new();
            for (pos, label) in labels.iter().enumerate() {
                if fin.pass_nums()[pos] == 1 {
                    let ty = label.split('_').next().unwrap_or("").to_string();
                    let next = seen.entry(ty).or_insert(0u32);
                    *next += 1;
                    prop_assert_eq!(fin.layer_type_nums()[pos], *next);
                }
            }
        }
    }
}
