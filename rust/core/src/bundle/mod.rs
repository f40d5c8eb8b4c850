//! Portable bundles (spec §9): tensors in safetensors files, a JSON metadata file and a JSON
//! manifest written last. io format 2 packs the tensors into shard files; format 1 (one file per
//! tensor) is still read. Nothing here executes stored content.
//!
//! * [`safetensors`]: the one safetensors reader/writer and dtype table (bundles and fastlog).
//! * [`shard`]: the shard files of format 2 (`shards/<5-digit index>.safetensors`).
//! * [`blob`]: the single-tensor safetensors files of format 1 (`blobs/<10-digit id>.safetensors`).
//! * [`manifest`]: schema validation of `manifest.json` (the fuzzed reader).
//! * [`metadata`]: schema validation of `metadata.json` (the capture data of a log).
//! * [`journal`]: the journal of a streamed capture, read back by recovery.
//! * [`dir`]: directory checks (symlinks, missing/extra blobs), atomic commit, recovery scan.
//! * [`writer`]: the background writer thread that streams blobs while the forward runs.
//! * [`fastlog_store`]: the streaming writer of fastlog directories (spec §10.8).

pub mod blob;
pub mod dir;
pub mod fastlog_store;
pub mod journal;
pub mod manifest;
pub mod metadata;
pub mod safetensors;
pub mod shard;
pub mod writer;

use sha2::{Digest, Sha256};

/// Version of the bundle layout this library writes and the newest it reads (2: tensors packed
/// into shard files; 1: one file per tensor, still read and, on request, written).
pub const IO_FORMAT_VERSION: u64 = 2;

/// Largest `manifest.json` / `metadata.json` the reader accepts (bytes).
pub const MAX_JSON_BYTES: u64 = 1 << 30;

/// Lower-case hex of a SHA-256 digest.
pub fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of a byte slice, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Relative path of a blob: `blobs/0000000042.safetensors`.
pub fn blob_relative_path(blob_id: u64) -> String {
    format!("blobs/{blob_id:010}.safetensors")
}
