"""`dry_run`: evaluate predicates over one pass without saving anything (spec §10.7, Appendix A.4)."""

from __future__ import annotations

import gc
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._capture import hot, run, wrap
from ._recorder import RecordingOptions, _check_options, _input_tensors, _normalize, _reject_model
from ._session import Decider, FastSession
from ._types import DROP, CaptureSpec, RecordContext


def _kept(spec: CaptureSpec) -> bool:
    return spec.save_activation or spec.save_metadata


@dataclass
class RecordingTrace:
    """Every event of one pass with the decision the predicates made (spec §10.7)."""

    contexts: list[RecordContext] = field(default_factory=list)
    decisions: list[CaptureSpec] = field(default_factory=list)
    predicate_failures: list[Any] = field(default_factory=list)

    @property
    def events(self) -> list[RecordContext]:
        return self.contexts

    def kept(self) -> list[RecordContext]:
        return [c for c, d in zip(self.contexts, self.decisions, strict=True) if _kept(d)]

    def print_tree(self, file: Any = None) -> str:
        lines = []
        for c, d in zip(self.contexts, self.decisions, strict=True):
            name = c.layer_type if c.kind == "op" else c.kind
            if c.kind == "input":
                prefix, addr = "", "self"
            else:
                depth = max(len(c.module_stack) - 1, 0)
                prefix = "  " * depth + "└─ "
                addr = c.module_address or ""
            lines.append(f"{prefix}{c.event_index:04d} {c.kind} {name} [{addr}] {'kept' if _kept(d) else 'skip'}")
        text = "\n".join(lines)
        print(text, file=file)
        return text

    def summary(self) -> str:
        kept = sum(1 for d in self.decisions if _kept(d))
        by_kind = Counter(c.kind for c in self.contexts)
        by_type = Counter(c.layer_type for c in self.contexts if c.kind == "op")
        return (
            f"RecordingTrace(total_events={len(self.contexts)}, kept={kept}, rejected={len(self.contexts) - kept})\n"
            f"by_kind: {', '.join(f'{k}={v}' for k, v in sorted(by_kind.items()))}\n"
            f"by_op_type: {', '.join(f'{k}={v}' for k, v in sorted(by_type.items()))}"
        )

    def __repr__(self) -> str:
        return self.summary().splitlines()[0]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "kind": c.kind,
                    "label": c.label,
                    "event_index": c.event_index,
                    "layer_type": c.layer_type,
                    "module_address": c.module_address,
                    "kept": _kept(d),
                }
                for c, d in zip(self.contexts, self.decisions, strict=True)
            ]
        )

    def repredicate(self, other_keep_op: Any = None, other_keep_module: Any = None) -> RecordingTrace:
        """Re-evaluate decisions on the stored contexts without re-running the model."""
        out = RecordingTrace()
        for c in self.contexts:
            pred = other_keep_module if c.kind.startswith("module") else other_keep_op
            if c.kind in ("input", "buffer") and pred is other_keep_op:
                pred = other_keep_op
            r = pred(c) if pred is not None else None
            spec = r if isinstance(r, CaptureSpec) else (CaptureSpec() if r is True else DROP)
            out.contexts.append(c)
            out.decisions.append(spec)
        return out

    def show_graph(self, color_kept: str = "#98FB98", color_rejected: str = "#E6E6E6", **render_kwargs: Any) -> str:
        """Graphviz DOT source of the op events, coloured by decision (rendered if `graphviz` is installed)."""
        ops = [
            (c, d) for c, d in zip(self.contexts, self.decisions, strict=True) if c.kind in ("op", "input", "buffer")
        ]
        lines = ["digraph fastlog {", "  node [shape=box style=filled fontname=Helvetica];"]
        known = set()
        for c, d in ops:
            col = color_kept if _kept(d) else color_rejected
            lab = f"{c.label}\\n{c.module_address or ''}"
            lines.append(f'  "{c.label}" [label="{lab}" fillcolor="{col}"];')
            known.add(c.label)
        for c, _ in ops:
            for p in c.parent_labels:
                if p in known:
                    lines.append(f'  "{p}" -> "{c.label}";')
        lines.append("}")
        src = "\n".join(lines)
        if render_kwargs.get("output_path"):
            try:
                import graphviz  # type: ignore[import-not-found]

                graphviz.Source(src).render(render_kwargs["output_path"], format=render_kwargs.get("format", "pdf"))
            except ImportError:
                with open(str(render_kwargs["output_path"]) + ".gv", "w") as f:
                    f.write(src)
        return src

    def timeline_html(self) -> str:
        rows = "".join(
            f"<tr><td>{c.event_index}</td><td>{c.kind}</td><td>{c.label}</td><td>{c.module_address or ''}</td>"
            f"<td>{c.time_since_pass_start * 1e3:.3f}</td><td>{'kept' if _kept(d) else ''}</td></tr>"
            for c, d in zip(self.contexts, self.decisions, strict=True)
        )
        return (
            "<table><tr><th>#</th><th>kind</th><th>label</th><th>module</th><th>t (ms)</th><th></th></tr>"
            f"{rows}</table>"
        )


def dry_run(
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict | None = None,
    *,
    keep_op: Any = None,
    keep_module: Any = None,
    history_size: int = 8,
    include_source_events: bool = False,
    random_seed: int | None = None,
) -> RecordingTrace:
    """One pass, fail-fast predicates, no payloads: every event with the decision it got."""
    model = _reject_model(model)
    o = RecordingOptions(
        keep_op=keep_op,
        keep_module=keep_module,
        history_size=history_size,
        include_source_events=include_source_events,
        random_seed=random_seed,
        default_op=True if keep_op is None and keep_module is None else False,
    )
    o = _check_options(o)
    decider = Decider(o.keep_op, o.keep_module, o.default_op, o.default_module, True, 0)
    trace = RecordingTrace()
    events: list[tuple[RecordContext, CaptureSpec]] = []
    session = FastSession(model, decider, None, history_size, include_source_events, 1, None, keep_all_contexts=events)
    args, kwargs = _normalize(input_args, input_kwargs)
    if not run._lock.acquire(blocking=False):
        raise RuntimeError("another torchlens capture is already running in this process")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        wrap.ensure_wrapped()
        if random_seed is not None:
            run.seed_everything(random_seed)
        session.register_buffers()
        session.t0 = time.perf_counter()
        for role, t in _input_tensors(args, kwargs):
            session.log_input(t, role)
        session.enter_root()
        hot.set_session(session)
        try:
            model(*args, **kwargs)
        finally:
            hot.set_session(None)
        session.exit_root()
    finally:
        hot.set_session(None)
        session.strip_tags()
        if gc_was:
            gc.enable()
        run._lock.release()
    for c, d in events:
        trace.contexts.append(c)
        trace.decisions.append(d)
    return trace
