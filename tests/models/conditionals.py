"""Models whose forward passes branch on tensors, for conditional-branch attribution (spec §7.5
step 5): `if/elif/else` chains and ternaries whose tests consume scalar bool tensors, plus the
bool consumers that are classified but not arm-attributed (`assert`, bare `bool()`,
comprehension filters, `while`, `match` guards) and Python-only predicates that are not detected.

`CASES` maps a case name to (model factory, inputs factory -> (args, kwargs)); several cases share
a model with inputs that take different arms. tests/data/conditionals_2_15.json holds what
TorchLens 2.15.0 records for every case, including source line/column spans in THIS file: any
edit here that moves a line invalidates that data (regenerate it with tests/cond_dump.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Inputs = tuple[tuple, dict]


class IfElse(nn.Module):
    """if/else on a reduction; each arm runs a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x)
        if h.sum() > 0:
            y = self.a(h)
            y = y * 2
        else:
            y = self.b(h)
        return y + 1


class ElifChain(nn.Module):
    """if / elif / elif / else on a mean: four arms, one op sequence each."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean()
        if s > 2:
            y = x * 3
        elif s > 1:
            y = x * 2
            y = y.exp()
        elif s > 0:
            y = x.sin()
        else:
            y = -x
        return y + 1


class NestedInLoop(nn.Module):
    """An if inside an elif inside a for loop; the inner if takes both arms over iterations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            if x.mean() > 5:
                x = x - 1
            elif x.mean() > 0:
                if x.max() > 2:
                    x = x / 2
                else:
                    x = x * 3
            else:
                x = x.abs()
        return x


class NestedIfElse(nn.Module):
    """An if inside the else arm of another if."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            x = x * 2
        else:
            if x.min() < -2:
                x = x.clamp(min=-2)
            else:
                x = x + 5
        return x


class Ternary(nn.Module):
    """Ternaries with tensor ops in both arms (module calls and plain ops)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x) if x.sum() > 0 else self.b(x)
        z = y.sin() if y.mean() < 100 else y.cos()
        return y + z


class TernaryScalar(nn.Module):
    """A ternary choosing a Python scalar: no tensor op in either arm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = 3 if x.mean() > 0 else 4
        return x * k


class EarlyReturn(nn.Module):
    """A return inside an if (no else): taken or fallen through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 1
        if x.sum() > 0:
            return x.exp()
        return x.sin()


class RecurrentArms(nn.Module):
    """An if in a loop whose arms differ in ops, taking different arms per iteration."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            if x.sum() > 0:
                x = x - 10
            else:
                x = x + 3
        return x


class RecurrentLayer(nn.Module):
    """An if in a loop running the same Linear each time: the loop rolls into passes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            if x.sum() > -1000:
                x = self.fc(x)
        return x


class RecurrentBothArms(nn.Module):
    """Both arms of a looped if run the same Linear; the arm changes between iterations."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            if x.sum() * 0 + i % 2 > 0.5:
                x = self.fc(x)
            else:
                x = self.fc(x)
        return x


class AssertTensor(nn.Module):
    """assert on a tensor comparison: classified, not a branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.abs().sum() >= 0
        return x * 2


class BareBool(nn.Module):
    """bool(t) stored in a variable, later used by a Python ternary."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flag = bool(x.min() < 100)
        y = x * 2 if flag else x
        return y + 1


class BoolInIf(nn.Module):
    """bool(...) wrapping the test of an if: the wrapper kind is recorded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            x = x + 1
        return x * 2


class IfNot(nn.Module):
    """if not (...): the arm runs when the comparison is false."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (x.sum() > 100):
            x = x * 2
        else:
            x = x * 4
        return x


class AnyAll(nn.Module):
    """Tests on .any(), .all() and torch.all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x > 0).any():
            x = x - 1
        if (x > 5).all():
            x = x * 7
        if torch.all(x > -10):
            x = x / 2
        return x


class CompoundAnd(nn.Module):
    """`and` of two tensor comparisons; both are evaluated when the first is true."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0 and x.max() < 5:
            x = x.relu()
        else:
            x = x.tanh()
        return x


class CompoundOr(nn.Module):
    """`or` of two comparisons; the second is evaluated only when the first is false."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 100 or x.min() > -5:
            x = x.sigmoid()
        return x + 1


class ComprehensionFilter(nn.Module):
    """A list comprehension with a tensor filter: classified, not a branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [p * 2 for p in x.unbind(0) if p.sum() > 0]
        return torch.stack(parts).sum(0)


class WhileTensor(nn.Module):
    """while on a tensor comparison: classified, not a branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while x.sum() < 10:
            x = x + 4
        return x


class MatchGuard(nn.Module):
    """A match statement with a tensor guard: classified, not a branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        match x.dim():
            case 2 if x.sum() > 0:
                y = x * 2
            case _:
                y = x - 1
        return y


class PythonOnly(nn.Module):
    """self.training and shape tests: Python-only predicates, nothing is detected."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = self.fc(x)
        if x.shape[0] > 1:
            x = x * 2
        if x.dim() == 2:
            x = x + 1
        return x


class ItemCompare(nn.Module):
    """.item() comparisons and torch.where: not detected."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum().item() > 0:
            x = x * 5
        return torch.where(x > 0, x, -x)


class Gate(nn.Module):
    """Submodule whose forward branches; module ops in both arms."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(4, 4)
        self.down = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            x = self.up(x)
        else:
            x = self.down(x)
        return torch.relu(x)


