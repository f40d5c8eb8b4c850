//! Binding of the backward-graph build (`torchlens._core.backward_graph`, spec §14-15).

use pyo3::prelude::*;
use torchlens_core::backward::{ForwardGradFn, GradFnNode, build_backward};

use crate::errors::CoreErrorWrapper;

/// One added `grad_fn`: `(grad_fn_id, label, grad_fn_type, type_num, total_num, is_intervening,
/// position or None, next_grad_fn_ids)`.
type Row = (u64, String, String, u32, u32, bool, Option<u32>, Vec<u64>);

/// Matches the `grad_fn`s of one walk from a loss to the forward layers and labels the new ones.
///
/// `nodes`: `(id, class_index, next_ids)` per `grad_fn` in breadth-first discovery order;
/// `known`: ids of the walked `grad_fn`s that earlier calls logged (skipped); `logged`: how many
/// `grad_fn`s earlier calls logged in all (the new ones are numbered after them);
/// `forward`: `(grad_fn_id, position, layer_type_num, layer_total_num)` per forward layer.
#[pyfunction]
#[pyo3(signature = (class_names, nodes, known, logged, forward))]
pub fn backward_graph(
    py: Python<'_>,
    class_names: Vec<String>,
    nodes: Vec<(u64, u32, Vec<u64>)>,
    known: Vec<u64>,
    logged: u32,
    forward: Vec<(u64, u32, u32, u32)>,
) -> PyResult<Vec<Row>> {
    let nodes: Vec<GradFnNode> = nodes
        .into_iter()
        .map(|(id, class, next)| GradFnNode { id, class, next })
        .collect();
    let forward: Vec<ForwardGradFn> = forward
        .into_iter()
        .map(|(grad_fn_id, position, type_num, total_num)| ForwardGradFn {
            grad_fn_id,
            position,
            type_num,
            total_num,
        })
        .collect();
    let g = py
        .detach(|| build_backward(&class_names, &nodes, &known, logged, &forward))
        .map_err(CoreErrorWrapper::from)?;
    let intervening: Vec<bool> = (0..g.len()).map(|i| g.is_intervening(i)).collect();
    Ok(g.ids
        .into_iter()
        .zip(g.labels)
        .zip(g.grad_fn_types)
        .zip(g.type_nums)
        .zip(g.total_nums)
        .zip(intervening)
        .zip(g.positions)
        .zip(g.next)
        .map(|(((((((id, label), ty), tn), to), iv), pos), next)| (id, label, ty, tn, to, iv, pos, next))
        .collect())
}
