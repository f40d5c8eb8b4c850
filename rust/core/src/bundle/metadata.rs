//! `metadata.json`: the capture data of a saved log (records, tensor metas, modules, parameters,
//! optional per-node extras). [`parse_metadata`] deserializes the typed schema and checks every
//! cross-reference, so that the Python side only maps already valid plain data to its objects.
//! The same [`Capture`] checks serve recovery ([`super::journal`]).

use std::collections::HashMap;

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

/// `info.gradients`, written for a log that captured gradients: (node, blob id) pairs of the
/// kept gradients and of the `gradient_postfunc` outputs, the arrival order and the selected
/// nodes. Its other keys (the capture's gradient options) are free-form.
#[derive(Debug, Default, Deserialize)]
struct GradientInfo {
    #[serde(default)]
    gradient: Vec<(u64, u64)>,
    #[serde(default)]
    transformed_gradient: Vec<(u64, u64)>,
    #[serde(default)]
    order: Vec<u64>,
    #[serde(default)]
    selected: Option<Vec<u64>>,
}

/// Checks `info.gradients` (absent or null: nothing to check): every pair names a node of the
/// capture (`n_nodes`: records and outputs) and a listed blob of its kind.
fn check_gradients(info: &Map<String, Value>, kind_of: &HashMap<u64, &str>, n_nodes: u64) -> Result<()> {
    let g: GradientInfo = match info.get("gradients") {
        None | Some(Value::Null) => return Ok(()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad(format!("info.gradients: {e}")))?,
    };
    for (pairs, kind) in [
        (&g.gradient, "gradient"),
        (&g.transformed_gradient, "transformed_gradient"),
    ] {
        if let Some((nid, bid)) = pairs.iter().find(|(_, bid)| kind_of.get(bid) != Some(&kind)) {
            return Err(bad(format!(
                "info.gradients {kind} entry [{nid}, {bid}] refers to no {kind} blob"
            )));
        }
        if let Some((nid, bid)) = pairs.iter().find(|(nid, _)| *nid >= n_nodes) {
            return Err(bad(format!("info.gradients {kind} entry [{nid}, {bid}] names no node")));
        }
    }
    if let Some(nid) = g
        .order
        .iter()
        .chain(g.selected.iter().flatten())
        .find(|&&n| n >= n_nodes)
    {
        return Err(bad(format!("info.gradients: node {nid} out of range")));
    }
    Ok(())
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
    let kind_of: HashMap<u64, &str> = manifest.tensors.iter().map(|t| (t.blob_id, t.kind.as_str())).collect();
    for (pairs, kind, what) in [
        (&meta.activations, "activation", "activation"),
        (&meta.transformed, "transformed_activation", "transformed"),
    ] {
        if let Some((nid, bid)) = pairs.iter().find(|(_, bid)| kind_of.get(bid) != Some(&kind)) {
            return Err(bad(format!("{what} entry [{nid}, {bid}] refers to no {kind} blob")));
        }
    }
    let n_nodes = (meta.capture.records.len() + meta.capture.outputs.len()) as u64;
    check_gradients(&meta.info, &kind_of, n_nodes)?;
    let seed_ok = match meta.info.get("random_seed") {
        None => true,
        Some(v) => v.is_i64() || v.is_u64() || v.is_boolean(),
    };
    if manifest.n_layers != 0 && !seed_ok {
        return Err(bad("info.random_seed must be an int"));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::blob_relative_path;
    use super::super::manifest::parse_manifest;
    use super::*;

    /// A manifest listing blob 1 (activation), 2 (gradient) and 3 (transformed gradient).
    fn manifest() -> Manifest {
        let tensor = |id: u64, kind: &str| {
            json!({
                "blob_id": id, "kind": kind, "label": "x", "relative_path": blob_relative_path(id),
                "backend": "safetensors", "shape": [2], "dtype": "float32", "device_at_save": "cpu",
                "layout": "strided", "bytes": 136, "sha256": "0".repeat(64),
            })
        };
        let doc = json!({
            "io_format_version": 1, "torchlens_version": "0.1.0", "torch_version": "2.5.0",
            "python_version": "3.11.7", "platform": "linux-x86_64", "created_at": "2026-01-01T00:00:00Z",
            "bundle_format": "directory", "n_layers": 2, "n_activation_blobs": 1, "n_gradient_blobs": 2,
            "n_auxiliary_blobs": 0,
            "metadata": {"relative_path": "metadata.json", "format": "json", "bytes": 2, "sha256": "0".repeat(64)},
            "tensors": [tensor(1, "activation"), tensor(2, "gradient"), tensor(3, "transformed_gradient")],
            "unsupported_tensors": [],
        });
        parse_manifest(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    /// One record and one output (nodes 0 and 1), with `info.gradients` set to `gradients`
    /// (left out when None).
    fn metadata(gradients: Option<Value>) -> Vec<u8> {
        let mut info = json!({"random_seed": 1});
        if let Some(g) = gradients {
            info["gradients"] = g;
        }
        let doc = json!({
            "schema": METADATA_SCHEMA, "version": 1, "model_name": "M", "info": info,
            "capture": {
                "strings": [""], "records": [[0, 0, 0, 0, 0, 0, [], [], 0]], "meta_ids": [0],
                "metas": [[[2], "float32", ""]], "module_stacks": [[]], "module_exits": [],
                "module_passes": [], "outputs": [[0, 0, 0]], "modules": [], "params": [],
            },
            "activations": [[0, 1], [1, 1]],
        });
        serde_json::to_vec(&doc).unwrap()
    }

    fn error_of(gradients: Value) -> String {
        parse_metadata(&metadata(Some(gradients)), &manifest())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn gradients_absent_null_or_valid_parse() {
        let m = manifest();
        assert!(parse_metadata(&metadata(None), &m).is_ok());
        assert!(parse_metadata(&metadata(Some(Value::Null)), &m).is_ok());
        let g = json!({
            "save_gradients": true, "gradients_to_save": "all", "has_gradients": true,
            "order": [1, 0], "selected": null, "gradient": [[0, 2], [1, 2]], "transformed_gradient": [[0, 3]],
        });
        let meta = parse_metadata(&metadata(Some(g.clone())), &m).unwrap();
        assert_eq!(meta.info["gradients"], g); // kept for the Python side as written
        assert!(parse_metadata(&metadata(Some(json!({"selected": [0, 1]}))), &m).is_ok());
    }

    #[test]
    fn gradient_pairs_must_name_a_blob_of_their_kind() {
        let e = error_of(json!({"gradient": [[0, 1]]}));
        assert!(e.contains("gradient entry [0, 1] refers to no gradient blob"), "{e}");
        let e = error_of(json!({"transformed_gradient": [[0, 2]]}));
        assert!(
            e.contains("transformed_gradient entry [0, 2] refers to no transformed_gradient blob"),
            "{e}"
        );
        let e = error_of(json!({"gradient": [[0, 9]]}));
        assert!(e.contains("refers to no gradient blob"), "{e}");
    }

    #[test]
    fn gradient_nodes_must_exist() {
        let e = error_of(json!({"gradient": [[2, 2]]}));
        assert!(e.contains("gradient entry [2, 2] names no node"), "{e}");
        let e = error_of(json!({"order": [0, 5]}));
        assert!(e.contains("node 5 out of range"), "{e}");
        let e = error_of(json!({"selected": [7]}));
        assert!(e.contains("node 7 out of range"), "{e}");
    }

    #[test]
    fn gradients_of_the_wrong_shape_are_schema_errors() {
        for g in [
            json!("all"),
            json!({"gradient": [[0]]}),
            json!({"gradient": [[0, -1]]}),
            json!({"order": "x"}),
        ] {
            let e = error_of(g.clone());
            assert!(e.contains("invalid bundle metadata: info.gradients"), "{g}: {e}");
        }
    }
}
