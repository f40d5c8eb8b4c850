//! Loop / recurrence detection: which nodes are passes of the same layer (spec §6.2, §6.3).
//!
//! Full mode processes fingerprints in order of their first member. For a fingerprint with
//! k > 1 members it grows k subgraphs in lock step (one per member), forming "iso groups" of
//! corresponding nodes, refines the groups by neighbourhood, and turns each group into layers:
//! members whose subgraphs are adjacent or share a parameterised fingerprint become passes of
//! one layer. Reduced mode only applies the "same function + same parameters" rule.
//!
//! Every round is linear in the number of nodes and edges it touches: candidate matching goes
//! through per-(direction, fingerprint) buckets instead of scanning other subgraphs.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::fingerprint::Fingerprints;
use crate::graph::{Graph, NONE};

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

/// Union-find whose root is always the smallest element of its set.
#[derive(Clone, Debug)]
pub(crate) struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
        }
    }

    pub(crate) fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    pub(crate) fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi as usize] = lo;
        }
    }
}

/// Detects layers. `funcs[pos]` is the raw function id (for the parameter rule; `NONE` for
/// non-ops); `full` selects §6.2 over §6.3.
pub fn detect(graph: &Graph, fp: &Fingerprints, funcs: &[u32], full: bool) -> Layers {
    let n = graph.len();
    let mut table = LayerTable {
        layer_of: vec![NONE; n],
        members: Vec::new(),
        touched: FxHashMap::default(),
    };
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

/// Multi-pass layers found so far; nodes not in any are single-pass.
struct LayerTable {
    layer_of: Vec<u32>,
    members: Vec<Vec<u32>>,
    touched: FxHashMap<u32, usize>,
}

impl LayerTable {
    /// Makes `group` (sorted positions) one layer, unless that would split a layer that one of
    /// its members already belongs to (§6.2 step 4: later rounds may not fragment earlier ones).
    fn assign(&mut self, group: &[u32]) {
        self.touched.clear();
        for &m in group {
            let old = self.layer_of[m as usize];
            if old != NONE {
                *self.touched.entry(old).or_insert(0) += 1;
            }
        }
        if self
            .touched
            .iter()
            .any(|(&old, &count)| count < self.members[old as usize].len())
        {
            return;
        }
        for &old in self.touched.keys() {
            self.members[old as usize] = Vec::new();
        }
        let id = self.members.len() as u32;
        for &m in group {
            self.layer_of[m as usize] = id;
        }
        self.members.push(group.to_vec());
    }
}

const CHILD: u8 = 0;
const PARENT: u8 = 1;

/// A frontier candidate: node `node` next to subgraph `sub`, reached in direction `dir`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    sub: u32,
    node: u32,
    bucket: u32,
}

/// A run of consecutive bucket items from one subgraph, consumed from `cur`.
#[derive(Clone, Copy, Debug)]
struct Run {
    cur: u32,
    end: u32,
}

/// Candidates of one (direction, fingerprint) pair, in subgraph order.
#[derive(Debug, Default)]
struct Bucket {
    items: Vec<u32>,
    runs: Vec<Run>,
    last_sub: u32,
}

/// Scratch state reused across rounds (arrays indexed by position carry a round stamp).
struct Rounds {
    round: u32,
    owned_in: Vec<u32>,
    sub_of: Vec<u32>,
    group_of: Vec<u32>,
    mark: Vec<u32>,
    mark_stamp: u32,
    group_nodes: Vec<u32>,
    group_subs: Vec<u32>,
    group_start: Vec<u32>,
    entries: Vec<Entry>,
    consumed: Vec<bool>,
    buckets: Vec<Bucket>,
    bucket_ids: FxHashMap<(u8, u32), u32>,
    formed: Vec<(u32, u32)>,
}

impl Rounds {
    fn new(n: usize) -> Self {
        Self {
            round: 0,
            owned_in: vec![0; n],
            sub_of: vec![0; n],
            group_of: vec![0; n],
            mark: vec![0; n],
            mark_stamp: 0,
            group_nodes: Vec::new(),
            group_subs: Vec::new(),
            group_start: Vec::new(),
            entries: Vec::new(),
            consumed: Vec::new(),
            buckets: Vec::new(),
            bucket_ids: FxHashMap::default(),
            formed: Vec::new(),
        }
    }

    fn owned(&self, node: u32) -> bool {
        self.owned_in[node as usize] == self.round
    }

