"""The backward graph's log objects (spec §14-15): `GradFnLog` (one grad_fn a loss reached),
`GradFnPassLog` (one backward call through it) and `GradFnAccessor` (`model_log.grad_fns`).

They are filled by `log/backward.py`; the labels, numbers and forward matches come from the Rust
core (`_core.backward_graph`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .model_log import ModelLog

GRAD_FN_LOG_COLUMNS = [
    "grad_fn_id",
    "name",
    "label",
    "grad_fn_type",
    "grad_fn_type_num",
    "grad_fn_total_num",
    "module_path",
    "is_custom",
    "is_intervening",
    "corresponding_layer",
    "next_grad_fn_ids",
    "passes",
    "num_passes",
    "pass_labels",
]
GRAD_FN_PASS_LOG_COLUMNS = ["pass_num", "grad_inputs", "grad_outputs", "time_started", "time_finished"]


def _one_row(obj: Any, columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame([{c: getattr(obj, c) for c in columns}], columns=columns)


class GradFnPassLog:
    """One backward call through a grad_fn: detached clones of its gradients and when it ran.

    `grad_inputs` are the gradients the grad_fn computed (one per forward input, None where the
    input needs none), `grad_outputs` the gradients it received (PyTorch's naming for node hooks).
    Both are None when the grad_fn's tensors are not kept (intervening grad_fns, or forward layers
    that `gradients_to_save` leaves out).
    """

    __slots__ = ("pass_num", "grad_inputs", "grad_outputs", "time_started", "time_finished")

    def __init__(
        self,
        pass_num: int,
        grad_inputs: tuple[torch.Tensor | None, ...] | None,
        grad_outputs: tuple[torch.Tensor | None, ...] | None,
        time_started: float,
        time_finished: float,
    ) -> None:
        self.pass_num = pass_num
        self.grad_inputs = grad_inputs
        self.grad_outputs = grad_outputs
        self.time_started = time_started
        self.time_finished = time_finished

    def to_pandas(self) -> Any:
        """One row: `pass_num, grad_inputs, grad_outputs, time_started, time_finished` (spec §13)."""
        return _one_row(self, GRAD_FN_PASS_LOG_COLUMNS)

    def __repr__(self) -> str:
        return (
            f"GradFnPassLog(pass_num={self.pass_num!r}, grad_inputs={self.grad_inputs!r}, "
            f"grad_outputs={self.grad_outputs!r}, time_started={self.time_started!r}, "
            f"time_finished={self.time_finished!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class GradFnLog:
    """One grad_fn the backward graph reached from a loss (spec §14-15).

    Matched grad_fns (`is_intervening=False`) were produced by a forward layer and carry its type
    and total numbers in their label; intervening ones (ops outside the logged forward pass, the
    parameters' `AccumulateGrad` nodes, ...) are numbered by type and discovery order.
    """

    def __init__(
        self,
        log: ModelLog,
        grad_fn_id: int,
        name: str,
        module_path: str,
        is_custom: bool,
        label: str,
        grad_fn_type: str,
        grad_fn_type_num: int,
        grad_fn_total_num: int,
        position: int | None,
        next_grad_fn_ids: list[int],
    ) -> None:
        self._log = log
        self._position = position
        self.grad_fn_id = grad_fn_id
        self.name = name
        self.module_path = module_path
        self.is_custom = is_custom
        self.label = label
        self.grad_fn_type = grad_fn_type
        self.grad_fn_type_num = grad_fn_type_num
        self.grad_fn_total_num = grad_fn_total_num
        self.next_grad_fn_ids = next_grad_fn_ids
        self.passes: dict[int, GradFnPassLog] = {}

    @property
    def is_intervening(self) -> bool:
        """No forward layer produced this grad_fn."""
        return self._position is None

    @property
    def corresponding_layer(self) -> Any:
        """The forward layer whose output this grad_fn belongs to (`model_log.layers[label]`: a LayerLog,
        or the pass's LayerPassLog for a multi-pass layer), None for intervening grad_fns."""
        if self._position is None:
            return None
        return self._log.layers[self._log._col("labels")[self._position]]

    @property
    def num_passes(self) -> int:
        return len(self.passes)

    @property
    def pass_labels(self) -> list[str]:
        return [f"{self.label}:{n}" for n in self.passes]

    def to_pandas(self) -> Any:
        """One row with the columns of spec §13 (`passes` and `corresponding_layer` hold the objects)."""
        return _one_row(self, GRAD_FN_LOG_COLUMNS)

    def __repr__(self) -> str:
        return (
            f"GradFnLog(grad_fn_id={self.grad_fn_id!r}, name={self.name!r}, module_path={self.module_path!r}, "
            f"is_custom={self.is_custom!r}, label={self.label!r}, grad_fn_type={self.grad_fn_type!r}, "
            f"grad_fn_type_num={self.grad_fn_type_num!r}, grad_fn_total_num={self.grad_fn_total_num!r}, "
            f"is_intervening={self.is_intervening!r}, corresponding_layer={self.corresponding_layer!r}, "
            f"next_grad_fn_ids={self.next_grad_fn_ids!r}, passes={self.passes!r})"
        )


class GradFnAccessor:
    """`model_log.grad_fns`: the GradFnLogs in discovery order.

    `acc[i]` (discovery order), `acc["label"]` (the first GradFnLog with that label; labels may
    repeat), `acc["label:N"]` (its GradFnPassLog of backward pass N), or `acc["text"]` (the first
    GradFnLog whose label contains the text).
    """

    def __init__(self, logs: list[GradFnLog]) -> None:
        self._logs = logs

    def __getitem__(self, key: Any) -> Any:
        logs = self._logs
        if isinstance(key, int) and not isinstance(key, bool):
            return logs[key]
        if isinstance(key, str):
            for g in logs:
                if g.label == key:
                    return g
            base, sep, k = key.rpartition(":")
            if sep and k.isdigit():
                for g in logs:
                    if g.label == base:
                        if int(k) in g.passes:
                            return g.passes[int(k)]
                        break
            else:
                for g in logs:
                    if key in g.label:
                        return g
        raise KeyError(f"GradFn '{key}' not found. Valid labels: {[g.label for g in logs][:10]}...")

    def __contains__(self, key: Any) -> bool:
        try:
            self[key]
        except (KeyError, IndexError):
            return False
        return True

    def __len__(self) -> int:
        return len(self._logs)

    def __iter__(self) -> Iterator[GradFnLog]:
        return iter(list(self._logs))

    def keys(self) -> list[str]:
        return [g.label for g in self._logs]

    def values(self) -> list[GradFnLog]:
        return list(self._logs)

    def __repr__(self) -> str:
        if not self._logs:
            return "GradFnAccessor({})"
        lines = [f"GradFnAccessor({len(self._logs)} grad_fns):"]
        for g in self._logs:
            lines.append(f"  '{g.label}': {g.name} (passes={g.num_passes}, intervening={g.is_intervening})")
        return "\n".join(lines)
