"""`Recorder` and `record`: predicate-selected recording over one or many inputs (spec §10.2, §10.3, §10.8)."""

from __future__ import annotations

import gc
import random
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._capture import distributed, hot, run, wrap
from .._capture.postfunc import check_no_inference_mode, check_train_output
from .._options import MISSING, StreamingOptions
from .._progress import progress as _progress
from ..io import _ranks
from ..log.build import metadata_log
from . import _storage
from ._recording import _RECORD_POSTPROCESS, Recording
from ._session import Decider, FastSession, retained_copy
from ._state import model_state_kept
from ._types import (
    CaptureSpec,
    PredicateError,
    RecorderStateError,
    RecordingConfigError,
    TrainingModeConfigError,
    new_record,
)

_ERROR_MODES = ("auto", "accumulate", "fail-fast")


@dataclass(frozen=True)
class RecordingOptions:
    """Validated fastlog options (spec §10.3)."""

    keep_op: Any = None
    keep_module: Any = None
    default_op: Any = False
    default_module: Any = False
    history_size: int = 8
    include_source_events: bool = False
    max_predicate_failures: int = 32
    on_predicate_error: str = "auto"
    streaming: StreamingOptions | None = None
    random_seed: int | None = None
    activation_postfunc: Any = None
    save_raw_activation: bool = True
    train_mode: bool = False


def _repr(f: Any) -> str | None:
    if f is None:
        return None
    return getattr(f, "__qualname__", None) or repr(f)


def _check_options(o: RecordingOptions) -> RecordingOptions:
    if o.keep_op is not None and not callable(o.keep_op):
        raise RecordingConfigError("keep_op must be callable or None")
    if o.keep_module is not None and not callable(o.keep_module):
        raise RecordingConfigError("keep_module must be callable or None")
    for name in ("default_op", "default_module"):
        v = getattr(o, name)
        if v is not MISSING and not isinstance(v, bool | CaptureSpec):
            raise RecordingConfigError(f"{name} must be a bool or CaptureSpec")
    if isinstance(o.history_size, bool) or not isinstance(o.history_size, int) or not 0 <= o.history_size <= 1024:
        raise RecordingConfigError("history_size must be an int in [0, 1024]")
    if (
        isinstance(o.max_predicate_failures, bool)
        or not isinstance(o.max_predicate_failures, int)
        or (o.max_predicate_failures < 0)
    ):
        raise RecordingConfigError("max_predicate_failures must be an int >= 0")
    if o.on_predicate_error not in _ERROR_MODES:
        raise RecordingConfigError(f"on_predicate_error must be one of {_ERROR_MODES}")
    if o.activation_postfunc is not None and not callable(o.activation_postfunc):
        raise RecordingConfigError("activation_postfunc must be callable or None")
    if o.streaming is not None and not isinstance(o.streaming, StreamingOptions):
        raise RecordingConfigError("streaming must be a StreamingOptions or None")
    disk_only = o.streaming is not None and o.streaming.bundle_path is not None and not o.streaming.retain_in_memory
    dop, dmod = o.default_op, o.default_module
    if o.train_mode:
        check_no_inference_mode()
        for name, v in (("default_op", dop), ("default_module", dmod)):
            if v is True or (isinstance(v, CaptureSpec) and not v.keep_grad):
                raise TrainingModeConfigError(
                    f"train_mode=True conflicts with {name}={v!r}; use CaptureSpec(keep_grad=True) or omit it"
                )
        if dop is MISSING:
            dop = CaptureSpec(keep_grad=True)
    dop = False if dop is MISSING else dop
    dmod = False if dmod is MISSING else dmod
    if disk_only and isinstance(dop, CaptureSpec) and dop.keep_grad:
        raise RecordingConfigError("fastlog cannot use keep_grad=True with disk-only fastlog storage")
    has_default = bool(dop) or bool(dmod)
    if isinstance(dop, CaptureSpec):
        has_default = dop.save_activation or dop.save_metadata or bool(dmod)
    if o.keep_op is None and o.keep_module is None and not has_default:
        raise RecordingConfigError("fastlog requires a predicate or a true default capture spec")
    return RecordingOptions(**{**o.__dict__, "default_op": dop, "default_module": dmod})


