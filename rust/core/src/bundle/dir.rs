//! Bundle directories: validation on load, atomic commit, small metadata files.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::MAX_JSON_BYTES;
use super::blob::{WrittenBlob, scan_blob};
use super::manifest::{METADATA_FILE, Manifest, Notice, parse_manifest, version_notices};
use super::metadata::{Metadata, parse_metadata};
use super::sha256_hex;
use super::shard::{SHARD_DIR, TENSOR_JOURNAL};
use crate::error::{CoreError, Result};

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Journal of a streamed capture (metadata chunks, one JSON document per line).
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// Marker of a failed save or capture.
pub const PARTIAL_FILE: &str = "PARTIAL";

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> CoreError {
    let ctx = format!("{what} {}", path.display());
    move |e| CoreError::io(ctx.clone(), &e)
}

/// Errors when `path` is a symbolic link.
pub fn refuse_symlink(path: &Path, what: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(CoreError::bundle(format!(
            "refusing symlinked {what}: {}",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Reads a whole file that must not exceed `max` bytes.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(io_err("cannot open", path))?;
    let len = f.metadata().map_err(io_err("cannot stat", path))?.len();
    if len > max {
        return Err(CoreError::bundle(format!(
            "{} is too large ({len} bytes)",
            path.display()
        )));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("cannot read", path))?;
    Ok(buf)
}

/// Result of [`open_bundle`]: the validated manifest and the unexpected files in `blobs/`
/// (format 1) or `shards/` (format 2).
#[derive(Debug)]
pub struct OpenedBundle {
    /// The validated manifest.
    pub manifest: Manifest,
    /// Names of files in `blobs/` (format 1) or `shards/` (format 2, as `shards/<name>`) that
    /// the manifest does not list.
    pub extra_files: Vec<String>,
}

/// Validates a bundle directory without reading any tensor data: symlinks, manifest schema,
/// presence and size of `metadata.json` and of every blob, unexpected files.
pub fn open_bundle(dir: &Path) -> Result<OpenedBundle> {
    refuse_symlink(dir, "bundle directory")?;
    if !dir.is_dir() {
        return Err(CoreError::bundle(format!(
            "no bundle at {}: not a directory",
            dir.display()
        )));
    }
    let mpath = dir.join(MANIFEST_FILE);
    refuse_symlink(&mpath, "manifest")?;
    if !mpath.exists() {
        let hint = if dir.join(JOURNAL_FILE).exists() || dir.join(PARTIAL_FILE).exists() {
            "; it is an incomplete (interrupted or failed) capture: call torchlens.recover_bundle(path) to turn what was written into a bundle"
        } else {
            ""
        };
        return Err(CoreError::bundle(format!(
            "{} has no manifest.json{hint}",
            dir.display()
        )));
    }
    let manifest = parse_manifest(&read_limited(&mpath, MAX_JSON_BYTES)?)?;
    let meta = dir.join(METADATA_FILE);
    refuse_symlink(&meta, "metadata file")?;
    let mlen = fs::metadata(&meta)
        .map_err(|_| CoreError::bundle(format!("missing {}", meta.display())))?
        .len();
    if mlen != manifest.metadata_bytes {
        return Err(CoreError::bundle(format!(
            "{} has {mlen} bytes, the manifest says {} (truncated?)",
            meta.display(),
            manifest.metadata_bytes
        )));
    }
    let extra_files = if manifest.io_format_version >= 2 {
        check_shard_files(dir, &manifest)?
    } else {
        check_blob_files(dir, &manifest)?
    };
    Ok(OpenedBundle { manifest, extra_files })
}

/// Format 1: every listed blob exists with its size; returns the unexpected names in `blobs/`.
fn check_blob_files(dir: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let blobs = dir.join("blobs");
    refuse_symlink(&blobs, "blobs directory")?;
    let mut missing = Vec::new();
    for t in &manifest.tensors {
        let p = dir.join(&t.relative_path);
        refuse_symlink(&p, "blob")?;
        match fs::metadata(&p) {
            Ok(m) if m.is_file() => {
                if Some(m.len()) != t.bytes {
                    return Err(CoreError::bundle(format!(
                        "blob_id={} ({}) has {} bytes, the manifest says {} (truncated?)",
                        t.blob_id,
                        t.relative_path,
                        m.len(),
                        t.bytes.unwrap_or_default()
                    )));
                }
            }
            _ => missing.push(t.blob_id),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(20).map(ToString::to_string).collect();
        return Err(CoreError::bundle(format!(
            "{} blob(s) listed in the manifest are missing: blob_id {}{}",
            missing.len(),
            shown.join(", "),
            if missing.len() > 20 { ", ..." } else { "" }
        )));
    }
    let mut extra_files = Vec::new();
    if blobs.is_dir() {
        let listed: std::collections::HashSet<String> = manifest
            .tensors
            .iter()
            .filter_map(|t| t.relative_path.strip_prefix("blobs/").map(str::to_owned))
            .collect();
        for e in fs::read_dir(&blobs).map_err(io_err("cannot list", &blobs))? {
            let e = e.map_err(io_err("cannot list", &blobs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !listed.contains(&name) {
                extra_files.push(name);
            }
        }
        extra_files.sort();
    }
    Ok(extra_files)
}

/// Format 2: every listed shard exists with its size (tensor ranges were checked against the
/// listed sizes by the manifest reader); returns the unexpected names in `shards/`.
fn check_shard_files(dir: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let sdir = dir.join(SHARD_DIR);
    refuse_symlink(&sdir, "shards directory")?;
    let mut missing = Vec::new();
    for s in &manifest.shards {
        let p = dir.join(&s.relative_path);
        refuse_symlink(&p, "shard")?;
        match fs::metadata(&p) {
            Ok(m) if m.is_file() => {
                if m.len() != s.bytes {
                    return Err(CoreError::bundle(format!(
                        "{} has {} bytes, the manifest says {} (truncated?)",
                        s.relative_path,
                        m.len(),
                        s.bytes
                    )));
                }
            }
            _ => missing.push(s.relative_path.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(CoreError::bundle(format!(
            "{} shard file(s) listed in the manifest are missing: {}",
            missing.len(),
            missing.join(", ")
        )));
    }
    let mut extra_files = Vec::new();
    if sdir.is_dir() {
        let listed: std::collections::HashSet<&str> = manifest
            .shards
            .iter()
            .filter_map(|s| s.relative_path.strip_prefix("shards/"))
            .collect();
        for e in fs::read_dir(&sdir).map_err(io_err("cannot list", &sdir))? {
            let e = e.map_err(io_err("cannot list", &sdir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !listed.contains(name.as_str()) {
                extra_files.push(format!("shards/{name}"));
            }
        }
        extra_files.sort();
    }
    Ok(extra_files)
}

/// Reads `metadata.json` and checks its size and checksum against the manifest.
pub fn read_metadata(dir: &Path, manifest: &Manifest) -> Result<Vec<u8>> {
    let path = dir.join(METADATA_FILE);
    refuse_symlink(&path, "metadata file")?;
    let data = read_limited(&path, MAX_JSON_BYTES)?;
    if data.len() as u64 != manifest.metadata_bytes || sha256_hex(&data) != manifest.metadata_sha256 {
        return Err(CoreError::bundle(format!("checksum mismatch for {}", path.display())));
    }
    Ok(data)
}

/// A bundle read for loading: manifest and metadata validated, nothing of the tensors read.
#[derive(Debug)]
pub struct LoadedBundle {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The validated metadata.
    pub metadata: Metadata,
    /// Unexpected files in `blobs/` (none of them a copy of a listed blob).
    pub extra_files: Vec<String>,
    /// What the version policy has to say (warnings for the caller to show).
    pub notices: Vec<Notice>,
}

/// Opens a bundle for loading: [`open_bundle`], the version policy against the running
/// versions, `metadata.json` (checksum and schema). An unexpected file in `blobs/` that is a
/// copy of a listed blob is an error (a renamed blob would otherwise go unnoticed).
pub fn load_bundle(dir: &Path, torch_version: &str, torchlens_version: &str) -> Result<LoadedBundle> {
    let OpenedBundle { manifest, extra_files } = open_bundle(dir)?;
    let notices = version_notices(&manifest, torch_version, torchlens_version)?;
    if !extra_files.is_empty() && manifest.io_format_version == 1 {
        let shas: std::collections::HashSet<&str> = manifest.tensors.iter().map(|t| t.sha256.as_str()).collect();
        for name in &extra_files {
            let p = dir.join("blobs").join(name);
            let plain = fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
            if plain && scan_blob(&p).is_ok_and(|(_, w)| shas.contains(w.sha256.as_str())) {
                return Err(CoreError::bundle(format!(
                    "unexpected file blobs/{name} duplicates a listed blob"
                )));
            }
        }
    }
    let metadata = parse_metadata(&read_metadata(dir, &manifest)?, &manifest)?;
    Ok(LoadedBundle {
        manifest,
        metadata,
        extra_files,
        notices,
    })
}

/// Writes a small file durably (`.partial`, fsync, rename) and returns its size and checksum.
pub fn write_file(path: &Path, data: &[u8]) -> Result<WrittenBlob> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    {
        let mut f = File::create(&partial).map_err(io_err("cannot create", &partial))?;
        f.write_all(data).map_err(io_err("cannot write", &partial))?;
        f.sync_all().map_err(io_err("cannot sync", &partial))?;
    }
    fs::rename(&partial, path).map_err(io_err("cannot rename", &partial))?;
    Ok(WrittenBlob {
        bytes: data.len() as u64,
        sha256: sha256_hex(data),
    })
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Commits a bundle: validates `manifest` (the same reader as on load), writes it last into
/// `tmp`, then renames `tmp` to `target`, which must not exist.
pub fn commit(tmp: &Path, target: &Path, manifest: &[u8]) -> Result<()> {
    parse_manifest(manifest)?;
    refuse_symlink(target, "bundle target")?;
    if fs::symlink_metadata(target).is_ok() {
        return Err(CoreError::bundle(format!(
            "Bundle path already exists: {}",
            target.display()
        )));
    }
    sync_dir(&tmp.join("blobs"));
    sync_dir(&tmp.join(SHARD_DIR));
    write_file(&tmp.join(MANIFEST_FILE), manifest)?;
    let _ = fs::remove_file(tmp.join(JOURNAL_FILE));
    let _ = fs::remove_file(tmp.join(TENSOR_JOURNAL));
    sync_dir(tmp);
    fs::rename(tmp, target).map_err(io_err("cannot rename bundle into", target))?;
    if let Some(parent) = target.parent() {
        sync_dir(parent);
    }
    Ok(())
}
