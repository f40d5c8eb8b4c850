//! Builder for synthetic capture streams that mimic what the Python emitter sends.
#![allow(dead_code)]

use std::collections::HashMap;

pub mod synthetic;

use torchlens_core::{CaptureBatch, Finalized, NO_STR, NodeKind, OpRecord, Options, finalize};

/// Builds a [`CaptureBatch`] op by op, tracking the active module stack like the capture
/// session does (module passes counted per address).
#[derive(Default)]
pub struct Stream {
    batch: CaptureBatch,
    str_ids: HashMap<String, u32>,
    stack_ids: HashMap<Vec<(u32, u32)>, u32>,
    active: Vec<(u32, u32)>,
    pass_counts: HashMap<u32, u32>,
    pass_order: Vec<u32>,
}

impl Stream {
    pub fn new() -> Self {
        let mut s = Self::default();
        s.batch.module_stacks.push(vec![]);
        s.stack_ids.insert(vec![], 0);
        s.s("none");
        s
    }

    /// Interns a string.
    pub fn s(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.str_ids.get(text) {
            return id;
        }
        let id = self.batch.strings.len() as u32;
        self.batch.strings.push(text.to_owned());
        self.str_ids.insert(text.to_owned(), id);
        id
    }

    fn current_stack(&mut self) -> u32 {
        if let Some(&id) = self.stack_ids.get(&self.active) {
            return id;
        }
        let id = self.batch.module_stacks.len() as u32;
        self.batch.module_stacks.push(self.active.clone());
        self.stack_ids.insert(self.active.clone(), id);
        id
    }

    fn push(&mut self, rec: OpRecord) -> u32 {
        self.batch.records.push(rec);
        (self.batch.records.len() - 1) as u32
    }

    /// A model input with the given `io_role` and shape/dtype hash.
    pub fn input(&mut self, role: &str, hash: u64) -> u32 {
        let rec = OpRecord {
            kind: NodeKind::Input,
            func: self.s("none"),
            layer_type: self.s("input"),
            arg_hash: hash,
            out_index: -1,
            module_stack: 0,
            params: vec![],
            parents: vec![],
            role: self.s(role),
        };
        self.push(rec)
    }

    /// A buffer node with the given address, logged inside the current module stack.
    pub fn buffer(&mut self, address: &str) -> u32 {
        let module_stack = self.current_stack();
        let rec = OpRecord {
            kind: NodeKind::Buffer,
            func: self.s("none"),
            layer_type: self.s("buffer"),
            arg_hash: 0,
            out_index: -1,
            module_stack,
            params: vec![],
            parents: vec![],
            role: self.s(address),
        };
        self.push(rec)
    }

    /// The general op: raw function name, argument hash, output index, params and parents.
    pub fn op_full(&mut self, func: &str, arg_hash: u64, out_index: i32, params: &[u32], parents: &[u32]) -> u32 {
        let layer_type: String = func.to_lowercase().chars().filter(|&c| c != '_').collect();
        let module_stack = self.current_stack();
        let rec = OpRecord {
            kind: NodeKind::Op,
            func: self.s(func),
            layer_type: self.s(&layer_type),
            arg_hash,
            out_index,
            module_stack,
            params: params.to_vec(),
            parents: parents.to_vec(),
            role: NO_STR,
        };
        self.push(rec)
    }

    /// A parameter-free op with argument hash 0.
    pub fn op(&mut self, func: &str, parents: &[u32]) -> u32 {
        self.op_full(func, 0, -1, &[], parents)
    }

    /// A parameter-free op with the given argument hash.
    pub fn op_h(&mut self, func: &str, arg_hash: u64, parents: &[u32]) -> u32 {
        self.op_full(func, arg_hash, -1, &[], parents)
    }

    /// An op that consumes parameters.
    pub fn op_p(&mut self, func: &str, params: &[u32], parents: &[u32]) -> u32 {
        self.op_full(func, 0, -1, params, parents)
    }

    /// Enters a module's forward (pass number counted per address).
    pub fn enter(&mut self, address: &str) {
        let addr = self.s(address);
        let count = self.pass_counts.entry(addr).or_insert(0);
        if *count == 0 {
            self.pass_order.push(addr);
        }
        *count += 1;
        let pass = *count;
        self.active.push((addr, pass));
    }

    /// Leaves the innermost module, whose forward returned `node`.
    pub fn exit(&mut self, node: u32) {
        let (addr, pass) = self.active.pop().expect("exit without enter");
        self.batch.module_exits.push((node, addr, pass));
    }

    /// Runs `f` inside module `address` and records the returned node as its output.
    pub fn module(&mut self, address: &str, f: impl FnOnce(&mut Self) -> u32) -> u32 {
        self.enter(address);
        let out = f(self);
        self.exit(out);
        out
    }

    /// A model output produced by `node`.
    pub fn output(&mut self, node: u32, role: &str, hash: u64) {
        let role = self.s(role);
        self.batch.outputs.push((node, role, hash));
    }

    /// The finished batch.
    pub fn batch(&self) -> CaptureBatch {
        let mut batch = self.batch.clone();
        batch.module_passes = self.pass_order.iter().map(|a| (*a, self.pass_counts[a])).collect();
        batch
    }

    /// Finalizes with full loop detection and checks the generic invariants.
    pub fn finalize(&self) -> Finalized {
        self.finalize_with(true)
    }

    pub fn finalize_with(&self, detect_loops: bool) -> Finalized {
        let fin = finalize(&self.batch(), &Options { detect_loops }).expect("finalize failed");
        check(&fin);
        fin
    }
}

/// Invariants every result must satisfy.
pub fn check(fin: &Finalized) {
    let n = fin.len();
    let labels = fin.labels();
    let mut seen = std::collections::HashSet::new();
    for l in &labels {
        assert!(seen.insert(l.clone()), "duplicate label {l} in {labels:?}");
    }
    let mut passes: HashMap<u32, Vec<u32>> = HashMap::new();
    for pos in 0..n {
        passes
            .entry(fin.layer_groups()[pos])
            .or_default()
            .push(fin.pass_nums()[pos]);
    }
    for (layer, p) in &passes {
        let expected: Vec<u32> = (1..=p.len() as u32).collect();
        assert_eq!(p, &expected, "layer {layer} passes");
    }
    for pos in 0..n {
        assert_eq!(fin.num_passes()[pos] as usize, passes[&fin.layer_groups()[pos]].len());
        for &p in fin.parents().get(pos) {
            assert!((p as usize) < pos);
            assert!(fin.children().get(p as usize).contains(&(pos as u32)));
        }
        for &c in fin.children().get(pos) {
            assert!(fin.parents().get(c as usize).contains(&(pos as u32)));
        }
        let parents = fin.parents().get(pos);
        let mut dedup = parents.to_vec();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), parents.len(), "parents de-duplicated");
        let children = fin.children().get(pos);
        assert!(children.windows(2).all(|w| w[0] < w[1]), "children in creation order");
    }
}

/// `(label, position)` helper: position of a label.
pub fn pos_of(fin: &Finalized, label: &str) -> usize {
    fin.labels()
        .iter()
        .position(|l| l == label)
        .unwrap_or_else(|| panic!("no label {label} in {:?}", fin.labels()))
}
