"""FLOPs of one operation (spec §7.6): per-op estimates keyed by layer type, read from tables.

`flops_forward` is a pure function of what the capture records about an op: its layer type,
the function name, the output shape, the argument tokens (tensor arguments as their shapes,
parameters as None; see `_data.split_tokens`) and the shapes of the parameters it used. The
numbers follow TorchLens 2.15 op for op:

* a layer type in `ZERO` (views, copies, indexing, dtype casts, concatenation...) costs 0;
* `PER_OUTPUT[t]` FLOPs per element of the op's own output (elementwise math, activations,
  normalizations, softmax, dropout, interpolation, cumulative ops);
* `PER_INPUT[t]` FLOPs per element of the first positional argument (reductions, losses,
  distances, adaptive pooling);
* `SORT_LIKE`: n*log2(n) over the output's n elements (n when n < 2);
* `SPECIAL[t]`: a formula of the argument shapes (matmul family, linear, convolutions,
  fixed-window pooling, scaled-dot-product attention);
* anything else is unknown: None (creation and random ops, linear algebra, FFTs, einsum,
  recurrent layers, padding, ...).

`flops_backward` is the forward count times a per-op multiplier (`BACKWARD`, default 1),
rounded down; None stays None. MACs are FLOPs // 2 everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

Shape = tuple[int, ...]

# ------------------------------------------------------------------------------------------ zero
ZERO = frozenset(
    """view reshape flatten unflatten ravel permute transpose t mt h adjoint contiguous clone detach detachcopy
    squeeze unsqueeze expand expandas broadcastto broadcasttensors repeat repeatinterleave tile cat concat
    concatenate stack hstack vstack dstack columnstack getitem setitem split splitwithsizes chunk unbind
    tensorsplit hsplit vsplit dsplit narrow select flip fliplr flipud roll rot90 movedim moveaxis swapaxes
    swapdims atleast1d atleast2d atleast3d tril triu diag diagonal diagembed diagflat diagonalcopy blockdiag
    to type typeas float double half bfloat16 int long short char byte bool cfloat cdouble chalf cpu cuda
    todense tomkldnn requiresgrad reshapeas viewas viewasreal real conj conjphysical resolveconj resolveneg
    gather indexselect scatter indexcopy indexfill indexput take maskedselect slicescatter asstrided
    meshgrid cartesianprod combinations onehot fold unfold embedding embeddingbag fill zero copy
    pixelshuffle pixelunshuffle channelshuffle nativechannelshuffle""".split()
)

# ----------------------------------------------------------------------- per output element
_PER_OUTPUT_GROUPS: dict[int, str] = {
    1: """abs absolute neg negative pos positive add sub subtract rsub radd mul multiply rmul div divide truediv
    truedivide floordivide mod remainder fmod iadd isub imul idiv ifloordiv imod relu relu6 leakyrelu hardtanh
    threshold prelu rrelu clamp clip clampmin clampmax ceil floor round trunc fix frac sign sgn signbit
    reciprocal square deg2rad rad2deg isnan isinf isfinite isreal isposinf isneginf nantonum eq ne lt le gt ge
    greater greaterequal less lessequal notequal isclose logicaland logicalor logicalxor logicalnot bitwisenot
    bitwiseand bitwiseor bitwisexor bitwiseleftshift bitwiserightshift and or xor invert lshift rshift iand
    ior ixor ilshift irshift ror rxor maximum minimum fmax fmin heaviside where maskedfill maskedscatter
    scatteradd scatterreduce indexadd indexreduce cumsum cumprod cummax cummin logcumsumexp
    cumulativetrapezoid""",
    2: """pow ipow floatpower copysign nextafter sqrt rsqrt hardshrink softshrink dropout alphadropout
    featuredropout featurealphadropout""",
    3: "addcmul addcdiv lerp hypot hardsigmoid",
    4: "sigmoid expit hardswish interpolate gridsampler affinegridgenerator",
    5: "silu logsigmoid softmax batchnorm nativebatchnorm layernorm nativelayernorm groupnorm instancenorm rmsnorm",
    6: "tanh logsoftmax",
    8: """exp exp2 expm1 log log10 log1p log2 sin cos tan asin acos atan arcsin arccos arctan sinh cosh asinh
    acosh atanh arcsinh arccosh arctanh atan2 arctan2 erf erfc erfinv i0 i1 mish""",
    9: "elu celu softplus",
    10: "selu sinc xlogy",
    12: "digamma lgamma polygamma mvlgamma logit",
    14: "gelu",
}
PER_OUTPUT: dict[str, int] = {name: k for k, names in _PER_OUTPUT_GROUPS.items() for name in names.split()}

# ------------------------------------------------------------ per element of the first argument
_PER_INPUT_GROUPS: dict[int, str] = {
    1: """sum mean nansum nanmean prod amax amin aminmax max min argmax argmin all any countnonzero logsumexp
    adaptiveavgpool1d adaptiveavgpool2d adaptiveavgpool3d adaptivemaxpool1d adaptivemaxpool2d adaptivemaxpool3d
    adaptivemaxpool1dwithindices adaptivemaxpool2dwithindices adaptivemaxpool3dwithindices nllloss kldiv
    hingeembeddingloss marginrankingloss softmarginloss poissonnllloss tripletmarginloss multimarginloss
    multilabelmarginloss cosineembeddingloss ctcloss""",
    2: "vectornorm norm frobeniusnorm nuclearnorm matrixnorm cdist pairwisedistance cosinesimilarity",
    3: "std var stdmean varmean mseloss l1loss smoothl1loss huberloss",
    6: "crossentropy",
    10: "binarycrossentropy binarycrossentropywithlogits",
}
PER_INPUT: dict[str, int] = {name: k for k, names in _PER_INPUT_GROUPS.items() for name in names.split()}

SORT_LIKE = frozenset("sort argsort msort topk kthvalue mode median nanmedian searchsorted".split())

# ----------------------------------------------------------------------- backward multipliers
_BACKWARD_GROUPS: dict[tuple[int, int], str] = {
    (3, 2): "sigmoid tanh gelu silu mish elu celu selu softplus logsigmoid prod",
    (2, 1): """softmax logsoftmax matmul mm bmm addmm baddbmm addbmm linear conv1d conv2d conv3d convtranspose1d
    convtranspose2d convtranspose3d convolution""",
    (5, 2): """batchnorm nativebatchnorm layernorm nativelayernorm groupnorm instancenorm rmsnorm
    scaleddotproductattention""",
}
BACKWARD: dict[str, tuple[int, int]] = {n: r for r, names in _BACKWARD_GROUPS.items() for n in names.split()}

# Reflected/in-place operator methods whose layer type collides with another op's (`x.__rand__(y)`
# is the bitwise `and`, not `torch.rand`).
DUNDER_TYPES: dict[str, str] = {"__rand__": "and"}


# ------------------------------------------------------------------------------- formulas
def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _matmul(a: Shape | None, b: Shape | None, out: Shape) -> int | None:
    """2·batch·M·K·N (2·K for a dot product), as 2.15 counts it: the batch is the output's leading
    dims, and a 1-d right operand counts its length as N."""
    if a is None or b is None or not a or not b:
        return None
    if len(a) == 1 and len(b) == 1:
        return 2 * a[0]
    m = a[-2] if len(a) >= 2 else 1
    return 2 * _numel(out[:-2]) * m * a[-1] * b[-1]


def _rule_matmul(args: list[Shape | None], kw: dict[str, Any], out: Shape, params: list[Shape]) -> int | None:
    return _matmul(_at(args, 0), _at(args, 1), out)


def _bmm(a: Shape | None, b: Shape | None) -> int | None:
    """2·B·M·K·N of a batched product, the batch read from the first operand."""
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    return 2 * _numel(a[:-2]) * a[-2] * a[-1] * b[-1]


def _rule_bmm(args: list[Shape | None], kw: dict[str, Any], out: Shape, params: list[Shape]) -> int | None:
    return _bmm(_at(args, 0), _at(args, 1))


def _rule_addmm(args: list[Shape | None], kw: dict[str, Any], out: Shape, params: list[Shape]) -> int | None:
    """The product of the last two arguments plus one add per output element (addmm, baddbmm, addbmm)."""
    mm = _bmm(_at(args, 1), _at(args, 2))
    return None if mm is None else mm + _numel(out)


def _rule_linear(args: list[Shape | None], kw: dict[str, Any], out: Shape, params: list[Shape]) -> int | None:
    """2·out·in_features, plus one add per output element with a bias parameter."""
    if not params or len(params[0]) < 2:
        return None
    n = _numel(out)
    return 2 * n * params[0][-1] + (n if len(params) > 1 else 0)


def _rule_conv(args: list[Shape | None], kw: dict[str, Any], out: Shape, params: list[Shape]) -> int | None:
    """2·out·(weight elements per output channel), plus the bias add (transposed convolutions alike)."""
    if not params or len(params[0]) < 2:
        return None
    n = _numel(out)
    return 2 * n * _numel(params[0][1:]) + (n if len(params) > 1 else 0)


def _rule_pool(args: list[Shape | None], kw: dict[str, Any], out: Shape, params: list[Shape]) -> int | None:
    """Output elements times the kernel size (an int kernel counts once, a tuple by its product)."""
    k = kw.get("kernel_size", _at(args, 1, raw=True))
    if type(k) is int:
        return _numel(out) * k
    if isinstance(k, tuple | list) and k and all(type(x) is int for x in k):
        return _numel(out) * _numel(k)
    return None


def _rule_sdpa(args: list[Shape | None], kw: dict[str, Any], out: Shape, params: list[Shape]) -> int | None:
    """Q·Kᵀ and P·V (2·B·L·S·E each) plus scale and softmax (6·B·L·S); positional q, k, v only."""
    q, k, v = _at(args, 0), _at(args, 1), _at(args, 2)
    if q is None or k is None or v is None or len(q) < 2 or len(k) < 2:
        return None
    bls = _numel(q[:-2]) * q[-2] * k[-2]
    return 2 * bls * q[-1] + 2 * bls * v[-1] + 6 * bls


_Rule = Callable[[list[Any], dict[str, Any], Shape, list[Shape]], int | None]
SPECIAL: dict[str, _Rule] = {
    "matmul": _rule_matmul,
    **dict.fromkeys(("mm", "bmm"), _rule_bmm),
    **dict.fromkeys(("addmm", "baddbmm", "addbmm"), _rule_addmm),
    "linear": _rule_linear,
    **dict.fromkeys(
        "conv1d conv2d conv3d convtranspose1d convtranspose2d convtranspose3d convolution".split(), _rule_conv
    ),
    **dict.fromkeys(
        """maxpool1d maxpool2d maxpool3d maxpool1dwithindices maxpool2dwithindices maxpool3dwithindices avgpool1d
        avgpool2d avgpool3d fractionalmaxpool2d fractionalmaxpool3d fractionalmaxpool2dwithindices
        fractionalmaxpool3dwithindices""".split(),
        _rule_pool,
    ),
    "scaleddotproductattention": _rule_sdpa,
}


def _at(args: list[Any], i: int, raw: bool = False) -> Any:
    if i >= len(args):
        return None
    v = args[i]
    if raw:
        return tuple(v) if isinstance(v, torch.Size) else v
    return tuple(v) if isinstance(v, torch.Size) else None


def _positional(pos_tokens: Sequence[Any], param_shapes: Sequence[Shape]) -> list[Any]:
    """Positional argument tokens with each parameter's placeholder (None) replaced by its shape.

    Parameters are taken in the order the capture met them; a None left over is a real None.
    """
    out: list[Any] = []
    it = iter(param_shapes)
    for t in pos_tokens:
        if t is None:
            p = next(it, None)
            out.append(torch.Size(p) if p is not None else None)
        else:
            out.append(t)
    return out


# ------------------------------------------------------------------------------------- entry
def flops_forward(
    layer_type: str,
    func_name: str,
    out_shape: Sequence[int],
    pos_tokens: Sequence[Any],
    kw_tokens: dict[str, Any],
    param_shapes: Sequence[Shape],
    params_used: Sequence[Shape] | None = None,
) -> int | None:
    """Forward FLOPs of one op; 0 for zero-cost ops, None when the op is not modelled.

    `param_shapes` are the shapes of the parameters in argument order (repeats included);
    `params_used` the distinct ones (the layer's `parent_param_shapes`; defaults to the same).
    """
    lt = DUNDER_TYPES.get(func_name, layer_type)
    if lt in ZERO:
        return 0
    out = tuple(out_shape)
    k = PER_OUTPUT.get(lt)
    if k is not None:
        return k * _numel(out)
    args = _positional(pos_tokens, param_shapes)
    k = PER_INPUT.get(lt)
    if k is not None:
        first = _at(args, 0)
        return None if first is None else k * _numel(first)
    if lt in SORT_LIKE:
        n = _numel(out)
        return n if n < 2 else int(n * math.log2(n))
    rule = SPECIAL.get(lt)
    if rule is None:
        return None
    try:
        return rule(args, kw_tokens, out, [tuple(p) for p in (param_shapes if params_used is None else params_used)])
    except (TypeError, ValueError, IndexError):
        return None


def flops_backward(layer_type: str, func_name: str, forward: int | None) -> int | None:
    """Backward FLOPs: the forward count times the op's multiplier (1 unless listed), rounded down."""
    if forward is None:
        return None
    num, den = BACKWARD.get(DUNDER_TYPES.get(func_name, layer_type), (1, 1))
    return forward * num // den


def macs(flops: int | None) -> int | None:
    """Multiply-accumulates: half the FLOPs (one multiply and one add each), rounded down."""
    return None if flops is None else flops // 2
