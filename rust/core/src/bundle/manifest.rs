//! `manifest.json`: the authoritative index of a bundle. [`parse_manifest`] is the only reader;
//! it checks the whole schema (types, ranges, paths, counts) before anything else is opened.

use serde_json::{Map, Value};

use super::blob::{dtype_by_name, nbytes};
use super::{IO_FORMAT_VERSION, blob_relative_path};
use crate::error::{CoreError, Result};

/// Tensor kinds a manifest may list.
pub const KINDS: &[&str] = &[
    "activation",
    "transformed_activation",
    "gradient",
    "transformed_gradient",
    "captured_arg",
    "child_version",
    "rng_state",
    "module_arg",
    "func_config",
    "module_meta",
    "grad_fn_grad",
];

/// Name of the metadata file the manifest points to.
pub const METADATA_FILE: &str = "metadata.json";

/// One validated tensor entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// 1-based blob id.
    pub blob_id: u64,
    /// One of [`KINDS`].
    pub kind: String,
    /// `blobs/<id>.safetensors`.
    pub relative_path: String,
    /// Torch dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// A validated manifest: the JSON value plus the typed tensor entries.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The whole document.
    pub value: Value,
    /// The tensor entries, in manifest order.
    pub tensors: Vec<TensorEntry>,
    /// Declared size of `metadata.json`.
    pub metadata_bytes: u64,
    /// Declared SHA-256 of `metadata.json`.
    pub metadata_sha256: String,
}

fn bad(msg: impl std::fmt::Display) -> CoreError {
    CoreError::bundle(format!("invalid manifest: {msg}"))
}

fn get<'a>(obj: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a Value> {
    obj.get(key).ok_or_else(|| bad(format!("{ctx}missing key {key:?}")))
}

fn get_u64(obj: &Map<String, Value>, key: &str, ctx: &str) -> Result<u64> {
    get(obj, key, ctx)?
        .as_u64()
        .ok_or_else(|| bad(format!("{ctx}{key:?} must be a non-negative int")))
}

fn get_str<'a>(obj: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a str> {
    get(obj, key, ctx)?
        .as_str()
        .ok_or_else(|| bad(format!("{ctx}{key:?} must be a string")))
}

fn check_sha(s: &str, ctx: &str) -> Result<()> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(bad(format!("{ctx}sha256 must be 64 lower-case hex digits")))
    }
}

