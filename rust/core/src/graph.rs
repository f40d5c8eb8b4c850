//! Arena graph built from a [`CaptureBatch`]: validation, synthetic output nodes and orphan
//! removal (spec §7.5 steps 1–3).
//!
//! Nodes live in flat arrays indexed by position; edges are stored as compressed adjacency
//! lists ([`Adjacency`]) so that a million-node graph costs a handful of allocations.

use crate::error::{CoreError, Result};
use crate::record::{CaptureBatch, NO_STR, NodeKind, OpRecord, OutputSpec};

/// Sentinel for "no node" / "no position" in `u32` arrays.
pub(crate) const NONE: u32 = u32::MAX;

/// Compressed adjacency lists: the neighbours of node `i` are `targets[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adjacency {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Adjacency {
    /// Neighbours of node `i`.
    pub fn get(&self, i: usize) -> &[u32] {
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of edges.
    pub fn num_edges(&self) -> usize {
        self.targets.len()
    }

    /// Reverses the edges; the lists of the result are sorted by source node.
    fn transpose(&self) -> Self {
        let n = self.len();
        let mut counts = vec![0u32; n + 1];
        for &t in &self.targets {
            counts[t as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let mut fill = counts.clone();
        let mut targets = vec![0u32; self.targets.len()];
        for src in 0..n {
            for &t in self.get(src) {
                let slot = &mut fill[t as usize];
                targets[*slot as usize] = src as u32;
                *slot += 1;
            }
        }
        Self {
            offsets: counts,
            targets,
        }
    }
}

/// Incremental builder for [`Adjacency`], one node at a time.
#[derive(Debug)]
struct AdjacencyBuilder {
    adj: Adjacency,
}

impl AdjacencyBuilder {
    fn with_capacity(nodes: usize, edges: usize) -> Self {
        let mut offsets = Vec::with_capacity(nodes + 1);
        offsets.push(0);
        Self {
            adj: Adjacency {
                offsets,
                targets: Vec::with_capacity(edges),
            },
        }
    }

    fn push(&mut self, target: u32) {
        self.adj.targets.push(target);
    }

    fn end_node(&mut self) {
        self.adj.offsets.push(self.adj.targets.len() as u32);
    }
}

/// What a graph node was made from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// A captured record.
    Record(&'a OpRecord),
    /// A synthetic output node (§7.5 step 1).
    Output(&'a OutputSpec),
}

/// The retained graph: positions `0..len` over the nodes kept after orphan removal, in creation
/// order, synthetic outputs last.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Original node id per position (records first, then `len(records) + k` for output `k`).
    pub node_ids: Vec<u32>,
    /// Node kind per position.
    pub kinds: Vec<NodeKind>,
    /// Parent positions per position, de-duplicated, in argument order.
    pub parents: Adjacency,
    /// Child positions per position, in creation order.
    pub children: Adjacency,
    /// Original ids of the removed orphans, ascending.
    pub removed: Vec<u32>,
    /// Position of every original node id, [`NONE`] for orphans.
    pub position_of: Vec<u32>,
    /// Number of records in the batch (original ids below it are records).
    pub num_records: usize,
}

impl Graph {
    /// Number of retained nodes.
    pub fn len(&self) -> usize {
        self.node_ids.len()
    }

    /// True when no node was retained.
    pub fn is_empty(&self) -> bool {
        self.node_ids.is_empty()
    }

    /// The record or output spec behind a position.
    pub fn source<'a>(&self, batch: &'a CaptureBatch, pos: usize) -> Source<'a> {
        let id = self.node_ids[pos] as usize;
        if id < self.num_records {
            Source::Record(&batch.records[id])
        } else {
            Source::Output(&batch.outputs[id - self.num_records])
        }
    }

    /// Checks the structural invariants: parents before children, parents and children mirror
    /// each other, positions increase with original ids. Used by tests after every build.
    pub fn check_invariants(&self) -> Result<()> {
        let n = self.len();
        if self.parents.len() != n || self.children.len() != n || self.kinds.len() != n {
            return Err(CoreError::invalid("column lengths differ"));
        }
        if self.node_ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CoreError::invalid("positions are not in creation order"));
        }
        for pos in 0..n {
            for &p in self.parents.get(pos) {
                if p as usize >= pos || !self.children.get(p as usize).contains(&(pos as u32)) {
                    return Err(CoreError::invalid(format!("edge {p} -> {pos} is inconsistent")));
                }
            }
            for &c in self.children.get(pos) {
                if c as usize <= pos || !self.parents.get(c as usize).contains(&(pos as u32)) {
                    return Err(CoreError::invalid(format!("edge {pos} -> {c} is inconsistent")));
                }
            }
        }
        Ok(())
    }
}

