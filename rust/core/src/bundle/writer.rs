//! Background writers: tensors queued by the capture thread are written (and checksummed) on a few
//! separate threads, one file per tensor (io format 1) or appended to shard files (format 2: the
//! threads checksum in parallel, the appends to the open shard are serialized). The bytes queued
//! at any time are bounded; a full queue blocks the producer.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::blob::write_blob;
use super::shard::{ShardAppender, ShardFile};
use super::{blob_relative_path, hex};
use crate::error::{CoreError, Result};

/// One tensor to write.
#[derive(Debug)]
pub struct Job {
    /// 1-based blob id (file name).
    pub blob_id: u64,
    /// Torch dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// String metadata stored in the safetensors header.
    pub metadata: Vec<(String, String)>,
    /// The tensor's bytes.
    pub data: Vec<u8>,
}

/// What was written for one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Blob id.
    pub blob_id: u64,
    /// File size (format 1) or data bytes (format 2).
    pub bytes: u64,
    /// SHA-256 of the file (format 1) or of the tensor's bytes (format 2).
    pub sha256: String,
    /// Shard index (format 2; 0 for a blob file).
    pub shard: u64,
    /// Offset of the data in the shard (format 2; 0 for a blob file).
    pub offset: u64,
}

enum Msg {
    Blob(Job),
    Append(String, Vec<u8>),
}

#[derive(Default)]
struct Shared {
    inflight: Mutex<u64>,
    cv: Condvar,
    error: Mutex<Option<CoreError>>,
    /// Serializes appends (journal chunks) across the worker threads.
    append: Mutex<()>,
    /// The shard appender (format 2), None for one file per tensor.
    shards: Mutex<Option<ShardAppender>>,
    sharded: bool,
}

/// Writer threads rooted at a bundle directory (which must contain `blobs/`).
pub struct StreamWriter {
    tx: Option<Sender<Msg>>,
    handles: Vec<JoinHandle<Vec<Written>>>,
    shared: Arc<Shared>,
    max_inflight: u64,
    shard_files: Vec<ShardFile>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker(dir: &Path, rx: &Mutex<Receiver<Msg>>, sh: &Shared) -> Vec<Written> {
    let mut out = Vec::new();
    loop {
        let msg = {
            let guard = lock(rx);
            match guard.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        let failed = lock(&sh.error).is_some();
        match msg {
            Msg::Blob(job) => {
                let n = job.data.len() as u64;
                if !failed && sh.sharded {
                    let sha = hex(&Sha256::digest(&job.data));
                    let mut guard = lock(&sh.shards);
                    let res = match guard.as_mut() {
                        Some(a) => a.append(job.blob_id, &job.dtype, &job.shape, &job.metadata, &job.data, sha),
                        None => Err(CoreError::bundle("the shard writer is closed")),
                    };
                    if let Err(e) = res {
                        *lock(&sh.error) = Some(e);
                    }
                } else if !failed {
                    let path = dir.join(blob_relative_path(job.blob_id));
                    match write_blob(&path, &job.dtype, &job.shape, &job.metadata, &job.data) {
                        Ok(w) => out.push(Written {
                            blob_id: job.blob_id,
                            bytes: w.bytes,
                            sha256: w.sha256,
                            shard: 0,
                            offset: 0,
                        }),
                        Err(e) => *lock(&sh.error) = Some(e),
                    }
                }
                drop(job);
                let mut inflight = lock(&sh.inflight);
                *inflight = inflight.saturating_sub(n);
                sh.cv.notify_all();
            }
            Msg::Append(name, data) => {
                if !failed {
                    let _serial = lock(&sh.append);
                    let path = dir.join(&name);
                    let res = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .and_then(|mut f| f.write_all(&data));
                    if let Err(e) = res {
                        *lock(&sh.error) = Some(CoreError::io(format!("appending to {}", path.display()), &e));
                    }
                }
            }
        }
    }
    out
}

impl StreamWriter {
    /// Starts `threads` writer threads (at least one). `max_inflight` bounds the queued bytes
    /// (at least one job always fits). With `shard_bytes`, tensors are appended to shard files
    /// of `dir/shards/` (io format 2) rolled over after that many data bytes; without, each
    /// goes to its own file `dir/blobs/<id>.safetensors` (format 1).
    pub fn new(dir: PathBuf, max_inflight: u64, threads: usize, shard_bytes: Option<u64>) -> Result<Self> {
        let (tx, rx) = channel::<Msg>();
        let rx = Arc::new(Mutex::new(rx));
        let appender = shard_bytes
            .map(|cap| ShardAppender::new(dir.clone(), cap))
            .transpose()?;
        let shared = Arc::new(Shared {
            sharded: appender.is_some(),
            shards: Mutex::new(appender),
            ..Shared::default()
        });
        let dir = Arc::new(dir);
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (sh, rx, dir) = (Arc::clone(&shared), Arc::clone(&rx), Arc::clone(&dir));
            let h = std::thread::Builder::new()
                .name(format!("torchlens-bundle-writer-{i}"))
                .spawn(move || worker(&dir, &rx, &sh))
                .map_err(|e| CoreError::io("cannot start a bundle writer thread".into(), &e))?;
            handles.push(h);
        }
        Ok(Self {
            tx: Some(tx),
            handles,
            shared,
            max_inflight,
            shard_files: Vec::new(),
        })
    }

    /// The first write error, if any.
    pub fn error(&self) -> Option<CoreError> {
        lock(&self.shared.error).clone()
    }

    fn send(&self, msg: Msg) -> Result<()> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        self.tx
            .as_ref()
            .ok_or_else(|| CoreError::bundle("the bundle writer is already finished"))?
            .send(msg)
            .map_err(|_| CoreError::bundle("the bundle writer threads stopped"))
    }

    /// Queues a blob, blocking while the queued bytes would exceed the bound.
    pub fn submit(&self, job: Job) -> Result<()> {
        let n = job.data.len() as u64;
        {
            let mut inflight = lock(&self.shared.inflight);
            while *inflight > 0 && *inflight + n > self.max_inflight {
                inflight = self
                    .shared
                    .cv
                    .wait(inflight)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            *inflight += n;
        }
        self.send(Msg::Blob(job))
    }

    /// Queues an append to a file of the directory. Appends land in order; with several threads,
    /// blobs queued before an append may still be in flight when it lands.
    pub fn append(&self, name: &str, data: Vec<u8>) -> Result<()> {
        self.send(Msg::Append(name.to_owned(), data))
    }

    /// Waits for every queued write and returns what was written, sorted by blob id (format 2:
    /// the latest placement of each blob id).
    pub fn finish(&mut self) -> Result<Vec<Written>> {
        if self.tx.take().is_none() {
            return Err(CoreError::bundle("the bundle writer is already finished"));
        }
        let mut written = Vec::new();
        for h in self.handles.drain(..) {
            written.extend(
                h.join()
                    .map_err(|_| CoreError::bundle("a bundle writer thread panicked"))?,
            );
        }
        if let Some(e) = self.error() {
            return Err(e);
        }
        if let Some(appender) = lock(&self.shared.shards).take() {
            let (placements, files) = appender.finish()?;
            self.shard_files = files;
            written.extend(placements.into_iter().map(|p| Written {
                blob_id: p.blob_id,
                bytes: p.length,
                sha256: p.sha256,
                shard: p.shard,
                offset: p.offset,
            }));
        }
        written.sort_by_key(|w| w.blob_id);
        Ok(written)
    }

    /// The shard files written (format 2), known after [`Self::finish`].
    pub fn shard_files(&self) -> &[ShardFile] {
        &self.shard_files
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.tx.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
