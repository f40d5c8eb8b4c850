//! Binding of the fastlog directory writer (`torchlens._core.FastlogWriter`) and of the
//! safetensors reader.
//!
//! `write` copies the payload bytes out of the caller's buffers while holding the interpreter
//! lock, then queues the job with the lock released; hashing and file I/O run on the core's
//! writer thread.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use torchlens_core::bundle::fastlog_store::{FastlogJob, FastlogWriter};
use torchlens_core::bundle::safetensors;

use crate::byteview::ByteBuffer;
use crate::errors::{CoreErrorWrapper, io_error};

/// Streams fastlog records (payload files + index lines) into one directory.
#[pyclass(module = "torchlens._core", name = "FastlogWriter", frozen)]
pub struct PyFastlogWriter {
    inner: Mutex<Option<FastlogWriter>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[pymethods]
impl PyFastlogWriter {
    #[new]
    #[pyo3(signature = (root, max_queued = 64))]
    fn new(root: PathBuf, max_queued: usize) -> PyResult<Self> {
        let w = FastlogWriter::new(&root, max_queued).map_err(CoreErrorWrapper::from)?;
        Ok(Self {
            inner: Mutex::new(Some(w)),
        })
    }

    /// Queues one record: `relative_path` (empty for metadata only), `(name, dtype, shape)` of
    /// each tensor, the header's string metadata, the tensor byte buffers (C-contiguous, in the
    /// order of `tensors`) and the index line. The core encodes the safetensors header.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        py: Python<'_>,
        relative_path: String,
        tensors: Vec<(String, String, Vec<u64>)>,
        metadata: Vec<(String, String)>,
        chunks: Vec<ByteBuffer>,
        index_line: String,
    ) -> PyResult<()> {
        let mut copies = Vec::with_capacity(chunks.len());
        for c in &chunks {
            if !c.is_c_contiguous() {
                return Err(io_error("fastlog payload buffer must be C-contiguous"));
            }
            copies.push(c.to_vec(py)?);
        }
        let job = FastlogJob {
            relative_path,
            tensors,
            metadata,
            chunks: copies,
            index_line,
        };
        py.detach(|| {
            let guard = lock(&self.inner);
            match guard.as_ref() {
                Some(w) => w.submit(job),
                None => Err(torchlens_core::CoreError::Bundle(
                    "the fastlog writer is already finished".into(),
                )),
            }
        })
        .map_err(CoreErrorWrapper::from)?;
        Ok(())
    }

    /// Waits for every queued record, stops the thread; returns the number of records written.
    fn finish(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| {
            let taken = lock(&self.inner).take();
            match taken {
                Some(mut w) => w.finish(),
                None => Ok(0),
            }
        })
        .map_err(|e| CoreErrorWrapper::from(e).into())
    }
}

/// Reads every tensor of a safetensors file (bundle blob or fastlog payload):
/// `(metadata, [(name, dtype, shape, data)])` in offset order, `data` a fresh `bytearray`.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn safetensors_read(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<(
    Vec<(String, String)>,
    Vec<(String, String, Vec<u64>, Bound<'_, PyByteArray>)>,
)> {
    let (meta, tensors) = py
        .detach(|| safetensors::read_file(&path))
        .map_err(CoreErrorWrapper::from)?;
    let out = tensors
        .into_iter()
        .map(|(t, data)| (t.name, t.dtype, t.shape, PyByteArray::new(py, &data)))
        .collect();
    Ok((meta, out))
}
