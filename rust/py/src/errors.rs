//! Mapping of core errors to Python exceptions, in one place.

use pyo3::PyErr;
use pyo3::exceptions::PyValueError;
use torchlens_core::CoreError;

/// Wraps a [`CoreError`] so that `?` turns it into the right Python exception.
#[derive(Debug)]
pub struct CoreErrorWrapper(pub CoreError);

impl From<CoreError> for CoreErrorWrapper {
    fn from(err: CoreError) -> Self {
        Self(err)
    }
}

impl From<CoreErrorWrapper> for PyErr {
    fn from(err: CoreErrorWrapper) -> Self {
        match err.0 {
            // Bad input from the emitter is the caller's mistake: ValueError.
            CoreError::InvalidInput(msg) => PyValueError::new_err(msg),
            // Bundle problems (missing, corrupt, hostile, write failures): TorchLensIOError.
            CoreError::Bundle(msg) => TorchLensIOError::new_err(msg),
        }
    }
}

// Python owns the exception types (`torchlens/_errors.py`); the bindings only raise them.
pyo3::import_exception!(torchlens._errors, TorchLensIOError);

/// A `TorchLensIOError` with a message.
pub fn io_error(msg: impl Into<String>) -> PyErr {
    TorchLensIOError::new_err(msg.into())
}

/// A `ValueError` for a malformed argument of `finalize`.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