def _reject_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise RecordingConfigError("fastlog needs a torch.nn.Module")
    name = type(model).__name__
    if name == "FullyShardedDataParallel" or "fsdp" in type(model).__module__.lower():
        raise RuntimeError(
            "torchlens.fastlog does not support FullyShardedDataParallel (FSDP): "
            "record the unwrapped module on each rank instead"
        )
    if name == "OptimizedModule" or hasattr(model, "_orig_mod"):
        # 2.15's wording, "in train_mode" included whatever the mode.
        raise RuntimeError(
            "torchlens.fastlog.record does not support torch.compile'd models in train_mode: dynamo replaces the "
            "Python forward with a compiled graph that bypasses TorchLens' function wrappers. Call the API on the "
            "original un-compiled model."
        )
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        model = model.module
    distributed.refuse_for_fastlog(model)  # FSDP inside the model, DTensor tensor parallelism
    return model


def _rank() -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except Exception:  # noqa: BLE001
        pass
    return 0


def _normalize(input_args: Any, input_kwargs: dict | None) -> tuple[tuple, dict]:
    kwargs = dict(input_kwargs or {})
    if input_args is None:
        return (), kwargs
    if type(input_args) is tuple:
        return input_args, kwargs
    if type(input_args) is list:
        return tuple(input_args), kwargs
    return (input_args,), kwargs


def _input_tensors(args: tuple, kwargs: dict) -> list[tuple[str, Tensor]]:
    found: list[tuple[str, Tensor]] = []
    for i, a in enumerate(args):
        run._walk_tensors(a, f"input.{i}", found)
    for k, v in kwargs.items():
        run._walk_tensors(v, f"input.{k}", found)
    return [(r, t) for r, t in found if type(t) is Tensor]


