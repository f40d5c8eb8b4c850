//! `manifest.json`: the authoritative index of a bundle. [`parse_manifest`] is the only reader;
//! it deserializes the typed schema (serde) and checks ranges, paths and counts before anything
//! else is opened. [`version_notices`] is the compatibility policy of a loaded bundle.

use serde::Deserialize;

use super::safetensors::{MAX_DIMS, dtype_by_name, nbytes};
use super::shard::{MAX_SHARD_HEADER, MAX_SHARD_INDEX, shard_relative_path};
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
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TensorEntry {
    /// 1-based blob id.
    pub blob_id: u64,
    /// One of [`KINDS`].
    pub kind: String,
    /// Label of the layer the tensor belongs to.
    pub label: String,
    /// `blobs/<id>.safetensors` (format 1) or the path of its shard (format 2).
    pub relative_path: String,
    /// Torch dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Device the tensor was on when saved (informative).
    pub device_at_save: String,
    /// File size (format 1).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// 1-based index of its shard in the manifest's `shards` (format 2).
    #[serde(default)]
    pub shard: Option<u64>,
    /// Offset of its first byte in the shard file (format 2).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Number of data bytes (format 2).
    #[serde(default)]
    pub length: Option<u64>,
    /// SHA-256 of the file (format 1) or of the tensor's bytes (format 2).
    pub sha256: String,
    backend: String,
    layout: String,
}

/// One shard file of a format-2 bundle.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ShardEntry {
    /// `shards/<5-digit index>.safetensors`.
    pub relative_path: String,
    /// File size.
    pub bytes: u64,
    /// Offset of the data section (8 + header length).
    pub data_start: u64,
}

/// A validated manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Bundle layout version (<= [`IO_FORMAT_VERSION`]).
    pub io_format_version: u64,
    /// Version of torchlens that wrote the bundle.
    pub torchlens_version: String,
    /// Version of torch that wrote the bundle.
    pub torch_version: String,
    /// Number of layers of the saved log.
    pub n_layers: u64,
    /// The tensor entries, in manifest order.
    pub tensors: Vec<TensorEntry>,
    /// The shard files (format 2; empty in format 1).
    pub shards: Vec<ShardEntry>,
    /// Declared size of `metadata.json`.
    pub metadata_bytes: u64,
    /// Declared SHA-256 of `metadata.json`.
    pub metadata_sha256: String,
}

#[derive(Deserialize)]
struct MetadataRef {
    relative_path: String,
    bytes: u64,
    sha256: String,
}

#[derive(Deserialize)]
#[allow(dead_code)] // unsupported entries are informative: their fields are type-checked only
struct Unsupported {
    label: String,
    kind: String,
    reason: String,
}

#[derive(Deserialize)]
#[allow(dead_code)] // the descriptive strings are type-checked only
struct Document {
    io_format_version: u64,
    torchlens_version: String,
    torch_version: String,
    python_version: String,
    platform: String,
    created_at: String,
    bundle_format: String,
    n_layers: u64,
    n_activation_blobs: u64,
    n_gradient_blobs: u64,
    n_auxiliary_blobs: u64,
    metadata: MetadataRef,
    tensors: Vec<TensorEntry>,
    #[serde(default)]
    shards: Option<Vec<ShardEntry>>,
    unsupported_tensors: Vec<Unsupported>,
}

/// Read first when the whole document does not parse, so that a bundle of a newer layout is
/// reported as such rather than as a schema error.
#[derive(Deserialize)]
struct VersionProbe {
    io_format_version: u64,
}

fn bad(msg: impl std::fmt::Display) -> CoreError {
    CoreError::bundle(format!("invalid manifest: {msg}"))
}

fn check_version(version: u64) -> Result<()> {
    if version > IO_FORMAT_VERSION {
        return Err(CoreError::bundle(format!(
            "bundle io_format_version {version} is newer than this torchlens supports ({IO_FORMAT_VERSION}); upgrade torchlens"
        )));
    }
    if version == 0 {
        return Err(bad("io_format_version must be >= 1"));
    }
    Ok(())
}

/// Checks a lower-case hex SHA-256.
pub(crate) fn check_sha(s: &str, ctx: &str) -> Result<()> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(bad(format!("{ctx}sha256 must be 64 lower-case hex digits")))
    }
}

