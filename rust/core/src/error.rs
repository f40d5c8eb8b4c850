//! The one error type of the core.

use std::fmt;

/// Everything that can go wrong in the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    /// The capture batch breaks the record contract (id out of range, parent after child, ...).
    /// The bindings map it to `ValueError`.
    InvalidInput(String),
    /// A bundle is missing, truncated, corrupted, of an unsupported version or hostile, or a
    /// bundle write failed. The bindings map it to `TorchLensIOError`.
    Bundle(String),
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidInput`].
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }

    /// Shorthand for [`CoreError::Bundle`].
    pub(crate) fn bundle(msg: impl Into<String>) -> Self {
        Self::Bundle(msg.into())
    }

    /// A bundle error from an I/O error, with context.
    pub(crate) fn io(ctx: String, err: &std::io::Error) -> Self {
        Self::Bundle(format!("{ctx}: {err}"))
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(msg) => write!(f, "invalid capture batch: {msg}"),
            Self::Bundle(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for CoreError {}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_problem() {
        let err = CoreError::invalid("record 3: parent 5 >= own id");
        assert_eq!(err.to_string(), "invalid capture batch: record 3: parent 5 >= own id");
    }
}