    /// Members of group `g` as (start, end) into `group_nodes` / `group_subs`.
    fn group_range(&self, g: u32) -> (usize, usize) {
        let start = self.group_start[g as usize] as usize;
        let end = self
            .group_start
            .get(g as usize + 1)
            .map_or(self.group_nodes.len(), |&e| e as usize);
        (start, end)
    }

    /// True when subgraph `sub` has a member in group `g` (group members are in subgraph order).
    fn group_has_sub(&self, g: u32, sub: u32) -> bool {
        let (start, end) = self.group_range(g);
        self.group_subs[start..end].binary_search(&sub).is_ok()
    }

    fn push_group(&mut self, members: &[(u32, u32)], params: &mut Vec<(u32, u32)>, fp: &Fingerprints) -> u32 {
        let g = self.group_start.len() as u32;
        self.group_start.push(self.group_nodes.len() as u32);
        for &(sub, node) in members {
            self.owned_in[node as usize] = self.round;
            self.sub_of[node as usize] = sub;
            self.group_of[node as usize] = g;
            self.group_nodes.push(node);
            self.group_subs.push(sub);
            if fp.params[node as usize] != NONE {
                params.push((fp.ids[node as usize], sub));
            }
        }
        g
    }

    /// One round of §6.2 steps 2–4 for the members of one fingerprint.
    fn run(&mut self, graph: &Graph, fp: &Fingerprints, members: &[u32], table: &mut LayerTable) {
        self.round += 1;
        self.group_nodes.clear();
        self.group_subs.clear();
        self.group_start.clear();
        let k = members.len();
        let mut adjacency = UnionFind::new(k);
        let mut param_fps: Vec<(u32, u32)> = Vec::new();
        let initial: Vec<(u32, u32)> = members.iter().enumerate().map(|(i, &m)| (i as u32, m)).collect();
        let g0 = self.push_group(&initial, &mut param_fps, fp);
        let mut queue = VecDeque::from([g0]);
        while let Some(g) = queue.pop_front() {
            self.collect_frontier(graph, fp, g, &mut adjacency);
            self.form_groups(fp, &mut param_fps, &mut queue);
        }
        // Subgraphs that share a parameterised fingerprint count as linked, like adjacent ones.
        param_fps.sort_unstable();
        for w in param_fps.windows(2) {
            if w[0].0 == w[1].0 {
                adjacency.union(w[0].1, w[1].1);
            }
        }
        self.assign_layers(graph, &mut adjacency, table);
    }

    /// Collects the neighbours of group `g`'s members into buckets, marking adjacency with
    /// neighbours owned by other subgraphs.
    fn collect_frontier(&mut self, graph: &Graph, fp: &Fingerprints, g: u32, adjacency: &mut UnionFind) {
        self.entries.clear();
        self.consumed.clear();
        self.bucket_ids.clear();
        let (start, end) = self.group_range(g);
        let first_step = g == 0;
        for i in start..end {
            let (sub, node) = (self.group_subs[i], self.group_nodes[i] as usize);
            let parents: &[u32] = if first_step { &[] } else { graph.parents.get(node) };
            let neighbours = graph
                .children
                .get(node)
                .iter()
                .map(|&c| (CHILD, c))
                .chain(parents.iter().map(|&p| (PARENT, p)));
            for (dir, nb) in neighbours {
                if self.owned(nb) {
                    let other = self.sub_of[nb as usize];
                    if other != sub && self.group_has_sub(self.group_of[nb as usize], sub) {
                        adjacency.union(sub, other);
                    }
                    continue;
                }
                let key = (dir, fp.ids[nb as usize]);
                let next = self.bucket_ids.len() as u32;
                let bucket = *self.bucket_ids.entry(key).or_insert(next);
                if bucket == next {
                    if self.buckets.len() <= bucket as usize {
                        self.buckets.push(Bucket::default());
                    }
                    let b = &mut self.buckets[bucket as usize];
                    b.items.clear();
                    b.runs.clear();
                    b.last_sub = NONE;
                }
                let b = &mut self.buckets[bucket as usize];
                let idx = b.items.len() as u32;
                b.items.push(self.entries.len() as u32);
                if b.last_sub == sub {
                    if let Some(run) = b.runs.last_mut() {
                        run.end = idx + 1;
                    }
                } else {
                    b.runs.push(Run { cur: idx, end: idx + 1 });
                    b.last_sub = sub;
                }
                self.entries.push(Entry { sub, node: nb, bucket });
                self.consumed.push(false);
            }
        }
    }

