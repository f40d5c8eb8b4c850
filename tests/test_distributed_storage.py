"""Rank-sharded storage under torch.distributed (issue 16): one shard per rank, the rank index,
the merged readers (`tl.fastlog.load`, `tl.load`), and a rank killed mid-run.

The 2-rank runs use the gloo backend on the CPU: `torchrun` on examples/distributed_extract.py,
and plain subprocesses (tests/dist_fault_worker.py) where one rank SIGKILLs itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import torchlens as tl
from torchlens.io import _ranks

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "distributed_extract.py"
WORKER = Path(__file__).resolve().parent / "dist_fault_worker.py"
N_SAMPLES = 24
RELUS = 3  # ReLU records per sample in the example CNN


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ex = _module(EXAMPLE, "distributed_extract")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["TORCHLENS_RANK_BARRIER_TIMEOUT"] = "60"
    return env


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The ranks run with one thread; the references are computed the same way."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`torchrun --nproc-per-node 2 examples/distributed_extract.py --out DIR --model-log`."""
    out = tmp_path_factory.mktemp("dist") / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(EXAMPLE),
        "--out",
        str(out),
        "--n-samples",
        str(N_SAMPLES),
        "--model-log",
    ]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def reference() -> tl.fastlog.Recording:
    """A single-process run of the same recorder over every sample (RAM payloads)."""
    with _one_thread():
        model = ex.make_model()
        data = ex.make_dataset(N_SAMPLES, 16)
        with tl.fastlog.Recorder(model, keep_op=ex.keep_relu) as rec:
            for i in range(N_SAMPLES):
                rec.log(data[i][0].unsqueeze(0), sample_id=i)
    return rec.recording


def _ref_records(ref: tl.fastlog.Recording, sid: int) -> list:
    (p,) = [p for p, s in ref.sample_ids.items() if s == sid]
    return [ref.records[i] for i in ref.by_pass[p]]


def _assert_same(got: list, want: list) -> None:
    assert [r.ctx.label for r in got] == [r.ctx.label for r in want]
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g.disk_payload, w.ram_payload)


# --------------------------------------------------------------------------- layout and index


def test_one_shard_per_rank_and_index(run2: Path) -> None:
    root = run2 / "acts.tlfast"
    index = json.loads((root / "ranks.json").read_text())
    assert sorted(os.listdir(root)) == ["ranks.json"]
    assert index["format"] == "torchlens-rank-index" and index["kind"] == "fastlog"
    assert index["world_size"] == 2 and index["barrier_error"] is None
    assert [s["rank"] for s in index["shards"]] == [0, 1]
    for s in index["shards"]:
        shard = run2 / f"rank_{s['rank']:02d}" / "acts.tlfast"
        assert s["path"] == f"../rank_{s['rank']:02d}/acts.tlfast" and s["complete"]
        one = tl.fastlog.load(shard)  # each shard is a complete fastlog directory of today's format
        assert s["n_records"] == len(one) == N_SAMPLES // 2 * RELUS
        assert s["checksum"] == _ranks.shard_checksum(shard, "fastlog")
        assert sorted(one.sample_ids.values()) == list(range(s["rank"], N_SAMPLES, 2))
    # The index names shards, never records: no per-record key, size fixed by the world size.
    assert set(index["shards"][0]) == {"rank", "path", "complete", "n_records", "checksum", "sample_id_range"}
    assert [s["sample_id_range"] for s in index["shards"]] == [[0, N_SAMPLES - 2], [1, N_SAMPLES - 1]]
    assert len((root / "ranks.json").read_bytes()) < 1024
    # Each rank wrote its own summary beside its shard; rank 0 built the index from them.
    for s in index["shards"]:
        own = json.loads((run2 / f"rank_{s['rank']:02d}" / "acts.tlfast.summary.json").read_text())
        assert {k: own[k] for k in ("complete", "n_records", "checksum")} == {
            k: s[k] for k in ("complete", "n_records", "checksum")
        }


