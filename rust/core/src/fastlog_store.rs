//! Streaming writer of fastlog directories (spec §10.8).
//!
//! A [`FastlogWriter`] owns one background thread fed through a channel. Each [`FastlogJob`]
//! carries the bytes of one safetensors payload (header + tensor chunks, copied by the caller)
//! and one JSON line for `fastlog_index.jsonl`. The thread writes the payload file, hashes it
//! (SHA-256), substitutes the digest for the [`SHA_PLACEHOLDER`] in the line and only then
//! appends the line, flushed, to the index: every complete index line names a complete blob,
//! so an interrupted directory is recoverable up to its last full line.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};

/// Name of the append-only index inside a fastlog directory.
pub const INDEX_FILE: &str = "fastlog_index.jsonl";

/// Text in an index line that the writer replaces by the payload's SHA-256 (lower-case hex).
pub const SHA_PLACEHOLDER: &str = "@SHA256@";

/// One retained record: an optional payload file and its index line.
#[derive(Debug, Default)]
pub struct FastlogJob {
    /// Payload path relative to the directory (`blobs/0000000001.safetensors`); empty for a
    /// metadata-only record.
    pub relative_path: String,
    /// The safetensors JSON header (already padded by the caller).
    pub header: Vec<u8>,
    /// Raw tensor bytes, written in order after the header.
    pub chunks: Vec<Vec<u8>>,
    /// The JSON object for the index, without a trailing newline.
    pub index_line: String,
}

/// Rejects absolute paths and `..` so a job can only write inside its directory.
fn checked_relative(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(CoreError::Bundle(format!("invalid fastlog payload path {path:?}")));
    }
    Ok(p.to_path_buf())
}

fn hex(digest: &[u8]) -> String {
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn io_err(ctx: &str, path: &Path, err: &std::io::Error) -> CoreError {
    CoreError::Bundle(format!("fastlog {ctx} {}: {err}", path.display()))
}

/// Writes one job; returns the hex digest of the payload file (empty when there is none).
fn write_job(root: &Path, index: &mut File, job: &FastlogJob) -> Result<()> {
    let mut line = job.index_line.clone();
    if !job.relative_path.is_empty() {
        let rel = checked_relative(&job.relative_path)?;
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, &e))?;
        }
        let file = File::create(&path).map_err(|e| io_err("cannot create", &path, &e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        let len = (job.header.len() as u64).to_le_bytes();
        for part in std::iter::once(&len[..])
            .chain(std::iter::once(job.header.as_slice()))
            .chain(job.chunks.iter().map(Vec::as_slice))
        {
            hasher.update(part);
            out.write_all(part).map_err(|e| io_err("cannot write", &path, &e))?;
        }
        out.flush().map_err(|e| io_err("cannot write", &path, &e))?;
        line = line.replacen(SHA_PLACEHOLDER, &hex(&hasher.finalize()), 1);
    }
    line.push('\n');
    index
        .write_all(line.as_bytes())
        .and_then(|()| index.flush())
        .map_err(|e| io_err("cannot append to", &root.join(INDEX_FILE), &e))
}

fn run(root: &Path, mut index: File, rx: &Receiver<FastlogJob>) -> Result<u64> {
    let mut written = 0u64;
    let mut first_error: Option<CoreError> = None;
    for job in rx {
        if first_error.is_some() {
            continue; // drain so senders never block; the error is reported by `finish`
        }
        match write_job(root, &mut index, &job) {
            Ok(()) => written += 1,
            Err(e) => first_error = Some(e),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// Background writer of one fastlog directory.
#[derive(Debug)]
pub struct FastlogWriter {
    tx: Option<SyncSender<FastlogJob>>,
    handle: Option<JoinHandle<Result<u64>>>,
}

impl FastlogWriter {
    /// Opens (appending) `root/fastlog_index.jsonl` and starts the writer thread. At most
    /// `max_queued` jobs wait in the channel; `submit` blocks beyond that (bounded memory).
    pub fn new(root: &Path, max_queued: usize) -> Result<Self> {
        let index_path = root.join(INDEX_FILE);
        let index = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&index_path)
            .map_err(|e| io_err("cannot open", &index_path, &e))?;
        let (tx, rx) = sync_channel::<FastlogJob>(max_queued.max(1));
        let root = root.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("torchlens-fastlog-writer".into())
            .spawn(move || run(&root, index, &rx))
            .map_err(|e| CoreError::Bundle(format!("cannot start the fastlog writer thread: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queues one job (blocking while the queue is full). Fails if the writer already stopped (after an I/O error or `finish`).
    pub fn submit(&self, job: FastlogJob) -> Result<()> {
        if !job.relative_path.is_empty() {
            checked_relative(&job.relative_path)?;
        }
        match &self.tx {
            Some(tx) => tx
                .send(job)
                .map_err(|_| CoreError::Bundle("the fastlog writer thread stopped after an error".into())),
            None => Err(CoreError::Bundle("the fastlog writer is already finished".into())),
        }
    }

    /// Writes everything queued, stops the thread and returns the number of records written.
    pub fn finish(&mut self) -> Result<u64> {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| CoreError::Bundle("the fastlog writer thread panicked".into()))?,
            None => Ok(0),
        }
    }
}

impl Drop for FastlogWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tl_fastlog_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_blob_then_line_with_digest() {
        let d = tmpdir("basic");
        let mut w = FastlogWriter::new(&d, 4).unwrap();
        w.submit(FastlogJob {
            relative_path: "blobs/0000000001.safetensors".into(),
            header: b"{}      ".to_vec(),
            chunks: vec![vec![1, 2, 3, 4]],
            index_line: format!("{{\"sha256\":\"{SHA_PLACEHOLDER}\"}}"),
        })
        .unwrap();
        w.submit(FastlogJob {
            index_line: "{}".into(),
            ..FastlogJob::default()
        })
        .unwrap();
        assert_eq!(w.finish().unwrap(), 2);
        let blob = std::fs::read(d.join("blobs/0000000001.safetensors")).unwrap();
        assert_eq!(&blob[..8], &8u64.to_le_bytes());
        assert_eq!(blob.len(), 8 + 8 + 4);
        let index = std::fs::read_to_string(d.join(INDEX_FILE)).unwrap();
        let expect = hex(&Sha256::digest(&blob));
        assert_eq!(index, format!("{{\"sha256\":\"{expect}\"}}\n{{}}\n"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rejects_escaping_paths() {
        let d = tmpdir("escape");
        let w = FastlogWriter::new(&d, 4).unwrap();
        for bad in ["../x", "/etc/passwd", "blobs/../../x"] {
            let job = FastlogJob {
                relative_path: bad.into(),
                index_line: "{}".into(),
                ..FastlogJob::default()
            };
            assert!(w.submit(job).is_err(), "{bad}");
        }
        drop(w);
        let _ = std::fs::remove_dir_all(&d);
    }
}