/// Checks every id in the batch against the tables it points into.
pub fn validate(batch: &CaptureBatch) -> Result<()> {
    let num_strings = batch.strings.len();
    let check_str = |what: &str, id: u32| -> Result<()> {
        if (id as usize) < num_strings {
            Ok(())
        } else {
            Err(CoreError::invalid(format!(
                "{what}: string id {id} out of range ({num_strings} strings)"
            )))
        }
    };
    let num_records = batch.records.len();
    if num_records + batch.outputs.len() >= NONE as usize {
        return Err(CoreError::invalid("too many nodes for 32-bit ids"));
    }
    match batch.module_stacks.first() {
        Some(stack) if stack.is_empty() => {}
        Some(_) => return Err(CoreError::invalid("module stack 0 must be the empty stack")),
        None => {
            return Err(CoreError::invalid(
                "module stack table is empty; entry 0 must be the empty stack",
            ));
        }
    }
    for (i, stack) in batch.module_stacks.iter().enumerate() {
        for &(addr, pass) in stack {
            check_str(&format!("module stack {i}"), addr)?;
            if pass == 0 {
                return Err(CoreError::invalid(format!(
                    "module stack {i}: pass numbers are 1-based, got 0"
                )));
            }
        }
    }
    for (id, rec) in batch.records.iter().enumerate() {
        let what = format!("record {id}");
        if rec.kind == NodeKind::Output {
            return Err(CoreError::invalid(format!(
                "{what}: kind Output is reserved for the core"
            )));
        }
        check_str(&what, rec.func)?;
        check_str(&what, rec.layer_type)?;
        if rec.role != NO_STR {
            check_str(&what, rec.role)?;
        }
        if rec.out_index < -1 {
            return Err(CoreError::invalid(format!("{what}: out_index {} < -1", rec.out_index)));
        }
        if rec.module_stack as usize >= batch.module_stacks.len() {
            return Err(CoreError::invalid(format!(
                "{what}: module stack {} out of range ({} stacks)",
                rec.module_stack,
                batch.module_stacks.len()
            )));
        }
        if let Some(&p) = rec.parents.iter().find(|&&p| p as usize >= id) {
            return Err(CoreError::invalid(format!("{what}: parent id {p} >= own id {id}")));
        }
        if rec.kind != NodeKind::Op && !rec.parents.is_empty() {
            return Err(CoreError::invalid(format!(
                "{what}: inputs and buffers cannot have parents"
            )));
        }
    }
    for (i, &(node, addr, pass)) in batch.module_exits.iter().enumerate() {
        let what = format!("module exit {i}");
        if node as usize >= num_records {
            return Err(CoreError::invalid(format!(
                "{what}: node id {node} out of range ({num_records} records)"
            )));
        }
        check_str(&what, addr)?;
        if pass == 0 {
            return Err(CoreError::invalid(format!("{what}: pass numbers are 1-based, got 0")));
        }
    }
    for (i, &(addr, _)) in batch.module_passes.iter().enumerate() {
        check_str(&format!("module pass count {i}"), addr)?;
    }
    for (i, &(node, role, _)) in batch.outputs.iter().enumerate() {
        let what = format!("output {i}");
        if node as usize >= num_records {
            return Err(CoreError::invalid(format!(
                "{what}: producer id {node} out of range ({num_records} records)"
            )));
        }
        check_str(&what, role)?;
    }
    Ok(())
}

