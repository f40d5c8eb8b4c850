//! Final labels, operation numbers (spec §5.3) and lookup keys (§5.5).
//!
//! Numbers are computed eagerly; label strings are only formatted when asked for, so that a
//! million-node graph does not allocate millions of strings during `finalize`.

use rustc_hash::FxHashMap;

use crate::record::NodeKind;

/// Type name used for a node's label: the layer type for ops, `input` / `buffer` / `output`
/// for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeName {
    /// An op's layer type (a string id).
    Op(u32),
    /// `input`.
    Input,
    /// `buffer`.
    Buffer,
    /// `output`.
    Output,
}

impl TypeName {
    /// The type name of a node of `kind` with layer type `layer_type`.
    pub fn of(kind: NodeKind, layer_type: u32) -> Self {
        match kind {
            NodeKind::Op => Self::Op(layer_type),
            NodeKind::Input => Self::Input,
            NodeKind::Buffer => Self::Buffer,
            NodeKind::Output => Self::Output,
        }
    }

    /// The name as text.
    pub fn as_str(self, strings: &[String]) -> &str {
        match self {
            Self::Op(id) => strings.get(id as usize).map_or("unknown", String::as_str),
            Self::Input => "input",
            Self::Buffer => "buffer",
            Self::Output => "output",
        }
    }

    /// Inputs, buffers and outputs have `{type}_{n}` labels without the overall number.
    pub fn is_io(self) -> bool {
        !matches!(self, Self::Op(_))
    }
}

/// Per-position numbers behind the labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Numbers {
    /// Type name per position (copied from the layer's first pass).
    pub type_name: Vec<TypeName>,
    /// `layer_type_num`: rank of the layer among layers of its type.
    pub type_num: Vec<u32>,
    /// `layer_total_num`: rank among non-input, non-buffer layers (outputs included); 0 for
    /// inputs and buffers.
    pub total_num: Vec<u32>,
    /// 1-based operation number over op passes; 0 for inputs and buffers; outputs get
    /// `num_operations`.
    pub operation_num: Vec<u32>,
    /// Number of op passes.
    pub num_operations: u32,
}

/// Numbers every position (§5.3). `layer_of`/`pass_num` come from loop detection and
/// `first[layer]` is the layer's first position.
pub fn number(kinds: &[NodeKind], types: &[TypeName], layer_of: &[u32], pass_num: &[u32], first: &[u32]) -> Numbers {
    let n = kinds.len();
    let mut out = Numbers {
        type_name: Vec::with_capacity(n),
        type_num: Vec::with_capacity(n),
        total_num: Vec::with_capacity(n),
        operation_num: Vec::with_capacity(n),
        num_operations: 0,
    };
    let mut type_counter: FxHashMap<TypeName, u32> = FxHashMap::default();
    let mut total_counter = 1u32;
    for pos in 0..n {
        if pass_num[pos] == 1 {
            let ty = types[pos];
            let counter = type_counter.entry(ty).or_insert(1);
            let type_num = *counter;
            *counter += 1;
            let total = if matches!(ty, TypeName::Input | TypeName::Buffer) {
                0
            } else {
                total_counter += 1;
                total_counter - 1
            };
            out.type_name.push(ty);
            out.type_num.push(type_num);
            out.total_num.push(total);
        } else {
            let head = first[layer_of[pos] as usize] as usize;
            out.type_name.push(out.type_name[head]);
            out.type_num.push(out.type_num[head]);
            out.total_num.push(out.total_num[head]);
        }
        if kinds[pos] == NodeKind::Op {
            out.num_operations += 1;
            out.operation_num.push(out.num_operations);
        } else {
            out.operation_num.push(0);
        }
    }
    for (pos, kind) in kinds.iter().enumerate() {
        if *kind == NodeKind::Output {
            out.operation_num[pos] = out.num_operations;
        }
    }
    out
}

/// Which of the four label variants to format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelForm {
    /// `linear_1_1` (`input_1`).
    NoPass,
    /// `linear_1_1:2` (`input_1:1`).
    WithPass,
    /// `linear_1` (`input_1`).
    Short,
    /// `linear_1:2` (`input_1:1`).
    ShortWithPass,
}

/// Formats one label variant.
pub fn format_label(name: &str, io: bool, type_num: u32, total_num: u32, pass: u32, form: LabelForm) -> String {
    let long = !io && matches!(form, LabelForm::NoPass | LabelForm::WithPass);
    let with_pass = matches!(form, LabelForm::WithPass | LabelForm::ShortWithPass);
    match (long, with_pass) {
        (true, true) => format!("{name}_{type_num}_{total_num}:{pass}"),
        (true, false) => format!("{name}_{type_num}_{total_num}"),
        (false, true) => format!("{name}_{type_num}:{pass}"),
        (false, false) => format!("{name}_{type_num}"),
    }
}

/// Sorted, de-duplicated lookup keys with the first position that produced each
/// (first entry in execution order wins). Used for substring searches.
#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    keys: Vec<(String, u32)>,
}

