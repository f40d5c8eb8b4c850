"""`validate_backward_pass` (spec §11.4): backward capture checked against plain autograd."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

from . import api
from ._capture import run as _run
from ._variants import check_model_and_input_variants

_MAX_DEPTH = 8


def default_loss(outputs: Any) -> torch.Tensor:
    """The sum of every floating tensor the model returned, found as the log finds its outputs
    (`walk_outputs`), so the plain run and the logged one sum the same tensors."""
    outs: list[tuple[str, torch.Tensor]] = []
    _run.walk_outputs(outputs, outs)
    found = [t for _, t in outs if t.is_floating_point() or t.is_complex()]
    if not found:
        raise ValueError("validate_backward_pass: the model returned no tensor to build a loss from; pass loss_fn.")
    total = found[0].sum()
    for t in found[1:]:
        total = total + t.sum()
    return total


def _grad_inputs(obj: Any, depth: int = 0) -> Any:
    """Clone the inputs; floating tensors require grad, as in 2.15."""
    if isinstance(obj, torch.Tensor):
        c = obj.detach().clone()
        return c.requires_grad_(True) if c.is_floating_point() or c.is_complex() else c
    if depth >= _MAX_DEPTH:
        return obj
    if isinstance(obj, tuple | list):
        return type(obj)(_grad_inputs(o, depth + 1) for o in obj)
    if isinstance(obj, dict):
        return {k: _grad_inputs(v, depth + 1) for k, v in obj.items()}
    return obj


def _param_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def validate_backward_pass(
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict[str, Any] | None = None,
    loss_fn: Any = None,
    *,
    perturb_saved_gradients: bool = False,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> bool:
    """Check backward capture against a plain autograd run (spec §11.4).

    The model runs once without torchlens (floating inputs requiring grad), `loss_fn(outputs)`
    (default: the sum of every returned tensor) is backpropagated and the parameters' gradients
    kept. Then the model is logged with every gradient captured, the same loss is built from the
    logged outputs and run through `log_backward`. True when the parameter gradients agree
    (`allclose(atol, rtol)`, same names) and every saved layer gradient equals what
    `torch.autograd.grad` gives for that layer's tensor. `perturb_saved_gradients=True` corrupts
    one saved layer gradient first, so a working check returns False. The parameters' `.grad`
    are restored afterwards.
    """
    model = api._check_model(model)
    args, kwargs = _run.normalize_inputs(model, input_args, input_kwargs)
    check_model_and_input_variants(model, args, kwargs)
    loss_of = loss_fn if loss_fn is not None else default_loss
    seed = random.randint(1, 4294967294)
    before = {n: p.grad for n, p in model.named_parameters()}
    try:
        model.zero_grad(set_to_none=True)
        _run.seed_everything(seed)
        loss_of(model(*_grad_inputs(args), **_grad_inputs(kwargs))).backward()
        want = _param_grads(model)
        model.zero_grad(set_to_none=True)
        log = api.log_forward_pass(
            model,
            _grad_inputs(args),
            _grad_inputs(kwargs),
            layers_to_save="all",
            gradients_to_save="all",
            random_seed=seed,
        )
        outs = [log[label].activation for label in log.output_layers]
        loss = loss_of(outs[0] if len(outs) == 1 else outs)
        log.log_backward(loss, retain_graph=True)
        got = _param_grads(model)
        if perturb_saved_gradients:
            _perturb_one(log)
        return _same_params(want, got, atol, rtol) and _layer_grads_match(log, loss, atol, rtol)
    finally:
        for n, p in model.named_parameters():
            p.grad = before.get(n)


def _same_params(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor], atol: float, rtol: float) -> bool:
    if want.keys() != got.keys():
        return False
    return all(torch.allclose(want[n], got[n], atol=atol, rtol=rtol) for n in want)


def _perturb_one(log: Any) -> None:
    store = log._grad_store
    for nid in store.order if store is not None else ():
        g = store.grads.get(nid)
        if g is not None and g.numel() and nid < log._n_records:  # an op's, not an output node's copy
            store.grads[nid] = g + (g.abs().max() + 1)  # no gradient is unchanged by this
            return


def _layer_grads_match(log: Any, loss: torch.Tensor, atol: float, rtol: float) -> bool:
    """Every saved layer gradient equals `autograd.grad(loss, that layer's tensor)`."""
    labels = [lab for lab in log.layer_labels if log[lab].has_gradient and not log[lab].is_output_layer]
    tensors = [log[lab].activation for lab in labels]
    pairs = [(lab, t) for lab, t in zip(labels, tensors, strict=True) if t is not None and t.requires_grad]
    if not pairs:
        return True
    kept = {lab: log[lab].gradient for lab, _ in pairs}  # autograd.grad below runs the hooks again
    refs = torch.autograd.grad(loss, [t for _, t in pairs], allow_unused=True)
    for (lab, _), ref in zip(pairs, refs, strict=True):
        got = kept[lab]
        if ref is not None and (
            got is None or got.shape != ref.shape or not torch.allclose(got, ref, atol=atol, rtol=rtol)
        ):
            return False
    return True
