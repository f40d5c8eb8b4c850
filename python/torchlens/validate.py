"""Forward-pass validation (spec §11): replay every op from its parents' saved activations.

`validate_forward_pass(model, x)` runs the model once without logging (ground truth), logs it with
`save_function_args=True, save_rng_states=True`, then `validate_log` checks (1) the outputs against
the ground truth, (2) each op's saved activation against a replay of `func_applied` on copies of its
captured arguments with the parents' saved activations substituted, (3) that perturbing each
parent changes the replayed output (so parent attribution is real), (4) metadata invariants.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._capture import hot
from ._capture.modules import model_device
from ._capture.run import _clone_inputs, seed_everything, walk_outputs
from ._data import F_FUNC, F_OUT_INDEX, KIND_OP, ParentRef, map_captured, returns_none_self
from ._errors import MetadataInvariantError
from ._progress import logger
from ._progress import progress as _progress
from .log import conditionals, modules, params, relations

if TYPE_CHECKING:
    from .log.model_log import ModelLog

_SKIP_ALL = frozenset({"empty_like", "new", "new_empty", "empty", "new_empty_strided", "empty_strided"})
_SKIP_PERTURB = frozenset(
    """expand_as new_zeros new_ones new_full new_tensor zero_ copy_ clamp clamp_ fill_ zeros_like ones_like
    full_like rand_like randn_like randint_like meshgrid broadcast_tensors exponential_ type_as view_as
    reshape_as __setitem__ masked_fill masked_fill_ index_select scatter scatter_ scatter_add_ gather embedding
    cross_entropy nll_loss size dim numel bernoulli_ bernoulli uniform_ normal_ random_ detach detach_
    requires_grad_ lstm gru rnn_tanh rnn_relu interpolate where masked_scatter masked_select
    _pad_packed_sequence pack_padded_sequence to type cpu cuda float double half int long bool
    max_pool2d_with_indices argmax argmin topk sort argsort _op""".split()
)  # `_op`: torchvision's compiled ops (spec §11.2), e.g. deform_conv2d's unused zero mask


def ground_truth(model: nn.Module, args: list, kwargs: dict, random_seed: int) -> dict[str, torch.Tensor]:
    """Outputs of a plain run by output address, seeded as the logged run will be; state restored after."""
    device = model_device(model)
    gt_args = _clone_inputs(args, device)
    gt_kwargs = _clone_inputs(kwargs, device)
    live_state = model.state_dict()
    state = OrderedDict((k, v.detach().clone()) for k, v in live_state.items())
    # Modules such as MNASNet read per-module versions from the state dict's metadata on load.
    metadata = getattr(live_state, "_metadata", None)
    if metadata is not None:
        state._metadata = metadata  # type: ignore[attr-defined]
    seed_everything(random_seed)
    with hot.paused():
        out = model(*gt_args, **gt_kwargs)
    # The same walk that names the logged output nodes, so ground truth is matched by output address.
    found: list[tuple[str, torch.Tensor]] = []
    walk_outputs(out, found)
    truth_by_role = {role: t.detach().clone() for role, t in found}
    del out
    with torch.no_grad():
        model.load_state_dict(state)
    return truth_by_role


def check_against_truth(
    log: ModelLog,
    truth_by_role: dict[str, torch.Tensor],
    verbose: bool,
    validate_metadata: bool,
    progress: bool | None = None,
) -> bool:
    """Validate a log captured with every activation and argument saved, then free it."""
    try:
        roles = [log[label].io_role for label in log.output_layers]
        if any(r not in truth_by_role for r in roles):
            return False
        ground = [truth_by_role[r] for r in roles]
        return log.validate_forward_pass(
            ground, verbose=verbose, validate_metadata=validate_metadata, progress=progress
        )
    finally:
        log.cleanup()


# --------------------------------------------------------------------------- comparisons


def _same(a: Any, b: Any, exact: bool) -> bool:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        try:
            return bool(a == b)
        except Exception:
            return False
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a = a.detach()
    b = b.detach()
    if a.device != b.device:
        b = b.to(a.device)
    if a.numel() == 0:
        return True
    if a.is_floating_point() or a.is_complex():
        nan_a, nan_b = a.isnan(), b.isnan()
        if not torch.equal(nan_a, nan_b):
            return False
        if exact:
            return bool(((a == b) | nan_a).all())
        return bool(torch.isclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True).all())
    return bool(torch.equal(a, b))


def _differing_nonsense(t: torch.Tensor, attempts: int = 100) -> torch.Tensor | None:
    """`_nonsense(t)` that differs from `t` somewhere, or None after `attempts` tries (spec §11.2: a
    constant far from zero, like a -1e38 initial state, has no other value within its range)."""
    for _ in range(attempts):
        n = _nonsense(t)
        with torch.no_grad():
            if not bool((n == t.detach()).all()):
                return n
    return None


def _nonsense(t: torch.Tensor) -> torch.Tensor:
    """Random values of the same shape/dtype spread over the original range (spec §11.2)."""
    with torch.no_grad():
        t = t.detach()
        if t.dtype == torch.bool:
            return torch.randint(0, 2, t.shape, device=t.device).bool()
        if t.is_floating_point() or t.is_complex():
            base = t.real.float() if t.is_complex() else t.float()
            finite = base[base.isfinite()]
            lo = float(finite.min()) if finite.numel() else -1.0
            hi = float(finite.max()) if finite.numel() else 1.0
            span = hi - lo
            pad = 0.1 * max(abs(lo), abs(hi)) if span > 1e-6 else 1.0
            lo, hi = lo - pad, hi + pad
            r = torch.rand(t.shape, device=t.device) * (hi - lo) + lo
            return r.to(t.dtype)
        lo, hi = int(t.min()) if t.numel() else 0, int(t.max()) if t.numel() else 10
        if lo == hi:
            lo, hi = (-10, 10) if lo < 0 else (0, 10)
        return torch.randint(lo, hi + 1, t.shape, device=t.device).to(t.dtype)


# --------------------------------------------------------------------------- replay


def _copy(v: Any) -> Any:
    return v.clone() if isinstance(v, torch.Tensor) else v


def _copy_unless_param(v: Any) -> Any:
    return v if isinstance(v, torch.nn.Parameter) else _copy(v)


def _substitute(obj: Any, values: dict[int, Any]) -> Any:
    """Arguments for a replay: parents' recorded values, and every tensor but a parameter, as copies
    the replayed call may change."""
    return map_captured(obj, lambda r: _copy(values[r.nid]), _copy_unless_param)


def _refs(obj: Any, out: list, depth: int = 0) -> list:
    if isinstance(obj, ParentRef):
        out.append(obj)
    elif depth < 6:
        if type(obj) is tuple or type(obj) is list:
            for o in obj:
                _refs(o, out, depth + 1)
        elif type(obj) is dict:
            for o in obj.values():
                _refs(o, out, depth + 1)
    return out


def _replay(log: Any, nid: int, fa: tuple, values: dict[int, Any], whole: bool = False) -> Any:
    """The op re-run on `values`: its result for this node, or with `whole` every tensor result of the call."""
    orig, cargs, ckwargs = fa
    args = _substitute(cargs, values)
    kwargs = _substitute(ckwargs, values)
    st = log._data.func_rng.get(nid)
    with hot.paused(), torch.no_grad(), contextlib.ExitStack() as regions:
        for device_type, dtype in _autocast_regions(log, nid):
            regions.enter_context(torch.autocast(device_type, dtype=dtype))
        if st is not None:
            torch.set_rng_state(st[0])
            if st[1] is not None:
                torch.cuda.set_rng_state_all(st[1])
        out = orig(*args, **kwargs)
    rec = log._records[nid]
    name = log._data.strings[rec[F_FUNC]]
    if out is None and returns_none_self(name) and args:
        return args[0]
    idx = rec[F_OUT_INDEX]
    if idx >= 0:
        if isinstance(out, dict):
            out = list(out.values())
        if whole:
            return [o for o in out if isinstance(o, torch.Tensor)]
        out = out[idx]
    return [out] if whole else out


def _autocast_regions(log: Any, nid: int) -> list[tuple[str, torch.dtype]]:
    """(device type, dtype) of each autocast region the op ran in (`_capture/opstate.py` records them)."""
    d = log._data
    states = getattr(d, "autocast_states", None)
    if not states:
        return []
    return [(dev, dtype) for dev, enabled, dtype in states[d.autocast_ids.get(nid, 0)] if enabled]


def _parent_value(log: Any, ref: Any) -> Any:
    """A parent's value as the child saw it: its saved activation, or the recorded version if that differs."""
    if ref.value is not None:
        return ref.value
    return log._saved.get(ref.nid)


