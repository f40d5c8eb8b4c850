//! The backward graph (spec §14-15): the `grad_fn`s a loss reaches, matched to the forward layers
//! that produced them, and labelled.
//!
//! Python walks `loss.grad_fn` breadth-first and hands over one [`GradFnNode`] per `grad_fn` in
//! discovery order (its `id()`, an interned class name, the ids of its `next_functions`), the
//! ids of those an earlier call already logged, how many earlier calls logged in all, and one
//! [`ForwardGradFn`] per forward layer whose output had a `grad_fn`. [`build_backward`] returns a
//! [`BackwardGraph`] row per `grad_fn` not logged yet:
//!
//! * a `grad_fn` some forward layer produced is *matched*: its numbers are that layer's
//!   `layer_type_num` and `layer_total_num` (when several layers share one `grad_fn`, e.g. a model
//!   output and its producer, the last one in execution order wins, as in `TorchLens` 2.15);
//! * any other `grad_fn` is *intervening*: its type number counts the intervening `grad_fn`s of its
//!   type that this call adds, its total number is its discovery index among all logged `grad_fn`s.
//!
//! The label is `{type}_back_{type_num}_{total_num}`, the type being the class name without a
//! trailing `Backward<digits>`, lower-cased (`AddmmBackward0` -> `addmm`, `AccumulateGrad` ->
//! `accumulategrad`). Labels are not guaranteed unique (a quirk kept from `TorchLens` 2.15).
//!
//! ```
//! use torchlens_core::backward::{ForwardGradFn, GradFnNode, build_backward};
//!
//! let classes: Vec<String> = ["SumBackward0", "AddmmBackward0", "AccumulateGrad"].map(String::from).into();
//! let nodes = [
//!     GradFnNode { id: 10, class: 0, next: vec![20] },
//!     GradFnNode { id: 20, class: 1, next: vec![30] },
//!     GradFnNode { id: 30, class: 2, next: vec![] },
//! ];
//! let forward = [ForwardGradFn { grad_fn_id: 20, position: 1, type_num: 1, total_num: 1 }];
//! let g = build_backward(&classes, &nodes, &[], 0, &forward).unwrap();
//! assert_eq!(g.labels, ["sum_back_1_1", "addmm_back_1_1", "accumulategrad_back_1_3"]);
//! assert_eq!(g.positions, [None, Some(1), None]);
//! ```

use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{CoreError, Result};

/// One `grad_fn` found by the walk from the loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradFnNode {
    /// Python `id()` of the `grad_fn`.
    pub id: u64,
    /// Index of its class name in the class-name table.
    pub class: u32,
    /// Ids of its `next_functions` (None entries left out, repeats kept).
    pub next: Vec<u64>,
}

/// A forward layer whose output had a `grad_fn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardGradFn {
    /// Python `id()` of the layer output's `grad_fn`, recorded during the capture.
    pub grad_fn_id: u64,
    /// The layer's position in the log.
    pub position: u32,
    /// The layer's `layer_type_num`.
    pub type_num: u32,
    /// The layer's `layer_total_num`.
    pub total_num: u32,
}

/// The `grad_fn`s a call adds, one entry per column, in discovery order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackwardGraph {
    /// Python ids.
    pub ids: Vec<u64>,
    /// `{type}_back_{type_num}_{total_num}`.
    pub labels: Vec<String>,
    /// Class name without `Backward<digits>`, lower-cased.
    pub grad_fn_types: Vec<String>,
    /// Type numbers (the forward layer's, or the per-type count of intervening `grad_fn`s).
    pub type_nums: Vec<u32>,
    /// Total numbers (the forward layer's, or the discovery index).
    pub total_nums: Vec<u32>,
    /// Position of the matched forward layer; None for intervening `grad_fn`s.
    pub positions: Vec<Option<u32>>,
    /// Ids of the next `grad_fn`s.
    pub next: Vec<Vec<u64>>,
}

impl BackwardGraph {
    /// Number of `grad_fn`s added.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the call added none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `grad_fn` `i` is intervening (no forward layer produced it).
    pub fn is_intervening(&self, i: usize) -> bool {
        self.positions.get(i).is_some_and(Option::is_none)
    }
}

/// `AddmmBackward0` -> `addmm`, `MyFnBackward` -> `myfn`, `AccumulateGrad` -> `accumulategrad`.
pub fn grad_fn_type(class_name: &str) -> String {
    let digits = class_name.trim_end_matches(|c: char| c.is_ascii_digit());
    let stem = digits.strip_suffix("Backward").unwrap_or(class_name);
    let stem = if stem.is_empty() { class_name } else { stem };
    stem.to_lowercase()
}