/// Builds the retained graph: validates, appends one output node per output spec, removes the
/// nodes outside every undirected component that holds an input or an output.
pub fn build(batch: &CaptureBatch) -> Result<Graph> {
    validate(batch)?;
    let num_records = batch.records.len();
    let n = num_records + batch.outputs.len();
    let full_parents = full_parents(batch);
    let full_children = full_parents.transpose();
    let keep = flood(batch, &full_parents, &full_children);

    let mut position_of = vec![NONE; n];
    let mut node_ids = Vec::with_capacity(n);
    let mut removed = Vec::new();
    for (id, &kept) in keep.iter().enumerate() {
        if kept {
            position_of[id] = node_ids.len() as u32;
            node_ids.push(id as u32);
        } else {
            removed.push(id as u32);
        }
    }
    // Every neighbour of a kept node is kept (components are closed), so remapping never
    // meets NONE.
    let remap = |adj: &Adjacency| {
        let mut b = AdjacencyBuilder::with_capacity(node_ids.len(), adj.num_edges());
        for &id in &node_ids {
            for &t in adj.get(id as usize) {
                b.push(position_of[t as usize]);
            }
            b.end_node();
        }
        b.adj
    };
    let parents = remap(&full_parents);
    let children = remap(&full_children);
    let kinds = node_ids
        .iter()
        .map(|&id| batch.records.get(id as usize).map_or(NodeKind::Output, |r| r.kind))
        .collect();
    Ok(Graph {
        node_ids,
        kinds,
        parents,
        children,
        removed,
        position_of,
        num_records,
    })
}

/// Parent lists over all nodes (records then outputs), de-duplicated in argument order.
fn full_parents(batch: &CaptureBatch) -> Adjacency {
    let n = batch.records.len() + batch.outputs.len();
    let edges = batch.records.iter().map(|r| r.parents.len()).sum::<usize>() + batch.outputs.len();
    let mut b = AdjacencyBuilder::with_capacity(n, edges);
    // last_seen[p] == child id + 1 when p was already listed for this child.
    let mut last_seen = vec![0u32; n];
    for (id, rec) in batch.records.iter().enumerate() {
        for &p in &rec.parents {
            if last_seen[p as usize] != id as u32 + 1 {
                last_seen[p as usize] = id as u32 + 1;
                b.push(p);
            }
        }
        b.end_node();
    }
    for &(producer, _, _) in &batch.outputs {
        b.push(producer);
        b.end_node();
    }
    b.adj
}

/// Undirected flood from every input and output node.
fn flood(batch: &CaptureBatch, parents: &Adjacency, children: &Adjacency) -> Vec<bool> {
    let num_records = batch.records.len();
    let n = parents.len();
    let mut keep = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let seeds = batch
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == NodeKind::Input)
        .map(|(i, _)| i)
        .chain(num_records..n);
    for seed in seeds {
        if !keep[seed] {
            keep[seed] = true;
            stack.push(seed as u32);
        }
        while let Some(v) = stack.pop() {
            for &w in parents.get(v as usize).iter().chain(children.get(v as usize)) {
                if !keep[w as usize] {
                    keep[w as usize] = true;
                    stack.push(w);
                }
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: NodeKind, parents: Vec<u32>) -> OpRecord {
        OpRecord {
            kind,
            func: 0,
            layer_type: 0,
            arg_hash: 0,
            out_index: -1,
            module_stack: 0,
            params: vec![],
            parents,
            role: NO_STR,
        }
    }

    fn batch(records: Vec<OpRecord>, outputs: Vec<OutputSpec>) -> CaptureBatch {
        CaptureBatch {
            strings: vec!["x".into()],
            records,
            module_stacks: vec![vec![]],
            outputs,
            ..CaptureBatch::default()
        }
    }

    #[test]
    fn builds_dedups_and_removes_orphans() {
        let b = batch(
            vec![
                rec(NodeKind::Input, vec![]),
                rec(NodeKind::Op, vec![]),     // orphan root
                rec(NodeKind::Op, vec![1]),    // orphan child
                rec(NodeKind::Op, vec![0, 0]), // x + x
            ],
            vec![(3, 0, 7)],
        );
        let g = build(&b).unwrap();
        g.check_invariants().unwrap();
        assert_eq!(g.node_ids, vec![0, 3, 4]);
        assert_eq!(g.removed, vec![1, 2]);
        assert_eq!(g.parents.get(1), &[0]);
        assert_eq!(g.children.get(0), &[1]);
        assert_eq!(g.kinds[2], NodeKind::Output);
    }

    #[test]
    fn rejects_forward_parent() {
        let b = batch(vec![rec(NodeKind::Input, vec![]), rec(NodeKind::Op, vec![1])], vec![]);
        let err = build(&b).unwrap_err();
        assert!(err.to_string().contains("parent id 1 >= own id 1"), "{err}");
    }
}
