//! Streaming writer of fastlog directories (spec §10.8).
//!
//! A [`FastlogWriter`] owns one background thread fed through a channel. Each [`FastlogJob`]
//! carries the tensors of one safetensors payload (bytes copied by the caller; the header is
//! encoded by [`super::safetensors`], the same code as bundle blobs) and one JSON line for
//! `fastlog_index.jsonl`. The thread writes the payload file, hashes it (SHA-256), substitutes
//! the digest for the [`SHA_PLACEHOLDER`] in the line and only then appends the line, flushed,
//! to the index: every complete index line names a complete blob, so an interrupted directory
//! is recoverable up to its last full line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::safetensors::{self, nbytes};
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
    /// `(name, torch dtype, shape)` of each tensor, laid out in this order.
    pub tensors: Vec<(String, String, Vec<u64>)>,
    /// String metadata of the header (`__metadata__`).
    pub metadata: Vec<(String, String)>,
    /// Raw bytes of each tensor, in the order of `tensors`.
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

impl FastlogJob {
    /// Checks the path and that every chunk matches its tensor, then encodes the header.
    fn header(&self) -> Result<Vec<u8>> {
        checked_relative(&self.relative_path)?;
        if self.tensors.len() != self.chunks.len() {
            return Err(CoreError::Bundle(format!(
                "fastlog payload has {} tensors and {} buffers",
                self.tensors.len(),
                self.chunks.len()
            )));
        }
        for ((name, dtype, shape), chunk) in self.tensors.iter().zip(&self.chunks) {
            let need = nbytes(dtype, shape)?;
            if chunk.len() as u64 != need {
                return Err(CoreError::Bundle(format!(
                    "fastlog tensor {name:?} has {} bytes, dtype {dtype} and shape {shape:?} need {need}",
                    chunk.len()
                )));
            }
        }
        let specs: Vec<(&str, &str, &[u64])> = self
            .tensors
            .iter()
            .map(|(n, d, s)| (n.as_str(), d.as_str(), s.as_slice()))
            .collect();
        safetensors::encode_header(&specs, &self.metadata)
    }
}

fn io_err(ctx: &str, path: &Path, err: &std::io::Error) -> CoreError {
    CoreError::Bundle(format!("fastlog {ctx} {}: {err}", path.display()))
}

/// Writes one job: its payload file (if any), then its index line.
fn write_job(root: &Path, index: &mut File, job: &FastlogJob) -> Result<()> {
    let mut line = job.index_line.clone();
    if !job.relative_path.is_empty() {
        let rel = checked_relative(&job.relative_path)?;
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, &e))?;
        }
        let header = job.header()?;
        let written = safetensors::write_file(&path, &header, job.chunks.iter().map(Vec::as_slice))?;
        line = line.replacen(SHA_PLACEHOLDER, &written.sha256, 1);
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

    /// Queues one job (blocking while the queue is full). Fails at once on a bad path, dtype or
    /// buffer size, and if the writer already stopped (after an I/O error or `finish`).
    pub fn submit(&self, job: FastlogJob) -> Result<()> {
        if !job.relative_path.is_empty() {
            job.header()?;
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
    use crate::bundle::hex;
    use sha2::{Digest, Sha256};

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
            tensors: vec![("data".into(), "int16".into(), vec![2])],
            metadata: vec![],
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
        let (_, tensors) = safetensors::read_file(&d.join("blobs/0000000001.safetensors")).unwrap();
        assert_eq!(tensors[0].0.dtype, "int16");
        assert_eq!(tensors[0].1, [1, 2, 3, 4]);
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