class SubmoduleBranch(nn.Module):
    """The conditional lives inside a submodule's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.pre(x) * 0 + x)


class HelperMethod(nn.Module):
    """An arm calls a plain (non-module) helper method."""

    def _twice(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        return y.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = self._twice(x)
        else:
            x = x.neg()
        return x + 1


class OneLine(nn.Module):
    """An if whose body is on the same line."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fmt: off
        if x.sum() > 0: x = x * 2  # noqa: E701
        # fmt: on
        return x + 1


class TwoIfs(nn.Module):
    """Two independent ifs in sequence: the first takes its then arm, the second its else arm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = x.exp()
        else:
            x = x.sin()
        if x.mean() > 2:
            x = x.log()
        else:
            x = x.cos()
        return x


class BothArmsModules(nn.Module):
    """Both arms run modules (Sequential of Linear + ReLU vs a single Linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.deep = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
        self.shallow = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.max() > 1:
            out = self.deep(x)
        else:
            out = self.shallow(x)
        return out * 2


class CalledTwice(nn.Module):
    """One gated submodule called twice, taking different arms on the two calls."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gate(x)
        b = self.gate(-x - 1)
        return a + b


class PrecomputedTest(nn.Module):
    """The bool is computed on one line and tested by name on a later if."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.sum() > 0
        y = x.cos()
        if c:
            y = y * 3
        return y


class ElifNoElse(nn.Module):
    """if / elif without else where no arm runs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 100:
            x = x * 2
        elif x.sum() > 50:
            x = x * 3
        return x - 1


class OneLineMethod(nn.Module):
    """A one-line if whose body calls a tensor method."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fmt: off
        if x.sum() > 0: x = x.exp()  # noqa: E701
        # fmt: on
        return x + 1


class RecurrentMixedArms(nn.Module):
    """A looped if whose two arms run the same Linear on the same producer (tanh): the rolled
    edge tanh -> fc is entered through different arms on different passes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            y = torch.tanh(x)
            if y.sum() * 0 + i % 2 > 0.5:
                x = self.fc(y)
            else:
                x = self.fc(y)
        return x


class CalledTwiceSameArm(nn.Module):
    """One gated submodule called twice, taking the same arm both times."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.gate(x) + 1)


class NoBool(nn.Module):
    """No bool consumption at all: nothing conditional is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)) * 2


def _ones(scale: float = 1.0) -> Callable[[], Inputs]:
    return lambda: ((torch.ones(2, 4) * scale,), {})


def _arange(offset: float, scale: float = 1.0) -> Callable[[], Inputs]:
    return lambda: (((torch.arange(8.0).reshape(2, 4) + offset) * scale,), {})


def _seeded(cls: type[nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return cls()

    return make


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], Inputs]]] = {
    "if_else_then": (_seeded(IfElse), _ones(1.0)),
    "if_else_else": (_seeded(IfElse), _ones(-1.0)),
    "elif_then": (ElifChain, _ones(3.0)),
    "elif_1": (ElifChain, _ones(1.5)),
    "elif_2": (ElifChain, _ones(0.5)),
    "elif_else": (ElifChain, _ones(-1.0)),
    "nested_in_loop": (NestedInLoop, _ones(1.5)),
    "nested_if_else_inner_then": (NestedIfElse, _ones(-3.0)),
    "nested_if_else_inner_else": (NestedIfElse, _ones(-1.0)),
    "ternary_then": (_seeded(Ternary), _ones(1.0)),
    "ternary_else": (_seeded(Ternary), _ones(-1.0)),
    "ternary_scalar": (TernaryScalar, _ones(-1.0)),
    "early_return_taken": (EarlyReturn, _ones(1.0)),
    "early_return_fallthrough": (EarlyReturn, _ones(-2.0)),
    "recurrent_arms": (RecurrentArms, _ones(1.0)),
    "recurrent_layer": (_seeded(RecurrentLayer), _ones(1.0)),
    "recurrent_both_arms": (_seeded(RecurrentBothArms), _ones(1.0)),
    "assert_tensor": (AssertTensor, _ones(1.0)),
    "bare_bool": (BareBool, _ones(1.0)),
    "bool_in_if": (BoolInIf, _ones(1.0)),
    "if_not": (IfNot, _ones(1.0)),
    "any_all": (AnyAll, _arange(-3.0)),
    "compound_and": (CompoundAnd, _ones(1.0)),
    "compound_or": (CompoundOr, _ones(1.0)),
    "comprehension_filter": (ComprehensionFilter, _arange(-5.0)),
    "while_tensor": (WhileTensor, _ones(0.5)),
    "match_guard": (MatchGuard, _ones(1.0)),
    "python_only": (_seeded(PythonOnly), _ones(1.0)),
    "item_compare": (ItemCompare, _arange(-3.0)),
    "submodule_branch": (_seeded(SubmoduleBranch), _ones(1.0)),
    "helper_method": (HelperMethod, _ones(0.5)),
    "one_line": (OneLine, _ones(1.0)),
    "two_ifs": (TwoIfs, _ones(0.5)),
    "both_arms_modules_deep": (_seeded(BothArmsModules), _ones(2.0)),
    "both_arms_modules_shallow": (_seeded(BothArmsModules), _ones(0.5)),
    "called_twice": (_seeded(CalledTwice), _ones(1.0)),
    "precomputed_test": (PrecomputedTest, _ones(1.0)),
    "elif_no_else": (ElifNoElse, _ones(1.0)),
    "one_line_method": (OneLineMethod, _ones(1.0)),
    "recurrent_mixed_arms": (_seeded(RecurrentMixedArms), _ones(1.0)),
    "called_twice_same_arm": (_seeded(CalledTwiceSameArm), _ones(1.0)),
    "no_bool": (_seeded(NoBool), _ones(1.0)),
}
