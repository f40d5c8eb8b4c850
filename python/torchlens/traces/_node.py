"""`NodeView`: one node of a `TraceBundle`'s supergraph, seen across the traces that have it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ._metrics import divergence, metric_name, reduce_stack

if TYPE_CHECKING:
    from ..log.layer_pass_log import LayerPassLog
    from ._bundle import TraceBundle

DIRECTIONS = ("forward", "backward")


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'forward' (activations) or 'backward' (gradients), not {direction!r}.")
    return direction


def saved_activation(entry: LayerPassLog) -> torch.Tensor | None:
    """The entry's activation, read from its bundle first when the log was loaded lazily."""
    act = entry.activation
    if act is None and entry.has_saved_activations:
        act = entry.materialize_activation()
    return act if isinstance(act, torch.Tensor) else None


def saved_gradient(entry: LayerPassLog) -> torch.Tensor | None:
    grad = entry.gradient if entry.has_gradient else None
    return grad if isinstance(grad, torch.Tensor) else None


class NodeView:
    """One supergraph node: the layer pass that the traces listed in ``traces`` share.

    Attributes:
        node_name: The canonical name (the label of the pass in the first trace that has it).
        entries: Trace name -> that trace's ``LayerPassLog`` for this node.
    """

    def __init__(self, bundle: TraceBundle, index: int) -> None:
        self._bundle = bundle
        self._index = index
        self.node_name: str = bundle.nodes[index]
        self.entries: dict[str, LayerPassLog] = {
            bundle.names[t]: bundle._entries[t][pos] for t, pos in bundle._node_positions(index)
        }

    def __repr__(self) -> str:
        return (
            f"NodeView({self.node_name!r}, op_type={self.op_type!r}, "
            f"traces={len(self.traces)}/{len(self._bundle.traces)})"
        )

    @property
    def traces(self) -> list[str]:
        """Names of the traces that have this node, in bundle order."""
        return list(self.entries)

    @property
    def coverage(self) -> float:
        """Fraction of the bundle's traces that have this node."""
        return len(self.entries) / len(self._bundle.traces)

    @property
    def _first(self) -> LayerPassLog:
        return next(iter(self.entries.values()))

    @property
    def op_type(self) -> str:
        """The layer type (``"conv2d"``, ``"relu"``, ...)."""
        return self._first.layer_type

    @property
    def module_path(self) -> str | None:
        """Address of the innermost module the pass ran in (``None`` outside any module)."""
        mod = self._first.containing_module
        return mod.rsplit(":", 1)[0] if mod else None

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The output shape in the first trace that has the node."""
        shape = self._first.tensor_shape
        return tuple(shape) if shape is not None else None

    def _tensors(self, direction: str) -> dict[str, torch.Tensor | None]:
        get = saved_activation if check_direction(direction) == "forward" else saved_gradient
        return {name: get(e) for name, e in self.entries.items()}

    @property
    def activations(self) -> dict[str, torch.Tensor]:
        """Trace name -> saved activation, for the traces that have the node and saved it."""
        return {k: v for k, v in self._tensors("forward").items() if v is not None}

    @property
    def gradients(self) -> dict[str, torch.Tensor]:
        """Trace name -> saved gradient, for the traces that have the node and a gradient for it."""
        return {k: v for k, v in self._tensors("backward").items() if v is not None}

    def _complete(self, direction: str) -> dict[str, torch.Tensor]:
        """Every trace's tensor, or a ValueError naming the traces that lack one."""
        tensors = self._tensors(direction)
        missing = [k for k, v in tensors.items() if v is None]
        if missing:
            what = "saved activation" if direction == "forward" else "gradient"
            hint = (
                "log them with layers_to_save='all' (the default)"
                if direction == "forward"
                else "log with save_gradients=True and run backward"
            )
            raise ValueError(f"node {self.node_name!r} has no {what} in trace(s) {missing}; {hint}.")
        return {k: v for k, v in tensors.items() if v is not None}

    def _stacked(self, direction: str) -> torch.Tensor:
        tensors = self._complete(direction)
        shapes = {tuple(t.shape) for t in tensors.values()}
        if len(shapes) > 1:
            raise ValueError(f"node {self.node_name!r} has different shapes across traces: {sorted(shapes)}.")
        return torch.stack([t.detach() for t in tensors.values()])

    @property
    def activation(self) -> torch.Tensor:
        """The activations of every trace that has the node, stacked along a new first dimension.

        Raises:
            ValueError: A trace did not save it, or the shapes differ.
        """
        return self._stacked("forward")

    @property
    def gradient(self) -> torch.Tensor:
        """The gradients of every trace that has the node, stacked along a new first dimension.

        Raises:
            ValueError: A trace has no gradient for it, or the shapes differ.
        """
        return self._stacked("backward")

    def diff(
        self, metric: str = "cosine", *, reference: str | int | None = None, direction: str = "forward"
    ) -> dict[str, float]:
        """Divergence of each trace's tensor from the reference trace's (see ``traces._metrics``).

        Args:
            metric: ``"cosine"`` (``1 - cosine similarity``), ``"relative_l2"``
                (``‖ref - x‖₂ / ‖ref‖₂``) or ``"pearson"`` (``1 - Pearson r``).
            reference: The trace compared against (name or index); default the first trace
                that has the node.
            direction: ``"forward"`` compares activations, ``"backward"`` gradients.

        Returns:
            Trace name -> divergence (0.0 for the reference itself), for the traces with the node.

        Raises:
            ValueError: Unknown metric or direction, a trace without the saved tensor, different
                shapes, or a reference trace that lacks the node.
        """
        metric_name(metric)
        tensors = self._complete(direction)
        ref = self.traces[0] if reference is None else self._bundle._trace_name(reference)
        if ref not in tensors:
            raise ValueError(f"reference trace {ref!r} does not have node {self.node_name!r}.")
        return {k: (0.0 if k == ref else divergence(tensors[ref], v, metric)) for k, v in tensors.items()}

    def divergence(
        self, metric: str = "cosine", *, reference: str | int | None = None, direction: str = "forward"
    ) -> float:
        """The node's divergence: the mean of ``diff`` over the traces other than the reference
        (0.0 when only one trace has the node)."""
        d = self.diff(metric, reference=reference, direction=direction)
        ref = self.traces[0] if reference is None else self._bundle._trace_name(reference)
        others = [v for k, v in d.items() if k != ref]
        return sum(others) / len(others) if others else 0.0

    def aggregate(self, reduce: str = "mean", *, direction: str = "forward") -> torch.Tensor:
        """Reduces the stacked tensors over the traces: ``mean``, ``sum``, ``std``, ``var``,
        ``min``, ``max`` or ``median`` (``std``/``var`` are unbiased, NaN for a single trace)."""
        return reduce_stack(self._stacked(direction), reduce)

    def _summary(self) -> dict[str, Any]:
        return {"node": self.node_name, "op_type": self.op_type, "traces": self.traces, "coverage": self.coverage}