def validate_log(
    log: Any,
    ground_truth: list[torch.Tensor],
    verbose: bool = False,
    validate_metadata: bool = True,
    *,
    progress: bool | None = None,
) -> bool:
    """`ModelLog.validate_forward_pass`: see the module docstring.

    A failed check is reported as a warning on the ``torchlens`` logger and returns False;
    ``progress`` draws a bar over the layers (None: only on a terminal or in a notebook).
    """
    if getattr(log, "_loaded_from_bundle", False):
        raise ValueError("validate_forward_pass is not available for logs loaded from a bundle.")
    labels = log._col("labels")
    outputs = [p for p in range(len(log)) if log._is_output(p)]
    for i, (p, gt) in enumerate(zip(outputs, ground_truth, strict=False)):
        act = log._activation(p)
        if act is None or not _same(act, gt, exact=True):
            logger.warning(f"The {i}th output layer, {labels[p]}, does not match the ground truth output tensor.")
            return False
    if not log._data.func_args:
        warnings.warn(
            "validate_forward_pass: the log has no captured arguments (save_function_args=False).", stacklevel=3
        )
    n = len(log)
    t_start = time.perf_counter()
    ok = True
    for pos in _progress(range(n), total=n, desc="Validating saved activations", unit="layer", enabled=progress):
        if not _check_node(log, pos, verbose):
            ok = False
            break
    if verbose:  # asked for: printed, as log_forward_pass(verbose=True) prints its timings
        print(f"[torchlens] validated {n} layers in {time.perf_counter() - t_start:.2f}s")
    if not ok:
        return False
    if validate_metadata:
        check_metadata_invariants(log)
    return True


