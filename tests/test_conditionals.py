"""Conditional-branch attribution (spec §7.5 step 5, §2.5 / §3.1 / §3.3 fields, §12.3 edge labels).

Every model of `models.conditionals` is logged and `cond_dump.dump` of the log must equal what
TorchLens 2.15.0 records for it (tests/data/conditionals_2_15.json, captured by running
tests/cond_dump.py under 2.15.0 as a black box; see that file). The direct tests below spell out
the arms of named layers and the DOT edge labels of representative models, and check that models
which never consume a bool tensor log nothing conditional.
"""

from __future__ import annotations

import inspect
import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from cond_dump import PASS_FIELDS, dot_arm_labels, dump, log_case, render_dot

import torchlens as tl

from models.conditionals import CASES, NestedInLoop

EXPECTED: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "conditionals_2_15.json").read_text())


def _stack(log: Any, label: str) -> list[tuple[int, str]]:
    return [tuple(x) for x in log[label].conditional_branch_stack]


def _dot_labels(log: Any, mode: str) -> dict[tuple[str, str], str]:
    """{(tail, head): plain label text} for the IF/THEN/ELIF/ELSE edges of the DOT source."""
    out = {}
    for tail, head, attr, value in dot_arm_labels(render_dot(log, mode)):
        assert attr == "label", (tail, head, attr)
        out[(tail, head)] = re.sub(r"<[^>]*>", "", value)
    return out


def _line_of(func: Any, text: str) -> int:
    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, line in enumerate(lines) if text in line)


# --------------------------------------------------------------------------- against 2.15.0


def test_data_covers_every_case() -> None:
    assert sorted(EXPECTED) == sorted(CASES)
    assert len(CASES) >= 28


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torchlens_2_15(name: str) -> None:
    log, _, _ = log_case(name)
    got, expected = dump(log), EXPECTED[name]
    for key in expected:  # one key at a time, for a readable failure
        assert got.get(key) == expected[key], key
    assert got == expected


@pytest.mark.parametrize("name", list(CASES))
def test_output_equals_model_output(name: str) -> None:
    log, expected, _ = log_case(name)
    assert len(log.output_layers) == 1
    assert torch.equal(log[log.output_layers[0]].activation, expected)


# --------------------------------------------------------------------------- direct, readable


@pytest.mark.parametrize(("name", "arm", "word"), [("if_else_then", "then", "THEN"), ("if_else_else", "else", "ELSE")])
def test_if_else_arms(name: str, arm: str, word: str) -> None:
    log, _, _ = log_case(name)
    assert log.has_conditional_branching
    gt = log["gt_1_3"]
    assert (gt.is_terminal_bool_layer, gt.bool_is_branch, gt.bool_context_kind) == (True, True, "if_test")
    assert (gt.bool_conditional_id, gt.is_scalar_bool, gt.scalar_bool_value) == (0, True, arm == "then")
    assert log.internally_terminated_bool_layers == ["gt_1_3"]
    assert log["sum_1_2"].in_cond_branch and _stack(log, "sum_1_2") == []
    assert _stack(log, "linear_1_4") == [(0, arm)]
    assert log["linear_1_4"].conditional_branch_depth == 1
    assert _stack(log, "relu_1_1") == [] and _stack(log, log.output_layers[0]) == []
    assert log.conditional_branch_edges == [("relu_1_1", "sum_1_2")]
    assert log["relu_1_1"].cond_branch_start_children == ["sum_1_2"]
    assert log["relu_1_1"].cond_branch_children_by_cond == {0: {arm: ["linear_1_4"]}}
    if arm == "then":
        assert _stack(log, "mul_1_5") == [(0, "then")]
        assert log.conditional_then_edges == [("relu_1_1", "linear_1_4")]
        assert log.conditional_else_edges == []
    else:
        assert log.conditional_then_edges == []
        assert log.conditional_else_edges == [(0, "relu_1_1", "linear_1_4")]
    assert log.conditional_arm_edges == {(0, arm): [("relu_1_1", "linear_1_4")]}
    assert log.conditional_edge_passes == {("relu_1_1", "linear_1_4", 0, arm): [1]}
    (event,) = log.conditional_events
    assert (event.id, event.kind, event.function_qualname, event.bool_layers) == (
        0,
        "if_chain",
        "IfElse.forward",
        ["gt_1_3"],
    )
    assert sorted(event.branch_ranges) == ["else", "then"]
    expected_dot = {("relu_1_1", "sum_1_2"): "IF", ("relu_1_1", "linear_1_4"): word}
    assert _dot_labels(log, "unrolled") == expected_dot
    assert _dot_labels(log, "rolled") == expected_dot
    assert "\t\t- with conditional (if-then) branching" in str(log).splitlines()