def test_merged_view_equals_single_process(run2: Path, reference: tl.fastlog.Recording) -> None:
    merged = tl.fastlog.load(run2 / "acts.tlfast", load_payloads=True)
    assert merged.world_size == 2 and merged.incomplete_shards == []
    assert len(merged) == len(reference) == N_SAMPLES * RELUS
    for sid in range(N_SAMPLES):
        _assert_same(merged.by_sample_id[sid], _ref_records(reference, sid))
    # Global order is by sample id: the same sequence as the single-process run.
    _assert_same(list(merged), list(reference))
    provs = [p for p, _ in merged.items()]
    assert [p.sample_id for p in provs] == [i for i in range(N_SAMPLES) for _ in range(RELUS)]
    assert [p.rank for p in provs[::RELUS]] == [i % 2 for i in range(N_SAMPLES)]
    p = merged.provenance(RELUS * 5 + 1)  # sample 5, second ReLU: rank 1, its pass 3
    assert (p.rank, p.local_index, p.pass_index, p.sample_id) == (1, 7, 3, 5)
    assert p.shard_path == str(run2 / "rank_01" / "acts.tlfast")
    assert merged[1, 7] is merged[RELUS * 5 + 1]
    assert len(merged["relu_1_3_raw"]) == N_SAMPLES


def test_loading_touches_only_the_shards_read(run2: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run2, copy)
    merged = tl.fastlog.load(copy / "acts.tlfast", load_payloads=True)
    assert len(merged) == N_SAMPLES * RELUS  # from the index alone
    assert merged.shards_opened == []
    shutil.rmtree(copy / "rank_01")  # a shard that is never read may be gone
    rec = merged[0, 4]
    assert rec.ctx.sample_id == 2 and merged.shards_opened == [0]
    with pytest.raises(tl.TorchLensIOError, match="rank 1 is gone"):
        merged[1, 0]
    # A sample-id lookup reads every shard's pass -> sample id map but opens only the holder.
    intact = tl.fastlog.load(run2 / "acts.tlfast")
    assert [r.ctx.sample_id for r in intact.by_sample_id[4]] == [4] * RELUS
    assert intact.shards_opened == [0]


def test_checksum_and_missing_index(run2: Path, tmp_path: Path, reference: tl.fastlog.Recording) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run2, copy)
    meta = copy / "rank_01" / "acts.tlfast" / "metadata.json"
    meta.write_text(meta.read_text().replace('"history_size": 8', '"history_size": 9'))
    merged = tl.fastlog.load(copy / "acts.tlfast")
    assert merged[0, 0].ctx.sample_id == 0
    with pytest.raises(tl.TorchLensIOError, match="rank 1 .* changed since the rank index"):
        merged[1, 0]
    # Rank 0 never wrote the index: the reader discovers rank_*/acts.tlfast and says so.
    (copy / "acts.tlfast" / "ranks.json").unlink()
    (copy / "acts.tlfast").rmdir()
    with pytest.warns(UserWarning, match=r"no rank index .* discovered 2 shard\(s\)"):
        found = tl.fastlog.load(copy / "acts.tlfast", load_payloads=True)
    assert found.ranks == [0, 1] and len(found) == N_SAMPLES * RELUS
    _assert_same(found.by_sample_id[7], _ref_records(reference, 7))


def test_log_forward_pass_shards(run2: Path) -> None:
    logs = tl.load(run2 / "log.tlbundle")
    assert isinstance(logs, tl.io._rank_logs.ShardedLogs) and logs.ranks == [0, 1] and logs.shards_opened == []
    index = json.loads((run2 / "log.tlbundle" / "ranks.json").read_text())
    assert index["kind"] == "bundle" and [s["n_records"] for s in index["shards"]] == [11, 11]
    data = ex.make_dataset(N_SAMPLES, 16)
    for rank in (0, 1):
        shard = run2 / f"rank_{rank:02d}" / "log.tlbundle"
        with _one_thread():
            ref = tl.log_forward_pass(ex.make_model(), data[rank][0].unsqueeze(0), layers_to_save="all")
        alone = tl.load(shard)  # each shard is an ordinary bundle
        got = logs[rank]
        assert [e.layer_label for e in got] == [e.layer_label for e in ref] == [e.layer_label for e in alone]
        for e in ref:
            assert torch.equal(got[e.layer_label].activation, e.activation)
        assert torch.equal(logs[rank, "relu_2_4"].activation, ref["relu_2_4"].activation)
    assert logs.shards_opened == [0, 1]