def _check_node(log: Any, pos: int, verbose: bool) -> bool:
    labels = log._col("labels")
    parents = log._col("parents")[pos]
    saved = log._activation(pos)
    if log._is_output(pos):
        if parents:
            # The value the parent had when the model returned it (it differs from the parent's saved
            # value when the tensor was changed in place through another alias after its op ran).
            pv = relations.children_versions(log).get(parents[0], {}).get(labels[pos])
            if pv is None:
                pv = log._activation(parents[0])
            if pv is not None and saved is not None and not _same(saved, pv, exact=True):
                logger.warning(
                    f"Saved activations for layer {labels[pos]} do not match its parent {labels[parents[0]]}."
                )
                return False
        return True
    kind = log._kind(pos)
    if kind != KIND_OP or saved is None:
        return True
    nid = log._node_ids[pos]
    name = log._data.strings[log._records[nid][F_FUNC]]
    if name == "identity":
        # A module returned a tensor it received; a kernel the capture does not intercept (e.g.
        # `hardswish_` via torch._C._nn) may have changed it in place since, so there is nothing to replay.
        return True
    fa = log._data.func_args.get(nid)
    if fa is None or name in _SKIP_ALL:
        return True
    refs = _refs((fa[1], fa[2]), [])
    pon = log._pos_of_nid()
    # (a) argument bookkeeping: every graph parent appears among the captured arguments.
    ref_pos = {pon[r.nid] for r in refs if r.nid in pon}
    missing = [labels[q] for q in parents if q not in ref_pos]
    if missing:
        logger.warning(f"Layer {labels[pos]}: parents {missing} are not among its captured arguments.")
        return False
    values = {r.nid: _parent_value(log, r) for r in refs}
    if any(v is None for v in values.values()):
        return True
    try:
        out = _replay(log, nid, fa, values)
    except Exception as e:
        warnings.warn(f"Replaying layer {labels[pos]} raised {type(e).__name__}: {e}", stacklevel=2)
        return False
    if not _same(saved, out, exact=False):
        logger.warning(
            f"Saved activations for layer {labels[pos]} do not match the values computed based on the parent "
            f"layers {[labels[q] for q in parents]}."
        )
        return False
    if name in _SKIP_PERTURB or not isinstance(out, torch.Tensor):
        return True
    return _perturb_ok(log, pos, nid, name, fa, values, out, refs, verbose)


