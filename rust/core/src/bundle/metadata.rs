//! `metadata.json`: the capture data of a saved log (records, tensor metas, modules, parameters,
//! optional per-node extras). [`parse_metadata`] deserializes the typed schema and checks every
//! cross-reference, so that the Python side only maps already valid plain data to its objects.
//! The same [`Capture`] checks serve recovery ([`super::journal`]).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::manifest::Manifest;
use crate::error::{CoreError, Result};

/// Value of the `schema` key.
pub const METADATA_SCHEMA: &str = "torchlens-capture";
/// Newest metadata version this library reads (and the one it writes).
pub const METADATA_VERSION: u64 = 1;

/// One capture record, fields as in `RECORD_FIELDS`: kind, func, layer type, argument hash,
/// output index, module stack, parameter ids, parent ids, role. Ranges the core checks itself
/// (string ids, parents) are left to `finalize`.
pub type Record = (i64, i64, i64, u64, i64, u64, Vec<u64>, Vec<i64>, i64);
/// Tensor metadata of a node: shape, torch dtype name, device/grad descriptor.
pub type TensorMeta = (Vec<u64>, String, String);
/// A module of a stack: (address string id, pass number).
pub type StackEntry = (u64, i64);
/// A module exit: (node, address string id, pass number).
pub type ModuleExit = (u64, u64, i64);
/// A source frame: (code index, line).
pub type Frame = (u64, i64);
/// A code object: file, name, first line, qualified name, docstring.
pub type Code = (String, String, i64, String, Option<String>);

/// One module that ran.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ModuleEntry {
    /// Address (`"encoder.layer.0"`).
    pub address: String,
    /// Class name.
    pub class_name: String,
    /// Number of passes.
    pub num_passes: i64,
    /// Every address the module is reachable by.
    pub all_addresses: Vec<String>,
}

/// One parameter of the model.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ParamEntry {
    /// Address (`"fc.weight"`).
    pub address: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Torch dtype name.
    pub dtype: String,
    /// Number of elements.
    pub numel: u64,
    /// Bytes.
    pub nbytes: u64,
    /// Whether it is trainable.
    pub requires_grad: bool,
}

/// The capture batch plus per-node tensor metadata (`CaptureData` on the Python side).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Capture {
    /// String table.
    pub strings: Vec<String>,
    /// Records.
    pub records: Vec<Record>,
    /// Index into `metas` per record.
    pub meta_ids: Vec<u64>,
    /// Distinct tensor metas.
    pub metas: Vec<TensorMeta>,
    /// Module stacks (records refer to them by index).
    pub module_stacks: Vec<Vec<StackEntry>>,
    /// Module exits.
    pub module_exits: Vec<ModuleExit>,
    /// Pass count per module address (string id, passes).
    pub module_passes: Vec<(u64, u64)>,
    /// Outputs: (node, role string id, hash).
    pub outputs: Vec<(u64, u64, u64)>,
    /// Modules that ran.
    pub modules: Vec<ModuleEntry>,
    /// Parameters.
    pub params: Vec<ParamEntry>,
}

fn bad(msg: impl std::fmt::Display) -> CoreError {
    CoreError::bundle(format!("invalid bundle metadata: {msg}"))
}

/// Torch dtype names are identifiers; which ones exist is torch's business (metas may describe
/// tensors a bundle cannot hold), so only the form is checked here.
fn check_dtype_name(name: &str, ctx: &str) -> Result<()> {
    if !name.is_empty() && name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(bad(format!("{ctx}: bad dtype name {name:?}")))
    }
}

impl Capture {
    /// Checks every index between the tables.
    pub fn validate(&self) -> Result<()> {
        let ns = self.strings.len() as u64;
        let n = self.records.len() as u64;
        if self.meta_ids.len() != self.records.len() || self.meta_ids.iter().any(|&m| m >= self.metas.len() as u64) {
            return Err(bad("meta_ids must have one valid entry per record"));
        }
        for (i, m) in self.metas.iter().enumerate() {
            check_dtype_name(&m.1, &format!("metas[{i}]"))?;
        }
        for (i, st) in self.module_stacks.iter().enumerate() {
            if st.iter().any(|p| p.0 >= ns) {
                return Err(bad(format!("module_stacks[{i}]: bad entry")));
            }
        }
        if self.module_exits.iter().any(|e| e.0 >= n || e.1 >= ns) {
            return Err(bad("module_exits: id out of range"));
        }
        for (i, p) in self.params.iter().enumerate() {
            check_dtype_name(&p.dtype, &format!("params[{i}]"))?;
        }
        let (n_stacks, n_params) = (self.module_stacks.len() as u64, self.params.len() as u64);
        for (i, r) in self.records.iter().enumerate() {
            if r.5 >= n_stacks {
                return Err(bad(format!("records[{i}]: module stack out of range")));
            }
            if r.6.iter().any(|&p| p >= n_params) {
                return Err(bad(format!("records[{i}]: parameter id out of range")));
            }
        }
        Ok(())
    }
}

