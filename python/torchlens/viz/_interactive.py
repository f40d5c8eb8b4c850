"""SVG anchors for big graphs (spec §12.4, large graphs): when the node threshold makes the graph
collapse modules automatically, every node gets an `id`, a `URL="#<id>"` anchor and a tooltip, so the
collapsed module boxes stay clickable and say what they hold when the SVG is viewed in a browser."""

from __future__ import annotations

from typing import Any

from ._dot import q

_MAX_LISTED = 12


def add_anchors(
    g: Any,
    collapsed: dict[str, dict[str, Any]],
    mod_types: dict[str, str],
    rep: list[str],
    titles: list[str | None],
    mod: str,
) -> None:
    """Append `id`, `URL` and `tooltip` to every node of `g` (`mod` prefixes the collapsed module boxes;
    `titles` holds None for the positions not drawn)."""
    title_of: dict[str, str] = {}
    for name, title in zip(rep, titles, strict=True):
        if title is not None:
            title_of.setdefault(name, title)
    for name, attrs in g.nodes.items():
        if name.startswith(mod):
            key = name[len(mod) :]
            info = collapsed[key]
            layers = [t for t in dict.fromkeys(titles[p] for p in info["positions"]) if t is not None]
            shown = ", ".join(layers[:_MAX_LISTED]) + (
                f", ... ({len(layers)} in all)" if len(layers) > _MAX_LISTED else ""
            )
            tip = f"@{info['addr']} ({mod_types.get(info['addr'], '?')}): {shown}"
        else:
            key = name
            tip = title_of.get(name, name)
        extra = f"id={q(key)} URL={q('#' + key)} tooltip={q(tip)}"
        g.nodes[name] = (
            attrs[:-1] + " " + extra + "]"
            if "tooltip=" not in attrs
            else attrs[:-1] + f" id={q(key)} URL={q('#' + key)}]"
        )
