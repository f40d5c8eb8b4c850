"""`metadata.json` <-> `CaptureData`.

Writing: the capture data and per-node extras as JSON (`data_to_json`, `extras_to_json`).
Reading: the Rust core parses and validates the document (types, ranges, cross-references;
`bundle/metadata.rs`) and hands over plain data; here it is only mapped to Python objects. The
argument tokens (`toks`) are the exception: their encoding of Python values is defined here,
so `_dec_tok` checks each token as it decodes it.
"""

from __future__ import annotations

from typing import Any

import torch

from .._data import CaptureData, ModuleInfo, ParamInfo, legacy_tokens, split_tokens
from .._errors import TorchLensIOError
from .._native import core as _core
from ..log.model_log import ModelLog
from ._refs import dtype_name, torch_dtype

METADATA_SCHEMA = "torchlens-capture"
METADATA_VERSION = 1


class _Bad(Exception):
    """A token or name the core could not judge (its meaning is Python's): reported as metadata error."""


def json_safe(v: Any, depth: int = 0) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple) and depth < 8:
        return [json_safe(x, depth + 1) for x in v]
    if isinstance(v, dict) and depth < 8:
        return {str(k): json_safe(x, depth + 1) for k, x in v.items()}
    return f"<scrubbed:{type(v).__name__}>"


# ---------------------------------------------------------------------------------------- writing
def records_json(records: list[tuple]) -> list[list[Any]]:
    return [[*r[:6], list(r[6]), list(r[7]), r[8]] for r in records]


def metas_json(metas: list[tuple]) -> list[list[Any]]:
    return [[list(s), dtype_name(d), g] for s, d, g in metas]


def param_json(address: str, shape: Any, dtype: torch.dtype, numel: int, nbytes: int, requires_grad: bool) -> dict:
    return {
        "address": address,
        "shape": list(shape),
        "dtype": dtype_name(dtype),
        "numel": numel,
        "nbytes": nbytes,
        "requires_grad": requires_grad,
    }


def data_to_json(data: CaptureData) -> dict[str, Any]:
    return {
        "strings": list(data.strings),
        "records": records_json(data.records),
        "meta_ids": list(data.meta_ids),
        "metas": metas_json(data.metas),
        # Tuples encode as JSON arrays: the (nested) tuples go to the encoder as they are.
        "module_stacks": list(data.module_stacks),
        "module_exits": list(data.module_exits),
        "module_passes": list(data.module_passes),
        "outputs": list(data.outputs),
        "modules": [
            {
                "address": m.address,
                "class_name": m.class_name,
                "num_passes": m.num_passes,
                "all_addresses": m.all_addresses,
            }
            for m in data.modules
        ],
        "params": [param_json(p.address, p.shape, p.dtype, p.numel, p.nbytes, p.requires_grad) for p in data.params],
    }


class _CodeStub:
    """Stands in for a code object of a loaded bundle (file, name, first line, docstring)."""

    __slots__ = ("co_filename", "co_name", "co_firstlineno", "co_qualname", "co_consts")

    def __init__(self, filename: str, name: str, firstlineno: int, qualname: str, doc: str | None) -> None:
        self.co_filename = filename
        self.co_name = name
        self.co_firstlineno = firstlineno
        self.co_qualname = qualname
        self.co_consts = (doc,) if doc is not None else ()


# ------------------------------------------------------------------ argument tokens (encoding here)
def _enc_tok(v: Any, depth: int = 0) -> Any:
    if v is None or type(v) in (bool, int, float, str):
        return v
    if isinstance(v, torch.Size):
        return {"size": list(v)}
    if isinstance(v, tuple | list) and depth < 20:
        return {"t": [_enc_tok(x, depth + 1) for x in v]}
    return {"repr": str(v)}


_SCALAR_TYPES = frozenset((bool, int, float, str))
_INT_ONLY = frozenset((int,))


def _dec_tok(v: Any, depth: int = 0) -> Any:
    if v is None or type(v) in _SCALAR_TYPES:
        return v
    if type(v) is dict and len(v) == 1 and depth < 20:
        size = v.get("size")
        if type(size) is list and set(map(type, size)) <= _INT_ONLY:  # ints only (no bools)
            return torch.Size(size)
        if "t" in v and type(v["t"]) is list:
            return tuple(_dec_tok(x, depth + 1) for x in v["t"])
        if "repr" in v and type(v["repr"]) is str:
            return v["repr"]
    raise _Bad("toks: unexpected token")


def _enc_toks_entry(entry: Any) -> dict[str, Any]:
    """One node's tokens: `{"a": [positional...], "k": [[name, token], ...]}` ("k" only if any)."""
    pos, kw = split_tokens(entry)
    out: dict[str, Any] = {"a": [_enc_tok(t) for t in pos]}
    if kw:
        out["k"] = [[str(k), _enc_tok(v)] for k, v in kw.items()]
    return out


