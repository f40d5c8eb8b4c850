//! The capture record: the one schema shared by the Python emitter and the core.
//!
//! Python appends one tuple per logged tensor, with the fields in [`RECORD_FIELDS`] order.
//! The bindings export `RECORD_FIELDS` and `RECORD_VERSION`, and a pytest checks that the
//! emitter agrees, so the two sides cannot drift apart silently.

/// Bumped whenever a field is added, removed or reordered.
pub const RECORD_VERSION: u32 = 1;

/// Field names of one capture record, in tuple order.
pub const RECORD_FIELDS: [&str; 9] = [
    "kind",
    "func",
    "layer_type",
    "arg_hash",
    "out_index",
    "module_stack",
    "params",
    "parents",
    "role",
];

/// Index into the interned string table handed over with the records.
pub type StrId = u32;

/// Sentinel `StrId` meaning "no string" (for `role` on ordinary ops).
pub const NO_STR: StrId = u32::MAX;

/// What produced a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A model input, logged before `forward` runs.
    Input,
    /// A buffer (or tensor attribute) of a module, logged the first time it is used.
    Buffer,
    /// A tensor returned by an intercepted torch callable.
    Op,
    /// A synthetic output node; never sent by Python, added by the core.
    Output,
}

impl NodeKind {
    /// Decodes the `kind` field of a record (0 input, 1 buffer, 2 op).
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Input),
            1 => Some(Self::Buffer),
            2 => Some(Self::Op),
            _ => None,
        }
    }
}

/// One logged tensor, as captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    /// What produced the tensor.
    pub kind: NodeKind,
    /// Raw name of the intercepted callable (`__add__`, `relu_`); `none` for inputs and buffers.
    pub func: StrId,
    /// Layer type: lower-cased func name without underscores (`add`, `relu`), or `input`/`buffer`.
    pub layer_type: StrId,
    /// Hash of the non-tensor arguments and tensor argument shapes (for inputs: of shape and dtype).
    /// Only equality matters.
    pub arg_hash: u64,
    /// Position in a multi-tensor return value, or -1 when the call returned a single tensor.
    pub out_index: i32,
    /// Index into the module-stack table: the module passes active when the op ran (0 = none).
    pub module_stack: u32,
    /// Parameter ids the op consumed (any order, may repeat).
    pub params: Vec<u32>,
    /// Node ids (0-based creation order) of the labelled tensor arguments, in argument order.
    pub parents: Vec<u32>,
    /// `io_role` for inputs (`input.x`), buffer address for buffers, [`NO_STR`] otherwise.
    pub role: StrId,
}

/// One module pass in a module stack: (module address, 1-based pass number).
pub type ModulePass = (StrId, u32);

/// A module's forward returned this node: (node id, module address, pass number).
pub type ModuleExit = (u32, StrId, u32);

/// A model output: (producer node id, `io_role` such as `output` or `output.0`, hash of shape+dtype).
pub type OutputSpec = (u32, StrId, u64);

/// Everything one forward pass hands to the core.
#[derive(Clone, Debug, Default)]
pub struct CaptureBatch {
    /// Interned strings referenced by `StrId`s.
    pub strings: Vec<String>,
    /// One record per logged tensor, in creation order.
    pub records: Vec<OpRecord>,
    /// Module-stack table; entry 0 must be the empty stack. Outer module first.
    pub module_stacks: Vec<Vec<ModulePass>>,
    /// Module exits in the order they happened.
    pub module_exits: Vec<ModuleExit>,
    /// How many times each module's forward ran: (address, passes).
    pub module_passes: Vec<(StrId, u32)>,
    /// Model outputs, already de-duplicated by role, in output order.
    pub outputs: Vec<OutputSpec>,
}
