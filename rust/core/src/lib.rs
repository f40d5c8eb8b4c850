//! Core of torchlens: turns the flat record stream captured from a `PyTorch` forward pass into
//! a labelled graph. No Python here; the `torchlens-py` crate is a thin `PyO3` layer on top.
//!
//! The pipeline ([`finalize`]) follows the spec's post-processing steps:
//! synthetic output nodes and orphan removal ([`graph`]), fingerprints ([`fingerprint`]),
//! loop detection ([`loops`]), final labels and lookup keys ([`labels`]). The backward graph
//! of a loss (`grad_fn`s matched to forward layers and labelled) is built by [`backward`].
//!
//! ```
//! use torchlens_core::{CaptureBatch, NodeKind, OpRecord, Options, NO_STR, finalize};
//!
//! let strings: Vec<String> = ["input", "none", "sin", "input.x", "output"].map(String::from).into();
//! let op = |parents| OpRecord {
//!     kind: NodeKind::Op, func: 2, layer_type: 2, arg_hash: 7, out_index: -1,
//!     module_stack: 0, params: vec![], parents, role: NO_STR,
//! };
//! let input = OpRecord { kind: NodeKind::Input, func: 1, layer_type: 0, role: 3, parents: vec![], ..op(vec![]) };
//! let batch = CaptureBatch {
//!     strings,
//!     records: vec![input, op(vec![0]), op(vec![1]), op(vec![2])],
//!     module_stacks: vec![vec![]],
//!     outputs: vec![(3, 4, 99)],
//!     ..CaptureBatch::default()
//! };
//! let fin = finalize(&batch, &Options::default()).unwrap();
//! assert_eq!(fin.labels(), ["input_1", "sin_1_1:1", "sin_1_1:2", "sin_1_1:3", "output_1"]);
//! assert_eq!(fin.lookup("input.x"), Some(0));
//! ```

pub mod backward;
pub mod bundle;
pub mod error;
pub mod finalize;
pub mod fingerprint;
pub mod graph;
pub mod labels;
pub mod loops;
pub mod record;
pub mod supergraph;
mod union_find;

pub use error::{CoreError, Result};
pub use finalize::{Finalized, Options, finalize};
pub use graph::Adjacency;
pub use labels::LabelForm;
pub use record::{
    CaptureBatch, ModuleExit, ModulePass, NO_STR, NodeKind, OpRecord, OutputSpec, RECORD_FIELDS, RECORD_VERSION, StrId,
};
