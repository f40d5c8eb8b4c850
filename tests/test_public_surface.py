"""The TorchLens 2.15 public surface (spec §1, §2.6): every name, every import path, every keyword.

The signature tables below are copied from the spec text (§1.2 table, §1.3 fields, §1.4 and §2.6
signatures) and compared with `inspect.signature` of our functions and methods: names, order,
keyword-only markers and defaults. `…` in the spec (an omitted default) is the MISSING sentinel.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import torchlens as tl
from torchlens import _options
from torchlens._options import MISSING

from models.small import SeqThenLoop

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` missing; `make deps` installs it")

# --------------------------------------------------------------------------- §1: the 49 names

SPEC_NAMES = """ActivationPostfunc FuncCallLocation GradFnAccessor GradFnLog GradFnPassLog GradientPostfunc
LayerAccessor LayerLog LayerPassLog MetadataInvariantError ModelLog ModuleAccessor ModuleLog ModulePassLog NodeSpec
NodeView ParamLog StreamingOptions TensorLog TorchLensPostfuncError TraceBundle TrainingModeConfigError
VisualizationOptions build_render_audit bundle check_metadata_invariants cleanup_tmp fastlog get_model_metadata load
log_forward_pass log_model_metadata model_log_to_dagua_graph preview_fastlog rehydrate_nested render_lines_to_html
render_model_log_with_dagua save show_backward_graph show_bundle_graph show_model_graph summary unwrap_torch
validate_batch_of_models_and_inputs validate_backward_pass validate_forward_pass validate_saved_activations
wrap_torch wrapped""".split()

# Names that arrive with a later issue (none left: multi-trace bundles came with issue 14).
LATER: set[str] = set()


def test_spec_names_exported() -> None:
    assert len(SPEC_NAMES) == 49
    for name in sorted(set(SPEC_NAMES) - LATER):
        assert name in tl.__all__, name
        assert getattr(tl, name) is not None
    namespace: dict[str, Any] = {}
    exec("from torchlens import *", namespace)
    assert set(SPEC_NAMES) - LATER <= set(namespace)


def test_exported_kinds() -> None:
    assert tl.ActivationPostfunc == Callable[[torch.Tensor], torch.Tensor] == tl.GradientPostfunc
    assert issubclass(tl.TrainingModeConfigError, ValueError)
    assert issubclass(tl.MetadataInvariantError, ValueError)
    assert issubclass(tl.TorchLensPostfuncError, RuntimeError)
    assert tl.TensorLog is tl.LayerPassLog
    for cls in (tl.FuncCallLocation, tl.LayerAccessor, tl.ModuleAccessor, tl.ModuleLog, tl.ModulePassLog, tl.ParamLog):
        assert inspect.isclass(cls)


def test_summary_name_is_the_function_after_a_log_summary() -> None:
    # The tables live in `torchlens.tables`; `torchlens.summary` must stay the 2.15 function after a log.summary().
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3), layers_to_save=None)
    text = log.summary()
    assert callable(tl.summary) and not inspect.ismodule(tl.summary)
    assert tl.summary(SeqThenLoop(), torch.randn(2, 3)) == text


# --------------------------------------------------------------------------- §1: 2.15 import paths

IMPORT_PATHS = {
    "torchlens.data_classes": [
        "BufferAccessor",
        "BufferLog",
        "FuncCallLocation",
        "ModuleAccessor",
        "ModuleLog",
        "ModulePassLog",
        "ParamAccessor",
        "ParamLog",
    ],
    "torchlens.data_classes.model_log": ["ModelLog"],
    "torchlens.data_classes.layer_log": ["LayerAccessor", "LayerLog"],
    "torchlens.data_classes.layer_pass_log": ["LayerPassLog", "TensorLog"],
    "torchlens.data_classes.module_log": ["ModuleAccessor", "ModuleLog", "ModulePassLog"],
    "torchlens.data_classes.param_log": ["ParamAccessor", "ParamLog"],
    "torchlens.data_classes.buffer_log": ["BufferAccessor", "BufferLog"],
    "torchlens.data_classes.func_call_location": ["FuncCallLocation"],
    "torchlens.options": ["StreamingOptions", "VisualizationOptions"],
    "torchlens.user_funcs": [
        "get_model_metadata",
        "log_forward_pass",
        "log_model_metadata",
        "show_model_graph",
        "summary",
        "validate_batch_of_models_and_inputs",
        "validate_forward_pass",
        "validate_saved_activations",
    ],
    "torchlens.visualization": [
        "NodeSpec",
        "build_render_audit",
        "model_log_to_dagua_graph",
        "render_lines_to_html",
        "render_model_log_with_dagua",
    ],
    "torchlens.visualization.rendering": ["render_graph"],
    "torchlens.validation": ["MetadataInvariantError", "check_metadata_invariants", "validate_saved_activations"],
    "torchlens._robustness": ["UnsupportedTensorVariantError"],
    "torchlens._io": ["TorchLensIOError"],
}


@pytest.mark.parametrize("module", sorted(IMPORT_PATHS))
def test_import_paths(module: str) -> None:
    mod = importlib.import_module(module)
    for name in IMPORT_PATHS[module]:
        obj = getattr(mod, name)
        # torchlens.validation.validate_saved_activations is the log method's function, not the model-level alias
        if hasattr(tl, name) and (module, name) != ("torchlens.validation", "validate_saved_activations"):
            assert obj is getattr(tl, name), f"{module}.{name}"


def test_import_paths_work_on_a_log() -> None:
    from torchlens._robustness import UnsupportedTensorVariantError
    from torchlens.data_classes.buffer_log import BufferLog
    from torchlens.data_classes.module_log import ModulePassLog
    from torchlens.validation import validate_saved_activations
    from torchlens.visualization.rendering import render_graph

    assert issubclass(UnsupportedTensorVariantError, RuntimeError)
    assert issubclass(BufferLog, tl.LayerPassLog)
    model = SeqThenLoop()
    x = torch.randn(2, 3)
    log = tl.log_forward_pass(model, x, save_function_args=True, save_rng_states=True)
    assert validate_saved_activations(log, [model(x)]) is True
    assert isinstance(log.modules["fc:2"], ModulePassLog)
    assert (
        inspect.signature(render_graph).parameters.keys() - {"self"}
        == inspect.signature(log.render_graph).parameters.keys()
    )


def test_shims_are_not_imported_inside_the_package() -> None:
    root = Path(tl.__file__).parent
    shims = ("data_classes", "options", "user_funcs", "visualization", "validation", "_robustness")
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0].removesuffix(".py") in shims:
            continue
        text = path.read_text()
        for shim in shims:
            assert f"from .{shim} import" not in text and f"from ..{shim} import" not in text, (rel, shim)
            assert f"import torchlens.{shim}" not in text, (rel, shim)


# --------------------------------------------------------------------------- signature tables

# §1.2, the table of `log_forward_pass` parameters, in order: name, default ("—": required).
LOG_FORWARD_PASS_TABLE = """
model —
input_args —
input_kwargs None
layers_to_save "all"
keep_unsaved_layers True
output_device "same"
activation_postfunc None
gradient_postfunc None
save_raw_activation True
save_raw_gradient True
mark_input_output_distances MISSING
detach_saved_tensors False
save_function_args False
save_gradients False
gradients_to_save MISSING
save_source_context False
save_rng_states False
vis_mode MISSING
vis_nesting_depth MISSING
vis_outpath MISSING
vis_save_only MISSING
vis_fileformat MISSING
vis_buffer_layers MISSING
vis_direction MISSING
vis_graph_overrides MISSING
vis_node_mode MISSING
vis_edge_overrides MISSING
vis_gradient_edge_overrides MISSING
vis_module_overrides MISSING
vis_node_placement MISSING
vis_renderer MISSING
vis_theme MISSING
random_seed None
num_context_lines MISSING
optimizer None
detect_loops MISSING
save_activations_to MISSING
keep_activations_in_memory MISSING
save_gradients_to MISSING
keep_gradients_in_memory MISSING
activation_sink MISSING
unwrap_when_done False
verbose False
source_context_lines MISSING
compute_input_output_distances MISSING
detect_recurrent_patterns MISSING
visualization None
streaming None
train_mode MISSING
"""

# §1.4 and §2.6, as the spec writes them (`…` is an omitted default, i.e. MISSING).
FUNCTION_SIGNATURES = {
    "log_model_metadata": "(model, input_args, input_kwargs=None)",
    "get_model_metadata": "(model, input_args, input_kwargs=None)",
    "summary": "(model, input_args, input_kwargs=None, **summary_kwargs)",
    "show_model_graph": """(model, input_args, input_kwargs=None, vis_mode=…, vis_nesting_depth=…,
  vis_outpath=…, vis_graph_overrides=…, module=None, vis_edge_overrides=…,
  vis_gradient_edge_overrides=…, vis_module_overrides=…, vis_save_only=…, vis_fileformat=…,
  vis_buffer_layers=…, vis_direction=…, vis_node_placement=…, vis_renderer=…, vis_theme=…,
  vis_node_mode=…, code_panel=False, random_seed=None, detect_loops=…, verbose=False,
  detect_recurrent_patterns=…, visualization=None)""",
    "validate_forward_pass": "(model, input_args, input_kwargs=None, random_seed=None, verbose=False, validate_metadata=True)",
    "validate_saved_activations": "(model, input_args, input_kwargs=None, random_seed=None, verbose=False, validate_metadata=True)",
    "validate_batch_of_models_and_inputs": "(models_and_inputs_dict, out_path, redo_model_if_already_run=True)",
    "save": """(model_log, path, *, include_activations=True, include_gradients=True,
  include_captured_args=False, include_rng_states=False, strict=True, overwrite=False)""",
    "load": '(path, *, lazy=False, map_location="cpu", materialize_nested=True)',
    "cleanup_tmp": "(path, *, force=False)",
    "rehydrate_nested": '(model_log, *, map_location="cpu")',
    "wrap_torch": "()",
    "unwrap_torch": "()",
    "wrapped": "()",
    "check_metadata_invariants": "(model_log)",
    "render_lines_to_html": "(lines)",
    "build_render_audit": "(model_log)",
    "NodeSpec": """(lines, shape="box", fillcolor=None, fontcolor=None, style="filled,rounded",
  color=None, penwidth=None, tooltip=None, extra_attrs=FACTORY)""",
    "show_backward_graph": """(model_log, vis_outpath=…, vis_save_only=…, vis_fileformat=…,
  vis_direction=…, vis_graph_overrides=…, vis_edge_overrides=…, node_spec_fn=None,
  collapsed_node_spec_fn=None, vis_node_mode=…, code_panel=False, visualization=None)""",
}

# §10.8 spells out the keywords §2.6 abbreviates to `(predicate=None, keep_op=None, keep_module=None, **kwargs)`.
_PREVIEW_FASTLOG = """predicate=None, keep_op=None, keep_module=None, color_kept="#98FB98",
  color_rejected="#E6E6E6", color_unreachable="#F7D460", color_predicate_error="#FF7AB6",
  show_predicate_inputs=True, show_module_events=True, **render_kwargs)"""
FUNCTION_SIGNATURES["preview_fastlog"] = "(model_log, " + _PREVIEW_FASTLOG

METHOD_SIGNATURES = {
    "preview_fastlog": "(" + _PREVIEW_FASTLOG,
    "render_graph": """(vis_mode="unrolled", vis_nesting_depth=1000, vis_outpath="modelgraph",
  vis_graph_overrides=None, module=None, node_mode="default", node_spec_fn=None, collapsed_node_spec_fn=None,
  collapse_fn=None, skip_fn=None, vis_edge_overrides=None, vis_gradient_edge_overrides=None,
  vis_module_overrides=None, vis_save_only=False, vis_fileformat="pdf", show_buffer_layers="meaningful",
  direction="bottomup", vis_node_placement="auto", vis_renderer="graphviz", vis_theme="torchlens",
  code_panel=False)""",
    "summary": """(level="overview", *, fields=None, mode="auto", show_ops=False, preset=None, columns=None,
  include_ops=None, max_rows=200, print_to=None)""",
    "print_all_fields": "()",
    "to_pandas": "()",
    "to_csv": "(path, **kw)",
    "to_parquet": "(path, **kw)",
    "to_json": '(path, *, orient="records", **kw)',
    "save_new_activations": """(model, input_args, input_kwargs=None, layers_to_save="all",
  gradients_to_save="all", random_seed=None, train_mode=None)""",
    "validate_forward_pass": "(ground_truth_output_tensors, verbose=False, validate_metadata=True)",
    "validate_saved_activations": "(ground_truth_output_tensors, verbose=False, validate_metadata=True)",
    "check_metadata_invariants": "()",
    "cleanup": "()",
    "release_param_refs": "()",
    "save": "(path, **kw)",
    "load": "(path, **kw)",
    # §14-15 spells out the keywords §2.6 abbreviates to `(loss, **backward_kwargs)`.
    "log_backward": "(loss, *, save_gradients_to=None, keep_gradients_in_memory=None, **backward_kwargs)",
    "recording_backward": "()",
    # §2.6 elides the middle (`vis_outpath="backward_modelgraph", …, vis_direction="topdown", code_panel=False`);
    # the full order and defaults are those of TorchLens 2.15.0's `inspect.signature(ModelLog.show_backward_graph)`.
    "show_backward_graph": """(vis_outpath="backward_modelgraph", vis_graph_overrides=None, node_spec_fn=None,
  collapsed_node_spec_fn=None, vis_node_mode="default", vis_edge_overrides=None, vis_save_only=False,
  vis_fileformat="pdf", vis_direction="topdown", code_panel=False)""",
}
# §2.6 methods that come with later issues: none left (the fastlog preview arrived with issue 14).
LATER_METHODS: set[str] = set()

# §1.3 fields in order with their defaults.
VISUALIZATION_FIELDS = """mode "none"
max_module_depth 1000
output_path "graph.gv"
save_only False
file_format "pdf"
show_buffers "meaningful"
direction "bottomup"
graph_overrides None
node_mode "default"
node_spec_fn None
collapsed_node_spec_fn None
collapse_fn None
skip_fn None
edge_overrides None
gradient_edge_overrides None
module_overrides None
layout_engine "auto"
renderer "graphviz"
theme "torchlens"
"""
STREAMING_FIELDS = """bundle_path None
retain_in_memory True
activation_callback None
"""

_FACTORY = object()


def spec_params(text: str) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of a spec signature, parsed by Python itself."""
    src = text.replace("…", "MISSING").replace("FACTORY", "_FACTORY")
    ns: dict[str, Any] = {"MISSING": MISSING, "_FACTORY": _FACTORY}
    exec(f"def f{src}: pass", ns)
    return [(p.name, p.kind, p.default) for p in inspect.signature(ns["f"]).parameters.values()]


