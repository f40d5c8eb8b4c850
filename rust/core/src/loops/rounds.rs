//! One round of full loop detection (spec §6.2 steps 2–4): lock-step isomorphic expansion of
//! one subgraph per fingerprint member, refinement of the iso groups, layer assignment.
//!
//! Every round is linear in the nodes and edges it touches: candidate matching goes through
//! per-(direction, fingerprint) buckets instead of scanning the other subgraphs' frontiers.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::layer_table::LayerTable;
use crate::fingerprint::Fingerprints;
use crate::graph::{Graph, NONE};
use crate::union_find::UnionFind;

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
pub(super) struct Rounds {
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
    pairs: Vec<(u32, u32)>,
    shared: Vec<u32>,
    per_sub_fp: FxHashMap<(u32, u32), u32>,
    /// Per node, the last earlier iso group (global id) of size > 1 it belonged to.
    explored: Vec<u32>,
    /// Size of every global iso group id.
    explored_sizes: Vec<u32>,
}

impl Rounds {
    pub(super) fn new(n: usize) -> Self {
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
            pairs: Vec::new(),
            shared: Vec::new(),
            per_sub_fp: FxHashMap::default(),
            explored: vec![NONE; n],
            explored_sizes: Vec::new(),
        }
    }

    /// True when `members` are exactly one iso group of an earlier round and none of them is
    /// in a layer. A round started from them would retrace that round's lock-step expansion
    /// and find no layer either; skipping it keeps two long identical parameter-free branches
    /// linear instead of quadratic (one full re-expansion per fingerprint along the branch).
    pub(super) fn already_explored(&self, members: &[u32], table: &LayerTable) -> bool {
        let key = self.explored[members[0] as usize];
        key != NONE
            && self.explored_sizes[key as usize] as usize == members.len()
            && members
                .iter()
                .all(|&m| self.explored[m as usize] == key && table.layer_of[m as usize] == NONE)
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
    pub(super) fn run(&mut self, graph: &Graph, fp: &Fingerprints, members: &[u32], table: &mut LayerTable) {
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
        for g in 0..self.group_start.len() as u32 {
            let (start, end) = self.group_range(g);
            if end - start > 1 {
                let key = self.explored_sizes.len() as u32;
                self.explored_sizes.push((end - start) as u32);
                for &node in &self.group_nodes[start..end] {
                    self.explored[node as usize] = key;
                }
            }
        }
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
        self.link_shared(fp, adjacency);
    }

    /// A neighbour of two subgraphs in the same step (a child of one and a parent of the next,
    /// as a layer norm between two residual blocks) joins no iso group. It links the subgraphs
    /// when it uses parameters, or when one of them has another candidate with its fingerprint
    /// (the same op further along the repeated block). Found by running `TorchLens` 2.15.0.
    fn link_shared(&mut self, fp: &Fingerprints, adjacency: &mut UnionFind) {
        self.pairs.clear();
        self.pairs.extend(self.entries.iter().map(|e| (e.node, e.sub)));
        self.pairs.sort_unstable();
        self.pairs.dedup();
        let any_shared = self.pairs.windows(2).any(|w| w[0].0 == w[1].0);
        if !any_shared {
            return;
        }
        // Distinct candidate nodes per (subgraph, fingerprint).
        self.per_sub_fp.clear();
        for &(node, sub) in &self.pairs {
            *self.per_sub_fp.entry((sub, fp.ids[node as usize])).or_insert(0) += 1;
        }
        self.shared.clear();
        let mut start = 0;
        while start < self.pairs.len() {
            let node = self.pairs[start].0;
            let mut end = start + 1;
            while end < self.pairs.len() && self.pairs[end].0 == node {
                end += 1;
            }
            if end - start > 1 {
                self.shared.push(node);
                let id = fp.ids[node as usize];
                let subs = &self.pairs[start..end];
                let links = fp.params[node as usize] != NONE
                    || subs
                        .iter()
                        .any(|&(_, s)| self.per_sub_fp.get(&(s, id)).copied().unwrap_or(0) > 1);
                if links {
                    for w in subs.windows(2) {
                        adjacency.union(w[0].1, w[1].1);
                    }
                }
            }
            start = end;
        }
        for (e, consumed) in self.entries.iter().zip(self.consumed.iter_mut()) {
            if self.shared.binary_search(&e.node).is_ok() {
                *consumed = true;
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