    /// Takes candidates in order (subgraph order, children before parents) and matches each
    /// with the first same-fingerprint candidate of every other subgraph.
    fn form_groups(&mut self, fp: &Fingerprints, param_fps: &mut Vec<(u32, u32)>, queue: &mut VecDeque<u32>) {
        for e in 0..self.entries.len() {
            if self.consumed[e] || self.owned(self.entries[e].node) {
                continue;
            }
            let bucket = self.entries[e].bucket as usize;
            self.formed.clear();
            let mut runs = std::mem::take(&mut self.buckets[bucket].runs);
            for run in &mut runs {
                while run.cur < run.end {
                    let entry_idx = self.buckets[bucket].items[run.cur as usize] as usize;
                    run.cur += 1;
                    let entry = self.entries[entry_idx];
                    if self.consumed[entry_idx] || self.owned(entry.node) {
                        continue;
                    }
                    self.consumed[entry_idx] = true;
                    self.formed.push((entry.sub, entry.node));
                    break;
                }
            }
            runs.retain(|r| r.cur < r.end);
            self.buckets[bucket].runs = runs;
            self.consumed[e] = true;
            let group = self.drop_duplicates();
            if group.is_empty() {
                continue;
            }
            let g = self.push_group(&group, param_fps, fp);
            if group.len() > 1 {
                queue.push_back(g);
            }
        }
    }

    /// The formed group without nodes matched into two subgraphs at once.
    fn drop_duplicates(&mut self) -> Vec<(u32, u32)> {
        if self.mark_stamp >= u32::MAX - 2 {
            self.mark.fill(0);
            self.mark_stamp = 0;
        }
        let (seen, dup) = (self.mark_stamp + 1, self.mark_stamp + 2);
        self.mark_stamp += 2;
        for &(_, node) in &self.formed {
            let m = &mut self.mark[node as usize];
            *m = if *m == seen || *m == dup { dup } else { seen };
        }
        self.formed
            .iter()
            .copied()
            .filter(|&(_, node)| self.mark[node as usize] != dup)
            .collect()
    }

    /// §6.2 steps 3–4: refine every group by shared (direction, neighbour group) pairs, then
    /// make members whose subgraphs are linked passes of one layer.
    fn assign_layers(&mut self, graph: &Graph, links: &mut UnionFind, table: &mut LayerTable) {
        let mut sig_owner: FxHashMap<(u8, u32), u32> = FxHashMap::default();
        let mut class_members: FxHashMap<(u32, u32), Vec<u32>> = FxHashMap::default();
        let mut class_order: Vec<(u32, u32)> = Vec::new();
        for g in 0..self.group_start.len() as u32 {
            let (start, end) = self.group_range(g);
            if end - start < 2 {
                continue;
            }
            let mut local = UnionFind::new(end - start);
            sig_owner.clear();
            for i in start..end {
                let node = self.group_nodes[i] as usize;
                let li = (i - start) as u32;
                let neighbours = graph
                    .children
                    .get(node)
                    .iter()
                    .map(|&c| (CHILD, c))
                    .chain(graph.parents.get(node).iter().map(|&p| (PARENT, p)));
                for (dir, nb) in neighbours {
                    if self.owned(nb) {
                        let owner = *sig_owner.entry((dir, self.group_of[nb as usize])).or_insert(li);
                        local.union(owner, li);
                    }
                }
            }
            class_members.clear();
            class_order.clear();
            for i in start..end {
                let key = (local.find((i - start) as u32), links.find(self.group_subs[i]));
                class_members
                    .entry(key)
                    .or_insert_with(|| {
                        class_order.push(key);
                        Vec::new()
                    })
                    .push(self.group_nodes[i]);
            }
            for key in &class_order {
                if let Some(layer) = class_members.get_mut(key) {
                    if layer.len() > 1 {
                        layer.sort_unstable();
                        table.assign(layer);
                    }
                }
            }
        }
    }
}

/// §6.2 step 5 plus the parameter rule: merges layers and same-function-same-parameter ops,
/// then numbers layers by first appearance and passes by creation order.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_find_root_is_smallest() {
        let mut uf = UnionFind::new(6);
        uf.union(5, 3);
        uf.union(3, 4);
        uf.union(4, 1);
        assert_eq!(uf.find(5), 1);
        assert_eq!(uf.find(0), 0);
    }
}
