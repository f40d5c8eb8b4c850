"""A zoo of small deterministic models exercising the capture rules (spec §5, §6.4, §7.2-7.4).

Every entry of `ZOO` maps a name to a `Case`: a factory building the model (seeded, CPU, tiny
sizes) and an input function returning `(args, kwargs)` for `forward`. Inputs are drawn from a
private generator so that nothing depends on the global RNG state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .readme import SimpleRecurrent
from .zoo_modules import (
    ActAttr,
    Attention,
    BNWrap,
    BufferModel,
    ConstAttr,
    ConvPool,
    EmbedLSTM,
    FrozenParams,
    IdentityModel,
    MatmulEinsum,
    ModuleListLoop,
    Nested3,
    NormSoftmaxDropout,
    PassthroughModel,
    Residual,
    SameLinearTwoPlaces,
    SeqInside,
    ShapeConditional,
    SharedAlias,
    SharedBlockTwice,
    ValueConditional,
    make_sequential,
)
from .zoo_ops import (
    AddMul,
    CatStack,
    DictOutput,
    DupOutput,
    Factories,
    GetItem,
    GetItemMask,
    InplaceOps,
    InplaceReLU,
    KwargInput,
    MaxDim,
    NestedListOutput,
    NewZeros,
    NumpyConst,
    Orphans,
    ReturnsInput,
    SetItem,
    SetItemTensor,
    SplitChunk,
    SplitMul,
    TupleOutput,
    TwoInputs,
    Views,
    Zeros,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed))


@dataclass
class Case:
    factory: Callable[[], nn.Module]
    inputs: Callable[[], tuple[tuple, dict]]
    train: bool = False
    extra: dict = field(default_factory=dict)


def _x(*shape: int, seed: int = 0) -> Callable[[], tuple[tuple, dict]]:
    return lambda: ((randn(*shape, seed=seed),), {})


def _seeded(cls: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return cls()

    make.__name__ = getattr(cls, "__name__", "make")
    return make


ZOO: dict[str, Case] = {
    "add_mul": Case(_seeded(AddMul), _x(2, 3)),
    "inplace_ops": Case(_seeded(InplaceOps), _x(2, 3)),
    "inplace_relu": Case(_seeded(InplaceReLU), _x(2, 4)),
    "views": Case(_seeded(Views), _x(3, 4)),
    "getitem": Case(_seeded(GetItem), _x(2, 4)),
    "getitem_mask": Case(_seeded(GetItemMask), _x(3, 4)),
    "setitem": Case(_seeded(SetItem), _x(2, 3)),
    "setitem_tensor": Case(_seeded(SetItemTensor), _x(2, 4)),
    "numpy_const": Case(_seeded(NumpyConst), _x(2, 4)),
    "zeros": Case(_seeded(Zeros), _x(2, 3)),
    "factories": Case(_seeded(Factories), _x(2, 4)),
    "new_zeros": Case(_seeded(NewZeros), _x(2, 3)),
    "orphans": Case(_seeded(Orphans), _x(2, 3)),
    "two_inputs": Case(_seeded(TwoInputs), lambda: ((randn(2, 4), randn(2, 3, seed=1)), {})),
    "kwarg_input": Case(_seeded(KwargInput), lambda: ((randn(2, 3),), {"scale": randn(2, 3, seed=1), "shift": 0.5})),
    "tuple_output": Case(_seeded(TupleOutput), _x(2, 3)),
    "dict_output": Case(_seeded(DictOutput), _x(2, 3)),
    "nested_list_output": Case(_seeded(NestedListOutput), _x(2, 3)),
    "returns_input": Case(_seeded(ReturnsInput), _x(2, 3)),
    "dup_output": Case(_seeded(DupOutput), _x(2, 3)),
    "buffers": Case(_seeded(BufferModel), _x(2, 4)),
    "batchnorm_eval": Case(_seeded(BNWrap), _x(3, 4)),
    "batchnorm_train": Case(_seeded(BNWrap), _x(3, 4), train=True),
    "const_attr": Case(_seeded(ConstAttr), _x(2, 4)),
    "act_attr": Case(_seeded(ActAttr), _x(2, 4)),
    "frozen_params": Case(_seeded(FrozenParams), _x(2, 4)),
    "shared_block_twice": Case(_seeded(SharedBlockTwice), _x(2, 4)),
    "shared_alias": Case(_seeded(SharedAlias), _x(2, 4)),
    "same_linear_two_places": Case(_seeded(SameLinearTwoPlaces), lambda: ((randn(2, 4), randn(2, 4, seed=1)), {})),
    "nested3": Case(_seeded(Nested3), _x(2, 4)),
    "identity": Case(_seeded(IdentityModel), _x(2, 3)),
    "passthrough": Case(_seeded(PassthroughModel), _x(2, 3)),
    "sequential": Case(_seeded(make_sequential), _x(3, 4)),
    "seq_inside": Case(_seeded(SeqInside), _x(3, 4)),
    "spec_loop": Case(_seeded(SimpleRecurrent), _x(2, 5)),
    "modulelist_loop": Case(_seeded(ModuleListLoop), _x(2, 4)),
    "shape_conditional": Case(_seeded(ShapeConditional), lambda: ((randn(2, 5).abs(),), {})),
    "value_conditional": Case(_seeded(ValueConditional), lambda: ((randn(2, 3).abs(),), {})),
    "cat_stack": Case(_seeded(CatStack), _x(2, 3)),
    "split_chunk": Case(_seeded(SplitChunk), _x(2, 4)),
    "split_mul": Case(_seeded(SplitMul), _x(2, 4)),
    "max_dim": Case(_seeded(MaxDim), _x(3, 5)),
    "matmul_einsum": Case(_seeded(MatmulEinsum), lambda: ((randn(2, 4), randn(2, 3, seed=1)), {})),
    "norm_softmax_dropout": Case(_seeded(NormSoftmaxDropout), _x(3, 6)),
    "embed_lstm": Case(_seeded(EmbedLSTM), lambda: ((torch.randint(0, 10, (2, 5), generator=_gen(3)),), {})),
    "conv_pool": Case(_seeded(ConvPool), _x(2, 2, 8, 8)),
    "residual": Case(_seeded(Residual), _x(3, 4)),
    "attention": Case(_seeded(Attention), _x(2, 5, 8)),
}


def build(name: str) -> tuple[nn.Module, tuple, dict]:
    """Fresh model (in the case's train/eval mode) and fresh inputs for a zoo entry."""
    case = ZOO[name]
    model = case.factory()
    model.train(case.train)
    args, kwargs = case.inputs()
    return model, args, kwargs
