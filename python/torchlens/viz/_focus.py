"""`module=` focus (spec §12.4): which entries a graph focused on one module (or one of its passes) shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..log.modules import ModuleLog, ModulePassLog, pass_outputs, pass_positions, positions

if TYPE_CHECKING:
    from ..log.model_log import ModelLog


@dataclass
class Focus:
    """The focused module: `pass_num` is None when every pass of it is shown."""

    address: str
    pass_num: int | None
    class_name: str
    num_passes: int
    inside: list[int]  # positions computed inside the module (pass), in execution order
    outputs: list[tuple[int, int]]  # (position, pass number) of each tensor a shown pass returned, in order

    @property
    def title(self) -> str:
        return self.pass_title(self.pass_num)

    def pass_title(self, pass_num: int | None) -> str:
        return f"@{self.address}" + (f":{pass_num}" if pass_num is not None and self.num_passes > 1 else "")

    def stack_index(self, stack: list[str]) -> int:
        """Index of the focused module in an entry's module stack (`addr:k` labels, outermost first)."""
        for i, m in enumerate(stack):
            addr, k = m.rsplit(":", 1)
            if addr == self.address and (self.pass_num is None or int(k) == self.pass_num):
                return i
        raise ValueError(f"{stack} does not contain {self.title}")


def resolve_focus(log: ModelLog, module: Any) -> Focus | None:
    """The Focus for `module` (ModuleLog, ModulePassLog, address or `addr:k`); None means the whole model."""
    if module is None:
        return None
    if isinstance(module, (ModuleLog, ModulePassLog)):
        key = module.pass_label if isinstance(module, ModulePassLog) else module.address
    elif isinstance(module, str):
        key = module
    else:
        raise TypeError(f"module must be a ModuleLog or a module address string, not {type(module).__name__}.")
    try:
        found = log.modules[key]
    except KeyError:
        raise ValueError(f"Module address '{key}' was not found in this ModelLog.") from None
    if isinstance(found, ModulePassLog):
        mod, pass_num = found._module, found.pass_num
    else:
        mod, pass_num = found, None
    if mod.address == "self":
        return None
    if pass_num is None:
        inside = positions(log).get(mod.address, [])
        shown = range(1, mod.num_passes + 1)
    else:
        inside = pass_positions(log).get(found.pass_label, [])
        shown = range(pass_num, pass_num + 1)
    outs = pass_outputs(log)
    outputs = list(dict.fromkeys((p, k) for k in shown for p in outs.get(f"{mod.address}:{k}", [])))
    return Focus(mod.address, pass_num, mod.module_class_name, mod.num_passes, list(inside), outputs)