@pytest.mark.parametrize(
    ("name", "layer", "arm", "word"),
    [
        ("elif_then", "mul_1_3", "then", "THEN"),
        ("elif_1", "mul_1_4", "elif_1", "ELIF 1"),
        ("elif_2", "sin_1_5", "elif_2", "ELIF 2"),
        ("elif_else", "neg_1_5", "else", "ELSE"),
    ],
)
def test_elif_chain_each_arm(name: str, layer: str, arm: str, word: str) -> None:
    log, _, _ = log_case(name)
    assert _stack(log, layer) == [(0, arm)]
    tests = [label for label in log.layer_labels if log[label].is_terminal_bool_layer]
    kinds = [log[label].bool_context_kind for label in tests]
    assert kinds == ["if_test"] + ["elif_test"] * (len(tests) - 1)
    assert [log[label].scalar_bool_value for label in tests] == [False] * (len(tests) - 1) + [arm != "else"]
    (event,) = log.conditional_events
    assert sorted(event.branch_ranges) == ["elif_1", "elif_2", "else", "then"]
    assert event.bool_layers == tests
    if arm.startswith("elif_"):
        assert log.conditional_elif_edges == [(0, int(arm[-1]), "input_1", layer)]
        assert log["input_1"].cond_branch_elif_children == {int(arm[-1]): [layer]}
    assert _dot_labels(log, "unrolled") == {("input_1", "mean_1_1"): "IF", ("input_1", layer): word}


def test_nested_if_inside_elif_inside_loop() -> None:
    log, _, _ = log_case("nested_in_loop")
    outer_line = _line_of(NestedInLoop.forward, "if x.mean() > 5")
    inner_line = _line_of(NestedInLoop.forward, "if x.max() > 2")
    outer, inner = log.conditional_events
    assert (outer.nesting_depth, outer.parent_conditional_id, outer.if_stmt_span[0]) == (0, None, outer_line)
    assert (inner.nesting_depth, inner.parent_conditional_id, inner.parent_branch_kind) == (1, 0, "elif_1")
    assert inner.if_stmt_span[0] == inner_line
    assert inner.bool_layers == ["gt_3_6", "gt_6_13", "gt_9_20"]
    # iteration 1: inner else (x*3); iterations 2 and 3: inner then (x/2)
    assert _stack(log, "max_1_5") == [(0, "elif_1")]
    assert _stack(log, "mul_1_7") == [(0, "elif_1"), (1, "else")]
    assert _stack(log, "truediv_1_14") == [(0, "elif_1"), (1, "then")]
    assert _stack(log, "truediv_2_21") == [(0, "elif_1"), (1, "then")]
    assert log["truediv_2_21"].conditional_branch_depth == 2
    assert [log[f"gt_{i}"].bool_conditional_id for i in ("3_6", "6_13", "9_20")] == [1, 1, 1]
    labels = _dot_labels(log, "unrolled")
    assert labels[("input_1", "mul_1_7")] == f"ELIF 1@L{outer_line} · ELSE@L{inner_line}"
    assert labels[("mul_1_7", "truediv_1_14")] == "THEN"
    assert labels[("input_1", "mean_1_1")] == "IF"
    assert ("truediv_1_14", "truediv_2_21") not in labels  # same arm again: no arm entry