def table_params(table: str) -> list[tuple[str, Any, Any]]:
    out = []
    for line in table.strip().splitlines():
        name, default = line.split(" ", 1)
        value = inspect.Parameter.empty if default == "—" else eval(default, {"MISSING": MISSING})
        out.append((name, inspect.Parameter.POSITIONAL_OR_KEYWORD, value))
    return out


def actual_params(fn: Any, drop_self: bool = False) -> list[tuple[str, Any, Any]]:
    params = list(inspect.signature(fn).parameters.values())
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def assert_same(expected: list[tuple[str, Any, Any]], actual: list[tuple[str, Any, Any]], where: str) -> None:
    assert [e[0] for e in expected if e[1] != inspect.Parameter.VAR_KEYWORD] == [
        a[0] for a in actual if a[1] != inspect.Parameter.VAR_KEYWORD
    ], where
    for (name, kind, default), (_, akind, adefault) in zip(expected, actual, strict=True):
        assert kind == akind, f"{where}({name}): {akind} instead of {kind}"
        if default is _FACTORY:
            continue
        assert adefault is default or adefault == default, f"{where}({name}): default {adefault!r}, spec {default!r}"


def test_log_forward_pass_table() -> None:
    assert_same(table_params(LOG_FORWARD_PASS_TABLE), actual_params(tl.log_forward_pass), "log_forward_pass")