fn check_shards(shards: &[ShardEntry]) -> Result<()> {
    if shards.len() as u64 > MAX_SHARD_INDEX {
        return Err(bad("too many shards"));
    }
    for (i, s) in shards.iter().enumerate() {
        let expect = shard_relative_path(i as u64 + 1);
        if s.relative_path != expect {
            return Err(bad(format!(
                "shards[{i}]: relative_path {:?} must be {expect:?} (paths outside shards/ are refused)",
                s.relative_path
            )));
        }
        let ok = s.data_start >= 8 && s.data_start % 8 == 0 && s.data_start - 8 <= MAX_SHARD_HEADER;
        if !ok || s.data_start > s.bytes {
            return Err(bad(format!(
                "shards[{i}]: data_start {} invalid for a file of {} bytes",
                s.data_start, s.bytes
            )));
        }
    }
    Ok(())
}

/// Format 2: the tensor's shard, path and byte range; ranges must lie in the shard's data
/// section and not overlap (`ranges` collects them per shard).
fn check_placement(
    t: &TensorEntry,
    shards: &[ShardEntry],
    data: u64,
    ranges: &mut [Vec<(u64, u64)>],
    ctx: &str,
) -> Result<()> {
    let (Some(shard), Some(offset), Some(length), None) = (t.shard, t.offset, t.length, t.bytes) else {
        return Err(bad(format!(
            "{ctx}io format 2 entries have shard, offset and length (and no bytes)"
        )));
    };
    let Some(s) = shard.checked_sub(1).and_then(|i| shards.get(i as usize)) else {
        return Err(bad(format!("{ctx}shard {shard} is not listed")));
    };
    if t.relative_path != s.relative_path {
        return Err(bad(format!(
            "{ctx}relative_path {:?} must be its shard's {:?} (paths outside shards/ are refused)",
            t.relative_path, s.relative_path
        )));
    }
    if length != data {
        return Err(bad(format!(
            "{ctx}length {length} does not match {} {:?} ({data} bytes)",
            t.dtype, t.shape
        )));
    }
    let end = offset.checked_add(length);
    if offset < s.data_start || end.is_none_or(|e| e > s.bytes) {
        return Err(bad(format!(
            "{ctx}byte range [{offset}, {offset}+{length}) lies outside the data of {} ({} bytes)",
            s.relative_path, s.bytes
        )));
    }
    ranges[shard as usize - 1].push((offset, offset + length));
    Ok(())
}

fn check_tensor(t: &TensorEntry, version: u64, ctx: &str) -> Result<u64> {
    if t.blob_id == 0 || t.blob_id > 9_999_999_999 {
        return Err(bad(format!("{ctx}blob_id {} out of range", t.blob_id)));
    }
    if !KINDS.contains(&t.kind.as_str()) {
        return Err(bad(format!("{ctx}unknown kind {:?}", t.kind)));
    }
    if version == 1 {
        let expect = blob_relative_path(t.blob_id);
        if t.relative_path != expect {
            return Err(bad(format!(
                "{ctx}relative_path {:?} must be {expect:?} (paths outside blobs/ are refused)",
                t.relative_path
            )));
        }
    }
    if t.backend != "safetensors" {
        return Err(bad(format!("{ctx}unsupported backend {:?}", t.backend)));
    }
    if t.layout != "strided" {
        return Err(bad(format!("{ctx}unsupported layout {:?}", t.layout)));
    }
    if dtype_by_name(&t.dtype).is_none() {
        return Err(bad(format!("{ctx}unsupported dtype {:?}", t.dtype)));
    }
    if t.shape.len() > MAX_DIMS {
        return Err(bad(format!("{ctx}too many dimensions")));
    }
    let data = nbytes(&t.dtype, &t.shape).map_err(|e| bad(format!("{ctx}{e}")))?;
    if version == 1 {
        let (Some(bytes), None, None, None) = (t.bytes, t.shard, t.offset, t.length) else {
            return Err(bad(format!("{ctx}io format 1 entries have bytes (and no shard)")));
        };
        if bytes < data.saturating_add(8) {
            return Err(bad(format!(
                "{ctx}bytes {bytes} too small for {} {:?}",
                t.dtype, t.shape
            )));
        }
    }
    check_sha(&t.sha256, ctx)?;
    Ok(data)
}

