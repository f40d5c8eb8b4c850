//! Bindings of the bundle module: blob files, validated manifest and metadata, recovery
//! journal, atomic commit and the streaming writer. Every file operation runs with the interpreter lock released.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::prelude::*;
use torchlens_core::bundle::{blob, dir, journal, manifest, shard, writer};

use crate::byteview::ByteBuffer;
use crate::errors::{CoreErrorWrapper, io_error};
use crate::schema;

type Meta = Vec<(String, String)>;

/// A read-only view of a C-contiguous byte buffer as (address, length).
fn readable(buf: &ByteBuffer) -> PyResult<(usize, usize)> {
    if !buf.is_c_contiguous() {
        return Err(io_error("tensor buffer must be C-contiguous"));
    }
    Ok((buf.buf_ptr() as usize, buf.len_bytes()))
}

/// Safety: the caller holds the `ByteBuffer` (so the memory stays valid) for the whole use.
unsafe fn slice<'a>(addr: usize, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
    }
}

/// Writes one blob file from a byte buffer; returns `(file_bytes, sha256)`.
#[pyfunction]
pub fn blob_write(
    py: Python<'_>,
    path: PathBuf,
    dtype: String,
    shape: Vec<u64>,
    metadata: Meta,
    data: ByteBuffer,
) -> PyResult<(u64, String)> {
    let (addr, len) = readable(&data)?;
    let w = py
        .detach(|| {
            // SAFETY: `data` is alive until the end of this function.
            let bytes = unsafe { slice(addr, len) };
            blob::write_blob(&path, &dtype, &shape, &metadata, bytes)
        })
        .map_err(CoreErrorWrapper::from)?;
    Ok((w.bytes, w.sha256))
}

/// Reads a blob into a writable byte buffer, checking dtype, shape and (optionally) sha256.
#[pyfunction]
#[pyo3(signature = (path, dtype, shape, sha256, out))]
pub fn blob_read_into(
    py: Python<'_>,
    path: PathBuf,
    dtype: String,
    shape: Vec<u64>,
    sha256: Option<String>,
    out: ByteBuffer,
) -> PyResult<()> {
    if out.readonly() || !out.is_c_contiguous() {
        return Err(io_error("output buffer must be writable and C-contiguous"));
    }
    let (addr, len) = (out.buf_ptr() as usize, out.len_bytes());
    py.detach(|| {
        // SAFETY: `out` is alive and writable until the end of this function; nothing else
        // touches it while the interpreter lock is released (the caller just allocated it).
        let target: &mut [u8] = if len == 0 {
            &mut []
        } else {
            unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
        };
        blob::read_blob_into(&path, &dtype, &shape, sha256.as_deref(), target)
    })
    .map_err(CoreErrorWrapper::from)?;
    Ok(())
}

/// Reads a blob's header and checksums it: `(dtype, shape, metadata, file_bytes, sha256)`.
#[pyfunction]
pub fn blob_scan(py: Python<'_>, path: PathBuf) -> PyResult<(String, Vec<u64>, Meta, u64, String)> {
    let (h, w) = py.detach(|| blob::scan_blob(&path)).map_err(CoreErrorWrapper::from)?;
    Ok((h.dtype, h.shape, h.metadata, w.bytes, w.sha256))
}

/// Validates a manifest document; returns it unchanged as text.
#[pyfunction]
pub fn manifest_check(data: &[u8]) -> PyResult<String> {
    manifest::parse_manifest(data).map_err(CoreErrorWrapper::from)?;
    String::from_utf8(data.to_vec()).map_err(|_| io_error("invalid manifest: not UTF-8"))
}