/// Parses and validates a manifest. Errors name the first problem found.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let obj = value.as_object().ok_or_else(|| bad("top level must be an object"))?;
    let version = get_u64(obj, "io_format_version", "")?;
    if version > IO_FORMAT_VERSION {
        return Err(CoreError::bundle(format!(
            "bundle io_format_version {version} is newer than this torchlens supports ({IO_FORMAT_VERSION}); upgrade torchlens"
        )));
    }
    if version == 0 {
        return Err(bad("io_format_version must be >= 1"));
    }
    for key in [
        "torchlens_version",
        "torch_version",
        "python_version",
        "platform",
        "created_at",
    ] {
        get_str(obj, key, "")?;
    }
    let fmt = get_str(obj, "bundle_format", "")?;
    if fmt != "directory" {
        return Err(bad(format!("unsupported bundle_format {fmt:?}")));
    }
    get_u64(obj, "n_layers", "")?;
    let n_act = get_u64(obj, "n_activation_blobs", "")?;
    let n_grad = get_u64(obj, "n_gradient_blobs", "")?;
    let n_aux = get_u64(obj, "n_auxiliary_blobs", "")?;
    let meta = get(obj, "metadata", "")?
        .as_object()
        .ok_or_else(|| bad("\"metadata\" must be an object"))?;
    let mpath = get_str(meta, "relative_path", "metadata: ")?;
    if mpath != METADATA_FILE {
        return Err(bad(format!(
            "metadata: relative_path must be {METADATA_FILE:?}, got {mpath:?}"
        )));
    }
    let metadata_bytes = get_u64(meta, "bytes", "metadata: ")?;
    let metadata_sha256 = get_str(meta, "sha256", "metadata: ")?.to_owned();
    check_sha(&metadata_sha256, "metadata: ")?;
    let tensors = get(obj, "tensors", "")?
        .as_array()
        .ok_or_else(|| bad("\"tensors\" must be a list"))?;
    let mut entries = Vec::with_capacity(tensors.len());
    let mut seen = std::collections::HashSet::new();
    let (mut c_act, mut c_grad, mut c_aux) = (0u64, 0u64, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        let ctx = format!("tensors[{i}]: ");
        let t = t.as_object().ok_or_else(|| bad(format!("{ctx}must be an object")))?;
        let blob_id = get_u64(t, "blob_id", &ctx)?;
        if blob_id == 0 || blob_id > 9_999_999_999 {
            return Err(bad(format!("{ctx}blob_id {blob_id} out of range")));
        }
        if !seen.insert(blob_id) {
            return Err(bad(format!("{ctx}duplicate blob_id {blob_id}")));
        }
        let kind = get_str(t, "kind", &ctx)?;
        if !KINDS.contains(&kind) {
            return Err(bad(format!("{ctx}unknown kind {kind:?}")));
        }
        match kind {
            "activation" | "transformed_activation" => c_act += 1,
            "gradient" | "transformed_gradient" => c_grad += 1,
            _ => c_aux += 1,
        }
        get_str(t, "label", &ctx)?;
        let rel = get_str(t, "relative_path", &ctx)?;
        if rel != blob_relative_path(blob_id) {
            return Err(bad(format!(
                "{ctx}relative_path {rel:?} must be {:?} (paths outside blobs/ are refused)",
                blob_relative_path(blob_id)
            )));
        }
        let backend = get_str(t, "backend", &ctx)?;
        if backend != "safetensors" {
            return Err(bad(format!("{ctx}unsupported backend {backend:?}")));
        }
        let layout = get_str(t, "layout", &ctx)?;
        if layout != "strided" {
            return Err(bad(format!("{ctx}unsupported layout {layout:?}")));
        }
        get_str(t, "device_at_save", &ctx)?;
        let dtype = get_str(t, "dtype", &ctx)?;
        if dtype_by_name(dtype).is_none() {
            return Err(bad(format!("{ctx}unsupported dtype {dtype:?}")));
        }
        let shape = get(t, "shape", &ctx)?
            .as_array()
            .ok_or_else(|| bad(format!("{ctx}shape must be a list")))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| bad(format!("{ctx}shape entries must be non-negative ints")))
            })
            .collect::<Result<Vec<u64>>>()?;
        if shape.len() > 64 {
            return Err(bad(format!("{ctx}too many dimensions")));
        }
        let data = nbytes(dtype, &shape).map_err(|e| bad(format!("{ctx}{e}")))?;
        let bytes = get_u64(t, "bytes", &ctx)?;
        if bytes < data + 8 {
            return Err(bad(format!("{ctx}bytes {bytes} too small for {dtype} {shape:?}")));
        }
        let sha = get_str(t, "sha256", &ctx)?;
        check_sha(sha, &ctx)?;
        entries.push(TensorEntry {
            blob_id,
            kind: kind.to_owned(),
            relative_path: rel.to_owned(),
            dtype: dtype.to_owned(),
            shape,
            bytes,
            sha256: sha.to_owned(),
        });
    }
    if (c_act, c_grad, c_aux) != (n_act, n_grad, n_aux) {
        return Err(bad(format!(
            "blob counts (activation {n_act}, gradient {n_grad}, auxiliary {n_aux}) do not match the tensor list ({c_act}, {c_grad}, {c_aux})"
        )));
    }
    let unsupported = get(obj, "unsupported_tensors", "")?
        .as_array()
        .ok_or_else(|| bad("\"unsupported_tensors\" must be a list"))?;
    for (i, u) in unsupported.iter().enumerate() {
        let ctx = format!("unsupported_tensors[{i}]: ");
        let u = u.as_object().ok_or_else(|| bad(format!("{ctx}must be an object")))?;
        for key in ["label", "kind", "reason"] {
            get_str(u, key, &ctx)?;
        }
    }
    Ok(Manifest {
        value,
        tensors: entries,
        metadata_bytes,
        metadata_sha256,
    })
}
