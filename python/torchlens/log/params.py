"""Parameters: `ParamLog` and the parameter tables (spec §4.4)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from .._format import human_readable_size
from .export import PARAM_LOG_FIELDS, ExportMixin, frame

if TYPE_CHECKING:
    from .._data import ParamInfo
    from .model_log import ModelLog

_QUANTIZED = {getattr(torch, n) for n in ("qint8", "quint8", "qint32", "quint4x2", "quint2x4") if hasattr(torch, n)}


class ParamLog(ExportMixin):
    """One parameter of the model (spec §4.4)."""

    FIELDS = PARAM_LOG_FIELDS

    def __init__(self, log: ModelLog, index: int) -> None:
        self._log = log
        self._index = index
        info: ParamInfo = log._data.params[index]
        self._info = info
        self.address = info.address
        self.name = info.name
        self.shape = tuple(info.shape)
        # A parameter sharded over ranks (FSDP2 `fully_shard`): `shape` is the whole parameter's,
        # `local_shape` this rank's shard (None in a log loaded from a bundle, which does not store it).
        self.global_shape = self.shape
        self.local_shape = None if info.local_shape is None else tuple(info.local_shape)
        self.dtype = info.dtype
        self.num_params = info.numel
        self.memory = info.nbytes
        self.trainable = info.requires_grad
        self.is_quantized = info.dtype in _QUANTIZED
        self.has_optimizer = None
        self.module_address = info.module_address
        self.barcode = f"param_{index}"
        self._param_ref = info.param
        self._grad_cache: tuple | None = None

    @property
    def is_sharded(self) -> bool:
        """Whether this rank holds only a shard of the parameter (`local_shape` differs from `shape`)."""
        return self.local_shape is not None and self.local_shape != self.shape

    @property
    def memory_str(self) -> str:
        return human_readable_size(self.memory)

    @property
    def module_type(self) -> str | None:
        if self.module_address == "self":
            return self._log.model_name
        return self._log._module_types().get(self.module_address)

    @property
    def used_by_layers(self) -> list[str]:
        return param_users(self._log).get(self._index, [])

    @property
    def num_passes(self) -> int:
        return max(1, len(self.used_by_layers))

    @property
    def linked_params(self) -> list[str]:
        return sorted(param_links(self._log).get(self._index, set()))

    def _live(self) -> Any:
        r = self._param_ref
        return r() if callable(r) else r

    def _grad_info(self) -> tuple | None:
        if self._grad_cache is not None:
            return self._grad_cache
        p = self._live()
        g = None if p is None else p.grad
        if g is None:
            return None
        self._grad_cache = (tuple(g.shape), g.dtype, g.numel() * g.element_size())
        return self._grad_cache

    @property
    def has_grad(self) -> bool:
        return self._grad_info() is not None

    @property
    def grad_shape(self) -> tuple | None:
        g = self._grad_info()
        return None if g is None else g[0]

    @property
    def grad_dtype(self) -> Any:
        g = self._grad_info()
        return None if g is None else g[1]

    @property
    def grad_memory(self) -> int | None:
        g = self._grad_info()
        return None if g is None else g[2]

    @property
    def grad_memory_str(self) -> str | None:
        g = self.grad_memory
        return None if g is None else human_readable_size(g)

    def release_param_ref(self) -> None:
        """Cache the gradient metadata, then forget the live parameter."""
        self._grad_info()
        self._param_ref = None
        self._info = dataclasses.replace(self._info, param=None)

    def __getstate__(self) -> dict[str, Any]:
        self._grad_info()
        state = dict(self.__dict__)
        state["_param_ref"] = None
        state["_info"] = dataclasses.replace(self._info, param=None)
        return state

    def __len__(self) -> int:
        return self.num_params

    def row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def to_pandas(self) -> Any:
        return frame([self.row()], self.FIELDS)

    def __repr__(self) -> str:
        lines = [
            f"ParamLog: {self.address}",
            f"  shape: {self.shape}",
            *([f"  local_shape: {self.local_shape}"] if self.is_sharded else []),
            f"  dtype: {self.dtype}",
            f"  size: {self.num_params} params ({self.memory_str})",
            "  trainable" if self.trainable else "  frozen",
            f"  has_grad: {self.has_grad}",
            f"  module: {self.module_address} ({self.module_type})",
        ]
        if self.used_by_layers:
            lines.append("  used by: " + ", ".join(self.used_by_layers))
        if self.linked_params:
            lines.append("  linked: " + ", ".join(self.linked_params))
        if self.num_passes > 1:
            lines.append(f"  num_passes: {self.num_passes}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- tables


def used_params(log: ModelLog) -> list[ParamInfo]:
    """Parameters some logged operation read, in parameter order."""
    params = log._data.params
    used: set[int] = set()
    for pos in range(log._n_pos):
        if not log._is_output(pos):
            used.update(log._param_ids(pos))
    return [params[k] for k in sorted(used)]


def param_users(log: ModelLog) -> dict[int, list[str]]:
    """Parameter index -> labels of the entries computed from it, in execution order."""

    def build() -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        labels = log._col("labels")
        for pos in log._positions():
            if log._is_output(pos):
                continue
            for p in dict.fromkeys(log._param_ids(pos)):
                out.setdefault(p, []).append(labels[pos])
        return out

    return log._cached("params.users", build)


def param_links(log: ModelLog) -> dict[int, set[str]]:
    """Parameter index -> addresses of the parameters used together with it by some operation."""

    def build() -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        params = log._data.params
        for pos in range(log._n_pos):
            if log._is_output(pos):
                continue
            ids = set(log._param_ids(pos))
            for p in ids:
                out.setdefault(p, set()).update(params[q].address for q in ids if q != p)
        return out

    return log._cached("params.links", build)


def layers_with_params(log: ModelLog) -> dict[str, list[str]]:
    """First user of each parameter -> every entry that used the same parameter."""
    out: dict[str, list[str]] = {}
    for _, users in sorted(param_users(log).items()):
        out.setdefault(users[0], [])
        for u in users:
            if u not in out[users[0]]:
                out[users[0]].append(u)
    return out
