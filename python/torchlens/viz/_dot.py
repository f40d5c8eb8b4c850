"""Just enough of a DOT writer for the graph views: quoting, HTML labels, nested clusters."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

FILL_INPUT = "#98FB98"
FILL_OUTPUT = "#ff9999"
FILL_TRAINABLE = "#D9D9D9"
FILL_FROZEN = "#B0B0B0"


def ranges(nums: list[int]) -> str:
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


def q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shape_str(shape: tuple[int, ...]) -> str:
    if len(shape) == 0:
        return "x1"
    if len(shape) == 1:
        return f"x{shape[0]}"
    return "x".join(str(d) for d in shape)


def attrs_str(d: dict[str, Any]) -> str:
    parts = []
    for k, v in d.items():
        v = str(v)
        # HTML-like values (`<...>`) must stay unquoted for graphviz to parse them as markup.
        parts.append(f"{k}={v}" if v.startswith("<") else f"{k}={q(v)}")
    return "[" + " ".join(parts) + "]"


def node_name(label: str) -> str:
    return label.replace(":", "pass")


class Graph:
    """Nodes, nested clusters (keyed by their path of names) and edges, written out in insertion order."""

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}
        self.node_cluster: dict[str, tuple[str, ...]] = {}
        self.clusters: dict[tuple[str, ...], dict[str, Any]] = {}
        self.edges: dict[tuple[str, str], dict[str, Any]] = {}

    def node(self, name: str, attrs: dict[str, Any], cluster: tuple[str, ...]) -> None:
        self.nodes[name] = attrs_str(attrs)
        self.node_cluster[name] = cluster

    def source(self, header: list[str], footer: list[str]) -> str:
        lines = list(header)
        tree: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for name, cl in self.node_cluster.items():
            tree[cl].append(name)
        for cl in list(self.clusters):
            for i in range(1, len(cl)):
                if cl[:i] not in self.clusters:
                    self.clusters[cl[:i]] = {"label": cl[i - 1], "depth": i}
        kids: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
        for cl in self.clusters:
            kids[cl[:-1]].append(cl)
        max_depth = max((len(c) for c in self.clusters), default=1)

        def emit(cl: tuple[str, ...], indent: str) -> None:
            for name in tree.get(cl, []):
                lines.append(f"{indent}{q(name)} {self.nodes[name]}")
            for sub in kids.get(cl, []):
                info = self.clusters[sub]
                width = 5.0 if max_depth <= 1 else 5.0 - 3.0 * (len(sub) - 1) / (max_depth - 1)
                lines.append(f"{indent}subgraph {q('cluster_' + sub[-1])} {{")
                attrs = {
                    "label": info["label"],
                    "labelloc": "b",
                    "fillcolor": "white",
                    "style": q(info.get("style", "filled,solid")),
                    "penwidth": f"{width:.1f}",
                }
                for k, val in info.get("overrides", {}).items():
                    val = str(val)
                    attrs[k] = val if val.startswith("<") else q(val)
                lines.append(f"{indent}  graph [{' '.join(f'{k}={val}' for k, val in attrs.items())}]")
                emit(sub, indent + "  ")
                lines.append(f"{indent}}}")

        emit((), "  ")
        for (a, b), attrs in self.edges.items():
            lines.append(f"  {q(a)} -> {q(b)} {attrs_str(attrs)}")
        lines.extend(footer)
        lines.append("}")
        return "\n".join(lines)