/// Opens a bundle for loading: `(manifest, metadata, extra_blob_files, notices)`. The manifest
/// and `metadata.json` are read, checksummed and validated against their schemas; blobs are only
/// stat'ed. `notices` are `(category, message)` pairs of the version policy for the caller to
/// show as warnings.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn bundle_load(
    py: Python<'_>,
    path: PathBuf,
    torch_version: String,
) -> PyResult<(
    Bound<'_, PyAny>,
    Bound<'_, PyAny>,
    Vec<String>,
    Vec<(&'static str, String)>,
)> {
    let loaded = py
        .detach(|| dir::load_bundle(&path, &torch_version, env!("CARGO_PKG_VERSION")))
        .map_err(CoreErrorWrapper::from)?;
    let notices = loaded.notices.iter().map(schema::notice).collect();
    Ok((
        schema::manifest(py, &loaded.manifest)?,
        schema::metadata(py, &loaded.metadata)?,
        loaded.extra_files,
        notices,
    ))
}

/// Reads the journal of an interrupted streamed capture: `{"model_name", "info", "capture"}`,
/// validated like bundle metadata.
#[pyfunction]
pub fn journal_read(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
    let j = py
        .detach(|| journal::read_journal(&path))
        .map_err(CoreErrorWrapper::from)?;
    schema::journal(py, &j)
}

/// Writes a small file durably; returns `(bytes, sha256)`.
#[pyfunction]
pub fn write_file(py: Python<'_>, path: PathBuf, data: Vec<u8>) -> PyResult<(u64, String)> {
    let w = py
        .detach(|| dir::write_file(&path, &data))
        .map_err(CoreErrorWrapper::from)?;
    Ok((w.bytes, w.sha256))
}

/// Validates `manifest`, writes it last into `tmp` and renames `tmp` to `target` (must not exist).
#[pyfunction]
pub fn bundle_commit(py: Python<'_>, tmp: PathBuf, target: PathBuf, manifest: Vec<u8>) -> PyResult<()> {
    py.detach(|| dir::commit(&tmp, &target, &manifest))
        .map_err(CoreErrorWrapper::from)?;
    Ok(())
}

/// Errors when `path` is a symbolic link.
#[pyfunction]
pub fn refuse_symlink(path: PathBuf, what: &str) -> PyResult<()> {
    dir::refuse_symlink(Path::new(&path), what).map_err(CoreErrorWrapper::from)?;
    Ok(())
}

/// Streams blobs to `<dir>/blobs/` on a background thread while the caller continues.
#[pyclass(module = "torchlens._core", frozen, name = "StreamWriter")]
pub struct PyStreamWriter {
    inner: Mutex<Option<writer::StreamWriter>>,
}

fn take_lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[pymethods]
impl PyStreamWriter {
    #[new]
    #[pyo3(signature = (path, max_inflight_bytes = 256 << 20, threads = 2, shard_bytes = None))]
    fn new(path: PathBuf, max_inflight_bytes: u64, threads: usize, shard_bytes: Option<u64>) -> PyResult<Self> {
        let w = writer::StreamWriter::new(path, max_inflight_bytes, threads, shard_bytes)
            .map_err(CoreErrorWrapper::from)?;
        Ok(Self {
            inner: Mutex::new(Some(w)),
        })
    }

    /// Copies the buffer and queues it as blob `blob_id` (blocks while the queue is full).
    fn submit(
        &self,
        py: Python<'_>,
        blob_id: u64,
        dtype: String,
        shape: Vec<u64>,
        metadata: Meta,
        data: ByteBuffer,
    ) -> PyResult<()> {
        let (addr, len) = readable(&data)?;
        py.detach(|| {
            // SAFETY: `data` is alive until the end of this function.
            let copy = unsafe { slice(addr, len) }.to_vec();
            let guard = take_lock(&self.inner);
            let w = guard
                .as_ref()
                .ok_or_else(|| torchlens_core::CoreError::Bundle("the bundle writer is already finished".into()))?;
            w.submit(writer::Job {
                blob_id,
                dtype,
                shape,
                metadata,
                data: copy,
            })
        })
        .map_err(CoreErrorWrapper::from)?;
        Ok(())
    }

    /// Queues an append of `data` to the file `name` of the bundle directory.
    fn append(&self, name: &str, data: Vec<u8>) -> PyResult<()> {
        let guard = take_lock(&self.inner);
        let w = guard
            .as_ref()
            .ok_or_else(|| io_error("the bundle writer is already finished"))?;
        w.append(name, data).map_err(CoreErrorWrapper::from)?;
        Ok(())
    }

    /// Waits for all writes; returns `[(blob_id, bytes, sha256, shard, offset)]` sorted by blob
    /// id (`shard` and `offset` are 0 for one file per tensor).
    #[allow(clippy::type_complexity)]
    fn finish(&self, py: Python<'_>) -> PyResult<Vec<(u64, u64, String, u64, u64)>> {
        let taken = take_lock(&self.inner).take();
        let Some(mut w) = taken else {
            return Err(io_error("the bundle writer is already finished"));
        };
        let written = py.detach(move || w.finish()).map_err(CoreErrorWrapper::from)?;
        Ok(written
            .into_iter()
            .map(|x| (x.blob_id, x.bytes, x.sha256, x.shard, x.offset))
            .collect())
    }

    /// Stops the thread after the queued writes, ignoring their results.
    fn close(&self, py: Python<'_>) {
        let taken = take_lock(&self.inner).take();
        py.detach(move || drop(taken));
    }
}

/// Writes shard `index` of the bundle directory `dir` from `(blob_id, dtype, shape, buffer)`
/// items laid out in this order; returns `(file_bytes, data_start, [(blob_id, offset, length,
/// sha256)])`.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn shard_write(
    py: Python<'_>,
    dir: PathBuf,
    index: u64,
    items: Vec<(u64, String, Vec<u64>, ByteBuffer)>,
) -> PyResult<(u64, u64, Vec<(u64, u64, u64, String)>)> {
    let views = items
        .iter()
        .map(|(_, _, _, b)| readable(b))
        .collect::<PyResult<Vec<_>>>()?;
    let (file, placements) = py
        .detach(|| {
            let refs: Vec<shard::Item<'_>> = items
                .iter()
                .zip(&views)
                .map(|((id, dtype, shape, _), &(addr, len))| shard::Item {
                    blob_id: *id,
                    dtype,
                    shape,
                    // SAFETY: every buffer of `items` is alive until the end of this function.
                    data: unsafe { slice(addr, len) },
                })
                .collect();
            shard::write_shard(&dir, index, &refs)
        })
        .map_err(CoreErrorWrapper::from)?;
    Ok((
        file.bytes,
        file.data_start,
        placements
            .into_iter()
            .map(|p| (p.blob_id, p.offset, p.length, p.sha256))
            .collect(),
    ))
}

