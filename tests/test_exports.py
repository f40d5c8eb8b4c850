"""Tabular exports (spec §13): every surface round-trips through pandas, CSV, parquet and JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import torchlens as tl
from torchlens.log.export import MODEL_EXPORT_COLUMNS

from models import SimpleRecurrent
from models.small import BNNet


@pytest.fixture(scope="module")
def log() -> tl.ModelLog:
    return tl.log_forward_pass(BNNet().eval(), torch.randn(3, 4), random_seed=0)


SURFACES = {
    "model": lambda lg: lg,
    "layers": lambda lg: lg.layers,
    "modules": lambda lg: lg.modules,
    "module": lambda lg: lg.modules["head"],
    "module_pass": lambda lg: lg.modules["head:1"],
    "params": lambda lg: lg.params,
    "param": lambda lg: lg.params["fc.weight"],
    "buffers": lambda lg: lg.buffers,
}


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    """Compare values, not storage dtypes: None/NaN/NA (and "", which CSV cannot tell apart) are missing."""
    out = df.astype(object).where(df.notna(), None)
    return out.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else (None if v == "" else v))


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_round_trips(log: tl.ModelLog, surface: str, tmp_path: Path) -> None:
    obj = SURFACES[surface](log)
    df = obj.to_pandas()
    assert len(df) > 0 and len(df.columns) > 0
    # dtypes are written as strings so that every format reads back the same values
    for col in ("tensor_dtype", "dtype"):
        if col in df.columns:
            assert all(isinstance(v, str) and v.startswith("torch.") for v in df[col])
    obj.to_csv(tmp_path / "x.csv")
    obj.to_parquet(tmp_path / "x.parquet")
    obj.to_json(tmp_path / "x.json")
    back_csv = pd.read_csv(tmp_path / "x.csv", keep_default_na=False, na_values=[""])
    back_pq = pd.read_parquet(tmp_path / "x.parquet")
    back_json = pd.read_json(tmp_path / "x.json", orient="records", dtype=False)
    ref = _norm(df)
    for back in (back_csv, back_pq, back_json):
        assert list(back.columns) == list(df.columns)
        pd.testing.assert_frame_equal(_norm(back), ref, check_dtype=False)


def test_model_columns_and_values(log: tl.ModelLog) -> None:
    df = log.to_pandas()
    assert list(df.columns) == MODEL_EXPORT_COLUMNS
    assert len(df) == len(log)
    row = df[df.layer_label == "linear_1_1"].iloc[0]
    assert row.tensor_shape == "(3, 4)"
    assert row.tensor_dtype == "torch.float32"
    assert row.func_name == "linear" and row.layer_type == "linear"
    assert row.func_config == "{'out_features': 4, 'in_features': 4}"
    assert row.parent_layers == "['input_1']"
    assert row.containing_module == "fc:1"
    assert bool(row.uses_params) is True and row.num_params_total == 20
    assert str(df["bool_conditional_id"].dtype) == "Int64"
    assert (df["conditional_branch_stack"] == "").all()


def test_layers_modules_params_buffers_columns(log: tl.ModelLog) -> None:
    assert list(log.layers.to_pandas().columns) == [
        "layer_label",
        "layer_type",
        "func_name",
        "tensor_shape",
        "tensor_dtype",
        "tensor_memory_str",
        "num_passes",
        "num_params_total",
        "containing_module",
        "is_input_layer",
        "is_output_layer",
        "is_buffer_layer",
    ]
    mods = log.modules.to_pandas()
    assert list(mods.columns) == [
        "address",
        "module_class_name",
        "nesting_depth",
        "address_depth",
        "num_params",
        "num_layers",
        "num_passes",
    ]
    assert list(mods.address) == ["self", "fc", "bn", "head", "head.0", "head.1"]
    assert list(log.modules["head"].to_pandas().columns) == [
        "layer_label",
        "layer_type",
        "tensor_shape",
        "tensor_dtype",
        "pass_num",
        "func_name",
    ]
    params = log.params.to_pandas()
    assert list(params.address) == ["fc.weight", "fc.bias", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"]
    assert params.columns[0] == "address" and "used_by_layers" in params.columns
    bufs = log.buffers.to_pandas()
    assert list(bufs.buffer_address) == ["bn.running_mean", "bn.running_var"]
    assert list(bufs.columns[:4]) == ["buffer_address", "name", "module_address", "buffer_pass"]


def test_multi_pass_export() -> None:
    lg = tl.log_forward_pass(SimpleRecurrent(), torch.randn(6, 5))
    df = lg.to_pandas()
    assert list(df[df.layer_label_no_pass == "linear_1_1"].pass_num) == [1, 2, 3, 4]
    assert lg.layers.to_pandas().set_index("layer_label").loc["linear_1_1", "num_passes"] == 4


def test_parquet_without_pyarrow(log: tl.ModelLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"to_parquet requires pyarrow. Install with: pip install torchlens\[io\]"):
        log.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ImportError, match="requires pyarrow"):
        log.params.to_parquet(tmp_path / "y.parquet")


def test_csv_kwargs_pass_through(log: tl.ModelLog, tmp_path: Path) -> None:
    log.modules.to_csv(tmp_path / "m.tsv", sep="\t")
    back: Any = pd.read_csv(tmp_path / "m.tsv", sep="\t")
    assert list(back.address)[:2] == ["self", "fc"]