# --------------------------------------------------------------------------- a rank killed mid-run


def _launch_fault(out: Path, mode: str, kill_after: int) -> None:
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = _env()
        env.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        cmd = [sys.executable, str(WORKER), "--out", str(out), "--mode", mode, "--kill-after", str(kill_after)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert procs[1].returncode == -signal.SIGKILL, logs[1][-3000:]
    assert procs[0].returncode == 0, logs[0][-3000:]


def test_killed_rank_fastlog(tmp_path: Path, reference: tl.fastlog.Recording) -> None:
    _launch_fault(tmp_path, "fastlog", 5)
    root = tmp_path / "acts.tlfast"
    shard1 = tmp_path / "rank_01" / "acts.tlfast"
    index = json.loads((root / "ranks.json").read_text())
    s0, s1 = index["shards"]
    assert s0["complete"] and s0["n_records"] == 8 * RELUS
    assert not s1["complete"] and s1["n_records"] is None and len(s1["partial"]) == 1
    assert "Rank 1" in index["barrier_error"]
    with pytest.warns(UserWarning, match=r"incomplete shard\(s\) of .*rank 1 \(" + str(shard1)):
        merged = tl.fastlog.load(root, load_payloads=True)
    assert merged.incomplete_shards == [str(shard1)] and merged.ranks == [0]
    assert len(merged) == 8 * RELUS
    for sid in range(0, 16, 2):
        _assert_same(merged.by_sample_id[sid], _ref_records(reference, sid))
    assert 1 not in merged.by_sample_id
    # The killed rank's shard alone is recoverable, and the merged recover() salvages it.
    alone = tl.fastlog.recover(shard1, load_payloads=True)
    assert alone.recovered and len(alone) == 5 * RELUS
    salvaged = tl.fastlog.recover(root, load_payloads=True)
    assert salvaged.recovered and salvaged.ranks == [0, 1] and len(salvaged) == 13 * RELUS
    for sid in [*range(0, 16, 2), 1, 3, 5, 7, 9]:
        _assert_same(salvaged.by_sample_id[sid], _ref_records(reference, sid))
    assert 11 not in salvaged.by_sample_id


def test_killed_rank_bundle(tmp_path: Path) -> None:
    mlp = _module(WORKER, "dist_fault_worker").deep_mlp
    _launch_fault(tmp_path, "bundle", 70)
    root = tmp_path / "log.tlbundle"
    shard1 = tmp_path / "rank_01" / "log.tlbundle"
    with pytest.warns(UserWarning, match=r"incomplete shard\(s\) of .*rank 1"):
        logs = tl.load(root)
    assert logs.incomplete_shards == [str(shard1)] and logs.ranks == [0]
    refs = {}
    for rank in (0, 1):
        x = torch.randn(2, 16, generator=torch.Generator().manual_seed(rank))
        with _one_thread():
            refs[rank] = tl.log_forward_pass(mlp(), x, layers_to_save="all")
    assert [e.layer_label for e in logs[0]] == [e.layer_label for e in refs[0]]
    assert all(torch.equal(logs[0][e.layer_label].activation, e.activation) for e in refs[0])
    assert tl.recover_bundle(root) == str(root)  # commits every incomplete rank shard
    healed = tl.load(root)
    assert healed.incomplete_shards == [] and healed.ranks == [0, 1]
    got = healed[1]
    assert 64 <= len(got) <= 70  # the operations journaled before the kill (one journal chunk per 64 nodes)
    for e in got:
        assert torch.equal(e.activation, refs[1][e.layer_label].activation)