def _perturb_ok(
    log: Any, pos: int, nid: int, name: str, fa: tuple, values: dict, out: Any, refs: list, verbose: bool
) -> bool:
    labels = log._col("labels")
    if out.numel() == 0 or out.dtype == torch.bool or not (out.is_floating_point() or out.is_complex()):
        return True
    with torch.no_grad():
        o = out.detach()
        if not bool(o.isfinite().any()):
            return True
        flat = o.reshape(-1)
        if bool((flat == flat[0]).all()):
            return True
    for nid_p in dict.fromkeys(r.nid for r in refs):
        v = values[nid_p]
        if not isinstance(v, torch.Tensor) or v.numel() == 0 or not (v.is_floating_point() or v.is_complex()):
            continue
        others = [w for k, w in values.items() if k != nid_p and isinstance(w, torch.Tensor)]
        changed = False
        for _ in range(3):
            pert = dict(values)
            nonsense = _differing_nonsense(v)
            if nonsense is None:  # no value in the parent's range differs from it: nothing to test
                changed = True
                break
            pert[nid_p] = nonsense
            try:
                out2 = _replay(log, nid, fa, pert)
            except Exception:
                changed = True
                break
            if not isinstance(out2, torch.Tensor) or not _same(out, out2, exact=True):
                changed = True
                break
        if changed or _other_result_changed(log, nid, fa, values, nid_p):
            continue
        if _excused(name, out, v, others, fa):
            continue
        p = log._pos_of_nid().get(nid_p)
        logger.warning(
            f"Perturbing parent {labels[p] if p is not None else nid_p} of layer {labels[pos]} did not change its "
            "output; the parent attribution looks wrong."
        )
        return False
    return True


def _other_result_changed(log: Any, nid: int, fa: tuple, values: dict, nid_p: int) -> bool:
    """For one of several results of a call: whether perturbing the parent changes any result of the call.

    Parents belong to the call (every logged argument is a parent of each result, spec §7.3), while a
    result may depend on one argument only (`atleast_2d(x, v)[0]` is `x`), so the test is per call.
    """
    if log._records[nid][F_OUT_INDEX] < 0:
        return False
    try:
        base = _replay(log, nid, fa, values, whole=True)
    except Exception:
        return False
    for _ in range(3):
        pert = dict(values)
        pert[nid_p] = _nonsense(values[nid_p])
        try:
            outs = _replay(log, nid, fa, pert, whole=True)
        except Exception:
            return True
        if len(outs) != len(base) or not all(_same(a, b, exact=True) for a, b in zip(base, outs, strict=True)):
            return True
    return False


def _excused(name: str, out: torch.Tensor, parent: torch.Tensor, others: list, fa: tuple) -> bool:
    """The post-hoc excuse cascade of spec §11.2 for a perturbation that changed nothing."""
    if name in ("__getitem__", "unbind", "split", "chunk", "narrow", "select", "slice") and out.numel() <= 64:
        return True
    if name.endswith("_like") or name in ("meshgrid", "broadcast_tensors"):
        return True
    with torch.no_grad():
        for w in others:
            if w.numel() and (bool((w == 0).all()) or bool((w == 1).all())):
                return True
        for a in list(fa[1]) + list(fa[2].values()):
            if isinstance(a, torch.Tensor) and not isinstance(a, ParentRef) and a.numel():
                if bool((a == 0).all()) or bool((a == 1).all()):
                    return True
    return False


# --------------------------------------------------------------------------- invariants


def _fail(family: str, msg: str) -> None:
    raise MetadataInvariantError(f"[{family}] {msg}")


