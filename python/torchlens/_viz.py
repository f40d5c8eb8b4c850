"""Graphviz rendering of a ModelLog, unrolled (one node per pass) or rolled (one node per layer).

DOT generation is one linear walk over the log's columns; graphviz's `dot` renders the file.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
import warnings
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ._format import human_readable_size

if TYPE_CHECKING:
    from .model_log import ModelLog

_DIRECTIONS = {"bottomup": "BT", "topdown": "TB", "leftright": "LR"}
_IMAGE_EXT = ("pdf", "png", "jpg", "svg", "jpeg", "bmp", "pic", "tif", "tiff")
_HIDDEN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
AUTO_COLLAPSE_NODES = 3000
FILL_INPUT = "#98FB98"
FILL_OUTPUT = "#ff9999"
FILL_TRAINABLE = "#D9D9D9"
FILL_FROZEN = "#B0B0B0"


def _ranges(nums: list[int]) -> str:
    """Compact pass ranges: [1,2,3,7,8,10] -> '1-3,7-8,10'."""
    nums = sorted(set(nums))
    out: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(out)


def _q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shape_str(shape: tuple[int, ...]) -> str:
    if len(shape) == 0:
        return "x1"
    if len(shape) == 1:
        return f"x{shape[0]}"
    return "x".join(str(d) for d in shape)


def _html_label(rows: list[str], bold_first: bool = True) -> str:
    cells = []
    for i, r in enumerate(rows):
        text = html.escape(r)
        if i == 0 and bold_first:
            text = f"<B>{text}</B>"
        cells.append(f"<TR><TD>{text}</TD></TR>")
    return "<<TABLE BORDER='0' CELLBORDER='0' CELLSPACING='0'>" + "".join(cells) + "</TABLE>>"


def _attrs(d: dict[str, Any]) -> str:
    parts = []
    for k, v in d.items():
        v = str(v)
        parts.append(f"{k}={v}" if v.startswith("<") else f"{k}={_q(v)}")
    return "[" + " ".join(parts) + "]"


class _Graph:
    """Just enough of a DOT writer: nested clusters, nodes and edges."""

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}
        self.node_cluster: dict[str, tuple[str, ...]] = {}
        self.clusters: dict[tuple[str, ...], dict[str, Any]] = {}
        self.edges: dict[tuple[str, str], dict[str, Any]] = {}

    def node(self, name: str, attrs: dict[str, Any], cluster: tuple[str, ...]) -> None:
        self.nodes[name] = _attrs(attrs)
        self.node_cluster[name] = cluster

    def source(self, header: list[str], footer: list[str]) -> str:
        lines = list(header)
        tree: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for name, cl in self.node_cluster.items():
            tree[cl].append(name)
        kids: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
        for cl in self.clusters:
            kids[cl[:-1]].append(cl)
            for i in range(1, len(cl)):
                if cl[:i] not in self.clusters:
                    self.clusters[cl[:i]] = {"label": cl[i - 1], "depth": i}
        kids = defaultdict(list)
        for cl in self.clusters:
            kids[cl[:-1]].append(cl)
        max_depth = max((len(c) for c in self.clusters), default=1)

        def emit(cl: tuple[str, ...], indent: str) -> None:
            for name in tree.get(cl, []):
                lines.append(f"{indent}{_q(name)} {self.nodes[name]}")
            for sub in kids.get(cl, []):
                info = self.clusters[sub]
                width = 5.0 if max_depth <= 1 else 5.0 - 3.0 * (len(sub) - 1) / (max_depth - 1)
                lines.append(f"{indent}subgraph {_q('cluster_' + sub[-1])} {{")
                lines.append(
                    f"{indent}  graph [label={info['label']} labelloc=b fillcolor=white "
                    f"style={_q(info.get('style', 'filled,solid'))} penwidth={width:.1f}]"
                )
                emit(sub, indent + "  ")
                lines.append(f"{indent}}}")

        emit((), "  ")
        for (a, b), attrs in self.edges.items():
            lines.append(f"  {_q(a)} -> {_q(b)} {_attrs(attrs)}")
        lines.extend(footer)
        lines.append("}")
        return "\n".join(lines)


def _node_name(label: str) -> str:
    return label.replace(":", "pass")


def build_dot(
    log: ModelLog,
    mode: str = "unrolled",
    max_module_depth: int = 1000,
    direction: str = "bottomup",
    show_buffers: str = "meaningful",
    graph_overrides: dict[str, Any] | None = None,
) -> str:
    """DOT source for a log. `mode` is 'unrolled' or 'rolled'."""
    if mode not in ("unrolled", "rolled"):
        raise ValueError("Visualization option must be either 'none', 'rolled', or 'unrolled'.")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(_DIRECTIONS)}, not {direction!r}.")
    if isinstance(show_buffers, bool):
        show_buffers = "always" if show_buffers else "never"
    rolled = mode == "rolled"
    n = len(log)
    labels = log._col("labels")
    no_pass = log._col("labels_no_pass")
    parents = log._col("parents")
    num_passes = log._col("num_passes")
    pass_nums = log._col("pass_nums")
    entries = [log._entry(p) for p in range(n)]
    mod_passes = log._module_num_passes()
    mod_types = log._module_types()

    hidden: set[int] = set()
    for p, e in enumerate(entries):
        if e.is_buffer_layer:
            last = (e.buffer_address or "").rsplit(".", 1)[-1]
            if show_buffers == "never" or (show_buffers == "meaningful" and last in _HIDDEN_BUFFERS):
                hidden.add(p)

    depth = max_module_depth
    if depth >= 1000 and n > AUTO_COLLAPSE_NODES:
        depth = _auto_depth(entries)
        warnings.warn(
            f"Graph has {n} nodes; collapsing modules below nesting depth {depth} so graphviz stays usable "
            "(pass vis_nesting_depth explicitly to override).",
            UserWarning,
            stacklevel=3,
        )

    from_input = [False] * n
    for p in range(n):
        from_input[p] = entries[p].is_input_layer or any(from_input[q] for q in parents[p])

    # Which visible node stands for each position (itself, or a collapsed module box).
    rep: list[str] = [""] * n
    cluster_of: list[tuple[str, ...]] = [()] * n
    collapsed: dict[str, dict[str, Any]] = {}
    for p, e in enumerate(entries):
        cms = e.containing_modules
        leaf = e.is_leaf_module_output
        eff = len(cms) - (1 if leaf else 0)
        if 0 < depth <= eff and cms:
            target = cms[depth - 1]
            addr, k = target.rsplit(":", 1)
            key = addr if rolled else f"{addr}pass{k}"
            rep[p] = "mod:" + key
            info = collapsed.setdefault(
                key, {"addr": addr, "k": int(k), "positions": [], "cluster": _clusters(cms[: depth - 1], rolled)}
            )
            info["positions"].append(p)
            continue
        rep[p] = _node_name(no_pass[p] if rolled else labels[p])
        inner = cms[:-1] if leaf else cms
        cluster_of[p] = _clusters(inner, rolled)

    g = _Graph()
    seen_nodes: set[str] = set()
    for p, e in enumerate(entries):
        if p in hidden or rep[p].startswith("mod:") or rep[p] in seen_nodes:
            continue
        seen_nodes.add(rep[p])
        title = no_pass[p] if rolled else labels[p]
        if rolled and num_passes[p] > 1:
            title += f" (x{num_passes[p]})"
        rows = [title, f"{_shape_str(e.tensor_shape)} ({e.tensor_memory_str})"]
        params = log._params_of(p)
        if params:
            shown = []
            for prm in params:
                dims = _shape_str(prm.shape)
                shown.append(f"{prm.name}: " + (f"({dims})" if prm.requires_grad else f"[{dims}]"))
            rows.append("params: " + ", ".join(shown))
        if e.is_input_layer or e.is_output_layer:
            rows.append(f"@{e.io_role}")
        elif e.is_buffer_layer:
            rows.append(f"@{e.buffer_address}")
        elif e.is_leaf_module_output and e.leaf_module_pass:
            addr, k = e.leaf_module_pass.rsplit(":", 1)
            rows.append(f"@{addr}:{k}" if (not rolled and mod_passes.get(addr, 1) > 1) else f"@{addr}")
        attrs: dict[str, Any] = {"label": _html_label(rows, bold_first=False)}
        if e.is_input_layer:
            attrs.update(shape="oval", fillcolor=FILL_INPUT)
        elif e.is_output_layer:
            attrs.update(shape="oval", fillcolor=FILL_OUTPUT)
        elif e.is_buffer_layer:
            attrs.update(shape="cylinder", fillcolor="white")
        else:
            attrs["shape"] = "box" if e.is_leaf_module_output else "oval"
            if params:
                trainable = [prm.requires_grad for prm in params]
                attrs["fillcolor"] = (
                    FILL_TRAINABLE if all(trainable) else FILL_FROZEN if not any(trainable) else "#D9D9D9:#B0B0B0"
                )
            else:
                attrs["fillcolor"] = "white"
        attrs["color"] = "black"
        attrs["style"] = "filled,solid" if from_input[p] else "filled,dashed"
        g.node(rep[p], attrs, cluster_of[p])
        for cl in _cluster_chain(cluster_of[p]):
            g.clusters.setdefault(cl, _cluster_info(cl, mod_types, mod_passes, rolled))

    for key, info in collapsed.items():
        ps = info["positions"]
        addr = info["addr"]
        nm = "mod:" + key
        title = f"@{addr}"
        if rolled and mod_passes.get(addr, 1) > 1:
            title += f" (x{mod_passes[addr]})"
        elif not rolled and mod_passes.get(addr, 1) > 1:
            title += f":{info['k']}"
        last = entries[ps[-1]]
        nparams = sum(p.numel for p in log._module_params(addr))
        rows = [
            title,
            f"({mod_types.get(addr, '?')})",
            f"{_shape_str(last.tensor_shape)} ({last.tensor_memory_str})",
            f"{len({no_pass[p] for p in ps}) if rolled else len(ps)} layers total",
            f"{nparams} params" if nparams else "0 parameters",
        ]
        attrs = {
            "label": _html_label(rows),
            "shape": "box3d",
            "fillcolor": FILL_TRAINABLE if nparams else "white",
            "color": "black",
            "style": "filled,solid" if any(from_input[p] for p in ps) else "filled,dashed",
        }
        g.node(nm, attrs, info["cluster"])
        for cl in _cluster_chain(info["cluster"]):
            g.clusters.setdefault(cl, _cluster_info(cl, mod_types, mod_passes, rolled))

    # Edges, merged across passes in rolled mode with In/Out pass labels where a node's edges vary.
    edge_passes: dict[tuple[str, str], tuple[set[int], set[int]]] = {}
    for c in range(n):
        if c in hidden:
            continue
        for par in parents[c]:
            if par in hidden:
                continue
            a, b = rep[par], rep[c]
            if a == b:
                continue
            tail, head = edge_passes.setdefault((a, b), (set(), set()))
            tail.add(pass_nums[par])
            head.add(pass_nums[c])
            g.edges[(a, b)] = {
                "arrowsize": ".7",
                "labelfontsize": "8",
                "color": "black",
                "style": "solid" if from_input[par] else "dashed",
            }
    if rolled:
        varies = _edges_vary(log)
        first_pos = {}
        for p in range(n):
            first_pos.setdefault(rep[p], p)
        for (a, b), (tail, head) in edge_passes.items():
            pa, pb = first_pos[a], first_pos[b]
            attrs = g.edges[(a, b)]
            if not a.startswith("mod:") and varies.get(no_pass[pa]):
                attrs["taillabel"] = f"  Out {_ranges(list(tail))}  "
            if not b.startswith("mod:") and varies.get(no_pass[pb]):
                attrs["headlabel"] = f"  In {_ranges(list(head))}  "

    params_all = log._used_params()
    total_params = sum(p.numel for p in params_all)
    trainable = sum(p.numel for p in params_all if p.requires_grad)
    pmem = human_readable_size(sum(p.nbytes for p in params_all))
    if total_params == 0:
        pline = "0 params"
    elif trainable == total_params:
        pline = f"{total_params} params (all trainable, {pmem})"
    elif trainable == 0:
        pline = f"{total_params} params (all frozen, {pmem})"
    else:
        pline = f"{total_params} params ({trainable}/{total_params} trainable, {pmem})"
    caption = (
        f"<<B>{html.escape(log.model_name)}</B><br align='left'/>{n} tensors total "
        f"({human_readable_size(log.total_activation_memory)})<br align='left'/>{pline}<br align='left'/>>"
    )
    gattrs: dict[str, Any] = {
        "label": caption,
        "labeljust": "left",
        "labelloc": "t",
        "ordering": "out",
        "rankdir": _DIRECTIONS[direction],
    }
    for k, v in (graph_overrides or {}).items():
        gattrs[k] = v(log) if callable(v) else v
    header = [
        f"digraph {_q(log.model_name)} {{",
        "  // Computational graph for the feedforward sweep",
        f"  graph {_attrs(gattrs)}",
        "  node [ordering=out]",
    ]
    footer = []
    outs = [rep[p] for p in range(n) if entries[p].is_output_layer and p not in hidden]
    if outs:
        footer.append(f"  {{ rank=sink {_q(outs[-1])} }}")
    src = g.source(header, footer)
    return src.replace('"mod:', '"')


def _clusters(cms: list[str], rolled: bool) -> tuple[str, ...]:
    names = []
    for m in cms:
        addr, k = m.rsplit(":", 1)
        names.append(addr if rolled else f"{addr}_pass{k}")
    return tuple(names)


def _cluster_chain(cl: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [cl[:i] for i in range(1, len(cl) + 1)]


def _cluster_info(cl: tuple[str, ...], types: dict[str, str], passes: dict[str, int], rolled: bool) -> dict[str, Any]:
    last = cl[-1]
    if rolled:
        addr = last
        title = f"@{addr}" + (f" (x{passes[addr]})" if passes.get(addr, 1) > 1 else "")
    else:
        addr, k = last.rsplit("_pass", 1)
        title = f"@{addr}" + (f":{k}" if passes.get(addr, 1) > 1 else "")
    label = f"<<B>{html.escape(title)}</B><br align='left'/>({html.escape(types.get(addr, '?'))})<br align='left'/>>"
    return {"label": label, "depth": len(cl)}


def _edges_vary(log: ModelLog) -> dict[str, bool]:
    no_pass = log._col("labels_no_pass")
    parents = log._col("parents")
    children = log._col("children")
    per: dict[str, set[tuple[frozenset[str], frozenset[str]]]] = defaultdict(set)
    for p in range(len(log)):
        sig = (frozenset(no_pass[q] for q in parents[p]), frozenset(no_pass[q] for q in children[p]))
        per[no_pass[p]].add(sig)
    return {k: len(v) > 1 for k, v in per.items()}


def _auto_depth(entries: list[Any]) -> int:
    """Deepest nesting level at which the collapsed graph has at most AUTO_COLLAPSE_NODES nodes."""
    best = 1
    max_d = max((len(e.containing_modules) for e in entries), default=0)
    for d in range(1, max_d + 1):
        keys = set()
        for e in entries:
            cms = e.containing_modules
            eff = len(cms) - (1 if e.is_leaf_module_output else 0)
            keys.add(cms[d - 1] if cms and d <= eff else id(e))
        if len(keys) <= AUTO_COLLAPSE_NODES:
            best = d
        else:
            break
    return best


def render(source: str, outpath: str, fileformat: str = "pdf", save_only: bool = False) -> str | None:
    """Write `source` and run graphviz; returns the rendered file's path (None if graphviz failed)."""
    base, ext = os.path.splitext(outpath)
    if ext.lstrip(".").lower() in _IMAGE_EXT:
        outpath = base
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("Rendering needs graphviz's `dot` program (Debian/Ubuntu: apt-get install graphviz).")
    os.makedirs(os.path.dirname(os.path.abspath(outpath)), exist_ok=True)
    with open(outpath, "w") as f:
        f.write(source)
    target = f"{outpath}.{fileformat}"
    try:
        subprocess.run([dot, f"-T{fileformat}", "-o", target, outpath], check=True, timeout=120, capture_output=True)
    except subprocess.TimeoutExpired:
        warnings.warn(f"Graphviz render timed out after 120 s for {outpath}.", UserWarning, stacklevel=3)
        return None
    except subprocess.CalledProcessError as e:
        warnings.warn(f"Graphviz failed: {e.stderr.decode(errors='replace')[:500]}", UserWarning, stacklevel=3)
        return None
    finally:
        if os.path.exists(outpath):
            os.remove(outpath)
    _display_inline(source)
    if not save_only:
        _open_viewer(target)
    return target


def _in_notebook() -> bool:
    ipy = sys.modules.get("IPython")
    if ipy is None:
        return False
    try:
        shell = ipy.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _display_inline(source: str) -> None:
    if not _in_notebook():
        return
    from IPython.display import SVG, display

    svg = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True, timeout=120).stdout
    display(SVG(svg))


def _open_viewer(path: str) -> None:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(opener):
        subprocess.Popen([opener, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
