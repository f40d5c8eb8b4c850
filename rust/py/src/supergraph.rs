//! Binding of the multi-trace supergraph (`torchlens._core.supergraph`, spec §12.7).

use pyo3::prelude::*;
use torchlens_core::supergraph::build_supergraph;

use crate::errors::CoreErrorWrapper;

/// One union node: `(name, first_trace, first_pos, traces)`.
type Node = (String, u32, u32, Vec<u32>);

/// Matches the passes of several traces by fingerprint plus occurrence index.
///
/// `fingerprints` and `labels`: per trace, one entry per pass in execution order;
/// `trace_names`: one per trace. Returns the union nodes in first-appearance order and, per
/// trace, the node index of each pass.
#[pyfunction]
#[pyo3(signature = (fingerprints, labels, trace_names))]
pub fn supergraph(
    py: Python<'_>,
    fingerprints: Vec<Vec<String>>,
    labels: Vec<Vec<String>>,
    trace_names: Vec<String>,
) -> PyResult<(Vec<Node>, Vec<Vec<u32>>)> {
    let g = py
        .detach(|| build_supergraph(&fingerprints, &labels, &trace_names))
        .map_err(CoreErrorWrapper::from)?;
    let nodes = g
        .nodes
        .into_iter()
        .map(|n| (n.name, n.first_trace, n.first_pos, n.traces))
        .collect();
    Ok((nodes, g.assignment))
}