fn writable(buf: &ByteBuffer) -> PyResult<(usize, usize)> {
    if buf.readonly() || !buf.is_c_contiguous() {
        return Err(io_error("output buffer must be writable and C-contiguous"));
    }
    Ok((buf.buf_ptr() as usize, buf.len_bytes()))
}

/// Safety: the caller holds the writable `ByteBuffer` for the whole use and nothing else touches
/// it meanwhile.
unsafe fn slice_mut<'a>(addr: usize, len: usize) -> &'a mut [u8] {
    if len == 0 {
        &mut []
    } else {
        unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
    }
}

/// Eagerly reads tensors of one shard in one pass: `items` are `(blob_id, dtype, shape, offset,
/// sha256, out)`; the shard's size, header (names, dtypes, shapes, ranges) and every checksum
/// are checked.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn shard_read_into(
    py: Python<'_>,
    path: PathBuf,
    bytes: u64,
    data_start: u64,
    items: Vec<(u64, String, Vec<u64>, u64, Option<String>, ByteBuffer)>,
) -> PyResult<()> {
    let views = items.iter().map(|it| writable(&it.5)).collect::<PyResult<Vec<_>>>()?;
    // The mutable slices made below must not alias: non-empty buffers may not overlap.
    let mut spans: Vec<(usize, usize)> = views.iter().copied().filter(|v| v.1 > 0).collect();
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[1].0 < w[0].0.saturating_add(w[0].1)) {
        return Err(io_error("output buffers must not overlap"));
    }
    py.detach(|| {
        let mut reads: Vec<shard::ReadItem<'_>> = items
            .iter()
            .zip(&views)
            .map(|((id, dtype, shape, offset, sha, _), &(addr, len))| shard::ReadItem {
                blob_id: *id,
                dtype: dtype.clone(),
                shape: shape.clone(),
                offset: *offset,
                sha256: sha.clone(),
                // SAFETY: each buffer is alive and writable until the end of this function and
                // does not overlap the others (checked above); the caller just allocated them.
                out: unsafe { slice_mut(addr, len) },
            })
            .collect();
        shard::read_shard(&path, bytes, data_start, &mut reads)
    })
    .map_err(CoreErrorWrapper::from)?;
    Ok(())
}

/// Lazily reads one tensor's byte range of a shard into `out` (exactly its length), checking
/// that the range lies in the file and, when given, its SHA-256.
#[pyfunction]
#[pyo3(signature = (path, offset, sha256, out))]
pub fn shard_read_range(
    py: Python<'_>,
    path: PathBuf,
    offset: u64,
    sha256: Option<String>,
    out: ByteBuffer,
) -> PyResult<()> {
    let (addr, len) = writable(&out)?;
    py.detach(|| {
        // SAFETY: `out` is alive and writable until the end of this function.
        let target = unsafe { slice_mut(addr, len) };
        shard::read_range(&path, offset, sha256.as_deref(), target)
    })
    .map_err(CoreErrorWrapper::from)?;
    Ok(())
}

/// Recovers the shards of an interrupted streamed capture in `dir`: keeps the complete,
/// intact journaled tensors, truncates and re-heads each shard; returns
/// `[(blob_id, shard, offset, length, sha256, dtype, shape, metadata)]`.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn shard_recover(
    py: Python<'_>,
    dir: PathBuf,
) -> PyResult<Vec<(u64, u64, u64, u64, String, String, Vec<u64>, Meta)>> {
    let rec = py
        .detach(|| shard::recover_shards(&dir))
        .map_err(CoreErrorWrapper::from)?;
    Ok(rec
        .into_iter()
        .map(|r| {
            let p = r.placement;
            (
                p.blob_id, p.shard, p.offset, p.length, p.sha256, r.dtype, r.shape, r.metadata,
            )
        })
        .collect())
}

/// `[(index, file_bytes, data_start)]` of the shard files of a bundle directory.
#[pyfunction]
pub fn shard_files(py: Python<'_>, dir: PathBuf) -> PyResult<Vec<(u64, u64, u64)>> {
    let files = py.detach(|| shard::shard_files(&dir)).map_err(CoreErrorWrapper::from)?;
    Ok(files.into_iter().map(|f| (f.index, f.bytes, f.data_start)).collect())
}