impl KeyIndex {
    /// Builds the index from every position's keys; `keys_of(pos, buf)` appends keys to `buf`.
    pub fn build(n: usize, mut keys_of: impl FnMut(usize, &mut Vec<String>)) -> Self {
        let mut keys = Vec::new();
        let mut buf = Vec::new();
        for pos in 0..n {
            keys_of(pos, &mut buf);
            keys.extend(buf.drain(..).map(|k| (k, pos as u32)));
        }
        // Sorting by (key, position) puts the first owner of every key first.
        keys.sort_unstable();
        keys.dedup_by(|later, first| later.0 == first.0);
        Self { keys }
    }

    /// Exact lookup.
    pub fn get(&self, key: &str) -> Option<u32> {
        self.keys
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.keys[i].1)
    }

    /// Keys containing `needle` (case-sensitive), in key order.
    pub fn containing(&self, needle: &str) -> Vec<(String, u32)> {
        self.keys.iter().filter(|(k, _)| k.contains(needle)).cloned().collect()
    }

    /// Keys containing `needle` ignoring case, in key order.
    pub fn containing_ci(&self, needle: &str) -> Vec<(String, u32)> {
        let needle = needle.to_lowercase();
        self.keys
            .iter()
            .filter(|(k, _)| k.to_lowercase().contains(&needle))
            .cloned()
            .collect()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Exact key -> first owner, storing 64-bit key hashes instead of strings.
///
/// Building the sorted [`KeyIndex`] for a million entries takes seconds (millions of strings
/// to keep and sort); this index keeps one `u64` per key and re-creates the owner's keys to
/// confirm a hit, so it stays exact. Keys whose hash collides with a different key are kept
/// verbatim in `collisions`.
#[derive(Clone, Debug, Default)]
pub struct KeyHash {
    first: FxHashMap<u64, u32>,
    collisions: FxHashMap<String, u32>,
    fold_case: bool,
}

fn hash_key(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    h.finish()
}

impl KeyHash {
    /// Builds the index; with `fold_case`, keys are compared lower-cased.
    pub fn build(n: usize, fold_case: bool, mut keys_of: impl FnMut(usize, &mut Vec<String>)) -> Self {
        let mut index = Self {
            first: FxHashMap::default(),
            collisions: FxHashMap::default(),
            fold_case,
        };
        index.first.reserve(n * 4);
        let mut buf = Vec::new();
        let mut owner_keys = Vec::new();
        for pos in 0..n {
            keys_of(pos, &mut buf);
            for key in buf.drain(..) {
                let key = if fold_case { key.to_lowercase() } else { key };
                let owner = *index.first.entry(hash_key(&key)).or_insert(pos as u32);
                if owner != pos as u32 && !index.owns(owner, &key, &mut owner_keys, &mut keys_of) {
                    index.collisions.entry(key).or_insert(pos as u32);
                }
            }
        }
        index
    }

    fn owns(
        &self,
        pos: u32,
        key: &str,
        scratch: &mut Vec<String>,
        keys_of: &mut impl FnMut(usize, &mut Vec<String>),
    ) -> bool {
        scratch.clear();
        keys_of(pos as usize, scratch);
        scratch.iter().any(|k| {
            if self.fold_case {
                k.to_lowercase() == key
            } else {
                k == key
            }
        })
    }

    /// The first position producing `key` (compared lower-cased when built with `fold_case`).
    pub fn get(&self, key: &str, mut keys_of: impl FnMut(usize, &mut Vec<String>)) -> Option<u32> {
        let folded;
        let key = if self.fold_case {
            folded = key.to_lowercase();
            folded.as_str()
        } else {
            key
        };
        if let Some(&pos) = self.collisions.get(key) {
            return Some(pos);
        }
        let &pos = self.first.get(&hash_key(key))?;
        self.owns(pos, key, &mut Vec::new(), &mut keys_of).then_some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_forms() {
        assert_eq!(
            format_label("linear", false, 1, 1, 2, LabelForm::WithPass),
            "linear_1_1:2"
        );
        assert_eq!(
            format_label("linear", false, 1, 1, 2, LabelForm::ShortWithPass),
            "linear_1:2"
        );
        assert_eq!(format_label("conv2d", false, 3, 7, 1, LabelForm::Short), "conv2d_3");
        assert_eq!(format_label("input", true, 1, 0, 1, LabelForm::NoPass), "input_1");
        assert_eq!(format_label("input", true, 1, 0, 1, LabelForm::WithPass), "input_1:1");
    }

    #[test]
    fn first_owner_wins_and_ci() {
        let keys = |pos: usize, buf: &mut Vec<String>| {
            buf.push("head".into());
            buf.push(if pos == 0 { "Linear_2".into() } else { "output_1".into() });
        };
        let idx = KeyIndex::build(2, keys);
        assert_eq!(idx.get("head"), Some(0));
        assert_eq!(idx.get("output_1"), Some(1));
        assert_eq!(
            idx.containing("_"),
            vec![("Linear_2".to_string(), 0), ("output_1".to_string(), 1)]
        );
        assert_eq!(idx.containing_ci("linear").len(), 1);
        let exact = KeyHash::build(2, false, keys);
        assert_eq!(exact.get("head", keys), Some(0));
        assert_eq!(exact.get("output_1", keys), Some(1));
        assert_eq!(exact.get("linear_2", keys), None);
        let ci = KeyHash::build(2, true, keys);
        assert_eq!(ci.get("LINEAR_2", keys), Some(0));
        assert_eq!(ci.get("nothing", keys), None);
    }
}