class Recorder:
    """Records predicate-selected events over one or many forward passes (spec §10.3)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        keep_op: Any = None,
        keep_module: Any = None,
        default_op: Any = MISSING,
        default_module: Any = MISSING,
        history_size: int = 8,
        include_source_events: bool = False,
        max_predicate_failures: int = 32,
        on_predicate_error: str = "auto",
        streaming: StreamingOptions | None = None,
        random_seed: int | None = None,
        activation_postfunc: Any = None,
        save_raw_activation: bool = True,
        train_mode: bool = False,
        copy_payloads: bool = False,
        final_labels: bool = False,
    ) -> None:
        self.model = _reject_model(model)
        self.copy_payloads = copy_payloads
        self.final_labels = final_labels
        self._label_maps: dict[Any, dict[int, tuple[str, str]] | None] = {}
        self._label_map: dict[int, tuple[str, str]] | None = None
        self._session: FastSession | None = None
        self.options = _check_options(
            RecordingOptions(
                keep_op,
                keep_module,
                default_op,
                default_module,
                history_size,
                include_source_events,
                max_predicate_failures,
                on_predicate_error,
                streaming,
                random_seed,
                activation_postfunc,
                save_raw_activation,
                train_mode,
            )
        )
        o = self.options
        self.bundle_path: Path | None = None
        self.retain = True
        if o.streaming is not None and o.streaming.bundle_path is not None:
            p = Path(o.streaming.bundle_path)
            self.bundle_path = p.parent / f"rank_{_rank():02d}" / p.name
            self.retain = o.streaming.retain_in_memory
        mode = o.on_predicate_error
        fail_fast = mode == "fail-fast" or (mode == "auto" and self.bundle_path is not None)
        self.decider = Decider(
            o.keep_op, o.keep_module, o.default_op, o.default_module, fail_fast, o.max_predicate_failures
        )
        self._state = "new"
        self._recording: Recording | None = None
        self._store: _storage.DiskStore | None = None
        self._passes = 0
        self._wrapped = False

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Recorder:
        if self._state != "new":
            raise RecorderStateError("a Recorder can be entered only once")
        self._state = "open"
        o = self.options
        self._rec = Recording(
            bundle_path=str(self.bundle_path) if self.bundle_path is not None else None,
            keep_op_repr=_repr(o.keep_op),
            keep_module_repr=_repr(o.keep_module),
            history_size=o.history_size,
            activation_postfunc_repr=_repr(o.activation_postfunc),
        )
        if self.bundle_path is not None:
            self._store = _storage.DiskStore(self.bundle_path)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._state != "open":
            return
        self._state = "closed"
        rec = self._rec
        d = self.decider
        rec._set("predicate_failures", list(d.failures))
        rec._set("predicate_failure_overflow_count", d.overflow)
        if exc_type is not None:
            if self._store is not None:
                self._store.abort()
                self._finish_shard()  # the other ranks' index barrier must not wait for this one
            self._recording = rec
            return
        if self._store is not None:
            o = self.options
            meta = {
                "n_passes": rec.n_passes,
                "n_records": rec.n_records,
                "pass_start_times": rec.pass_start_times,
                "pass_end_times": rec.pass_end_times,
                "keep_op_repr": rec.keep_op_repr,
                "keep_module_repr": rec.keep_module_repr,
                "history_size": rec.history_size,
                "predicate_failure_overflow_count": d.overflow,
                "activation_postfunc_repr": rec.activation_postfunc_repr,
                "save_raw_activation": o.save_raw_activation,
                "sample_ids": {str(k): _jsonable(v) for k, v in rec.sample_ids.items()},
            }
            final = self._store.finalize(meta, rec.by_pass, rec.by_label)
            rec._set("bundle_path", str(final))
            self._finish_shard()
        self._recording = rec
        if d.total_failures and not d.fail_fast:
            raise PredicateError(
                f"fastlog predicate failed during recording: {d.last_error}",
                failures=tuple(d.failures),
                total_count=d.total_failures,
                overflow=d.overflow,
            )

    def _finish_shard(self) -> None:
        """Under torch.distributed: barrier, then rank 0 writes the rank index (io/_ranks.py)."""
        if self.bundle_path is not None:
            try:
                _ranks.finish_shard(self.bundle_path, "fastlog")
            except Exception as e:  # noqa: BLE001 - the shard itself is complete; only the index is missing
                warnings.warn(f"fastlog: rank index not written: {e}", RuntimeWarning, stacklevel=3)

    @property
    def recording(self) -> Recording:
        if self._recording is None:
            raise RecorderStateError("Recorder.recording is available only after the `with` block exits")
        return self._recording

    # ------------------------------------------------------------------ passes
    def log(self, input_args: Any, input_kwargs: dict | None = None, *, sample_id: Any = None) -> Any:
        if self._state != "open":
            raise RecorderStateError("Recorder.log() must be called inside the Recorder's `with` block")
        args, kwargs = _normalize(input_args, input_kwargs)
        o = self.options
        self._passes += 1
        p = self._passes
        rec = self._rec
        if sample_id is not None:
            rec.sample_ids[p] = sample_id
        sink = self._sink
        self._label_map = self._final_label_map(args, kwargs) if self.final_labels else None
        session = FastSession(self.model, self.decider, sink, o.history_size, o.include_source_events, p, sample_id)
        if not run._lock.acquire(blocking=False):
            raise RecorderStateError("another torchlens capture is already running in this process")
        gc_was = gc.isenabled()
        gc.disable()
        self._session = session
        try:
            if not self._wrapped:
                wrap.ensure_wrapped()
                self._wrapped = True
            if o.random_seed is not None:
                run.seed_everything(o.random_seed)
            session.register_buffers()
            session.t0 = time.perf_counter()
            rec.pass_start_times.append(time.time())
            for role, t in _input_tensors(args, kwargs):
                session.log_input(t, role)
            session.enter_root()
            hot.set_session(session)
            try:
                out = self.model(*args, **kwargs)
            finally:
                hot.set_session(None)
            session.exit_root()
            rec.pass_end_times.append(time.time())
            rec._set("n_passes", p)
            if self._label_map:
                self._check_label_map(session, args, kwargs)
            changed = session.check_versions()
            if changed:
                warnings.warn(
                    f"fastlog: {len(changed)} kept tensor(s) were modified in place by code TorchLens does not "
                    f"intercept (e.g. {changed[0]}); their records show the modified values. Pass "
                    "copy_payloads=True to store copies.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        finally:
            hot.set_session(None)
            self._session = None
            session.strip_tags()
            if gc_was:
                gc.enable()
            run._lock.release()
        return out

    def log_many(
        self,
        inputs: Iterable[Any],
        *,
        sample_ids: Iterable[Any] | None = None,
        progress: bool | None = None,
        desc: str = "fastlog",
    ) -> list[Any] | None:
        """Log every input of an iterable (tuples are positional args).

        ``progress``: a tqdm bar over the inputs; None (default) shows it only on a terminal or
        in a notebook, True always, False never. Outputs are not kept (bounded memory); returns
        None.
        """
        ids = iter(sample_ids) if sample_ids is not None else None
        total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
        it = _progress(inputs, total=total, desc=desc, unit="input", enabled=progress, leave=True)
        for i, x in enumerate(it):
            sid = next(ids) if ids is not None else i
            self.log(x, sample_id=sid)
        return None

    # ------------------------------------------------------------------ final labels
    def _final_label_map(self, args: tuple, kwargs: dict) -> dict[int, tuple[str, str]] | None:
        """creation order -> (layer_type, final label) from one metadata-only `log_forward_pass`.

        Computed once per input signature (shapes, dtypes, devices) and reused. The model's buffers
        and the RNG states are restored afterwards, so the recorded passes see the same state.
        """
        sig = _signature(args, kwargs)
        if sig in self._label_maps:
            return self._label_maps[sig]
        model = self.model
        try:
            with model_state_kept(model):
                inp: Any = args[0] if len(args) == 1 else list(args)
                log = metadata_log(model, inp, kwargs or None)
            mapping = {}
            for layer in log:
                lt = layer.layer_type
                if lt == "output":
                    continue
                mapping[int(layer.creation_order)] = (lt, layer.layer_label)
        except Exception as e:  # noqa: BLE001 - labels stay raw; recording itself is unaffected
            warnings.warn(
                f"fastlog: final labels unavailable ({type(e).__name__}: {e}); records keep raw labels",
                RuntimeWarning,
                stacklevel=3,
            )
            mapping = None
        self._label_maps[sig] = mapping
        return mapping

    def _check_label_map(self, session: FastSession, args: tuple, kwargs: dict) -> None:
        """After a pass: if its op sequence differs from the mapped one, revert this pass to raw labels."""
        from .._capture.strings import STRINGS

        mapping = self._label_map or {}
        parts = session.label_parts
        bad = any(
            m is not None and m[0] != STRINGS[parts[c][0]]
            for c, m in ((c, mapping.get(c)) for c in range(1, len(parts)))
        )
        if not bad:
            return
        self._label_maps[_signature(args, kwargs)] = None
        warnings.warn(
            "fastlog: this pass's operation sequence differs from the log_forward_pass used for final labels "
            "(data-dependent control flow); its records keep raw labels",
            RuntimeWarning,
            stacklevel=3,
        )
        rec = self._rec
        for i in rec.by_pass.get(session.pass_index, []):
            r = rec.records[i]
            if r.ctx.label != r.ctx.raw_label:
                object.__setattr__(r, "ctx", r.ctx.with_label(r.ctx.raw_label))

    def _sink(self, ctx: Any, spec: CaptureSpec, t: Tensor | None) -> None:
        o = self.options
        lm = self._label_map
        if lm is not None and ctx.kind != "module_enter" and ctx.kind != "module_exit":
            m = lm.get(ctx.creation_order)
            if m is not None and m[0] == ctx.layer_type:
                ctx = ctx.with_label(m[1])
        store = self._store
        ram = raw_disk = tr_ram = tr_disk = None
        metadata: dict[str, Any] = {}
        if spec.save_activation and t is not None:
            if spec.keep_grad and store is not None and not self.retain:
                raise PredicateError("keep_grad=True is invalid for disk-only fastlog storage", ctx=ctx)
            # RAM: keep a reference (copy-on-write, see FastSession.track); disk only: the bytes are
            # copied out right away by the writer, so no intermediate clone is needed either.
            by_ref = not self.copy_payloads and o.activation_postfunc is None
            copy = retained_copy(t, spec, copy=not by_ref)
            transformed = None
            if o.activation_postfunc is not None:
                transformed = o.activation_postfunc(copy)
                if spec.keep_grad:  # spec §8.6: a keep-grad capture must stay differentiable
                    check_train_output(transformed, copy, ctx.label)
            keep_raw = o.save_raw_activation or transformed is None
            if self.retain:
                ram = copy if keep_raw else None
                tr_ram = transformed
            if store is not None:
                payloads = []
                label = ctx.label
                if keep_raw:
                    payloads.append((f"{label}::activation", copy))
                if isinstance(transformed, Tensor):
                    payloads.append((f"{label}::transformed_activation", transformed))
                metadata = store.write(ctx.to_json(), spec.to_json(), payloads, time.time())
        elif store is not None:
            metadata = store.write(ctx.to_json(), spec.to_json(), [], time.time())
        if store is not None and not self.retain:
            ctx = ctx.frozen(False) if ctx._hist else ctx
        record = new_record(ctx, spec, ram, raw_disk, tr_ram, tr_disk, metadata, time.time())
        self._rec._add(record)
        if ram is not None and t is not None and self._session is not None and not self.copy_payloads:
            self._session.track(record, t)


def _signature(args: tuple, kwargs: dict) -> Any:
    def sig(a: Any, depth: int = 0) -> Any:
        if isinstance(a, Tensor):
            return ("T", tuple(a.shape), a.dtype, a.device.type)
        if isinstance(a, tuple | list) and depth < 5:
            return tuple(sig(b, depth + 1) for b in a)
        if isinstance(a, dict) and depth < 5:
            return tuple((k, sig(v, depth + 1)) for k, v in a.items())
        return type(a).__name__

    return (sig(args), sig(kwargs))


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return repr(v)


def record(
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict | None = None,
    *,
    keep_op: Any = None,
    keep_module: Any = None,
    default_op: Any = MISSING,
    default_module: Any = MISSING,
    history_size: int = 8,
    include_source_events: bool = False,
    max_predicate_failures: int = 32,
    on_predicate_error: str = "auto",
    streaming: StreamingOptions | None = None,
    return_output: bool = False,
    postprocess: str = "none",
    random_seed: int | None = None,
    activation_postfunc: Any = None,
    save_raw_activation: bool = True,
    train_mode: bool = False,
) -> Any:
    """One forward pass through a `Recorder`; returns the `Recording` (and the output if asked)."""
    if postprocess not in _RECORD_POSTPROCESS:
        raise RecordingConfigError(f"postprocess must be one of {_RECORD_POSTPROCESS}")
    rec = Recorder(
        model,
        keep_op=keep_op,
        keep_module=keep_module,
        default_op=default_op,
        default_module=default_module,
        history_size=history_size,
        include_source_events=include_source_events,
        max_predicate_failures=max_predicate_failures,
        on_predicate_error=on_predicate_error,
        streaming=streaming,
        random_seed=random_seed,
        activation_postfunc=activation_postfunc,
        save_raw_activation=save_raw_activation,
        train_mode=train_mode,
        final_labels=postprocess == "labels",
    )
    with rec:
        out = rec.log(input_args, input_kwargs)
    recording = rec.recording
    if postprocess not in ("none", "labels"):
        recording.enrich(postprocess, model=rec.model)
    return (out, recording) if return_output else recording


# --------------------------------------------------------------------------- load / recover


def _seed(seed: int | None) -> None:
    if seed is not None:
        random.seed(seed)
        torch.manual_seed(seed)
