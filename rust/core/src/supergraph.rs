//! The supergraph of several traces of one model (multi-trace bundles, spec §12.7).
//!
//! Layer passes are matched across traces by structural fingerprint plus occurrence index: the
//! k-th pass with fingerprint F in one trace's execution order is the same node as the k-th pass
//! with fingerprint F in every other trace. Matching is per pass, not per layer, so a recurrent
//! layer that runs three times in one trace and twice in another shares its first two passes and
//! has a third node present only in the first trace.
//!
//! The union node list is ordered by first appearance: the first trace's passes in order, then
//! each node new in a later trace right after the node that precedes it in that trace (so a node
//! of a data-dependent branch sits between its neighbours). A node's canonical name is its label
//! in the first trace that has it; when that name is already taken by another node, the trace's
//! name is appended (`"linear_1_4@trace_1"`).

use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{CoreError, Result};

/// One node of the union: which trace first has it, and at which position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuperNode {
    /// Canonical name (see the module documentation).
    pub name: String,
    /// Index of the first trace that has the node.
    pub first_trace: u32,
    /// Position of the node in that trace.
    pub first_pos: u32,
    /// Indices of the traces that have the node, ascending.
    pub traces: Vec<u32>,
}

/// The union of several traces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Supergraph {
    /// Union nodes in first-appearance order.
    pub nodes: Vec<SuperNode>,
    /// Per trace, the node index of each of its passes (in the trace's order).
    pub assignment: Vec<Vec<u32>>,
}

const END: u32 = u32::MAX;

