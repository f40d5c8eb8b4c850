//! The post-processing pipeline: graph, orphans, fingerprints, loops, labels.

use std::sync::OnceLock;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::error::{CoreError, Result};
use crate::fingerprint::Fingerprints;
use crate::graph::{self, Adjacency, NONE, Source};
use crate::labels::{self, KeyHash, KeyIndex, LabelForm, Numbers, TypeName};
use crate::loops::{self, Layers};
use crate::record::{CaptureBatch, ModulePass, NO_STR, NodeKind, StrId};

/// Options of [`finalize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Full loop detection (§6.2) when true, the reduced parameter-only rule (§6.3) otherwise.
    pub detect_loops: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { detect_loops: true }
    }
}

/// The result of [`finalize`]: columns over the retained nodes (positions `0..len`, creation
/// order, synthetic outputs last). Label strings and the lookup index are built on demand.
#[derive(Debug)]
pub struct Finalized {
    strings: Vec<String>,
    node_ids: Vec<u32>,
    removed: Vec<u32>,
    kinds: Vec<NodeKind>,
    parents: Adjacency,
    children: Adjacency,
    layers: Layers,
    numbers: Numbers,
    fingerprints: Fingerprints,
    /// Role (`io_role` or buffer address) per position, [`NO_STR`] for ops.
    roles: Vec<StrId>,
    /// 1-based pass of a buffer among the buffers with the same address; 0 for non-buffers.
    buffer_pass: Vec<u32>,
    /// Retained buffer count per address.
    buffer_count: FxHashMap<StrId, u32>,
    /// Module passes exited by each position, in exit order.
    exits: Vec<Vec<ModulePass>>,
    module_passes: FxHashMap<StrId, u32>,
    timings: Vec<(&'static str, f64)>,
    index: OnceLock<KeyIndex>,
    exact: OnceLock<KeyHash>,
    folded: OnceLock<KeyHash>,
}

/// Runs the whole core pipeline on one capture batch.
pub fn finalize(batch: &CaptureBatch, opts: &Options) -> Result<Finalized> {
    let start = Instant::now();
    let mut timings = Vec::with_capacity(6);
    let mut lap = start;
    let mut tick = |name: &'static str, timings: &mut Vec<(&'static str, f64)>| {
        let now = Instant::now();
        timings.push((name, now.duration_since(lap).as_secs_f64()));
        lap = now;
    };

    let graph = graph::build(batch)?;
    tick("graph", &mut timings);

    let fingerprints = Fingerprints::compute(batch, &graph);
    tick("fingerprints", &mut timings);

    let n = graph.len();
    let mut funcs = vec![NONE; n];
    let mut types = Vec::with_capacity(n);
    let mut roles = vec![NO_STR; n];
    for pos in 0..n {
        match graph.source(batch, pos) {
            Source::Record(rec) => {
                if rec.kind == NodeKind::Op {
                    funcs[pos] = rec.func;
                }
                types.push(TypeName::of(rec.kind, rec.layer_type));
                roles[pos] = if rec.kind == NodeKind::Op { NO_STR } else { rec.role };
            }
            Source::Output(&(_, role, _)) => {
                types.push(TypeName::Output);
                roles[pos] = role;
            }
        }
    }
    let layers = loops::detect(&graph, &fingerprints, &funcs, opts.detect_loops);
    tick("loops", &mut timings);

    let numbers = labels::number(&graph.kinds, &types, &layers.layer_of, &layers.pass_num, &layers.first);
    let mut buffer_pass = vec![0u32; n];
    let mut buffer_count: FxHashMap<StrId, u32> = FxHashMap::default();
    for pos in 0..n {
        if graph.kinds[pos] == NodeKind::Buffer && roles[pos] != NO_STR {
            let count = buffer_count.entry(roles[pos]).or_insert(0);
            *count += 1;
            buffer_pass[pos] = *count;
        }
    }
    let mut exits: Vec<Vec<ModulePass>> = vec![Vec::new(); n];
    for &(node, addr, pass) in &batch.module_exits {
        let pos = graph.position_of[node as usize];
        if pos != NONE {
            exits[pos as usize].push((addr, pass));
        }
    }
    // An output node copies its producer's metadata (§7.5 step 1): as in 2.15, it exits the module
    // passes its producer ran in (so `output_1` is also keyed by the last layer's modules).
    for (pos, exit) in exits.iter_mut().enumerate() {
        if let Source::Output(&(producer, _, _)) = graph.source(batch, pos) {
            if let Some(rec) = batch.records.get(producer as usize) {
                if let Some(stack) = batch.module_stacks.get(rec.module_stack as usize) {
                    exit.clone_from(stack);
                }
            }
        }
    }
    let module_passes = batch.module_passes.iter().copied().collect();
    tick("labels", &mut timings);
    timings.push(("total", start.elapsed().as_secs_f64()));