def check_metadata_invariants(model_log: Any) -> bool:
    """The families of spec §11.3; raises MetadataInvariantError naming the first broken one."""
    log = model_log
    n = len(log)
    labels = log._col("labels")
    parents = log._col("parents")
    children = log._col("children")
    # A: self-consistency of counts and lists.
    if len(labels) != n or len(set(labels)) != n:
        _fail("A", "layer labels are not unique or do not match the number of layers")
    if log.num_tensors_total != n:
        _fail("A", "num_tensors_total differs from len(log)")
    if log.num_operations != sum(1 for p in range(n) if log._is_op(p)):
        _fail("A", "num_operations differs from the number of op entries")
    # B: special-layer lists agree with per-entry flags.
    if log.input_layers != [e.layer_label for e in log if e.is_input_layer]:
        _fail("B", "input_layers disagree with is_input_layer")
    if log.output_layers != [e.layer_label for e in log if e.is_output_layer]:
        _fail("B", "output_layers disagree with is_output_layer")
    if log.buffer_layers != [e.layer_label for e in log if e.is_buffer_layer]:
        _fail("B", "buffer_layers disagree with is_buffer_layer")
    # C/M: parent/child symmetry and ordering.
    for p in range(n):
        for q in parents[p]:
            if p not in children[q]:
                _fail("C", f"{labels[q]} is a parent of {labels[p]} but does not list it as a child")
            if q >= p:
                _fail("M", f"parent {labels[q]} does not precede {labels[p]}")
        for c in children[p]:
            if p not in parents[c]:
                _fail("C", f"{labels[c]} is a child of {labels[p]} but does not list it as a parent")
    # E/G: passes contiguous 1..n and LayerLog cross-references.
    for lab, lay in log.layer_logs.items():
        nums = [log._col("pass_nums")[p] for p in lay._positions]
        if nums != list(range(1, len(nums) + 1)):
            _fail("E", f"passes of {lab} are not 1..{len(nums)}")
        for p in lay._positions:
            if log._col("labels_no_pass")[p] != lab or log._col("num_passes")[p] != len(nums):
                _fail("G", f"pass {labels[p]} disagrees with its LayerLog {lab}")
    # F: conditionals (events, bools, arm stacks and edges agree).
    for msg in conditionals.invariant_failures(log):
        _fail("F", msg)
    # H: module containment.
    for lab, ps in modules.pass_positions(log).items():
        for p in ps:
            if lab not in log._containing_modules(p):
                _fail("H", f"{labels[p]} listed in module pass {lab} but not contained in it")
    # J: parameter users exist.
    for idx, users in params.param_users(log).items():
        for u in users:
            if log._fin.lookup(u) is None:
                _fail("J", f"parameter {log._data.params[idx].address} used by unknown layer {u}")
    # D: per-entry fields agree with each other.
    fps = log._col("fingerprints")
    for e in log:
        if e.has_saved_activations != (e.activation is not None or e.transformed_activation is not None):
            _fail("D", f"has_saved_activations of {e.layer_label} disagrees with its stored value")
        if e.activation is not None and tuple(e.activation.shape) != tuple(e.tensor_shape):
            _fail("D", f"tensor_shape of {e.layer_label} differs from its saved activation")
        if e.is_internally_initialized and e.has_parents:
            _fail("D", f"{e.layer_label} is internally initialized but has parents")
        # K: buffer entries carry an address and no parents.
        if e.is_buffer_layer and (not e.buffer_address or e.has_parents):
            _fail("K", f"buffer entry {e.layer_label} lacks an address or has parents")
        # P: every entry but sources is computed from something.
        if not e.has_parents and not (e.is_input_layer or e.is_buffer_layer or e.is_internally_initialized):
            _fail("P", f"{e.layer_label} has no parents but is not a source")
        # O: distances are ordered.
        for lo, hi in (
            (e.min_distance_from_input, e.max_distance_from_input),
            (e.min_distance_from_output, e.max_distance_from_output),
        ):
            if lo is not None and hi is not None and lo > hi:
                _fail("O", f"min distance exceeds max distance for {e.layer_label}")
    # L/N: equivalence groups are symmetric; all passes of a layer share one fingerprint.
    for fp, members in relations.equivalents(log).items():
        for lab in members:
            if fps[log._fin.lookup(lab)] != fp:
                _fail("L", f"{lab} is listed in an equivalence group it does not belong to")
    for lab, lay in log.layer_logs.items():
        if len({fps[p] for p in lay._positions}) != 1:
            _fail("N", f"passes of {lab} have different operation fingerprints")
    # I/Q: module hierarchy and containment.
    mods = log.modules
    for m in mods:
        if m.address != "self" and m.call_parent not in mods:
            _fail("I", f"module {m.address} has unknown call parent {m.call_parent}")
        for ps in m.passes.values():
            for c in ps.call_children:
                if modules.call_tree(log)[0].get(c) != ps.pass_label:
                    _fail("Q", f"module pass {c} is a call child of {ps.pass_label} but not the reverse")
    # R: lookup keys resolve back to their entry.
    for p in range(n):
        for k in log._fin.lookup_keys(p):
            if log._fin.lookup(k) is None:
                _fail("R", f"lookup key {k!r} of {labels[p]} does not resolve")
    return True
