"""Every tensor file torchlens writes opens with the reference `safetensors` reader, bit for bit.

For each dtype the reference knows (its torch mapping), a bundle (`tl.save`) and a fastlog disk
recording hold a tensor of arbitrary bit patterns; `safetensors.safe_open(..., framework="pt")`
and `safetensors.torch.load_file` must give back the same bytes. `complex128` (code `C128`) is
torchlens's one extension (docs/bundle-format.md): torchlens reads it back, the reference refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens.io import _shards

safetensors = pytest.importorskip("safetensors")
st_torch = pytest.importorskip("safetensors.torch")

# The reference's own code -> torch dtype table: exactly the dtypes `load_file` can return.
REFERENCE_DTYPES: dict[str, torch.dtype] = dict(st_torch._TYPES)


class Reshape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(2, -1)


def _random_bits(dtype: torch.dtype, n: int = 64) -> torch.Tensor:
    """n elements of `dtype` with random bytes (NaN payloads, subnormals, any bool byte avoided)."""
    size = torch.empty((), dtype=dtype).element_size()
    g = torch.Generator().manual_seed(n * size)
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        raw = raw % 2  # a bool byte other than 0/1 is not a valid bool
    return raw.view(dtype)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def _reference_reads(path: Path) -> dict[str, torch.Tensor]:
    """Both reference entry points; they must agree."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        opened = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    loaded = st_torch.load_file(str(path))
    assert opened.keys() == loaded.keys()
    for k in opened:
        assert opened[k].dtype == loaded[k].dtype and torch.equal(_bits(opened[k]), _bits(loaded[k]))
    return loaded


def test_every_reference_dtype_is_supported() -> None:
    names = {str(d).removeprefix("torch.") for d in REFERENCE_DTYPES.values()}
    assert names <= set(tl._core.TENSOR_DTYPES)
    assert set(tl._core.TENSOR_DTYPES) - names == {"complex128"}


@pytest.mark.parametrize("fmt", [1, 2])
@pytest.mark.parametrize("code", sorted(REFERENCE_DTYPES))
def test_bundle_blobs_open_with_reference_reader(
    tmp_path: Path, code: str, fmt: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """io format 1: one tensor `data` per blob file; format 2: shards naming tensors by blob id."""
    monkeypatch.setattr(_shards, "WRITE_FORMAT", fmt)
    dtype = REFERENCE_DTYPES[code]
    x = _random_bits(dtype)
    log = tl.log_forward_pass(Reshape(), x)
    tl.save(log, tmp_path / "b")
    files = sorted((tmp_path / "b" / ("blobs" if fmt == 1 else "shards")).iterdir())
    assert files
    originals = [_bits(x), _bits(x.reshape(2, -1))]
    found = []
    for f in files:
        tensors = _reference_reads(f)
        if fmt == 1:
            assert list(tensors) == ["data"]
        found += tensors.values()
    assert len(found) == json.loads((tmp_path / "b" / "manifest.json").read_text())["n_activation_blobs"]
    for t in found:
        assert t.dtype == dtype
        assert any(torch.equal(_bits(t), o) for o in originals)
    back = tl.load(tmp_path / "b")
    for a, b in zip(log, back, strict=True):
        if a.activation is not None:
            assert b.activation.dtype == dtype and torch.equal(_bits(a.activation), _bits(b.activation))


@pytest.mark.parametrize("code", sorted(REFERENCE_DTYPES))
def test_fastlog_payloads_open_with_reference_reader(tmp_path: Path, code: str) -> None:
    dtype = REFERENCE_DTYPES[code]
    x = _random_bits(dtype)
    streaming = tl.StreamingOptions(bundle_path=str(tmp_path / "f.tlfast"), retain_in_memory=False)
    rec = tl.fastlog.record(Reshape(), x, keep_op=lambda c: c.kind == "op", streaming=streaming)
    root = Path(rec.bundle_path)
    blobs = sorted((root / "blobs").iterdir())
    assert blobs
    for blob in blobs:
        tensors = _reference_reads(blob)
        assert tensors and all(t.dtype == dtype for t in tensors.values())
        assert all(torch.equal(_bits(t), _bits(x.reshape(2, -1))) for t in tensors.values())
    loaded = tl.fastlog.load(root, load_payloads=True, verify=True)
    assert torch.equal(_bits(loaded[0].disk_payload), _bits(x.reshape(2, -1)))


def test_complex128_is_an_extension(tmp_path: Path) -> None:
    x = torch.randn(4, dtype=torch.complex128)
    log = tl.log_forward_pass(Reshape(), x)
    tl.save(log, tmp_path / "c")
    back = tl.load(tmp_path / "c")
    assert torch.equal(back[0].activation, log[0].activation)
    blob = sorted((tmp_path / "c" / "shards").iterdir())[0]  # a shard holding it (io format 2)
    with pytest.raises(Exception):  # noqa: B017 (the reference's own error type)
        st_torch.load_file(str(blob))
