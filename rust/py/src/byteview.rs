//! Byte buffers of Python objects under the limited API.
//!
//! The extension is built for the stable ABI of Python 3.10 (one abi3 wheel), where the buffer
//! protocol (`PyObject_GetBuffer`, pyo3's `PyBuffer`) is not available: it joined the stable ABI
//! in 3.11. [`ByteBuffer`] stands in for `PyBuffer<u8>` with the same accessors. Tensor bytes
//! cross as numpy arrays, read in place through the array interface protocol
//! (`__array_interface__`, version 3: data address, read-only flag, shape, strides, item type),
//! or as `bytes`, read in place; any other object with the buffer protocol is copied once
//! through `memoryview(obj).tobytes()` and is then read-only.

use std::ffi::c_void;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::io_error;

/// A contiguous run of bytes owned by a Python object, which the buffer keeps alive. Numpy
/// arrays that share memory with a tensor cannot be resized, and `bytes` are immutable, so the
/// address stays valid for the buffer's lifetime.
pub struct ByteBuffer {
    /// The object that owns the memory (held for the lifetime of the view).
    _owner: Py<PyAny>,
    addr: usize,
    len: usize,
    readonly: bool,
    c_contiguous: bool,
}

impl FromPyObject<'_, '_> for ByteBuffer {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        Self::get(&obj)
    }
}

impl ByteBuffer {
    /// Takes the bytes of `obj`: `bytes`, a numpy array (in place), or a copy of any other
    /// buffer-protocol object.
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = obj.py();
        if let Ok(b) = obj.cast::<PyBytes>() {
            let s = b.as_bytes();
            return Ok(Self {
                _owner: obj.clone().unbind(),
                addr: s.as_ptr() as usize,
                len: s.len(),
                readonly: true,
                c_contiguous: true,
            });
        }
        if let Ok(iface) = obj.getattr(intern!(py, "__array_interface__")) {
            return Self::from_array_interface(obj, &iface);
        }
        // Any other buffer (bytearray, memoryview, array.array): one copy, read-only.
        let builtins = py.import(intern!(py, "builtins"))?;
        let view = builtins
            .getattr(intern!(py, "memoryview"))?
            .call1((obj,))
            .map_err(|_| {
                let name = obj.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string());
                PyTypeError::new_err(format!("expected a numpy array or a bytes-like object, got {name}"))
            })?;
        let copy = view.call_method0(intern!(py, "tobytes"))?;
        Self::get(&copy)
    }

    fn from_array_interface(obj: &Bound<'_, PyAny>, iface: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bad = |detail: &str| io_error(format!("array interface: {detail}"));
        let iface = iface.cast::<PyDict>().map_err(|_| bad("not a dict"))?;
        let item = |key: &str| -> PyResult<Bound<'_, PyAny>> {
            iface.get_item(key)?.ok_or_else(|| bad(&format!("no '{key}'")))
        };
        let (addr, readonly): (usize, bool) = item("data")?
            .extract()
            .map_err(|_| bad("'data' is not an (address, read-only) pair"))?;
        let shape: Vec<usize> = item("shape")?
            .extract()
            .map_err(|_| bad("'shape' is not a tuple of sizes"))?;
        let typestr: String = item("typestr")?.extract().map_err(|_| bad("'typestr' is not a str"))?;
        let itemsize: usize = typestr
            .get(2..)
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(&format!("unknown item type {typestr:?}")))?;
        if iface.get_item("mask")?.is_some_and(|m| !m.is_none()) {
            return Err(bad("masked arrays are not supported"));
        }
        let len = shape
            .iter()
            .try_fold(itemsize, |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| bad("size overflows"))?;
        if len > 0 && addr == 0 {
            return Err(bad("null data address"));
        }
        // `strides` is None for a C-contiguous array; otherwise check that it describes one
        // (the stride of a size-1 dimension is free).
        let mut c_contiguous = true;
        if let Some(strides) = iface.get_item("strides")?.filter(|s| !s.is_none()) {
            let strides: Vec<isize> = strides.extract().map_err(|_| bad("'strides' is not a tuple of ints"))?;
            let mut expected = itemsize as isize;
            for (&n, &s) in shape.iter().zip(&strides).rev() {
                if n > 1 && s != expected {
                    c_contiguous = false;
                }
                expected = expected.saturating_mul(n as isize);
            }
        }
        Ok(Self {
            _owner: obj.clone().unbind(),
            addr,
            len,
            readonly,
            c_contiguous,
        })
    }

    /// The address of the first byte.
    pub fn buf_ptr(&self) -> *mut c_void {
        self.addr as *mut c_void
    }

    /// The length in bytes (item size times item count).
    pub fn len_bytes(&self) -> usize {
        self.len
    }

    /// Whether the memory must not be written.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether the items are laid out in C order without gaps.
    pub fn is_c_contiguous(&self) -> bool {
        self.c_contiguous
    }

    /// A copy of the bytes (C-contiguous buffers only).
    pub fn to_vec(&self, _py: Python<'_>) -> PyResult<Vec<u8>> {
        if !self.c_contiguous {
            return Err(io_error("buffer is not C-contiguous"));
        }
        if self.len == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: `_owner` keeps the memory alive, the interpreter lock is held, and
        // `addr..addr + len` is the object's contiguous data.
        Ok(unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }.to_vec())
    }
}
