"""Argument tokens and op-output classification shared by both capture sessions (issue 10)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import torchlens as tl
from torchlens import _data
from torchlens._capture import hot


def _combine(x: torch.Tensor, terms: tuple) -> torch.Tensor:
    """Adds each term of a positional tuple of (name, value) pairs, the shape kwargs used to be stored in."""
    with hot.paused():
        out = x.clone()
        for _name, v in terms:
            out = out + v
    return out


# Wrapped exactly like a torch callable, so the capture sees one bottom-level op.
combine = hot.make_wrapper(_combine, "combine", "combine")


class PairsModel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x * 2
        b = x + 1
        y = combine(a, (("b", b), ("scale", 0.5)))
        return combine(y, terms=(("b", b),))


def _combines(log: tl.ModelLog) -> list:
    return [lay for lay in log.layer_list if lay.func_name == "combine"]


def _check_positional_pairs(log: tl.ModelLog) -> None:
    first, second = _combines(log)
    b_label = log["add_1_2"].layer_label
    # A positional tuple of (str, x) pairs stays positional...
    assert first.num_positional_args == 2 and first.num_keyword_args == 0
    assert first.func_kwargs_non_tensor == {}
    [pairs] = first.func_positional_args_non_tensor
    assert pairs[0][0] == "b" and tuple(pairs[0][1]) == (2, 3) and pairs[1] == ("scale", 0.5)
    assert first.parent_layer_arg_locs["kwargs"] == {}
    assert first.func_argnames == ("arg0", "arg1")
    # ...and a real keyword argument stays a keyword argument.
    assert second.num_positional_args == 1 and second.num_keyword_args == 1
    assert list(second.func_kwargs_non_tensor) == ["terms"]
    assert second.func_argnames == ("arg0", "terms")
    # As in TorchLens 2.15, a tensor passed by keyword is an argument, not a parent (no edge).
    assert b_label in first.parent_layers and second.parent_layers == [first.layer_label]


def test_positional_tuple_of_named_pairs_is_not_read_as_kwargs() -> None:
    x = torch.rand(2, 3)
    log = tl.log_forward_pass(PairsModel(), x)
    _check_positional_pairs(log)
    assert torch.allclose(log["output_1"].activation, (x * 2 + (x + 1) + 0.5) + (x + 1))


def test_positional_pairs_in_captured_args_and_replay() -> None:
    x = torch.rand(2, 3)
    log = tl.log_forward_pass(PairsModel(), x, save_function_args=True)
    first, second = _combines(log)
    assert len(first.captured_args) == 2 and first.captured_kwargs == {}
    assert list(second.captured_kwargs) == ["terms"]
    assert tl.validate_forward_pass(PairsModel(), x)


def test_positional_pairs_survive_a_bundle_round_trip(tmp_path: Path) -> None:
    log = tl.log_forward_pass(PairsModel(), torch.rand(2, 3))
    log.save(tmp_path / "pairs.tl")
    loaded = tl.load(tmp_path / "pairs.tl")
    _check_positional_pairs(loaded)
    assert [e.func_config for e in _combines(loaded)] == [e.func_config for e in _combines(log)]


def test_split_tokens_and_legacy_bundles() -> None:
    size = torch.Size([2])
    assert _data.split_tokens(((size, 1), (("dim", 0),))) == ([size, 1], {"dim": 0})
    assert _data.split_tokens(_data.NO_TOKENS) == ([], {})
    assert _data.split_tokens(()) == ([], {})
    # Bundles written before kwargs were stored apart keep their (ambiguous) trailing-pairs reading.
    assert _data.legacy_tokens((size, (("dim", 0),))) == ((size,), (("dim", 0),))
    assert _data.legacy_tokens((size, 3)) == ((size, 3), ())


def test_in_place_rule() -> None:
    for name in ("relu_", "__iadd__", "__setitem__", "__delitem__", "zero_"):
        assert _data.is_inplace_name(name), name
        assert _data.op_flags(name) & _data.FLAG_INPLACE
    for name in ("relu", "__add__", "__getitem__", "new_zeros", "add"):
        assert not _data.is_inplace_name(name), name
    none_self = {n for n in ("__setitem__", "__delitem__", "zero_", "relu_") if _data.returns_none_self(n)}
    assert none_self == {"__setitem__", "__delitem__", "zero_"}
    assert _data.op_flags("new_zeros") == _data.FLAG_SELF_NOT_PARENT


class ReturnsItsInput(nn.Module):
    """Ops that hand back their own input: in place, non-in-place (contiguous), None (setitem), new_*."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 1
        z = y.contiguous()  # returns y itself
        w = y + z
        w[0] = 0.0
        n = w.new_zeros(w.shape)
        return torch.relu_(w) + n + y


def test_both_sessions_classify_self_returning_ops_alike() -> None:
    x = torch.rand(3, 4)
    log = tl.log_forward_pass(ReturnsItsInput(), x)
    assert torch.equal(log["output_1"].activation, ReturnsItsInput()(x))
    graph = [
        (e.layer_type, tuple(log[p].layer_type for p in e.parent_layers))
        for e in log.layer_list
        if not e.is_input_layer and not e.is_output_layer
    ]
    assert graph == [
        ("mul", ("input",)),
        ("contiguous", ("mul",)),  # y.contiguous() returned y: its own node...
        ("add", ("mul", "contiguous")),
        ("setitem", ("add",)),  # returned None: w, changed, is the output
        ("newzeros", ()),  # only borrows dtype/device from w
        ("relu", ("setitem",)),
        ("add", ("relu", "newzeros")),
        ("add", ("add", "mul")),  # ...and y's later use still links to y
    ]
    rec = tl.fastlog.record(ReturnsItsInput(), x, keep_op=lambda ctx: True)
    events = [(r.ctx.layer_type, tuple(p.split("_")[0] for p in r.ctx.parent_labels)) for r in rec]
    assert events == graph