def _dec_toks_entry(v: Any) -> tuple[tuple, tuple]:
    if type(v) is dict and len(v) == 1 and type(v.get("a")) is list:  # no keyword arguments
        return tuple(map(_dec_tok, v["a"])), ()
    if type(v) is dict and "a" in v and type(v["a"]) is list and set(v) <= {"a", "k"}:
        kw = v.get("k", [])
        if type(kw) is not list or not all(type(p) is list and len(p) == 2 and type(p[0]) is str for p in kw):
            raise _Bad("toks: keyword tokens must be [name, token] pairs")
        return tuple(_dec_tok(t) for t in v["a"]), tuple((p[0], _dec_tok(p[1])) for p in kw)
    flat = _dec_tok(v)
    if type(flat) is not tuple:
        raise _Bad("toks: an entry must be an argument list")
    # Written before keyword tokens were stored apart: kwargs were a trailing tuple of pairs.
    return legacy_tokens(flat)


def extras_to_json(data: CaptureData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ft = getattr(data, "func_times", None)
    if isinstance(ft, dict):
        out["func_times"] = {"by_node": [[int(k), float(v)] for k, v in ft.items()]}
    elif ft is not None:
        out["func_times"] = {"list": [float(v) for v in ft]}
    toks = getattr(data, "toks", None)
    if isinstance(toks, list) and toks:
        out["toks"] = [_enc_toks_entry(t) for t in toks]
    if getattr(data, "site_ids", None) is not None:
        codes: dict[Any, int] = {}
        code_rows: list[list[Any]] = []

        def frame(fr: Any) -> list[int]:
            co, line = fr
            i = codes.get(co)
            if i is None:
                i = codes[co] = len(code_rows)
                consts = getattr(co, "co_consts", ())
                doc = consts[0] if consts and isinstance(consts[0], str) else None
                code_rows.append(
                    [
                        str(co.co_filename),
                        str(co.co_name),
                        int(co.co_firstlineno),
                        str(getattr(co, "co_qualname", co.co_name)),
                        doc,
                    ]
                )
            return [i, int(line)]

        out["sites"] = [[frame(fr) for fr in site] for site in data.sites]
        out["site_ids"] = list(data.site_ids)
        out["stack_sites"] = list(data.stack_sites)
        out["stack_parent"] = list(data.stack_parent)
        out["caller_site"] = None if data.caller_site is None else frame(data.caller_site)
        out["codes"] = code_rows
    return out


def _extras_from_json(d: dict[str, Any] | None, data: CaptureData) -> None:
    """Sets the extras of `data` from the core's validated `extras` (None when absent)."""
    if d is None:
        return
    if d["func_times"] is not None:
        data.func_times = d["func_times"]
    if d["toks"] is not None:
        data.toks = [_dec_toks_entry(t) for t in d["toks"]]
    if d["site_ids"] is not None:
        codes = [_CodeStub(*row) for row in d["codes"]]
        data.sites = [tuple((codes[i], line) for i, line in site) for site in d["sites"]]
        data.site_ids = d["site_ids"]
        data.stack_sites = d["stack_sites"]
        data.stack_parent = d["stack_parent"]
        caller = d["caller_site"]
        data.caller_site = None if caller is None else (codes[caller[0]], caller[1])


# ---------------------------------------------------------------------------------------- reading
def _dtype(name: str, what: str) -> torch.dtype:
    d = torch_dtype(name)
    if d is None:
        raise _Bad(f"{what}: unknown dtype {name!r}")
    return d


def capture_from_plain(c: dict[str, Any], extras: dict[str, Any] | None = None) -> CaptureData:
    """`CaptureData` from the core's validated `capture` (and `extras`) mapping."""
    try:
        metas = [(shape, _dtype(dt, f"metas[{i}]"), g) for i, (shape, dt, g) in enumerate(c["metas"])]
        params = [
            ParamInfo(a, shape, _dtype(dt, f"params[{i}]"), numel, nbytes, rg, None)
            for i, (a, shape, dt, numel, nbytes, rg) in enumerate(c["params"])
        ]
        data = CaptureData(
            c["strings"],
            c["records"],
            c["meta_ids"],
            metas,
            c["module_stacks"],
            c["module_exits"],
            c["module_passes"],
            c["outputs"],
            [ModuleInfo(*m) for m in c["modules"]],
            params,
        )
        _extras_from_json(extras, data)
    except (_Bad, RecursionError) as e:
        raise TorchLensIOError(f"invalid bundle metadata: {e}") from None
    return data


def build_log(model_name: str, data: CaptureData, info: dict[str, Any]) -> ModelLog:
    """Finalize `data` again (as the capture did) and wrap it in a `ModelLog`."""
    try:
        fin = _core.finalize(*data.core_inputs(), bool(info.get("detect_loops", True)))
    except (ValueError, TypeError, OverflowError, IndexError) as e:
        raise TorchLensIOError(f"invalid bundle metadata: the capture records are inconsistent ({e})") from None
    full = {
        "random_seed": info.get("random_seed", 0),
        "time_forward": info.get("time_forward", 0.0),
        "time_core": info.get("time_core", 0.0),
        "time_total": info.get("time_total", 0.0),
        "layers_to_save": info.get("layers_to_save", "all"),
        "detect_loops": bool(info.get("detect_loops", True)),
        "kept_nids": info.get("kept_nids"),
    }
    kept = full["kept_nids"]
    if kept is not None:
        known = set(fin.node_ids())
        if type(kept) is not list or not all(type(n) is int and n in known for n in kept):
            raise TorchLensIOError("invalid bundle metadata: info.kept_nids must list node ids of the capture")
    return ModelLog(model_name, data, fin, {}, full)
