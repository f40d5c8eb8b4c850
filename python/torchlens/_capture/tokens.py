"""Argument tokens and the fingerprint hash of a call (the `arg_hash` of each record).

Tokens stand for an op's arguments in its fingerprint (loop detection, func config): a tensor
by its shape, a scalar by its value. The hash must not depend on the process, since bundles
written by different runs are matched by it.
"""

from __future__ import annotations

from hashlib import blake2b as _blake2b
from typing import Any

from torch import Tensor
from torch.nn import Parameter

from . import hot

SCALARS = (int, float, bool, str, type(None), complex)
_SCALARS = SCALARS
_type = type
_len = len
_hash = hash
_is_tensor = hot.is_tensor_type

HASH_MEMO: dict[Any, int] = {}


def stable_hash(key: Any) -> int:
    """A 64-bit hash of a token tuple that is the same in every process.

    Python's `hash` of a string is salted per process, so fingerprints built on it would differ
    between two runs of the same model (multi-trace bundles match layers across runs by them).
    The digest is memoized: a model has few distinct argument tokens, and the memo hit costs one
    dict lookup, about what `hash` itself costs."""
    h = HASH_MEMO.get(key)
    if h is None:
        if _len(HASH_MEMO) > 1 << 16:  # unbounded token variety (e.g. ever-new Python floats): start over
            HASH_MEMO.clear()
        h = HASH_MEMO[key] = int.from_bytes(_blake2b(repr(key).encode(), digest_size=8).digest(), "little")
    return h


def tok(a: Any, depth: int = 0) -> Any:
    """The hashable stand-in of one call argument in an op's fingerprint: shapes for tensors,
    values for scalars, None for parameters (their identity is recorded separately)."""
    ta = _type(a)
    if ta is Tensor:
        return a.shape
    if ta in _SCALARS:
        return a
    if ta is Parameter:
        return None
    if (ta is tuple or ta is list) and depth < 10:
        return tuple([tok(b, depth + 1) for b in a])
    if ta is dict and depth < 10:
        return tuple([(k, tok(v, depth + 1)) for k, v in a.items()])
    if ta is slice:  # `x[t0:4] = v` with a 0-d tensor bound: unhashable before Python 3.12
        return (slice, tok(a.start, depth + 1), tok(a.stop, depth + 1), tok(a.step, depth + 1))
    if _is_tensor(ta):
        return a.shape
    try:
        _hash(a)
        return a
    except TypeError:
        with hot.paused():  # printing a tensor inside `a` runs torch functions: not the model's ops
            return str(a)