# Keyword-only additions of this release to 2.15 signatures (issue 17: progress bars), each
# defaulting to None so that every 2.15 call still works.
FUNCTION_EXTENSIONS = {"validate_forward_pass": ("progress",), "validate_batch_of_models_and_inputs": ("progress",)}
METHOD_EXTENSIONS = {"validate_forward_pass": ("progress",)}


def without_extensions(actual: list[tuple[str, Any, Any]], extra: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    tail = actual[len(actual) - len(extra) :] if extra else []
    assert [(n, k, d) for n, k, d in tail] == [(n, inspect.Parameter.KEYWORD_ONLY, None) for n in extra]
    return actual[: len(actual) - len(extra)]


@pytest.mark.parametrize("name", sorted(FUNCTION_SIGNATURES))
def test_function_signatures(name: str) -> None:
    actual = without_extensions(actual_params(getattr(tl, name)), FUNCTION_EXTENSIONS.get(name, ()))
    assert_same(spec_params(FUNCTION_SIGNATURES[name]), actual, name)


@pytest.mark.parametrize("name", sorted(METHOD_SIGNATURES))
def test_model_log_method_signatures(name: str) -> None:
    actual = without_extensions(actual_params(getattr(tl.ModelLog, name), True), METHOD_EXTENSIONS.get(name, ()))
    assert_same(spec_params(METHOD_SIGNATURES[name]), actual, name)


@pytest.mark.parametrize(
    ("cls", "table"), [("VisualizationOptions", VISUALIZATION_FIELDS), ("StreamingOptions", STREAMING_FIELDS)]
)
def test_option_fields(cls: str, table: str) -> None:
    fields = [f for f in dataclasses.fields(getattr(tl, cls)) if not f.name.startswith("_")]
    expected = [line.split(" ", 1) for line in table.strip().splitlines()]
    assert [f.name for f in fields] == [n for n, _ in expected]
    for f, (_, default) in zip(fields, expected, strict=True):
        assert f.default == eval(default), f.name


def test_dagua_and_audit_methods() -> None:
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3), layers_to_save=None)
    for call in (
        lambda: log.render_dagua_graph(),
        lambda: log.to_dagua_graph(),
        lambda: tl.model_log_to_dagua_graph(log),
        lambda: tl.render_model_log_with_dagua(log),
        lambda: log.to_dot() and log.render_graph(vis_renderer="dagua"),
    ):
        with pytest.raises(ModuleNotFoundError, match="`dagua`") as info:
            call()
        assert info.value.name == "dagua"
    audit = log.visualization_field_audit()
    assert audit.to_dict() == tl.build_render_audit(log).to_dict()
    for used in audit.model_log_used:
        assert hasattr(log, used), used
    assert "layer_label" in audit.entry_used and "activation" in audit.entry_unused
    assert "address" in audit.module_used and set(audit.module_used).isdisjoint(audit.module_unused)
    with pytest.raises(TypeError, match="ModelLog"):
        tl.build_render_audit("not a log")