/// Parses and validates a manifest. Errors name the first problem found.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    let doc: Document = match serde_json::from_slice(bytes) {
        Ok(doc) => doc,
        Err(e) => {
            if let Ok(probe) = serde_json::from_slice::<VersionProbe>(bytes) {
                check_version(probe.io_format_version)?;
            }
            return Err(bad(if e.is_syntax() || e.is_eof() {
                format!("not valid JSON ({e})")
            } else {
                e.to_string()
            }));
        }
    };
    check_version(doc.io_format_version)?;
    if doc.bundle_format != "directory" {
        return Err(bad(format!("unsupported bundle_format {:?}", doc.bundle_format)));
    }
    if doc.metadata.relative_path != METADATA_FILE {
        return Err(bad(format!(
            "metadata: relative_path must be {METADATA_FILE:?}, got {:?}",
            doc.metadata.relative_path
        )));
    }
    check_sha(&doc.metadata.sha256, "metadata: ")?;
    let version = doc.io_format_version;
    let shards = doc.shards.unwrap_or_default();
    if version == 1 && !shards.is_empty() {
        return Err(bad("io format 1 bundles have no shards"));
    }
    check_shards(&shards)?;
    let mut ranges: Vec<Vec<(u64, u64)>> = vec![Vec::new(); shards.len()];
    let mut seen = std::collections::HashSet::new();
    let (mut c_act, mut c_grad, mut c_aux) = (0u64, 0u64, 0u64);
    for (i, t) in doc.tensors.iter().enumerate() {
        let ctx = format!("tensors[{i}]: ");
        if !seen.insert(t.blob_id) {
            return Err(bad(format!("{ctx}duplicate blob_id {}", t.blob_id)));
        }
        let data = check_tensor(t, version, &ctx)?;
        if version >= 2 {
            check_placement(t, &shards, data, &mut ranges, &ctx)?;
        }
        match t.kind.as_str() {
            "activation" | "transformed_activation" => c_act += 1,
            "gradient" | "transformed_gradient" => c_grad += 1,
            _ => c_aux += 1,
        }
    }
    let (n_act, n_grad, n_aux) = (doc.n_activation_blobs, doc.n_gradient_blobs, doc.n_auxiliary_blobs);
    if (c_act, c_grad, c_aux) != (n_act, n_grad, n_aux) {
        return Err(bad(format!(
            "blob counts (activation {n_act}, gradient {n_grad}, auxiliary {n_aux}) do not match the tensor list ({c_act}, {c_grad}, {c_aux})"
        )));
    }
    for (i, r) in ranges.iter_mut().enumerate() {
        r.sort_unstable();
        if r.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(bad(format!("byte ranges of tensors in shards[{i}] overlap")));
        }
    }
    Ok(Manifest {
        io_format_version: doc.io_format_version,
        torchlens_version: doc.torchlens_version,
        torch_version: doc.torch_version,
        n_layers: doc.n_layers,
        tensors: doc.tensors,
        shards,
        metadata_bytes: doc.metadata.bytes,
        metadata_sha256: doc.metadata.sha256,
    })
}

/// Something a loader should tell the user about a bundle it can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Worth a `UserWarning`.
    Warning(String),
    /// Worth a `DeprecationWarning`.
    Deprecation(String),
}

/// Leading numeric components of a version (`"2.15.0+cu132"` -> `[2, 15]` for `n = 2`), or
/// None when one of them is not a number.
fn numeric(version: &str, n: usize) -> Option<Vec<u64>> {
    let core = version.split('+').next().unwrap_or_default();
    core.split('.').take(n).map(|x| x.trim().parse().ok()).collect()
}

/// The version policy of a bundle: another torch major version is an error, another minor
/// version and a newer torchlens are notices. Every older layout is read without a notice.
pub fn version_notices(m: &Manifest, torch_now: &str, torchlens_now: &str) -> Result<Vec<Notice>> {
    let mut notes = Vec::new();
    let theirs = &m.torch_version;
    if theirs != torch_now {
        let (Some(ta), Some(oa)) = (numeric(theirs, 2), numeric(torch_now, 2)) else {
            return Err(CoreError::bundle(format!(
                "bundle was written with torch {theirs:?}, which cannot be compared with torch {torch_now}"
            )));
        };
        if ta.first() != oa.first() {
            return Err(CoreError::bundle(format!(
                "bundle was written with torch {theirs}; torch {torch_now} has another major version"
            )));
        }
        if ta.get(1..) != oa.get(1..) {
            notes.push(Notice::Warning(format!(
                "bundle was written with torch {theirs}, loading with torch {torch_now}"
            )));
        }
    }
    let tl = &m.torchlens_version;
    let newer = match (numeric(tl, 3), numeric(torchlens_now, 3)) {
        (Some(a), Some(b)) => a > b,
        _ => tl != torchlens_now,
    };
    if newer {
        notes.push(Notice::Warning(format!(
            "bundle was written by a newer torchlens ({tl})"
        )));
    }
    Ok(notes)
}