    let graph::Graph {
        node_ids,
        kinds,
        parents,
        children,
        removed,
        ..
    } = graph;
    Ok(Finalized {
        strings: batch.strings.clone(),
        node_ids,
        removed,
        kinds,
        parents,
        children,
        layers,
        numbers,
        fingerprints,
        roles,
        buffer_pass,
        buffer_count,
        exits,
        module_passes,
        timings,
        index: OnceLock::new(),
        exact: OnceLock::new(),
        folded: OnceLock::new(),
    })
}

impl Finalized {
    /// Number of retained nodes.
    pub fn len(&self) -> usize {
        self.node_ids.len()
    }

    /// True when nothing was retained.
    pub fn is_empty(&self) -> bool {
        self.node_ids.is_empty()
    }

    /// Original node id per position (outputs: `len(records) + k`).
    pub fn node_ids(&self) -> &[u32] {
        &self.node_ids
    }

    /// Original ids of the removed orphans, ascending.
    pub fn removed(&self) -> &[u32] {
        &self.removed
    }

    /// Node kind per position.
    pub fn kinds(&self) -> &[NodeKind] {
        &self.kinds
    }

    /// One label variant of one position.
    pub fn label(&self, pos: usize, form: LabelForm) -> String {
        let ty = self.numbers.type_name[pos];
        labels::format_label(
            ty.as_str(&self.strings),
            ty.is_io(),
            self.numbers.type_num[pos],
            self.numbers.total_num[pos],
            self.layers.pass_num[pos],
            form,
        )
    }

    /// `layer_label`: without pass for single-pass layers, with it otherwise.
    pub fn layer_label(&self, pos: usize) -> String {
        self.label(
            pos,
            if self.layers.num_passes[pos] == 1 {
                LabelForm::NoPass
            } else {
                LabelForm::WithPass
            },
        )
    }

    /// `layer_label_short`: the short form, with the pass for multi-pass layers.
    pub fn layer_label_short(&self, pos: usize) -> String {
        self.label(
            pos,
            if self.layers.num_passes[pos] == 1 {
                LabelForm::Short
            } else {
                LabelForm::ShortWithPass
            },
        )
    }

    /// One label column.
    pub fn label_column(&self, form: LabelForm) -> Vec<String> {
        (0..self.len()).map(|pos| self.label(pos, form)).collect()
    }

    /// `layer_label` column.
    pub fn labels(&self) -> Vec<String> {
        (0..self.len()).map(|pos| self.layer_label(pos)).collect()
    }

    /// `layer_label_short` column.
    pub fn labels_short(&self) -> Vec<String> {
        (0..self.len()).map(|pos| self.layer_label_short(pos)).collect()
    }

    /// `layer_type_num` per position.
    pub fn layer_type_nums(&self) -> &[u32] {
        &self.numbers.type_num
    }

    /// `layer_total_num` per position (0 for inputs and buffers).
    pub fn layer_total_nums(&self) -> &[u32] {
        &self.numbers.total_num
    }

    /// 1-based pass number per position.
    pub fn pass_nums(&self) -> &[u32] {
        &self.layers.pass_num
    }

    /// Number of passes of each position's layer.
    pub fn num_passes(&self) -> &[u32] {
        &self.layers.num_passes
    }

    /// Operation number per position.
    pub fn operation_nums(&self) -> &[u32] {
        &self.numbers.operation_num
    }

    /// Number of op passes.
    pub fn num_operations(&self) -> u32 {
        self.numbers.num_operations
    }