# --------------------------------------------------------------------------- keyword parity: behaviour


# A non-default value for every keyword of `log_forward_pass`.
def _sample_values(tmp: Path) -> dict[str, Any]:
    return {
        "layers_to_save": ["linear"],
        "keep_unsaved_layers": False,
        "output_device": "cpu",
        "activation_postfunc": lambda t: t * 2,
        "gradient_postfunc": lambda t: t * 2,
        "save_raw_activation": False,
        "save_raw_gradient": False,
        "mark_input_output_distances": True,
        "detach_saved_tensors": True,
        "save_function_args": True,
        "save_gradients": True,
        "gradients_to_save": ["linear"],
        "save_source_context": True,
        "save_rng_states": True,
        "vis_mode": "none",
        "vis_nesting_depth": 2,
        "vis_outpath": str(tmp / "g"),
        "vis_save_only": True,
        "vis_fileformat": "svg",
        "vis_buffer_layers": "always",
        "vis_direction": "topdown",
        "vis_graph_overrides": {"bgcolor": "white"},
        "vis_node_mode": "profiling",
        "vis_edge_overrides": {"color": "red"},
        "vis_gradient_edge_overrides": {"color": "red"},
        "vis_module_overrides": {"color": "red"},
        "vis_node_placement": "sfdp",
        "vis_renderer": "dagua",
        "vis_theme": "dark",
        "random_seed": 3,
        "num_context_lines": 3,
        "optimizer": "OPTIMIZER",
        "detect_loops": False,
        "save_activations_to": str(tmp / "bundle"),
        "keep_activations_in_memory": True,
        "save_gradients_to": str(tmp / "grads"),
        "keep_gradients_in_memory": False,
        "activation_sink": lambda label, t: None,
        "unwrap_when_done": True,
        "verbose": True,
        "source_context_lines": 3,
        "compute_input_output_distances": True,
        "detect_recurrent_patterns": False,
        "visualization": tl.VisualizationOptions(save_only=True),
        "streaming": tl.StreamingOptions(),
        "train_mode": True,
    }


