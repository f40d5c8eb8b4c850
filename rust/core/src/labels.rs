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
/// (first entry in execution order wins).
#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    keys: Vec<(String, u32)>,
    lower: Vec<(String, u32)>,
}

impl KeyIndex {
    /// Builds the index from every position's keys; `keys_of(pos, buf)` appends keys to `buf`.
    pub fn build(n: usize, mut keys_of: impl FnMut(usize, &mut Vec<String>)) -> Self {
        let mut owner: FxHashMap<String, u32> = FxHashMap::default();
        let mut buf = Vec::new();
        for pos in 0..n {
            buf.clear();
            keys_of(pos, &mut buf);
            for key in buf.drain(..) {
                owner.entry(key).or_insert(pos as u32);
            }
        }
        let mut keys: Vec<(String, u32)> = owner.into_iter().collect();
        keys.sort_unstable();
        let mut lower_owner: FxHashMap<String, u32> = FxHashMap::default();
        for (key, pos) in &keys {
            let slot = lower_owner.entry(key.to_lowercase()).or_insert(*pos);
            *slot = (*slot).min(*pos);
        }
        let mut lower: Vec<(String, u32)> = lower_owner.into_iter().collect();
        lower.sort_unstable();
        Self { keys, lower }
    }

    /// Exact lookup.
    pub fn get(&self, key: &str) -> Option<u32> {
        find(&self.keys, key)
    }

    /// Case-insensitive exact lookup.
    pub fn get_ci(&self, key: &str) -> Option<u32> {
        find(&self.lower, &key.to_lowercase())
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

fn find(sorted: &[(String, u32)], key: &str) -> Option<u32> {
    sorted
        .binary_search_by(|(k, _)| k.as_str().cmp(key))
        .ok()
        .map(|i| sorted[i].1)
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
        let idx = KeyIndex::build(2, |pos, buf| {
            buf.push("head".into());
            buf.push(if pos == 0 { "Linear_2".into() } else { "output_1".into() });
        });
        assert_eq!(idx.get("head"), Some(0));
        assert_eq!(idx.get("output_1"), Some(1));
        assert_eq!(idx.get_ci("LINEAR_2"), Some(0));
        assert_eq!(
            idx.containing("_"),
            vec![("Linear_2".to_string(), 0), ("output_1".to_string(), 1)]
        );
        assert_eq!(idx.containing_ci("linear").len(), 1);
    }
}