/// Matches and labels the `grad_fn`s of one walk that `known` (the ids of the walked `grad_fn`s
/// that earlier calls logged) does not hold; `logged` is how many `grad_fn`s earlier calls logged
/// in all (the new discovery indices start after it; it may exceed `known.len()`, since a new walk
/// need not reach every logged `grad_fn`).
///
/// Errors (`CoreError::InvalidInput`): a class index outside `class_names`, an id listed twice,
/// a next id that is neither in `nodes` nor in `known`, or more `grad_fn`s than a `u32` counts.
pub fn build_backward(
    class_names: &[String],
    nodes: &[GradFnNode],
    known: &[u64],
    logged: u32,
    forward: &[ForwardGradFn],
) -> Result<BackwardGraph> {
    let known: FxHashSet<u64> = known.iter().copied().collect();
    let mut walked: FxHashSet<u64> = FxHashSet::default();
    for n in nodes {
        if !walked.insert(n.id) {
            return Err(CoreError::invalid(format!("grad_fn {} is listed twice", n.id)));
        }
    }
    for n in nodes {
        if let Some(bad) = n.next.iter().find(|id| !walked.contains(id) && !known.contains(id)) {
            return Err(CoreError::invalid(format!(
                "grad_fn {}: next grad_fn {bad} was not discovered",
                n.id
            )));
        }
    }
    // Several layers may share a grad_fn (an output node and its producer): the last one wins.
    let mut layer_of: FxHashMap<u64, ForwardGradFn> = FxHashMap::default();
    for f in forward {
        layer_of
            .entry(f.grad_fn_id)
            .and_modify(|cur| {
                if f.position > cur.position {
                    *cur = *f;
                }
            })
            .or_insert(*f);
    }
    let mut graph = BackwardGraph::default();
    let mut per_type: FxHashMap<String, u32> = FxHashMap::default();
    let mut total = logged;
    for n in nodes.iter().filter(|n| !known.contains(&n.id)) {
        let class = class_names
            .get(n.class as usize)
            .ok_or_else(|| CoreError::invalid(format!("grad_fn {}: class index {} out of range", n.id, n.class)))?;
        let ty = grad_fn_type(class);
        total = total
            .checked_add(1)
            .ok_or_else(|| CoreError::invalid("too many grad_fns"))?;
        let (type_num, total_num, position) = if let Some(f) = layer_of.get(&n.id) {
            (f.type_num, f.total_num, Some(f.position))
        } else {
            let count = per_type.entry(ty.clone()).or_insert(0);
            *count += 1;
            (*count, total, None)
        };
        graph.ids.push(n.id);
        graph.labels.push(format!("{ty}_back_{type_num}_{total_num}"));
        graph.grad_fn_types.push(ty);
        graph.type_nums.push(type_num);
        graph.total_nums.push(total_num);
        graph.positions.push(position);
        graph.next.push(n.next.clone());
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    fn node(id: u64, class: u32, next: &[u64]) -> GradFnNode {
        GradFnNode {
            id,
            class,
            next: next.to_vec(),
        }
    }

    fn fwd(grad_fn_id: u64, position: u32, type_num: u32, total_num: u32) -> ForwardGradFn {
        ForwardGradFn {
            grad_fn_id,
            position,
            type_num,
            total_num,
        }
    }

    #[test]
    fn types_strip_the_backward_suffix() {
        assert_eq!(grad_fn_type("AddmmBackward0"), "addmm");
        assert_eq!(grad_fn_type("NativeBatchNormBackward12"), "nativebatchnorm");
        assert_eq!(grad_fn_type("MyFnBackward"), "myfn");
        assert_eq!(grad_fn_type("AccumulateGrad"), "accumulategrad");
        assert_eq!(grad_fn_type("CopySlices"), "copyslices");
        assert_eq!(grad_fn_type("Backward0"), "backward0");
        assert_eq!(grad_fn_type("Conv2"), "conv2");
    }

    /// The small MLP of the Python tests: Linear-ReLU-Linear, loss = `out.square().mean()`.
    #[test]
    fn mlp_labels_follow_2_15() {
        let classes = names(&[
            "MeanBackward0",
            "PowBackward0",
            "AddmmBackward0",
            "AccumulateGrad",
            "ReluBackward0",
            "TBackward0",
        ]);
        let nodes = [
            node(1, 0, &[2]),
            node(2, 1, &[3]),
            node(3, 2, &[4, 5, 6]),
            node(4, 3, &[]),
            node(5, 4, &[7]),
            node(6, 5, &[8]),
            node(7, 2, &[9, 10]),
            node(8, 3, &[]),
            node(9, 3, &[]),
            node(10, 5, &[11]),
            node(11, 3, &[]),
        ];
        // linear_1_1 (pos 1), relu_1_2 (pos 2), linear_2_3 (pos 3) and output_1 (pos 4) sharing its grad_fn.
        let forward = [fwd(7, 1, 1, 1), fwd(5, 2, 1, 2), fwd(3, 3, 2, 3), fwd(3, 4, 1, 4)];
        let g = build_backward(&classes, &nodes, &[], 0, &forward).unwrap();
        assert_eq!(
            g.labels,
            [
                "mean_back_1_1",
                "pow_back_1_2",
                "addmm_back_1_4",
                "accumulategrad_back_1_4",
                "relu_back_1_2",
                "t_back_1_6",
                "addmm_back_1_1",
                "accumulategrad_back_2_8",
                "accumulategrad_back_3_9",
                "t_back_2_10",
                "accumulategrad_back_4_11",
            ]
        );
        assert_eq!(g.positions[2], Some(4));
        assert!(g.is_intervening(0) && !g.is_intervening(2) && !g.is_intervening(99));
        assert_eq!(g.next[2], [4, 5, 6]);
        assert_eq!(g.len(), 11);
    }

    #[test]
    fn the_last_layer_sharing_a_grad_fn_wins_whatever_the_table_order() {
        let classes = names(&["MulBackward0"]);
        let nodes = [node(1, 0, &[])];
        let g = build_backward(&classes, &nodes, &[], 0, &[fwd(1, 5, 1, 5), fwd(1, 4, 1, 4)]).unwrap();
        assert_eq!(g.labels, ["mul_back_1_5"]);
        assert_eq!(g.positions, [Some(5)]);
    }

    #[test]
    fn matched_grad_fns_do_not_advance_the_intervening_type_counter() {
        let classes = names(&["ReluBackward0"]);
        let nodes = [node(1, 0, &[2]), node(2, 0, &[3]), node(3, 0, &[])];
        let g = build_backward(&classes, &nodes, &[], 0, &[fwd(2, 1, 1, 1)]).unwrap();
        assert_eq!(g.labels, ["relu_back_1_1", "relu_back_1_1", "relu_back_2_3"]);
    }

    #[test]
    fn a_later_call_adds_only_new_grad_fns_numbered_after_the_known_ones() {
        let classes = names(&["AddBackward0", "SumBackward0", "AccumulateGrad"]);
        // The first call logged three (7, 8 and one this walk does not reach); the new walk reaches 7 and 8 again.
        let nodes = [
            node(1, 0, &[2, 3]),
            node(2, 1, &[7]),
            node(3, 1, &[8]),
            node(7, 2, &[]),
            node(8, 2, &[]),
        ];
        let g = build_backward(&classes, &nodes, &[7, 8], 3, &[]).unwrap();
        assert_eq!(g.labels, ["add_back_1_4", "sum_back_1_5", "sum_back_2_6"]);
        assert_eq!(g.ids, [1, 2, 3]);
    }

    #[test]
    fn repeated_next_ids_are_kept() {
        let classes = names(&["MulBackward0", "AccumulateGrad"]);
        let g = build_backward(&classes, &[node(1, 0, &[2, 2]), node(2, 1, &[])], &[], 0, &[]).unwrap();
        assert_eq!(g.next[0], [2, 2]);
    }

    #[test]
    fn an_empty_walk_adds_nothing() {
        let g = build_backward(&[], &[], &[1, 2], 2, &[]).unwrap();
        assert!(g.is_empty());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let classes = names(&["SumBackward0"]);
        let e = build_backward(&classes, &[node(1, 3, &[])], &[], 0, &[]).unwrap_err();
        assert_eq!(
            e,
            CoreError::invalid("grad_fn 1: class index 3 out of range"),
            "class index"
        );
        let e = build_backward(&classes, &[node(1, 0, &[]), node(1, 0, &[])], &[], 0, &[]).unwrap_err();
        assert_eq!(e, CoreError::invalid("grad_fn 1 is listed twice"));
        let e = build_backward(&classes, &[node(1, 0, &[5])], &[], 0, &[]).unwrap_err();
        assert_eq!(e, CoreError::invalid("grad_fn 1: next grad_fn 5 was not discovered"));
        // A next id logged by an earlier call is fine.
        assert!(build_backward(&classes, &[node(1, 0, &[5])], &[5], 1, &[]).is_ok());
        let e = build_backward(&classes, &[node(1, 0, &[])], &[], u32::MAX, &[]).unwrap_err();
        assert_eq!(e, CoreError::invalid("too many grad_fns"));
    }
}