    /// Layer index (first-appearance order) per position.
    pub fn layer_groups(&self) -> &[u32] {
        &self.layers.layer_of
    }

    /// Number of layers (rolled view).
    pub fn num_layers(&self) -> usize {
        self.layers.first.len()
    }

    /// Parent positions, de-duplicated, in argument order.
    pub fn parents(&self) -> &Adjacency {
        &self.parents
    }

    /// Child positions, in creation order.
    pub fn children(&self) -> &Adjacency {
        &self.children
    }

    /// Printable fingerprint per position (the fingerprint of the layer's first pass).
    pub fn fingerprints(&self) -> Vec<String> {
        let mut cache: FxHashMap<u32, String> = FxHashMap::default();
        (0..self.len())
            .map(|pos| {
                let head = self.layers.first[self.layers.layer_of[pos] as usize] as usize;
                let id = self.fingerprints.ids[head];
                cache
                    .entry(id)
                    .or_insert_with(|| self.fingerprints.describe(id, &self.strings))
                    .clone()
            })
            .collect()
    }

    /// Seconds spent per core phase, plus `total`.
    pub fn timings(&self) -> &[(&'static str, f64)] {
        &self.timings
    }

    /// Appends the string lookup keys of one position (§5.5, without the integer keys).
    fn push_keys(&self, pos: usize, out: &mut Vec<String>) {
        let s = |id: StrId| self.strings.get(id as usize).map(String::as_str);
        out.push(self.layer_label(pos));
        out.push(self.layer_label_short(pos));
        if self.layers.num_passes[pos] == 1 {
            out.push(self.label(pos, LabelForm::WithPass));
            out.push(self.label(pos, LabelForm::ShortWithPass));
        }
        for &(addr, pass) in &self.exits[pos] {
            if let Some(addr_str) = s(addr) {
                out.push(format!("{addr_str}:{pass}"));
                if self.module_passes.get(&addr) == Some(&1) {
                    out.push(addr_str.to_owned());
                }
            }
        }
        if let Some(role) = s(self.roles[pos]) {
            if self.kinds[pos] == NodeKind::Buffer {
                if self.buffer_count.get(&self.roles[pos]) == Some(&1) {
                    out.push(role.to_owned());
                }
                out.push(format!("{role}:{}", self.buffer_pass[pos]));
            } else {
                out.push(role.to_owned());
            }
        }
    }

    /// The string lookup keys of one position, sorted and de-duplicated.
    pub fn lookup_keys(&self, pos: usize) -> Result<Vec<String>> {
        if pos >= self.len() {
            return Err(CoreError::InvalidInput(format!(
                "position {pos} out of range ({} entries)",
                self.len()
            )));
        }
        let mut keys = Vec::new();
        self.push_keys(pos, &mut keys);
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    fn index(&self) -> &KeyIndex {
        self.index
            .get_or_init(|| KeyIndex::build(self.len(), |pos, buf| self.push_keys(pos, buf)))
    }

    /// Exact string key -> position (the first entry producing the key wins).
    pub fn lookup(&self, key: &str) -> Option<u32> {
        let keys_of = |pos: usize, buf: &mut Vec<String>| self.push_keys(pos, buf);
        self.exact
            .get_or_init(|| KeyHash::build(self.len(), false, keys_of))
            .get(key, keys_of)
    }

    /// Case-insensitive exact key -> position (the first entry producing a matching key wins).
    pub fn lookup_ci(&self, key: &str) -> Option<u32> {
        let keys_of = |pos: usize, buf: &mut Vec<String>| self.push_keys(pos, buf);
        self.folded
            .get_or_init(|| KeyHash::build(self.len(), true, keys_of))
            .get(key, keys_of)
    }

    /// Keys containing `needle` (case-sensitive) with their positions, in key order.
    pub fn find_substring(&self, needle: &str) -> Vec<(String, u32)> {
        self.index().containing(needle)
    }

    /// Keys containing `needle` ignoring case, in key order.
    pub fn find_substring_ci(&self, needle: &str) -> Vec<(String, u32)> {
        self.index().containing_ci(needle)
    }
}