/// Per-node op times: a list parallel to the records, or `[node, seconds]` pairs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FuncTimes {
    /// One time per record.
    List(Vec<f64>),
    /// Times of some nodes.
    ByNode(Vec<(i64, f64)>),
}

/// Optional per-node extras.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Extras {
    /// Op times.
    #[serde(default)]
    pub func_times: Option<FuncTimes>,
    /// Argument tokens, one per record. Their encoding of Python argument values is the Python
    /// side's (`io._schema`), which checks each token when it decodes it; here they are JSON.
    #[serde(default)]
    pub toks: Option<Vec<Value>>,
    /// Call-site id per record; when present, the site tables below are used.
    #[serde(default)]
    pub site_ids: Option<Vec<u64>>,
    /// Code objects referred to by frames.
    #[serde(default)]
    pub codes: Vec<Code>,
    /// Call sites: frames innermost last.
    #[serde(default)]
    pub sites: Vec<Vec<Frame>>,
    /// Site of every module stack.
    #[serde(default)]
    pub stack_sites: Vec<u64>,
    /// Parent stack of every module stack.
    #[serde(default)]
    pub stack_parent: Vec<u64>,
    /// Frame of the code that called the model.
    #[serde(default)]
    pub caller_site: Option<Frame>,
}

impl Extras {
    /// Checks the site tables' indices.
    pub fn validate(&self) -> Result<()> {
        let Some(site_ids) = &self.site_ids else {
            return Ok(());
        };
        let n_codes = self.codes.len() as u64;
        let frame_ok = |f: &Frame| f.0 < n_codes;
        if !self.sites.iter().flatten().all(frame_ok) || !self.caller_site.iter().all(frame_ok) {
            return Err(bad("frame out of range"));
        }
        let n_sites = self.sites.len() as u64;
        if site_ids.iter().chain(&self.stack_sites).any(|&s| s >= n_sites) {
            return Err(bad("site id out of range"));
        }
        let n_stacks = self.stack_parent.len() as u64;
        if self.stack_parent.iter().any(|&p| p >= n_stacks) {
            return Err(bad("stack_parent out of range"));
        }
        Ok(())
    }
}

/// A validated `metadata.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Metadata {
    /// [`METADATA_SCHEMA`].
    pub schema: String,
    /// 1 ..= [`METADATA_VERSION`].
    pub version: u64,
    /// Model class name.
    pub model_name: String,
    /// Free-form run information (seed, timings, options).
    pub info: Map<String, Value>,
    /// The capture data.
    pub capture: Capture,
    /// Optional per-node extras.
    #[serde(default)]
    pub extras: Option<Extras>,
    /// (node, blob id) of each saved activation.
    pub activations: Vec<(u64, u64)>,
    /// (node, blob id) of each saved transformed activation.
    #[serde(default)]
    pub transformed: Vec<(u64, u64)>,
}

/// The two keys read first, so that a foreign or newer document is reported as such.
#[derive(Deserialize)]
struct Probe {
    schema: Value,
    version: Value,
}

fn check_head(schema: &Value, version: &Value) -> Result<()> {
    if schema.as_str() != Some(METADATA_SCHEMA) {
        return Err(bad(format!("schema must be {METADATA_SCHEMA:?}")));
    }
    match version.as_u64() {
        Some(v) if (1..=METADATA_VERSION).contains(&v) => Ok(()),
        _ => Err(bad(format!("unsupported metadata version {version}"))),
    }
}

/// Parses and validates `metadata.json` against its manifest: every activation must refer to a
/// listed blob of the right kind.
pub fn parse_metadata(bytes: &[u8], manifest: &Manifest) -> Result<Metadata> {
    let meta: Metadata = match serde_json::from_slice(bytes) {
        Ok(m) => m,
        Err(e) if e.is_syntax() || e.is_eof() => return Err(bad(format!("not valid JSON ({e})"))),
        Err(e) => {
            if let Ok(p) = serde_json::from_slice::<Probe>(bytes) {
                check_head(&p.schema, &p.version)?;
            }
            return Err(bad(e));
        }
    };
    check_head(&Value::from(meta.schema.as_str()), &Value::from(meta.version))?;
    meta.capture.validate()?;
    if let Some(extras) = &meta.extras {
        extras.validate()?;
    }
    let kind_of: std::collections::HashMap<u64, &str> =
        manifest.tensors.iter().map(|t| (t.blob_id, t.kind.as_str())).collect();
    for (pairs, kind, what) in [
        (&meta.activations, "activation", "activation"),
        (&meta.transformed, "transformed_activation", "transformed"),
    ] {
        if let Some((nid, bid)) = pairs.iter().find(|(_, bid)| kind_of.get(bid) != Some(&kind)) {
            return Err(bad(format!("{what} entry [{nid}, {bid}] refers to no {kind} blob")));
        }
    }
    let seed_ok = match meta.info.get("random_seed") {
        None => true,
        Some(v) => v.is_i64() || v.is_u64() || v.is_boolean(),
    };
    if manifest.n_layers != 0 && !seed_ok {
        return Err(bad("info.random_seed must be an int"));
    }
    Ok(meta)
}
