//! Loop / recurrence detection: which nodes are passes of the same layer (spec §6.2, §6.3).
//!
//! Full mode processes fingerprints in order of their first member. For a fingerprint with
//! k > 1 members it grows k subgraphs in lock step (one per member), forming "iso groups" of
//! corresponding nodes, refines the groups by neighbourhood, and turns each group into layers:
//! members whose subgraphs are adjacent or share a parameterised fingerprint become passes of
//! one layer. Reduced mode only applies the "same function + same parameters" rule.
//!
//! * [`rounds`]: the lock-step expansion of one round (iso groups, refinement, assignment).
//! * [`layer_table`]: the multi-pass layers found so far, shared by the rounds.

use rustc_hash::FxHashMap;

use crate::fingerprint::Fingerprints;
use crate::graph::{Graph, NONE};
use crate::union_find::UnionFind;

mod layer_table;
mod rounds;

use layer_table::LayerTable;
use rounds::Rounds;

/// Layer assignment of every retained node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layers {
    /// Layer index per position, numbered in order of first appearance.
    pub layer_of: Vec<u32>,
    /// 1-based pass number per position.
    pub pass_num: Vec<u32>,
    /// Number of passes of the position's layer.
    pub num_passes: Vec<u32>,
    /// First position (pass 1) of every layer.
    pub first: Vec<u32>,
}

/// Detects layers. `funcs[pos]` is the raw function id (for the parameter rule; `NONE` for
/// non-ops); `full` selects §6.2 over §6.3.
pub fn detect(graph: &Graph, fp: &Fingerprints, funcs: &[u32], full: bool) -> Layers {
    let n = graph.len();
    let mut table = LayerTable::new(n);
    if full {
        let by_fp = members_by_fingerprint(fp);
        let mut rounds = Rounds::new(n);
        let mut started = vec![false; fp.num_distinct()];
        for pos in 0..n {
            let id = fp.ids[pos] as usize;
            if started[id] || fp.counts[id] < 2 {
                continue;
            }
            started[id] = true;
            let members = &by_fp.1[by_fp.0[id] as usize..by_fp.0[id + 1] as usize];
            // "Already fully grouped": every member is a pass of one and the same layer. Members
            // spread over several layers still get a round, whose groups may merge those layers.
            let layer = table.layer_of[members[0] as usize];
            if layer != NONE && members.iter().all(|&m| table.layer_of[m as usize] == layer) {
                continue;
            }
            if rounds.already_explored(members, &table) {
                continue;
            }
            rounds.run(graph, fp, members, &mut table);
        }
    }
    reconcile(graph, fp, funcs, &table)
}

/// Positions of each fingerprint in creation order, as (offsets, positions).
fn members_by_fingerprint(fp: &Fingerprints) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; fp.num_distinct() + 1];
    for &id in &fp.ids {
        offsets[id as usize + 1] += 1;
    }
    for i in 0..fp.num_distinct() {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut members = vec![0u32; fp.ids.len()];
    for (pos, &id) in fp.ids.iter().enumerate() {
        members[fill[id as usize] as usize] = pos as u32;
        fill[id as usize] += 1;
    }
    (offsets, members)
}

/// §6.2 step 5 plus the parameter rule: merges layers and same-function-same-parameter ops (all
/// the tensors one such call returns included), then numbers layers by first appearance and
/// passes by creation order.
fn reconcile(graph: &Graph, fp: &Fingerprints, funcs: &[u32], table: &LayerTable) -> Layers {
    let n = graph.len();
    let mut uf = UnionFind::new(n);
    for layer in &table.members {
        for w in layer.windows(2) {
            uf.union(w[0], w[1]);
        }
    }
    let mut by_weights: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    for (pos, (&params, &func)) in fp.params.iter().zip(funcs).enumerate() {
        if params != NONE && func != NONE {
            let first = *by_weights.entry((func, params)).or_insert(pos as u32);
            uf.union(first, pos as u32);
        }
    }
    let mut layers = Layers {
        layer_of: vec![0; n],
        pass_num: vec![0; n],
        num_passes: vec![0; n],
        first: Vec::new(),
    };
    // Roots are the smallest member, so a root is always met before the rest of its set.
    let mut counts: Vec<u32> = Vec::new();
    for pos in 0..n {
        let root = uf.find(pos as u32) as usize;
        if root == pos {
            layers.layer_of[pos] = layers.first.len() as u32;
            layers.first.push(pos as u32);
            counts.push(0);
        } else {
            layers.layer_of[pos] = layers.layer_of[root];
        }
        let layer = layers.layer_of[pos] as usize;
        counts[layer] += 1;
        layers.pass_num[pos] = counts[layer];
    }
    for pos in 0..n {
        layers.num_passes[pos] = counts[layers.layer_of[pos] as usize];
    }
    layers
}
