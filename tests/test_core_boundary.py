"""The Python/Rust boundary: record schema parity, error mapping, import side effects."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torchlens as tl
from torchlens import _core, _data
from torchlens._capture.strings import STRINGS, intern


def test_record_schema_matches_emitter() -> None:
    assert _core.RECORD_FIELDS == _data.RECORD_FIELDS
    assert _core.RECORD_VERSION == _data.RECORD_VERSION
    # Every field has its named index, at the core's position, and no other F_* name exists.
    named = {k: v for k, v in vars(_data).items() if k.startswith("F_")}
    assert named == {f"F_{f.upper()}": i for i, f in enumerate(_core.RECORD_FIELDS)}


def test_emitted_records_follow_the_named_layout() -> None:
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)
            self.register_buffer("b", torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.lin(x) + self.b)

    log = tl.log_forward_pass(M(), torch.rand(2, 3))
    recs = log._data.records
    strings = log._data.strings
    assert all(len(r) == len(_core.RECORD_FIELDS) for r in recs)
    kinds = [r[_data.F_KIND] for r in recs]
    assert kinds == [_data.KIND_INPUT, _data.KIND_OP, _data.KIND_BUFFER, _data.KIND_OP, _data.KIND_OP]
    lin, add, relu = recs[1], recs[3], recs[4]
    assert strings[lin[_data.F_FUNC]] == "linear" and len(lin[_data.F_PARAMS]) == 2
    assert strings[relu[_data.F_LAYER_TYPE]] == "relu" and relu[_data.F_PARENTS] == (3,)
    assert add[_data.F_PARENTS] == (1, 2) and add[_data.F_OUT_INDEX] == _data.OUT_SINGLE
    assert strings[recs[0][_data.F_ROLE]] == "input.x" and relu[_data.F_ROLE] == _data.NO_STR
    assert [log._kind(p) for p in range(len(log))][-1] == _data.KIND_OUTPUT


def test_version_and_profile() -> None:
    assert _core.__version__ == tl.__version__

    # The loaded extension is a copy of one cargo artifact; the profile that built it says what
    # build_profile must be (profiling inherits release, so no debug assertions either).
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    loaded = digest(Path(_core.__file__))
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path(__file__).resolve().parents[1] / "target")
    built_by = [
        profile
        for profile in ("debug", "release", "profiling")
        for lib in (target / profile).glob("*_core.*")
        if lib.suffix in (".so", ".dylib", ".dll", ".pyd") and digest(lib) == loaded
    ]
    if not built_by:
        pytest.skip(f"the loaded _core is not an artifact under {target}")
    assert _core.build_profile == ("debug" if built_by[0] == "debug" else "release"), built_by


def _rec(kind: int, parents: tuple = (), role: int = 0xFFFFFFFF) -> tuple:
    return (kind, intern("none"), intern("input" if kind == 0 else "relu"), 0, -1, 0, (), parents, role)


def test_finalize_minimal_stream() -> None:
    recs = [_rec(0, role=intern("input.x")), _rec(2, (0,))]
    out_role = intern("output")
    fin = _core.finalize(list(STRINGS), recs, [[]], [], [], [(1, out_role, 7)], True)
    assert fin.labels() == ["input_1", "relu_1_1", "output_1"]
    assert fin.parents() == [[], [0], [1]]
    assert fin.children() == [[1], [2], []]
    assert fin.lookup("relu_1_1") == 1
    assert fin.lookup("input.x") == 0
    assert fin.lookup("nope") is None


@pytest.mark.parametrize(
    "records",
    [
        [(9, 0, 0, 0, -1, 0, (), (), 0xFFFFFFFF)],  # unknown kind
        [(2, 0, 0, 0, -1, 0, (), (5,), 0xFFFFFFFF)],  # parent after child
        [(2, 0, 0, 0, -1, 42, (), (), 0xFFFFFFFF)],  # module stack out of range
        [(2, 10**9, 0, 0, -1, 0, (), (), 0xFFFFFFFF)],  # string id out of range
        [(2, 0, 0)],  # short record
    ],
)
def test_bad_records_raise_value_error(records: list) -> None:
    with pytest.raises(ValueError):
        _core.finalize(list(STRINGS) or ["x"], records, [[]], [], [], [], True)


def test_import_has_no_side_effect_on_torch() -> None:
    code = (
        "import torch\n"
        "before = (torch.relu, torch.Tensor.__dict__.get('__add__'), torch.nn.functional.linear)\n"
        "import torchlens\n"
        "after = (torch.relu, torch.Tensor.__dict__.get('__add__'), torch.nn.functional.linear)\n"
        "assert all(a is b for a, b in zip(before, after)), 'import changed torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unwrap_restores_originals() -> None:
    tl.unwrap_torch()
    orig = (torch.relu, torch.Tensor.__dict__.get("__getitem__"), torch.nn.functional.conv2d, torch.Tensor.T)
    tl.wrap_torch()
    assert torch.relu is not orig[0]
    assert torch.tensor([torch.tensor(1.0), torch.tensor(2.0)]).tolist() == [1.0, 2.0]
    tl.unwrap_torch()
    now = (torch.relu, torch.Tensor.__dict__.get("__getitem__"), torch.nn.functional.conv2d, torch.Tensor.T)
    assert all(a is b for a, b in zip(orig, now, strict=True))
    assert torch.tensor([torch.tensor(1.0), torch.tensor(2.0)]).tolist() == [1.0, 2.0]
    with tl.wrapped():
        assert torch.relu is not orig[0]
    assert torch.relu is orig[0]


def test_device_context_still_reaches_factories() -> None:
    tl.wrap_torch()
    with torch.device("meta"):
        assert torch.zeros(2).device.type == "meta"
        assert torch.nn.Linear(2, 2).weight.device.type == "meta"
    log = tl.log_forward_pass(torch.nn.Linear(3, 3), torch.rand(2, 3))
    with torch.device("meta"):
        assert torch.ones(1).device.type == "meta"
    assert len(log) == 3
