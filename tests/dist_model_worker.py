"""One rank of tests/test_distributed_models.py (launched twice, torchrun-style env: RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT). Logs sharded and wrapped models with the gloo backend on CPU and saves
what it logged to OUTDIR/rank_<r>.pt; the test process compares it with unsharded logs it makes itself."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torchlens as tl  # noqa: E402
from torchlens._capture.distributed import ShardedModelError  # noqa: E402

from models.distributed import (  # noqa: E402
    rank_features,
    rank_ids,
    tiny_gpt2,
    tiny_mlp,
    tiny_transformer,
    torch_encoder,
)


def dump(log: Any) -> dict[str, Any]:
    """What the test compares: labels, graph, parameters per op, modules, parameter shapes, values."""
    layers = log.layer_list
    return {
        "labels": list(log.layer_labels),
        "parents": [list(layer.parent_layers) for layer in layers],
        "param_barcodes": [list(layer.parent_param_barcodes or []) for layer in layers],
        "acts": [layer.activation.detach() for layer in layers],  # (FSDP hooks on the outputs do not pickle)
        "modules": [(m.address, m.module_class_name, m.num_passes) for m in log.modules],
        "params": [(p.address, p.shape, p.local_shape, p.global_shape, p.num_params) for p in log.params],
        "model_name": log.model_name,
    }


def fsdp_hook_names(model: torch.nn.Module) -> list[str]:
    from torch.distributed.fsdp import FSDPModule

    names = []
    for m in model.modules():
        if isinstance(m, FSDPModule):
            for hooks in (m._forward_pre_hooks, m._forward_hooks):
                names += [getattr(h, "__qualname__", type(h).__name__) for h in hooks.values()]
    return names


def refused(fn: Any) -> str:
    try:
        fn()
    except ShardedModelError as e:
        return str(e)
    return "<not refused>"


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))  # a failing peer fails this rank too
    rank, world = dist.get_rank(), dist.get_world_size()
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel, MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    mesh = init_device_mesh("cpu", (world,))
    res: dict[str, Any] = {"rank": rank, "world": world}

    # FSDP2: every block sharded, then the root (which keeps its gathered parameters after a forward).
    model = tiny_transformer()
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    hooks_before = fsdp_hook_names(model)
    ids = rank_ids(rank)
    first = tl.log_forward_pass(model, ids)  # the first forward: FSDP's lazy init runs under capture
    second = tl.log_forward_pass(model, ids)
    res["fsdp2"] = dump(first)
    res["fsdp2_again"] = dump(second)
    res["fsdp2_hooks"] = (hooks_before, fsdp_hook_names(model))
    # Replay validation re-runs each op on its captured arguments: gathered parameters must outlive FSDP's frees.
    res["fsdp2_validate"] = tl.validate_forward_pass(model, ids)
    res["fsdp2_block_param_types"] = sorted({type(p).__name__ for p in model.blocks.parameters()})
    # Activation gradients through FSDP's backward (its pre-backward unshard hooks, reduce-scatter).
    glog = tl.log_forward_pass(model, ids, save_gradients=True)
    glog.layer_list[-1].activation.sum().backward()
    res["fsdp2_grads"] = [None if g is None else g.detach() for g in (layer.gradient for layer in glog.layer_list)]
    plain = model(ids)
    res["fsdp2_plain_out"] = plain.detach().clone()
    plain.sum().backward()  # training still works on the logged model
    res["fsdp2_grad_types"] = sorted({type(p.grad).__name__ for p in model.parameters()})

    # Logged unsharded, then sharded in place (FSDP2 swaps parameters and classes without torch's
    # registration hooks): the second log must see the shards.
    late = tiny_transformer()
    tl.log_forward_pass(late, ids)
    for block in late.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(late, mesh=mesh)
    res["late"] = dump(tl.log_forward_pass(late, ids))

    gpt2 = tiny_gpt2()
    for block in gpt2.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(gpt2, mesh=mesh)
    res["gpt2"] = dump(tl.log_forward_pass(gpt2, ids, {"use_cache": False}))

    enc = torch_encoder()
    for layer in enc.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(enc, mesh=mesh)
    res["encoder"] = dump(tl.log_forward_pass(enc, rank_features(rank)))

    # FSDP2 casting the forward input to bf16 outside the model's forward: refused, hooks put back.
    mp = tiny_mlp()
    fully_shard(mp, mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
    mp_hooks = fsdp_hook_names(mp)
    res["mp_error"] = refused(lambda: tl.log_forward_pass(mp, rank_features(rank)))
    res["mp_hooks"] = (mp_hooks, fsdp_hook_names(mp))
    res["mp_out_dtype"] = mp(rank_features(rank)).dtype

    # The same policy with inputs already in the parameter dtype: nothing is cast outside the forward.
    mp_ok = tiny_mlp()
    fully_shard(mp_ok, mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
    res["mp_bf16"] = dump(tl.log_forward_pass(mp_ok, rank_features(rank).bfloat16()))

    fsdp1 = FullyShardedDataParallel(tiny_mlp(), device_id=torch.device("cpu"))
    res["fsdp1_error"] = refused(lambda: tl.log_forward_pass(fsdp1, rank_features(rank)))

    # Logged once unsharded (its structure cached as clean), then parallelized in place.
    tp = tiny_mlp()
    tl.log_forward_pass(tp, rank_features(rank))
    tp = parallelize_module(tp, mesh, {"fc1": ColwiseParallel(), "fc2": RowwiseParallel()})
    res["tp_error"] = refused(lambda: tl.log_forward_pass(tp, rank_features(rank)))

    partial = tiny_transformer()
    fully_shard(partial.blocks[0], mesh=mesh)  # FSDP below an unsharded root
    res["fastlog_fsdp_error"] = refused(lambda: tl.fastlog.record(partial, ids, keep_op=lambda ctx: True))
    res["fastlog_tp_error"] = refused(lambda: tl.fastlog.record(tp, rank_features(rank), keep_op=lambda ctx: True))

    ddp = torch.nn.parallel.DistributedDataParallel(tiny_transformer())
    res["ddp"] = dump(tl.log_forward_pass(ddp, ids))

    torch.save(res, out / f"rank_{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