def test_recurrent_arms_per_pass_and_rolled_labels() -> None:
    log, _, _ = log_case("recurrent_mixed_arms")
    arms = ["else", "then", "else", "then"]
    assert [_stack(log, f"linear_1_6:{p}") for p in (1, 2, 3, 4)] == [[(0, a)] for a in arms]
    assert log.conditional_edge_passes == {
        ("tanh_1_1", "linear_1_6", 0, "then"): [2, 4],
        ("tanh_1_1", "linear_1_6", 0, "else"): [1, 3],
    }
    layer = log.layer_logs["linear_1_6"]
    assert layer.conditional_branch_stack_passes == {((0, "else"),): [1, 3], ((0, "then"),): [2, 4]}
    unrolled = _dot_labels(log, "unrolled")
    for p, arm in enumerate(arms, start=1):
        assert unrolled[(f"tanh_1_1pass{p}", f"linear_1_6pass{p}")] == arm.upper()
        assert unrolled[(f"tanh_1_1pass{p}", f"sum_1_2pass{p}")] == "IF"
    assert _dot_labels(log, "rolled") == {
        ("tanh_1_1", "linear_1_6"): "THEN(2,4) / ELSE(1,3)",
        ("tanh_1_1", "sum_1_2"): "IF",
    }


def test_recurrent_layer_stays_in_its_arm() -> None:
    log, _, _ = log_case("recurrent_layer")
    assert [_stack(log, f"linear_1_3:{p}") for p in (1, 2, 3)] == [[(0, "then")]] * 3
    assert log.conditional_then_edges == [("input_1", "linear_1_3:1")]
    assert log.conditional_edge_passes == {("input_1", "linear_1_3", 0, "then"): [1]}
    assert _dot_labels(log, "rolled") == {
        ("input_1", "linear_1_3"): "THEN",
        ("input_1", "sum_1_1"): "IF",
        ("linear_1_3", "sum_2_4"): "IF",
    }


def test_module_called_twice_takes_both_arms() -> None:
    log, _, _ = log_case("called_twice")
    (event,) = log.conditional_events
    assert (event.function_qualname, event.bool_layers) == ("Gate.forward", ["gt_1_2", "gt_2_8"])
    assert (log["gt_1_2"].scalar_bool_value, log["gt_2_8"].scalar_bool_value) == (True, False)
    assert _stack(log, "linear_1_3") == [(0, "then")]
    assert _stack(log, "linear_2_9") == [(0, "else")]
    assert _stack(log, "relu_1_4") == [] and _stack(log, "sub_1_6") == []
    assert _dot_labels(log, "unrolled") == {
        ("input_1", "mean_1_1"): "IF",
        ("input_1", "linear_1_3"): "THEN",
        ("sub_1_6", "mean_2_7"): "IF",
        ("sub_1_6", "linear_2_9"): "ELSE",
    }


def test_ternary_and_helper_method() -> None:
    log, _, _ = log_case("ternary_else")
    assert [e.kind for e in log.conditional_events] == ["ifexp", "ifexp"]
    assert (log["gt_1_2"].bool_context_kind, log["lt_1_5"].bool_conditional_id) == ("ifexp", 1)
    assert _stack(log, "linear_1_3") == [(0, "else")]
    assert log.conditional_else_edges == [(0, "input_1", "linear_1_3")]
    log, _, _ = log_case("helper_method")
    assert _stack(log, "mul_1_3") == _stack(log, "exp_1_4") == [(0, "then")]
    assert _stack(log, "add_1_5") == []


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("assert_tensor", "assert"),
        ("bare_bool", "bool_cast"),
        ("comprehension_filter", "comprehension_filter"),
        ("while_tensor", "while"),
        ("match_guard", "match_guard"),
    ],
)
def test_classified_but_not_branches(name: str, kind: str) -> None:
    log, _, _ = log_case(name)
    bools = [label for label in log.layer_labels if log[label].is_terminal_bool_layer]
    assert bools and sorted(log.internally_terminated_bool_layers) == sorted(bools)
    for label in bools:
        entry = log[label]
        assert (entry.bool_context_kind, entry.bool_is_branch, entry.bool_conditional_id) == (kind, False, None)
        assert entry.is_scalar_bool
    assert not log.has_conditional_branching
    assert log.conditional_events == [] and log.conditional_branch_edges == []
    assert all(_stack(log, label) == [] and not log[label].in_cond_branch for label in log.layer_labels)
    assert "\t\t- no conditional (if-then) branching" in str(log).splitlines()
    assert _dot_labels(log, "unrolled") == {}


