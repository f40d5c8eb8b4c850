"""`ModelLog.summary()` text tables (spec §2.7).

The overview of the spec's `TinySummaryModel` must match the spec's golden text byte for byte.
The other levels, modes and options are compared with the text TorchLens 2.15.0 prints for the
same models (captured by running 2.15.0 as a black box on the models of `models.lifecycle` with
the inputs below). The `Time (ms)` cells and the `Forward time` line measure this run, so they
are checked against the log's own timings instead of the captured text.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import torchlens as tl

from models.lifecycle import LoopSummaryNet, TinySummaryModel, TwoPathSummaryNet, WideParamNet

SPEC_OVERVIEW = """\
Model: TinySummaryModel
+-------------------+--------------+--------+-------+
| Layer             | Output Shape | Params | Train |
+-------------------+--------------+--------+-------+
| input             | [1,3,8,8]    | 0      | -     |
| conv (Conv2d)     | [1,4,8,8]    | 108    | yes   |
| relu (ReLU)       | [1,4,8,8]    | 0      | -     |
| flatten (Flatten) | [1,256]      | 0      | -     |
| fc (Linear)       | [1,5]        | 1.3 K  | yes   |
| output            | [1,5]        | -      | -     |
+-------------------+--------------+--------+-------+
Params: 1,388 unique; trainable: 1,388
Ops: 4 total
Saved activations: 0 B
Forward FLOPs: 19.2 K  MACs: 9.6 K"""

MODELS = {
    "TinySummaryModel": TinySummaryModel,
    "LoopSummaryNet": LoopSummaryNet,
    "TwoPathSummaryNet": TwoPathSummaryNet,
    "WideParamNet": WideParamNet,
}


def _inputs(name: str) -> Any:
    g = torch.Generator().manual_seed(0)
    return {
        "TinySummaryModel": lambda: torch.randn(1, 3, 8, 8, generator=g),
        "LoopSummaryNet": lambda: torch.randn(1, 5, generator=g),
        "TwoPathSummaryNet": lambda: [torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)],
        "WideParamNet": lambda: torch.randn(200000, generator=g),
    }[name]()


def _log(name: str, **kw: Any) -> tl.ModelLog:
    torch.manual_seed(0)
    return tl.log_forward_pass(MODELS[name](), _inputs(name), random_seed=1, **kw)


def test_spec_golden_overview() -> None:
    log = _log("TinySummaryModel", layers_to_save=None)
    assert log.summary() == SPEC_OVERVIEW
    assert log.summary("overview", mode="unrolled") == SPEC_OVERVIEW
    buf = io.StringIO()
    assert log.summary(print_to=buf) == SPEC_OVERVIEW
    assert buf.getvalue() == SPEC_OVERVIEW + "\n"


def _time_cells(text: str) -> list[tuple[int, int, int]]:
    """(line index, `Time (ms)` cell index, table number) for every row of a table with that column."""
    out: list[tuple[int, int, int]] = []
    col = None
    table = -1
    for i, ln in enumerate(text.split("\n")):
        if not ln.startswith("|"):
            if not ln.startswith("+"):
                col = None
            continue
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if "Time (ms)" in cells:
            col = cells.index("Time (ms)")
            table += 1
        elif col is not None:
            out.append((i, col, table))
    return out


def _mask_times(text: str) -> str:
    """The text with the measured times blanked (cell widths kept)."""
    lines = text.split("\n")
    for i, col, _ in _time_cells(text):
        cells = lines[i].split("|")
        cells[col + 1] = "#" * len(cells[col + 1])
        lines[i] = "|".join(cells)
    return re.sub(r"Forward time: \d+\.\d\d ms", "Forward time: # ms", "\n".join(lines))


def _check_times(log: tl.ModelLog, text: str) -> None:
    """Each `Time (ms)` cell is the row's summed `func_time`: per top-level module, then per layer pass."""
    lines = text.split("\n")
    for i, col, _ in _time_cells(text):
        cells = [c.strip() for c in lines[i].strip("|").split("|")]
        label = cells[0]
        if label in log.module_addresses:  # the compute table: one row per top-level module
            inside = [e for e in log if any(c.startswith(label + ":") for c in e.containing_modules)]
            assert inside
            seconds = sum(e.func_time or 0.0 for e in inside)
        else:  # the operations table: one row per pass, the first pass labelled without ":1"
            base, sep, _ = label.partition(":")
            entry = log[label] if sep or log[base].num_passes == 1 else log[f"{base}:1"]
            seconds = entry.func_time or 0.0
        assert cells[col] == f"{1e3 * seconds:.2f}", (label, cells[col], seconds)
    m = re.search(r"Forward time: (\d+\.\d\d) ms", text)
    if m is not None:
        assert m.group(1) == f"{1e3 * log.time_forward_pass:.2f}"


