"""Wrapped and sharded models (issue 16, deliverable 4): FSDP2 logged rank by rank, DDP and
DataParallel unwrapped, the FSDP1 wrapper, DTensor tensor parallelism and FSDP2 input casting refused.

Two gloo ranks on CPU run tests/dist_model_worker.py once (module fixture); this process builds the
same models unsharded and compares: every rank's log of the sharded model must be the unsharded
model's log on that rank's input (labels, graph, parameters per op, modules, activations equal)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens._capture import distributed

from models.distributed import rank_features, rank_ids, tiny_gpt2, tiny_mlp, tiny_transformer, torch_encoder

WORKER = Path(__file__).resolve().parent / "dist_model_worker.py"
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("dist_models")
    pkg_root = str(Path(tl.__file__).resolve().parents[1])
    env = dict(os.environ)
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE=str(WORLD),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")]),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(WORLD)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=300)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        logs = [p.communicate()[0] for p in procs]
        pytest.fail("ranks timed out:\n" + "\n".join(f"rank {r}:\n{out[-3000:]}" for r, out in enumerate(logs)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{logs[r][-4000:]}"
    return [torch.load(out / f"rank_{r}.pt", weights_only=False) for r in range(WORLD)]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Single-threaded like the ranks: the same kernels and reduction order, so equal values."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _reference(model: nn.Module, x: torch.Tensor, kwargs: dict | None = None) -> tl.ModelLog:
    """The unsharded model's log on one rank's input."""
    with _one_thread():
        return tl.log_forward_pass(model, x, kwargs)


def _assert_same_log(got: dict[str, Any], ref: tl.ModelLog) -> None:
    layers = ref.layer_list
    assert got["labels"] == list(ref.layer_labels)
    assert got["parents"] == [list(layer.parent_layers) for layer in layers]
    assert got["param_barcodes"] == [list(layer.parent_param_barcodes or []) for layer in layers]
    assert got["modules"] == [(m.address, m.module_class_name, m.num_passes) for m in ref.modules]
    assert got["model_name"] == ref.model_name
    assert len(got["acts"]) == len(layers)
    for act, layer in zip(got["acts"], layers, strict=True):
        assert torch.equal(act, layer.activation), layer.layer_label


def test_fsdp2_transformer_logs_equal_unsharded(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        ref = _reference(tiny_transformer(), rank_ids(r))
        assert ref.model_name == "TinyTransformer"
        assert ref.modules["blocks.0"].module_class_name == "TinyBlock"
        # The logs of both forwards (the first runs FSDP's lazy initialisation under capture).
        _assert_same_log(res["fsdp2"], ref)
        _assert_same_log(res["fsdp2_again"], ref)
        # A model logged unsharded first, then sharded in place.
        _assert_same_log(res["late"], ref)
        assert res["late"]["params"] == res["fsdp2"]["params"]
        # The ranks logged their own data: different inputs, different activations.
    assert not torch.equal(ranks[0]["fsdp2"]["acts"][0], ranks[1]["fsdp2"]["acts"][0])


def test_fsdp2_activation_gradients_equal_unsharded(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        with _one_thread():
            ref = tl.log_forward_pass(tiny_transformer(), rank_ids(r), save_gradients=True)
            ref.layer_list[-1].activation.sum().backward()
        grads = res["fsdp2_grads"]
        assert len(grads) == len(ref.layer_list)
        assert sum(g is not None for g in grads) == 72
        for g, layer in zip(grads, ref.layer_list, strict=True):
            if layer.gradient is None:
                assert g is None, layer.layer_label
            else:
                assert torch.equal(g, layer.gradient), layer.layer_label


def test_fsdp2_torch_encoder_logs_equal_unsharded(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        ref = _reference(torch_encoder(), rank_features(r))
        assert "scaleddotproductattention_1_20" in ref.layer_labels
        _assert_same_log(res["encoder"], ref)


def test_fsdp2_gpt2_logs_equal_unsharded(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        ref = _reference(tiny_gpt2(), rank_ids(r), {"use_cache": False})
        assert ref.modules["transformer.h.0"].module_class_name == "GPT2Block"
        _assert_same_log(res["gpt2"], ref)


def test_fsdp2_param_logs_give_local_and_global_shapes(ranks: list[dict[str, Any]]) -> None:
    model = tiny_transformer()
    expected_global = [(name, tuple(p.shape), p.numel()) for name, p in model.named_parameters()]
    for r, res in enumerate(ranks):
        params = res["fsdp2"]["params"]
        assert [(a, s, n) for a, s, _, _, n in params] == expected_global
        for (_, shape, local, glob, _), (_, p) in zip(params, model.named_parameters(), strict=True):
            assert glob == shape
            # fully_shard splits dim 0 like torch.chunk: rank r holds chunk r (empty past the last one).
            chunks = p.detach().chunk(WORLD, dim=0)
            want = tuple(chunks[r].shape) if r < len(chunks) else (0, *shape[1:])
            assert local == want, (p.shape, r)
    assert ranks[1]["fsdp2"]["params"][0][:3] == ("pos", (1, 6, 16), (0, 6, 16))
    assert ranks[0]["fsdp2"]["params"][1][:3] == ("tok.weight", (32, 16), (16, 16))


def test_fsdp2_model_left_as_found(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        before, after = res["fsdp2_hooks"]
        assert before == after == ["FSDPState._pre_forward", "FSDPState._post_forward"] * 3
        assert res["fsdp2_block_param_types"] == ["DTensor"]
        assert res["fsdp2_validate"] is True
        assert res["fsdp2_grad_types"] == ["DTensor"]
        ref = _reference(tiny_transformer(), rank_ids(r))
        assert torch.equal(res["fsdp2_plain_out"], ref.layer_list[-1].activation)


def test_fsdp2_input_cast_refused(ranks: list[dict[str, Any]]) -> None:
    for res in ranks:
        assert res["mp_error"].startswith(
            "torchlens cannot log this FSDP2 model: its forward hook casts a forward input "
            "(torch.float32 -> torch.bfloat16, a MixedPrecisionPolicy"
        )
        before, after = res["mp_hooks"]
        assert before == after == ["FSDPState._pre_forward", "FSDPState._post_forward"]
        assert res["mp_out_dtype"] == torch.bfloat16


def test_fsdp2_bf16_parameters_log_like_a_bf16_model(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        ref = _reference(tiny_mlp().bfloat16(), rank_features(r).bfloat16())
        assert ref.layer_list[1].activation.dtype == torch.bfloat16
        _assert_same_log(res["mp_bf16"], ref)
        # Parameter logs describe the stored (fp32) shards; the ops ran on bf16 gathers.
        assert res["mp_bf16"]["params"][0] == ("fc1.weight", (32, 16), (16, 16), (32, 16), 512)


def test_fsdp1_and_tensor_parallel_refused(ranks: list[dict[str, Any]]) -> None:
    for res in ranks:
        assert res["fsdp1_error"].startswith(
            "torchlens.log_forward_pass does not support FullyShardedDataParallel (the FSDP1 wrapper)"
        )
        assert "torch.distributed.fsdp.fully_shard (FSDP2)" in res["fsdp1_error"]
        assert res["tp_error"].startswith(
            "torchlens.log_forward_pass does not support DTensor tensor parallelism "
            "(torch.distributed.tensor.parallel; 'fc1.weight' is a DTensor)"
        )


def test_fastlog_refuses_sharded_models(ranks: list[dict[str, Any]]) -> None:
    for res in ranks:
        assert res["fastlog_fsdp_error"].startswith(
            "torchlens.fastlog does not support FullyShardedDataParallel (FSDP): record the unwrapped module"
        )
        assert res["fastlog_tp_error"] == res["tp_error"]


def test_ddp_is_unwrapped(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        ref = _reference(tiny_transformer(), rank_ids(r))
        _assert_same_log(res["ddp"], ref)
        assert not any(a.startswith("module") for a, _, _ in res["ddp"]["modules"][1:])


def test_data_parallel_is_unwrapped() -> None:
    model = tiny_mlp()
    x = rank_features(0)
    bare = tl.log_forward_pass(model, x)
    wrapped = tl.log_forward_pass(nn.DataParallel(model), x)
    assert (
        wrapped.layer_labels
        == bare.layer_labels
        == [
            "input_1",
            "linear_1_1",
            "relu_1_2",
            "linear_2_3",
            "output_1",
        ]
    )
    assert [m.address for m in wrapped.modules] == ["self", "fc1", "fc2"]
    assert wrapped.model_name == "TinyMLP"
    for a, b in zip(wrapped.layer_list, bare.layer_list, strict=True):
        assert torch.equal(a.activation, b.activation)
    assert torch.equal(wrapped.layer_list[-1].activation, model(x))
    p = wrapped.params["fc1.weight"]
    assert p.local_shape == p.global_shape == p.shape == (32, 16)
    assert not p.is_sharded


def test_module_class_sees_through_fsdp2_class_swap() -> None:
    class FSDPModule:  # stands in for torch's mixin, matched by name and module
        pass

    FSDPModule.__module__ = "torch.distributed.fsdp._fully_shard._fully_shard"
    swapped = type("FSDPLinear", (FSDPModule, nn.Linear), {})
    m = nn.Linear(2, 2)
    assert distributed.module_class(m) is nn.Linear
    m.__class__ = swapped
    assert distributed.module_class(m) is nn.Linear
