"""Running graphviz's `dot` on DOT source, and showing the result (viewer, notebook)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

_IMAGE_EXT = ("pdf", "png", "jpg", "svg", "jpeg", "bmp", "pic", "tif", "tiff")


_ENGINES = ("auto", "dot", "elk", "sfdp")


def layout_engine(choice: str) -> str:
    """The graphviz engine for `layout_engine` / `vis_node_placement` (spec §12.1).

    `"auto"` is dot: graphs too big for dot are collapsed before they get here (`AUTO_COLLAPSE_NODES`).
    ELK needs Node and elkjs, which torchlens does not drive, so `"elk"` falls back to sfdp with a warning.
    """
    if choice not in _ENGINES:
        raise ValueError(f"vis_node_placement must be one of {list(_ENGINES)}, not {choice!r}.")
    if choice == "elk":
        warnings.warn("The ELK layout is not available; falling back to sfdp.", UserWarning, stacklevel=3)
        return "sfdp"
    return "dot" if choice == "auto" else choice


def render(
    source: str, outpath: str, fileformat: str = "pdf", save_only: bool = False, engine: str = "dot"
) -> str | None:
    """Write `source` and run graphviz with `engine`; returns the rendered file's path (None if graphviz failed)."""
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
        _run_dot(dot, engine, fileformat, target, outpath, big=source.count("\n") > _BIG_PNG_LINES)
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


# Above this many DOT lines (~1,000 nodes) a PNG is written through gd (palette PNG): cairo's own
# 32-bit PNG writer takes most of the time of a huge bitmap (swin_v2_b: 2.3 s against 1.5 s).
_BIG_PNG_LINES = 2000


def _run_dot(dot: str, engine: str, fileformat: str, target: str, source_path: str, big: bool) -> None:
    formats = ["png:cairo:gd", fileformat] if big and fileformat == "png" else [fileformat]
    for i, fmt in enumerate(formats):
        try:
            cmd = [dot, f"-K{engine}", f"-T{fmt}", "-o", target, source_path]
            subprocess.run(cmd, check=True, timeout=120, capture_output=True)
            return
        except subprocess.CalledProcessError as e:
            if i + 1 == len(formats) or b"not recognized" not in e.stderr:  # a graphviz built without gd
                raise


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