/// Builds the supergraph of traces given, per trace, the fingerprint and the label of each pass
/// in execution order; `trace_names` names the traces (for disambiguating canonical names).
///
/// # Errors
/// [`CoreError::InvalidInput`] when the three lists differ in length or a trace's fingerprint
/// and label lists differ in length.
pub fn build_supergraph(
    fingerprints: &[Vec<String>],
    labels: &[Vec<String>],
    trace_names: &[String],
) -> Result<Supergraph> {
    if fingerprints.len() != labels.len() || fingerprints.len() != trace_names.len() {
        return Err(CoreError::invalid(format!(
            "supergraph: {} fingerprint lists, {} label lists and {} trace names",
            fingerprints.len(),
            labels.len(),
            trace_names.len()
        )));
    }
    // Nodes in creation order; `next` links them in union order (a singly linked list, so that
    // inserting after a node is O(1)).
    let mut created: Vec<(u32, u32)> = Vec::new();
    let mut traces_of: Vec<Vec<u32>> = Vec::new();
    let mut next: Vec<u32> = Vec::new();
    let mut head = END;
    let mut by_key: FxHashMap<(&str, u32), u32> = FxHashMap::default();
    let mut assignment = Vec::with_capacity(fingerprints.len());
    for (t, (fps, labs)) in fingerprints.iter().zip(labels).enumerate() {
        if fps.len() != labs.len() {
            return Err(CoreError::invalid(format!(
                "supergraph: trace {t} has {} fingerprints and {} labels",
                fps.len(),
                labs.len()
            )));
        }
        let t32 = to_u32(t)?;
        let mut seen: FxHashMap<&str, u32> = FxHashMap::default();
        let mut cursor = END;
        let mut row = Vec::with_capacity(fps.len());
        for (pos, fp) in fps.iter().enumerate() {
            let k = seen.entry(fp.as_str()).or_insert(0);
            let occurrence = *k;
            *k += 1;
            let node = if let Some(&n) = by_key.get(&(fp.as_str(), occurrence)) {
                if let Some(ts) = traces_of.get_mut(n as usize) {
                    if ts.last() != Some(&t32) {
                        ts.push(t32);
                    }
                }
                n
            } else {
                let n = to_u32(created.len())?;
                created.push((t32, to_u32(pos)?));
                traces_of.push(vec![t32]);
                if cursor == END {
                    next.push(head);
                    head = n;
                } else {
                    let after = next.get(cursor as usize).copied().unwrap_or(END);
                    next.push(after);
                    if let Some(slot) = next.get_mut(cursor as usize) {
                        *slot = n;
                    }
                }
                by_key.insert((fp.as_str(), occurrence), n);
                n
            };
            cursor = node;
            row.push(node);
        }
        assignment.push(row);
    }
    // Renumber in union order.
    let mut rank = vec![END; created.len()];
    let mut order = Vec::with_capacity(created.len());
    let mut cur = head;
    while cur != END {
        if let Some(r) = rank.get_mut(cur as usize) {
            *r = to_u32(order.len())?;
        }
        order.push(cur);
        cur = next.get(cur as usize).copied().unwrap_or(END);
    }
    // Names in creation order, so that earlier traces keep their labels on a collision.
    let mut taken: FxHashSet<String> = FxHashSet::default();
    let mut created_names = Vec::with_capacity(created.len());
    for &(ft, fpos) in &created {
        let label = labels
            .get(ft as usize)
            .and_then(|l| l.get(fpos as usize))
            .map_or("?", String::as_str);
        let mut name = label.to_owned();
        if taken.contains(&name) {
            let tn = trace_names.get(ft as usize).map_or("?", String::as_str);
            name = format!("{label}@{tn}");
            let mut i = 2;
            while taken.contains(&name) {
                name = format!("{label}@{tn}#{i}");
                i += 1;
            }
        }
        taken.insert(name.clone());
        created_names.push(name);
    }
    let mut nodes = Vec::with_capacity(order.len());
    for &n in &order {
        let (first_trace, first_pos) = created.get(n as usize).copied().unwrap_or((0, 0));
        nodes.push(SuperNode {
            name: created_names.get(n as usize).cloned().unwrap_or_default(),
            first_trace,
            first_pos,
            traces: traces_of.get(n as usize).cloned().unwrap_or_default(),
        });
    }
    let assignment = assignment
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|n| rank.get(n as usize).copied().unwrap_or(END))
                .collect()
        })
        .collect();
    Ok(Supergraph { nodes, assignment })
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| CoreError::invalid(format!("supergraph: {n} exceeds u32")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn names(g: &Supergraph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn identical_traces_share_every_node() {
        let fps = vec![v(&["in", "a", "b", "out"]), v(&["in", "a", "b", "out"])];
        let labs = vec![v(&["input_1", "a_1", "b_1", "output_1"]); 2];
        let g = build_supergraph(&fps, &labs, &v(&["t0", "t1"])).unwrap();
        assert_eq!(names(&g), ["input_1", "a_1", "b_1", "output_1"]);
        assert_eq!(g.assignment, vec![vec![0, 1, 2, 3], vec![0, 1, 2, 3]]);
        assert!(g.nodes.iter().all(|n| n.traces == [0, 1]));
    }

    #[test]
    fn occurrence_index_separates_repeated_fingerprints() {
        // Three passes of a recurrent op in trace 0, two in trace 1.
        let fps = vec![v(&["in", "r", "r", "r", "out"]), v(&["in", "r", "r", "out"])];
        let labs = vec![
            v(&["input_1", "r_1:1", "r_1:2", "r_1:3", "output_1"]),
            v(&["input_1", "r_1:1", "r_1:2", "output_1"]),
        ];
        let g = build_supergraph(&fps, &labs, &v(&["t0", "t1"])).unwrap();
        assert_eq!(names(&g), ["input_1", "r_1:1", "r_1:2", "r_1:3", "output_1"]);
        assert_eq!(g.assignment[1], [0, 1, 2, 4]);
        assert_eq!(g.nodes[3].traces, [0]);
        assert_eq!(g.nodes[4].traces, [0, 1]);
    }

    #[test]
    fn new_nodes_are_inserted_after_their_predecessor_and_renamed_on_collision() {
        // Trace 1 takes a branch that trace 0 skips; its label collides with trace 0's.
        let fps = vec![v(&["in", "b", "out"]), v(&["in", "a", "b", "out"])];
        let labs = vec![
            v(&["input_1", "linear_1_1", "output_1"]),
            v(&["input_1", "linear_1_1", "linear_2_2", "output_1"]),
        ];
        let g = build_supergraph(&fps, &labs, &v(&["t0", "t1"])).unwrap();
        assert_eq!(names(&g), ["input_1", "linear_1_1@t1", "linear_1_1", "output_1"]);
        assert_eq!(g.assignment, vec![vec![0, 2, 3], vec![0, 1, 2, 3]]);
        assert_eq!(g.nodes[1].first_trace, 1);
        assert_eq!(g.nodes[1].first_pos, 1);
        assert_eq!(g.nodes[1].traces, [1]);
    }

    #[test]
    fn new_first_node_goes_to_the_front() {
        let fps = vec![v(&["a"]), v(&["z", "a"])];
        let labs = vec![v(&["a_1"]), v(&["z_1", "a_1"])];
        let g = build_supergraph(&fps, &labs, &v(&["t0", "t1"])).unwrap();
        assert_eq!(names(&g), ["z_1", "a_1"]);
        assert_eq!(g.assignment, vec![vec![1], vec![0, 1]]);
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        let err = build_supergraph(&[v(&["a"])], &[v(&["a", "b"])], &v(&["t0"])).unwrap_err();
        assert!(matches!(err, CoreError::InvalidInput(m) if m.contains("trace 0")));
        let err = build_supergraph(&[v(&["a"])], &[], &v(&["t0"])).unwrap_err();
        assert!(matches!(err, CoreError::InvalidInput(_)));
    }

    #[test]
    fn no_traces_give_an_empty_graph() {
        let g = build_supergraph(&[], &[], &[]).unwrap();
        assert!(g.nodes.is_empty() && g.assignment.is_empty());
    }
}