# Printed by TorchLens 2.15.0 for the same models, inputs and calls (one text file a case).
_CASES_DIR = Path(__file__).parent / "data" / "summary_2_15"
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (c["model"], c["log_kwargs"], c["call"], (_CASES_DIR / c["file"]).read_text())
    for c in json.loads((_CASES_DIR / "cases.json").read_text())
]


@pytest.mark.parametrize(("name", "log_kwargs", "call", "expected"), CASES)
def test_levels_match_torchlens_2_15(name: str, log_kwargs: dict, call: dict, expected: str) -> None:
    log = _log(name, **log_kwargs)
    text = log.summary(**call)
    assert _mask_times(text) == _mask_times(expected)
    _check_times(log, text)


def test_aliases_and_errors() -> None:
    log = _log("LoopSummaryNet")
    assert log.summary("cost") == log.summary("compute")
    assert log.summary(preset="memory") == log.summary("memory")
    assert log.summary(columns=["name", "shape"]) == log.summary(fields=["name", "shape"])
    assert log.summary(include_ops=True) == log.summary(show_ops=True)
    assert log.summary(show_ops=True, include_ops=True) == log.summary(show_ops=True)
    with pytest.raises(ValueError, match=r"^Unsupported summary level: 'bogus'\.$"):
        log.summary("bogus")
    with pytest.raises(ValueError, match=r"^Unsupported summary fields: \['nope'\]\.$"):
        log.summary(fields=["nope", "name"])
    with pytest.raises(ValueError, match="Pass either `level` or `preset`"):
        log.summary("graph", preset="memory")
    with pytest.raises(ValueError, match="Pass either `fields` or `columns`"):
        log.summary(fields=["name", "params"], columns=["name"])
    with pytest.raises(ValueError, match="Pass either `show_ops` or `include_ops`"):
        log.summary(show_ops=True, include_ops=False)
    with pytest.raises(ValueError, match="Unsupported summary mode"):
        log.summary(mode="folded")


def test_rolled_rows_aggregate_passes() -> None:
    """Rolled op rows: one per layer, `label xN`, FLOPs of one pass (as the layer reports), time of all passes."""
    log = _log("LoopSummaryNet")
    text = log.summary("compute", show_ops=True, mode="rolled")
    rows = {
        ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
        for ln in text.split("\n")[14:]
        if ln.startswith("| ") and "Layer" not in ln
    }
    lin = log.layers["linear_1_1"]
    assert lin.num_passes == 3
    flops = lin.passes[1].flops_forward
    assert flops == lin.flops_forward == 2 * 5 * 5
    seconds = sum(p.func_time for p in lin.passes.values())
    assert rows["linear_1_1 x3"] == ["25", str(flops), str(flops // 2), f"{1e3 * seconds:.2f}", "float32"]
    assert text.endswith("Operation rows shown: 4 (rolled)")


def test_dropped_layers_summary() -> None:
    """keep_unsaved_layers=False: layer tables list the kept entries, module tables the whole model."""
    log = _log("TwoPathSummaryNet", layers_to_save=["relu_3_8"], keep_unsaved_layers=False)
    assert log.layer_labels == ["relu_3_8", "linear_4_9", "add_2_10", "output_1", "output_2"]
    overview = log.summary().split("\n")
    # input_1 was dropped: its shape is unknown here (2.15 prints the same)
    assert overview[4] == "| input           | -            | 0      | -     |"
    assert overview[5] == "| a (Linear)      | [2,6]        | 36     | yes   |"
    assert overview[7] == "| frozen (Linear) | [2,6]        | 36     | no    |"
    assert overview[8] == "| act (ReLU)      | [2,6]        | 0      | -     |"
    assert overview[10] == "| output          | 2 tensors    | -      | -     |"
    memory = log.summary("memory")
    assert [ln.split("|")[1].strip() for ln in memory.split("\n")[4:9]] == log.layer_labels
