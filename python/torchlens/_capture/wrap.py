"""Installing and removing the torch wrappers (spec §7.1).

Wrappers are installed lazily by the first logging call and stay in place until
`unwrap_torch()`; while no capture is active each one costs a single global check.
"""

from __future__ import annotations

import ctypes
import sys
import types
from typing import Any

import torch
import torch.nn.functional as F

from . import hot

# Tensor members that never yield a new tensor or that torch itself calls in ways that must not
# be intercepted (printing, hashing, pickling, autograd plumbing).
_TENSOR_SKIP = frozenset(
    """size dim numel element_size data_ptr stride storage_offset is_contiguous is_floating_point
    is_complex nelement ndimension numpy tolist item get_device untyped_storage storage register_hook
    backward requires_grad_ retain_grad share_memory_ is_shared is_pinned is_set_to is_signed
    is_nonzero is_inference is_neg is_conj is_coalesced is_same_size has_names refine_names rename
    rename_ align_to align_as unflatten_dense_tensors dim_order module_load register_post_accumulate_grad_hook
    nbytes itemsize apply_ map_ map2_ record_stream pin_memory""".split()
)

# Tensor members kept under capture even though they return a tensor only sometimes.
_TENSOR_DUNDERS = frozenset(
    """__add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ __matmul__
    __rmatmul__ __truediv__ __rtruediv__ __itruediv__ __floordiv__ __rfloordiv__ __ifloordiv__
    __mod__ __rmod__ __imod__ __pow__ __rpow__ __ipow__ __and__ __rand__ __iand__ __or__ __ror__
    __ior__ __xor__ __rxor__ __ixor__ __lshift__ __rlshift__ __ilshift__ __rshift__ __rrshift__
    __irshift__ __neg__ __pos__ __abs__ __invert__ __eq__ __ne__ __lt__ __le__ __gt__ __ge__
    __getitem__ __setitem__ __div__ __rdiv__ __idiv__""".split()
)

_TENSOR_PROPERTIES = ("T", "mT", "H", "mH", "real", "imag")

# Callables `get_ignored_functions()` lists that 2.15 wraps all the same (spec §7.1): factories
# creating tensors inside forward, `fft.*freq`, cudnn/mkldnn kernels, and the `nn.functional`
# activations that call `torch._C._nn` directly (hardswish / hardsigmoid in squeeze-excitation
# blocks). `empty`, `*_like` random factories and `asarray` stay unwrapped, as in 2.15.
_FACTORIES = frozenset(
    """tensor as_tensor from_numpy zeros ones full arange range linspace logspace eye rand randn
    randint randperm normal scalar_tensor tril_indices triu_indices vander as_strided
    sparse_coo_tensor load from_file bartlett_window blackman_window hamming_window hann_window
    kaiser_window fftfreq rfftfreq cudnn_affine_grid_generator cudnn_batch_norm cudnn_convolution
    cudnn_convolution_add_relu cudnn_convolution_relu cudnn_convolution_transpose cudnn_grid_sampler
    mkldnn_adaptive_avg_pool2d mkldnn_convolution mkldnn_linear_backward_weights mkldnn_max_pool2d
    mkldnn_max_pool3d mkldnn_rnn_layer hardsigmoid hardswish sigmoid tanh upsample upsample_bilinear
    upsample_nearest""".split()
)

_TORCH_SKIP = frozenset(
    """is_tensor is_storage is_floating_point is_complex is_nonzero numel typename set_default_dtype
    set_default_tensor_type get_default_dtype is_grad_enabled set_grad_enabled manual_seed seed
    initial_seed get_rng_state set_rng_state use_deterministic_algorithms compile load save
    no_grad enable_grad inference_mode is_inference_mode_enabled set_printoptions get_num_threads
    set_num_threads get_num_interop_threads set_num_interop_threads is_same_size result_type
    can_cast promote_types is_conj is_neg is_inference vmap cond chunk_size sym_int sym_float
    sym_max sym_min sym_not sym_ite sym_sum sym_fresh_size""".split()
)


class _Target:
    __slots__ = ("owner", "name", "original", "had_own", "wrapper")

    def __init__(self, owner: Any, name: str, original: Any, had_own: bool) -> None:
        self.owner = owner
        self.name = name
        self.original = original
        self.had_own = had_own
        self.wrapper: Any = None