# The keywords whose feature this release does not have yet: NotImplementedError naming each.
NOT_YET: set[str] = set()


def test_every_log_forward_pass_keyword_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = SeqThenLoop()
    x = torch.randn(2, 3)
    values = _sample_values(tmp_path)
    table = [n for n, _, _ in table_params(LOG_FORWARD_PASS_TABLE)][3:]  # after model, input_args, input_kwargs
    assert sorted(values) == sorted(table)
    refused = set()
    for name in table:
        value = values[name]
        if value == "OPTIMIZER":
            value = torch.optim.SGD(model.fc.parameters(), lr=0.1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                log = tl.log_forward_pass(model, x, **{name: value})
        except NotImplementedError as e:
            assert name in str(e), (name, str(e))
            refused.add(name)
            continue
        assert log.layer_labels[-1] == "output_1", name
    assert refused == NOT_YET
    assert "[torchlens]" in capsys.readouterr().out  # verbose=True printed its progress line


@needs_dot
def test_show_model_graph_keywords(tmp_path: Path) -> None:
    model = SeqThenLoop()
    x = torch.randn(2, 3)
    _options._warned.clear()
    out = tmp_path / "g"
    with pytest.warns(DeprecationWarning, match="detect_loops"):
        tl.show_model_graph(
            model,
            x,
            vis_outpath=str(out),
            vis_fileformat="svg",
            vis_save_only=True,
            detect_loops=False,
            vis_node_placement="sfdp",
            vis_edge_overrides={"color": "blue"},
            vis_module_overrides={"penwidth": "3"},
            vis_theme="dark",
            verbose=False,
            module="seq",
        )
    svg = (tmp_path / "g.svg").read_text()
    assert "relu_1_2" in svg and "linear_2_3" not in svg
    svg_kw = {"vis_outpath": str(out), "vis_save_only": True, "vis_fileformat": "svg"}
    tl.show_model_graph(model, x, vis_node_mode="profiling", **svg_kw)  # type: ignore[arg-type]
    assert "fn=SeqThenLoop.forward" in (tmp_path / "g.svg").read_text()
    tl.show_model_graph(model, x, code_panel="forward", **svg_kw)  # type: ignore[arg-type]
    assert "x = self.seq(x)" in (tmp_path / "g.svg").read_text()
    for kwargs, exc, name in (
        ({"vis_renderer": "dagua"}, ModuleNotFoundError, "dagua"),
        ({"vis_node_placement": "circo"}, ValueError, "vis_node_placement"),
        ({"vis_mode": "none"}, ValueError, "Visualization option"),
    ):
        with pytest.raises(exc, match=name):
            tl.show_model_graph(model, x, vis_outpath=str(out), vis_save_only=True, **kwargs)
    # fields set on `visualization` win over the flat arguments
    opts = tl.VisualizationOptions(output_path=str(tmp_path / "v"), file_format="svg", save_only=True)
    tl.show_model_graph(model, x, vis_outpath=str(out), visualization=opts)
    assert (tmp_path / "v.svg").exists()


@needs_dot
def test_render_graph_keywords(tmp_path: Path) -> None:
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3), layers_to_save=None)
    src = log.render_graph(
        vis_outpath=str(tmp_path / "r"),
        vis_fileformat="svg",
        vis_save_only=True,
        vis_node_placement="sfdp",
        module="seq",
        vis_theme="dark",
    )
    assert src == log.to_dot(module="seq") and (tmp_path / "r.svg").exists()
    with pytest.warns(UserWarning, match="ELK"):
        log.render_graph(
            vis_outpath=str(tmp_path / "e"), vis_fileformat="svg", vis_save_only=True, vis_node_placement="elk"
        )
    assert (tmp_path / "e.svg").exists()
    for kwargs, exc, name in (
        ({"node_mode": "fancy"}, ValueError, "node_mode"),
        ({"code_panel": "everything"}, ValueError, "code_panel"),
        ({"vis_renderer": "matplotlib"}, ValueError, "vis_renderer"),
    ):
        with pytest.raises(exc, match=name):
            log.render_graph(vis_outpath=str(tmp_path / "x"), vis_save_only=True, **kwargs)
