"""Jupyter display (`ModelLog._repr_html_`): a real notebook, built here with nbformat and executed
headless by nbclient in a python3 kernel, shows a log's summary table and its graph as inline SVG."""

from __future__ import annotations

import html
import os
import re

import nbformat
import torch
from nbclient import NotebookClient

import torchlens as tl

from models.small import SeqThenLoop

_TESTS = os.path.dirname(os.path.abspath(__file__))
_PYTHON = os.path.join(os.path.dirname(_TESTS), "python")


def _run(cells: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def test_log_as_last_line_shows_table_and_svg() -> None:
    nb = _run(
        [
            f"import sys\nsys.path[:0] = [{_PYTHON!r}, {_TESTS!r}]\nimport torch\nimport torchlens as tl\n"
            "from models.small import SeqThenLoop",
            "torch.manual_seed(0)\nlog = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3))\nlog",
            "class InCell(torch.nn.Module):\n    def forward(self, x):\n        return x.exp() + 1\n\n\n"
            "cell_log = tl.log_forward_pass(InCell(), torch.randn(3))\nprint(cell_log.to_dot(code_panel=True))",
        ]
    )
    panel = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "<FONT FACE='Courier'>def forward(self, x):</FONT>" in panel  # a class with no file: the cell's source
    assert "<FONT FACE='Courier'>    return x.exp() + 1</FONT>" in panel
    outputs = nb.cells[1].outputs
    assert [o.output_type for o in outputs] == ["execute_result"]
    page = outputs[0].data["text/html"]
    assert "<svg" in page and "</svg>" in page
    assert "<caption><b>ModelLog: SeqThenLoop</b></caption>" in page
    titles = set(re.findall(r"<title>([^<]*)</title>", page))
    assert {"input_1", "linear_1_1", "relu_1_2", "linear_2_3pass1", "linear_2_3pass2", "sum_1_4", "output_1"} <= titles
    assert outputs[0].data["text/plain"].startswith("<ModelLog SeqThenLoop>")


def test_repr_html_matches_the_log() -> None:
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3))
    page = html.unescape(log._repr_html_())
    rows = dict(re.findall(r"<th style='text-align:left'>(.*?)</th><td style='text-align:left'>(.*?)</td>", page))
    assert rows["layers"] == "6 (7 layer passes)"
    assert rows["modules"] == "4"  # seq, seq.0, seq.1, fc
    assert rows["parameters"].startswith(f"{log.total_params:,} (")
    assert rows["inputs"] == "input_1 (2, 3)" and rows["outputs"] == "output_1 ()"
    assert page.count("<svg") == 1
    partial = tl.log_forward_pass(
        SeqThenLoop(), torch.randn(2, 3), layers_to_save=["relu_1_2"], keep_unsaved_layers=False
    )
    assert "<svg" not in partial._repr_html_()  # a partial log cannot draw its graph: the summary only
