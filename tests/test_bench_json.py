"""The benchmark figures for CI trackers (benches/run.py): a flat JSON list of {"name", "unit", "value"}."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "benches" / "run.py"


@pytest.fixture(scope="module")
def run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_row(model: str, scale: float, *, impl: str = "ours", ours_only: bool = True) -> dict:
    row = {
        "model": model,
        "impl": impl,
        "ops": 20,
        "plain_s": 0.01,
        "metadata_s": 0.02 * scale,
        "all_saved_s": 0.03 * scale,
        "metadata_ratio": 2.0 * scale,
        "all_saved_ratio": 3.0 * scale,
        "metadata_us_per_op": 500.0 * scale,
        "all_saved_us_per_op": 1000.0 * scale,
        "rss_all_saved_mb": 512,  # an int in the results: written as a float
        "wall_s": 4.0,
    }
    if ours_only:
        row.update(fastlog_ratio=1.5 * scale, metadata_cond_ratio=2.5 * scale, conditional_events=0)
    return row


def test_tracker_json_shape(run: ModuleType, tmp_path: Path) -> None:
    rows = [
        fake_row("alexnet", 1.0),
        fake_row("mlp_2000", 2.0),
        {"model": "broken", "impl": "ours", "error": "RuntimeError: boom", "wall_s": 1.0},
        fake_row("alexnet", 4.0, impl="peer", ours_only=False),
    ]
    path = run.write_tracker_json(rows, tmp_path / "quick-bench.json")
    entries = json.loads(path.read_text())
    assert isinstance(entries, list)
    assert len(entries) == 7 + 7 + 5  # the failed row is left out; the peer row has no fastlog/conditionals
    for e in entries:
        assert set(e) == {"name", "unit", "value"}
        assert isinstance(e["name"], str) and isinstance(e["unit"], str)
        assert type(e["value"]) is float
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names)
    assert not any("broken" in n for n in names)
    by_name = {e["name"]: e for e in entries}
    assert by_name["alexnet: metadata only"] == {
        "name": "alexnet: metadata only",
        "unit": "x plain forward",
        "value": 2.0,
    }
    assert by_name["mlp_2000: fastlog (relu kept)"]["value"] == 3.0
    assert by_name["mlp_2000: all saved, added per op"] == {
        "name": "mlp_2000: all saved, added per op",
        "unit": "us/op",
        "value": 2000.0,
    }
    assert by_name["alexnet: all saved, peak RSS"]["value"] == 512.0
    assert by_name["alexnet [peer]: all saved"]["value"] == 12.0
    assert "alexnet [peer]: fastlog (relu kept)" not in by_name


def test_tracker_json_empty(run: ModuleType, tmp_path: Path) -> None:
    path = run.write_tracker_json([], tmp_path / "sub" / "quick-bench.json")
    assert json.loads(path.read_text()) == []
