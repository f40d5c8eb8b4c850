"""The save path with an `activation_postfunc`, and the `train_mode` guard rails shared by the entry points."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._data import F_FUNC, F_KIND, F_LAYER_TYPE, raw_label, raw_type_counts
from .._errors import TorchLensPostfuncError, TrainingModeConfigError
from . import hot
from .strings import STRINGS

if TYPE_CHECKING:
    from .session import Session


def _label(s: Session, nid: int) -> str:
    recs = s.records
    return raw_label(
        STRINGS[recs[nid][F_LAYER_TYPE]], recs[nid][F_KIND], raw_type_counts(recs[: nid + 1])[nid], nid + 1
    )


def check_no_inference_mode() -> None:
    """Spec §8.6: inference tensors cannot carry autograd history, so train_mode refuses to start."""
    if torch.is_inference_mode_enabled():
        raise TrainingModeConfigError(
            "train_mode=True cannot run while PyTorch inference mode is active; inference tensors cannot retain "
            "autograd history"
        )


def check_train_output(tr: Any, raw: Tensor, label: str) -> None:
    """Spec §8.6: in train_mode a postfunc must keep a grad-requiring activation differentiable."""
    if not raw.requires_grad:
        return
    if not isinstance(tr, Tensor):
        raise TrainingModeConfigError(
            f"activation_postfunc must return a torch.Tensor while train_mode=True for layer {label}."
        )
    if not (tr.is_floating_point() or tr.is_complex()):
        raise TrainingModeConfigError(
            f"train_mode=True with non-grad dtype {tr.dtype} on layer {label}. "
            "Integer and bool dtypes cannot propagate gradients."
        )
    if tr.grad_fn is None and not tr.requires_grad:
        raise TrainingModeConfigError(
            "activation_postfunc returned a tensor disconnected from the autograd graph (grad_fn is None) while "
            "train_mode=True. The transformed activation must remain differentiable."
        )


def save_post(s: Session, t: Tensor, nid: int) -> None:
    """Save path with an activation postfunc: keep a copy and the postfunc's result."""
    c = hot.raw_clone(t)
    if s.detach:
        c = hot.raw_detach(c)
    with hot.paused():
        try:
            tr = s.postfunc(c)
        except Exception as e:
            label = _label(s, nid)
            raise TorchLensPostfuncError(
                f"activation_postfunc raised for layer {label} (raw={label}, func={STRINGS[s.records[nid][F_FUNC]]}, "
                f"shape={tuple(t.shape)}, dtype={t.dtype}, "
                f"streaming_active={s.sink is not None and s.sink.streaming_active})."
            ) from e
    if s.train_mode:
        check_train_output(tr, c, _label(s, nid))
    s.transformed[nid] = tr
    if s.save_raw:
        s.saved[nid] = c
    if s.sink is not None:  # streaming (`io.StreamSink` / `io.CallbackSink`): raw copy if kept, and tr
        s.sink.post(s, c if s.save_raw else None, tr, nid)