_targets: list[_Target] = []
# Bumped whenever any module registers a submodule, parameter or buffer; invalidates cached plans.
structure_epoch = 0
_registration_handles: list[Any] = []
_module_call_original: Any = None
_wrappers_by_orig: dict[int, Any] = {}
_wrapped_ids: dict[int, Any] = {}  # id(original callable) -> wrapper, for the reference crawl
_installed = False
_crawled: dict[str, list[tuple[Any, str, Any]]] = {}


def layer_type_of(name: str) -> str:
    return name.lower().replace("_", "")


def _is_plain_callable(obj: Any) -> bool:
    return isinstance(
        obj,
        types.BuiltinFunctionType | types.FunctionType | types.MethodDescriptorType | types.WrapperDescriptorType,
    )


def _collect() -> list[_Target]:
    ignored = set()
    try:
        ignored = {id(f) for f in torch.overrides.get_ignored_functions()}
    except Exception:  # pragma: no cover - very old torch
        pass
    found: list[_Target] = []

    def add_module_names(module: Any, names: Any, allow_private: bool) -> None:
        for name in names:
            if name.startswith("__") or name[:1].isupper() or name in _TORCH_SKIP:
                continue
            if name.startswith("_") and not allow_private:
                continue
            obj = getattr(module, name, None)
            if obj is None or isinstance(obj, type) or isinstance(obj, types.ModuleType):
                continue
            if not _is_plain_callable(obj):
                continue
            if id(obj) in ignored and name not in _FACTORIES:
                continue
            found.append(_Target(module, name, obj, True))

    vf = sorted(set(dir(torch._C._VariableFunctions)))
    add_module_names(torch, sorted(set(getattr(torch, "__all__", [])) | set(vf)), True)
    add_module_names(torch._VF, vf, True)
    add_module_names(F, sorted(n for n in dir(F) if not n.startswith("_")), False)
    for sub in ("linalg", "fft", "special"):
        mod = getattr(torch, sub, None)
        if mod is not None:
            add_module_names(mod, sorted(n for n in dir(mod) if not n.startswith("_")), False)

    tensor_cls = torch.Tensor
    for name in sorted(dir(tensor_cls)):
        if name.startswith("_") and name not in _TENSOR_DUNDERS:
            continue
        if name in _TENSOR_SKIP or name in _TENSOR_PROPERTIES:
            continue
        owner_dict = None
        for klass in tensor_cls.__mro__:
            if name in klass.__dict__:
                owner_dict = klass.__dict__
                break
        if owner_dict is None or owner_dict is object.__dict__:
            continue
        obj = owner_dict[name]
        if not _is_plain_callable(obj):
            continue
        found.append(_Target(tensor_cls, name, obj, name in tensor_cls.__dict__))
    for name in _TENSOR_PROPERTIES:
        obj = None
        for klass in tensor_cls.__mro__:
            if name in klass.__dict__:
                obj = klass.__dict__[name]
                break
        if obj is not None and hasattr(obj, "__get__"):
            found.append(_Target(tensor_cls, name, obj, name in tensor_cls.__dict__))
    return found


# CPython treats a type with a Python-level __getitem__ as a sequence (sq_item), which breaks
# torch.tensor([0-d tensor, ...]); restore the slot's original value after every (un)wrap.
_SQ_ITEM_OFFSET = 3 * ctypes.sizeof(ctypes.c_void_p)
_TP_AS_SEQUENCE_OFFSET = 13 * ctypes.sizeof(ctypes.c_void_p)


def _sq_item_addr() -> int | None:
    if sys.implementation.name != "cpython":
        return None
    seq = ctypes.c_void_p.from_address(id(torch.Tensor) + _TP_AS_SEQUENCE_OFFSET).value
    if not seq:
        return None
    return seq + _SQ_ITEM_OFFSET


_sq_item_original: int | None = None


def _save_sq_item() -> None:
    global _sq_item_original
    addr = _sq_item_addr()
    if addr is not None and _sq_item_original is None:
        _sq_item_original = ctypes.c_void_p.from_address(addr).value or 0


def _restore_sq_item() -> None:
    addr = _sq_item_addr()
    if addr is not None and _sq_item_original is not None:
        ctypes.c_void_p.from_address(addr).value = _sq_item_original or None