@pytest.mark.parametrize("name", ["no_bool", "python_only", "item_compare"])
def test_no_bool_consumption_logs_nothing_conditional(name: str) -> None:
    log, _, _ = log_case(name)
    assert not log.has_conditional_branching
    assert log.internally_terminated_bool_layers == []
    assert log.conditional_events == []
    for field in ("conditional_branch_edges", "conditional_then_edges", "conditional_elif_edges"):
        assert getattr(log, field) == [], field
    assert log.conditional_else_edges == []
    assert log.conditional_arm_edges == {} and log.conditional_edge_passes == {}
    for entry in log.layer_list:
        for field, default in PASS_FIELDS.items():
            assert getattr(entry, field) == default, (entry.layer_label, field)
    assert "\t\t- no conditional (if-then) branching" in str(log).splitlines()
    assert _dot_labels(log, "unrolled") == {} and _dot_labels(log, "rolled") == {}


# --------------------------------------------------------------------------- invariants, sources


@pytest.mark.parametrize("name", list(CASES))
def test_metadata_invariants_hold(name: str) -> None:
    log, _, _ = log_case(name)
    assert tl.check_metadata_invariants(log)


def test_a_broken_arm_stack_breaks_family_f() -> None:
    log, _, _ = log_case("if_else_then")
    assert log.has_conditional_branching and tl.check_metadata_invariants(log)
    table = log._cols["cond"]  # the attribution, computed above
    pos = next(iter(table.stacks))
    table.stacks[pos] = [(7, "then")]  # a conditional that does not exist
    with pytest.raises(tl.MetadataInvariantError, match=r"\[F\]"):
        tl.check_metadata_invariants(log)


def test_source_unavailable_turns_attribution_off() -> None:
    source = "class M(nn.Module):\n    def forward(self, x):\n        if x.sum() > 0:\n            return x * 2\n        return x\n"
    namespace: dict[str, Any] = {"nn": torch.nn}
    exec(compile(source, "<generated>", "exec"), namespace)  # no file behind the code: no AST index
    log = tl.log_forward_pass(namespace["M"](), torch.ones(3))
    assert log.layer_labels == ["input_1", "sum_1_1", "gt_1_2", "mul_1_3", "output_1"]
    assert not log.has_conditional_branching and log.conditional_events == []
    assert log["gt_1_2"].is_terminal_bool_layer and log["gt_1_2"].bool_context_kind is None
    assert "no conditional (if-then) branching" in str(log)


def test_pickled_log_keeps_its_conditionals() -> None:
    log, _, _ = log_case("nested_in_loop")
    copy = pickle.loads(pickle.dumps(log))
    assert dump(copy) == dump(log)


def test_bundle_keeps_its_conditionals(tmp_path: Path) -> None:
    log, _, _ = log_case("nested_in_loop")
    tl.save(log, tmp_path / "b")
    loaded = tl.load(tmp_path / "b")
    assert dump(loaded) == dump(log)
    assert tl.check_metadata_invariants(loaded)


def test_save_new_activations_attributes_the_new_pass() -> None:
    model = CASES["recurrent_arms"][0]()
    args, kwargs = CASES["recurrent_arms"][1]()
    log = tl.log_forward_pass(model, args, kwargs)
    before = dump(log)
    log.save_new_activations(model, args, kwargs)
    assert dump(log) == before
