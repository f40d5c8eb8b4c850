//! Operation fingerprints (`operation_equivalence_type`, spec §6.1).
//!
//! Fingerprints are interned into dense `u32` ids so that loop detection compares integers;
//! the printable form is only built when asked for.

use rustc_hash::FxHashMap;

use crate::graph::{Graph, NONE, Source};
use crate::record::{CaptureBatch, NodeKind, StrId};

/// The parts a fingerprint is made of, before the module suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Base {
    /// An op that consumed parameters: layer type and interned sorted parameter set. The position
    /// in a multi-tensor return is not part of it (2.15: an LSTM's output, h and c are three
    /// passes of one layer).
    Param { layer_type: StrId, params: u32 },
    /// A parameter-free op: layer type, argument hash, position in a multi-tensor return and
    /// innermost module address (or [`NONE`]).
    Op {
        layer_type: StrId,
        arg_hash: u64,
        out_index: i32,
        module: StrId,
    },
    /// A model input: hash of shape and dtype.
    Input { hash: u64 },
    /// A buffer: its address.
    Buffer { role: StrId },
    /// A synthetic output: hash of shape and dtype.
    Output { hash: u64 },
}

/// Interned fingerprints of the retained nodes.
#[derive(Clone, Debug, Default)]
pub struct Fingerprints {
    /// Fingerprint id per position.
    pub ids: Vec<u32>,
    /// Interned parameter-set id per position, [`NONE`] for nodes without parameters.
    pub params: Vec<u32>,
    /// Sorted, de-duplicated parameter ids per parameter-set id.
    pub param_sets: Vec<Vec<u32>>,
    /// Number of members per fingerprint id.
    pub counts: Vec<u32>,
    descs: Vec<(Base, u32)>,
    stack_addrs: Vec<Vec<StrId>>,
}

impl Fingerprints {
    /// Computes the fingerprint of every retained node.
    pub fn compute(batch: &CaptureBatch, graph: &Graph) -> Self {
        // Module-stack index -> interned address sequence (passes dropped).
        let mut stack_addrs: Vec<Vec<StrId>> = Vec::new();
        let mut addr_ids: FxHashMap<Vec<StrId>, u32> = FxHashMap::default();
        let stack_of: Vec<u32> = batch
            .module_stacks
            .iter()
            .map(|stack| {
                let addrs: Vec<StrId> = stack.iter().map(|&(a, _)| a).collect();
                *addr_ids.entry(addrs).or_insert_with_key(|k| {
                    stack_addrs.push(k.clone());
                    (stack_addrs.len() - 1) as u32
                })
            })
            .collect();

        let n = graph.len();
        let mut fp = Self {
            stack_addrs,
            ..Self::default()
        };
        fp.ids.reserve(n);
        fp.params.reserve(n);
        let mut fp_ids: FxHashMap<(Base, u32), u32> = FxHashMap::default();
        let mut set_ids: FxHashMap<Vec<u32>, u32> = FxHashMap::default();
        let mut scratch: Vec<u32> = Vec::new();
        for pos in 0..n {
            let (base, stack, params) = match graph.source(batch, pos) {
                Source::Output(&(_, _, hash)) => (Base::Output { hash }, 0, NONE),
                Source::Record(rec) => {
                    let stack = stack_of[rec.module_stack as usize];
                    let mut params = NONE;
                    let base = match rec.kind {
                        NodeKind::Input => Base::Input { hash: rec.arg_hash },
                        NodeKind::Buffer => Base::Buffer { role: rec.role },
                        NodeKind::Op | NodeKind::Output if !rec.params.is_empty() => {
                            scratch.clear();
                            scratch.extend_from_slice(&rec.params);
                            scratch.sort_unstable();
                            scratch.dedup();
                            params = if let Some(&id) = set_ids.get(scratch.as_slice()) {
                                id
                            } else {
                                let id = fp.param_sets.len() as u32;
                                fp.param_sets.push(scratch.clone());
                                set_ids.insert(scratch.clone(), id);
                                id
                            };
                            Base::Param {
                                layer_type: rec.layer_type,
                                params,
                            }
                        }
                        NodeKind::Op | NodeKind::Output => Base::Op {
                            layer_type: rec.layer_type,
                            arg_hash: rec.arg_hash,
                            out_index: rec.out_index,
                            module: fp.stack_addrs[stack as usize].last().copied().unwrap_or(NONE),
                        },
                    };
                    (base, stack, params)
                }
            };
            let next = fp.descs.len() as u32;
            let id = *fp_ids.entry((base, stack)).or_insert(next);
            if id == next {
                fp.descs.push((base, stack));
                fp.counts.push(0);
            }
            fp.counts[id as usize] += 1;
            fp.ids.push(id);
            fp.params.push(params);
        }
        fp
    }

    /// Number of distinct fingerprints.
    pub fn num_distinct(&self) -> usize {
        self.descs.len()
    }

    /// Printable form of fingerprint `id`, in the spirit of the spec's
    /// `"{layer_type}_{...}"` + module addresses.
    pub fn describe(&self, id: u32, strings: &[String]) -> String {
        use std::fmt::Write;
        let s = |id: StrId| strings.get(id as usize).map_or("?", String::as_str);
        let (base, stack) = self.descs[id as usize];
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = match base {
            Base::Param { layer_type, params } => {
                out.push_str(s(layer_type));
                for p in &self.param_sets[params as usize] {
                    let _ = write!(out, "_p{p}");
                }
                Ok(())
            }
            Base::Op {
                layer_type,
                arg_hash,
                out_index,
                module,
            } => {
                let _ = write!(out, "{}_{arg_hash:016x}", s(layer_type));
                if out_index >= 0 {
                    let _ = write!(out, "_outindex{out_index}");
                }
                if module != NONE {
                    let _ = write!(out, "_module{}", s(module));
                }
                Ok(())
            }
            Base::Input { hash } => write!(out, "input_{hash:016x}"),
            Base::Buffer { role } => write!(out, "buffer_{}", s(role)),
            Base::Output { hash } => write!(out, "output_{hash:016x}"),
        };
        let addrs = &self.stack_addrs[stack as usize];
        for (i, &a) in addrs.iter().enumerate() {
            if i > 0 {
                out.push('_');
            }
            out.push_str(s(a));
        }
        out
    }
}