def _make_property(orig: Any, name: str) -> property:
    getter = hot.make_wrapper(lambda self: orig.__get__(self, torch.Tensor), name, layer_type_of(name))

    def setter(self: Any, value: Any) -> None:
        orig.__set__(self, value)

    return property(getter, setter)


def wrap_torch() -> None:
    """Install the wrappers on every intercepted torch callable (idempotent)."""
    global _installed
    if _installed:
        return
    if not _targets:
        _targets.extend(_collect())
    _prime_device_constructors()
    _save_sq_item()
    for t in _targets:
        w = _wrappers_by_orig.get(id(t.original))
        if w is None:
            if t.name in _TENSOR_PROPERTIES and t.owner is torch.Tensor:
                w = _make_property(t.original, t.name)
            else:
                w = hot.make_wrapper(t.original, t.name, layer_type_of(t.name))
            _wrappers_by_orig[id(t.original)] = w
            _wrapped_ids[id(t.original)] = w
        t.wrapper = w
    try:
        for t in _targets:
            setattr(t.owner, t.name, t.wrapper)
    finally:
        _restore_sq_item()
    _install_module_call()
    _install_bool_hook()
    _install_registration_hooks()
    _install_transform_guards()
    _installed = True
    _crawl_new_modules()
    _wrap_torchvision_ops()


def unwrap_torch() -> None:
    """Restore every original torch callable (idempotent)."""
    global _installed
    if not _installed:
        return
    _remove_module_call()
    _remove_bool_hook()
    _unwrap_torchvision_ops()
    _remove_registration_hooks()
    _remove_transform_guards()
    try:
        for t in _targets:
            if t.owner is torch.Tensor and not t.had_own:
                try:
                    delattr(t.owner, t.name)
                except AttributeError:
                    pass
            else:
                setattr(t.owner, t.name, t.original)
    finally:
        _restore_sq_item()
    for items in _crawled.values():
        for holder, attr, orig in items:
            try:
                if isinstance(holder, dict):
                    holder[attr] = orig
                else:
                    setattr(holder, attr, orig)
            except Exception:
                pass
    _crawled.clear()
    _installed = False


def is_wrapped() -> bool:
    return _installed


def _crawl_new_modules() -> None:
    """Point `from torch import relu`-style references in loaded modules at the wrappers."""
    for mod_name, mod in list(sys.modules.items()):
        if mod_name in _crawled or mod is None:
            continue
        if mod_name == "torch" or mod_name.startswith(("torch.", "torchlens")):
            _crawled[mod_name] = []
            continue
        patched: list[tuple[Any, str, Any]] = []
        try:
            d = vars(mod)
        except TypeError:
            _crawled[mod_name] = patched
            continue
        for key, val in list(d.items()):
            if callable(val) and not isinstance(val, type):
                w = _wrapped_ids.get(id(val))
                if w is not None and _is_plain_callable(val):
                    d[key] = w
                    patched.append((d, key, val))
        _crawled[mod_name] = patched


def ensure_wrapped() -> None:
    if not _installed:
        wrap_torch()
    else:
        _crawl_new_modules()
        _wrap_torchvision_ops()


_TORCHVISION_OPS = ("nms", "deform_conv2d", "ps_roi_align", "ps_roi_pool", "roi_align", "roi_pool")
_tv_targets: list[_Target] = []


def _wrap_torchvision_ops() -> None:
    """Once torchvision is loaded: its compiled ops (`torch.ops.torchvision.roi_align`, ...) as 2.15 wraps
    them, through each op packet's `_op` (so every one logs as `_op`, layer type `op`)."""
    if _tv_targets or "torchvision" not in sys.modules:
        return
    for name in _TORCHVISION_OPS:
        try:
            packet = getattr(torch.ops.torchvision, name)
            orig = packet._op
        except (AttributeError, RuntimeError):
            continue
        t = _Target(packet, "_op", orig, True)
        t.wrapper = _wrappers_by_orig.get(id(orig)) or hot.make_wrapper(orig, "_op", "op")
        _wrappers_by_orig[id(orig)] = t.wrapper
        packet._op = t.wrapper
        _tv_targets.append(t)


def _unwrap_torchvision_ops() -> None:
    for t in _tv_targets:
        setattr(t.owner, t.name, t.original)
    _tv_targets.clear()


