"""`str(model_log)` and `repr(model_log)`: the printed summary of spec §2.2."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._format import compact_count, human_readable_size
from .modules import hierarchy_lines

if TYPE_CHECKING:
    from .model_log import ModelLog


def model_log_text(log: ModelLog) -> str:
    """The multi-line summary: structure, tensor and parameter totals, modules, then one row per entry."""
    saved = set(log._saved) | set(log._lazy)
    shown = [log._node_ids[p] for p in log._positions()]
    all_saved = all(n in saved for n in shown)
    none_saved = not any(n in saved for n in shown)
    s = [f"Log of {log.model_name} forward pass:"]
    s.append(f"\tRandom seed: {log.random_seed_used}")
    logging = log.time_total - log.time_forward_pass
    s.append(f"\tTime elapsed: {round(log.time_total, 3)}s ({round(logging, 3)}s spent logging)")
    s.append("\tStructure:")
    s.append(
        f"\t\t- recurrent (at most {log.max_recurrent_loops} loops)"
        if log.is_recurrent
        else "\t\t- purely feedforward, no recurrence"
    )
    s.append("\t\t- with branching" if log.is_branching else "\t\t- no branching")
    s.append(
        "\t\t- with conditional (if-then) branching"
        if log.has_conditional_branching
        else "\t\t- no conditional (if-then) branching"
    )
    if log.buffer_layers:
        s.append(f"\t\t- contains {len(log.buffer_layers)} buffer layers")
    s.append(f"\t\t- {len(log._module_num_passes())} total modules")
    s.append("\tTensor info:")
    s.append(
        f"\t\t- {len(log)} total tensors ({human_readable_size(log.total_activation_memory)}) computed in forward pass."
    )
    s.append(
        f"\t\t- {log.num_tensors_saved} tensors ({human_readable_size(log.saved_activation_memory)}) "
        "with saved activations."
    )
    s.append(
        f"\tParameters: {log.total_param_layers} parameter operations ({log.total_params} params total; "
        f"{human_readable_size(log.total_params_memory)})"
    )
    s.append("\tModule Hierarchy:" + "".join("\n" + ln for ln in hierarchy_lines(log)))
    if all_saved:
        head = "\tLayers (all have saved activations):"
    elif none_saved:
        head = "\tLayers (no layer activations are saved):"
    else:
        head = "\tLayers (* means layer has saved activations):"
    rows = [head]
    labels = log._col("labels")
    pnums = log._col("pass_nums")
    npass = log._col("num_passes")
    for i, pos in enumerate(log._positions()):
        star = "* " if (not all_saved and log._node_ids[pos] in saved) else "  "
        pstr = f" ({pnums[pos]}/{npass[pos]} passes)" if npass[pos] > 1 else ""
        rows.append(f"\t\t{star}({i}) {labels[pos]} {pstr}")
    return "\n".join(s) + "\n" + "\n".join(rows)


def model_log_repr(log: ModelLog) -> str:
    """The two-line card `<ModelLog name>` / `layers=.. params=.. ops=.. saved=.. forward=..s`."""
    nparams = compact_count(log.total_params)
    return (
        f"<ModelLog {log.model_name}>\nlayers={len(log)} params={nparams} ops={log.num_operations} "
        f"saved={human_readable_size(log.saved_activation_memory)} forward={log.time_forward_pass:.3f}s"
    )