def original_of(wrapper: Any) -> Any:
    for t in _targets:
        if t.wrapper is wrapper:
            return t.original
    return None


def _install_module_call() -> None:
    """Route every module call through the active session (one class-level patch, not per module)."""
    global _module_call_original
    if _module_call_original is not None:
        return
    orig = torch.nn.Module.__dict__["__call__"]
    _module_call_original = orig

    def __call__(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        s = hot._session
        if s is None:
            return orig(self, *args, **kwargs)
        idx = s.module_index.get(id(self))
        if idx is None:
            return orig(self, *args, **kwargs)
        return s.prepared.call_module(idx, orig.__get__(self), self, args, kwargs)

    torch.nn.Module.__call__ = __call__  # type: ignore[method-assign]


def _remove_module_call() -> None:
    global _module_call_original
    if _module_call_original is not None:
        torch.nn.Module.__call__ = _module_call_original  # type: ignore[method-assign]
        _module_call_original = None


_bool_original: tuple[Any, bool] | None = None


def _install_bool_hook() -> None:
    """Note each `Tensor.__bool__` during a session: a 0-d bool tensor consumed by Python control flow
    (`if`, `while`, `assert`, `bool()`) is what conditional attribution starts from (spec §7.5)."""
    global _bool_original
    if _bool_original is not None:
        return
    orig = torch.Tensor.__bool__
    _bool_original = (orig, "__bool__" in torch.Tensor.__dict__)

    def __bool__(self: torch.Tensor) -> bool:
        v = orig(self)
        s = hot._session
        if s is not None:
            s.note_bool(self, v)
        return v

    torch.Tensor.__bool__ = __bool__  # type: ignore[method-assign]


def _remove_bool_hook() -> None:
    global _bool_original
    if _bool_original is None:
        return
    orig, had_own = _bool_original
    if had_own:
        torch.Tensor.__bool__ = orig  # type: ignore[method-assign]
    else:
        del torch.Tensor.__bool__
    _bool_original = None


def _bump_epoch(*_: Any) -> None:
    global structure_epoch
    structure_epoch += 1


def _install_registration_hooks() -> None:
    from torch.nn.modules import module as m

    _bump_epoch()
    for register in (
        m.register_module_module_registration_hook,
        m.register_module_parameter_registration_hook,
        m.register_module_buffer_registration_hook,
    ):
        _registration_handles.append(register(_bump_epoch))


def _remove_registration_hooks() -> None:
    for h in _registration_handles:
        h.remove()
    _registration_handles.clear()
    _bump_epoch()


def _prime_device_constructors() -> None:
    """`with torch.device(...)` recognises factories by identity in a cached set; build it from the
    original callables before they are replaced, so factories called through a wrapper still match."""
    try:
        from torch.utils._device import _device_constructors
    except ImportError:  # pragma: no cover - older torch
        return
    _device_constructors()


_TRANSFORMS = ("vmap", "grad", "grad_and_value", "jacrev", "jacfwd", "hessian", "vjp", "jvp", "linearize")
_transform_originals: list[tuple[Any, str, Any]] = []


def _guarded(fn: Any) -> Any:
    """Run `fn` with capture suspended: ops inside torch.func transforms act on wrapped tensors."""

    def run(*args: Any, **kwargs: Any) -> Any:
        s = hot._session
        if s is None:
            return fn(*args, **kwargs)
        note = getattr(s, "note_transform", None)
        if note is not None:
            note()
        hot.set_session(None)
        try:
            out = fn(*args, **kwargs)
        finally:
            hot.set_session(s)
        return _guarded(out) if callable(out) and not isinstance(out, torch.Tensor) else out

    run.__name__ = getattr(fn, "__name__", "transformed")
    run.__doc__ = getattr(fn, "__doc__", None)
    return run


def _install_transform_guards() -> None:
    import torch.func as tfunc

    for owner in (torch, tfunc):
        for name in _TRANSFORMS:
            orig = owner.__dict__.get(name)
            if orig is None or not callable(orig):
                continue
            _transform_originals.append((owner, name, orig))
            setattr(owner, name, _guarded(orig))


def _remove_transform_guards() -> None:
    for owner, name, orig in reversed(_transform_originals):
        setattr(owner, name, orig)
    _transform_originals.clear()
