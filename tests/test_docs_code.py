"""Every ```python block of the docs (docs/*.md and README.md) runs, so the docs cannot drift.

The blocks of one page run in order in one namespace (a later block uses the names an earlier one
defined), each written to a file in a temporary directory that is also the working directory, so
source lookups (code panel, conditional branches) see real files and outputs land there. A block
whose first line is `# docs-test: skip (reason)` is not run; every such block is listed in
ALLOWED_SKIPS with its reason, so a new skip is a deliberate change to this file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(\s*)```(.*)$")
SKIP = re.compile(r"#\s*docs-test:\s*skip\s*\((.+)\)")
LANGUAGES = {"python", "bash", "text", "json", "toml", "yaml", "dot"}
# page -> the reasons of its skipped blocks, in page order. Rewrite a block so it runs rather than add one.
ALLOWED_SKIPS: dict[str, list[str]] = {
    "docs/scaling.md": [
        "reads the shards of the torchrun job above; tests/test_distributed_storage.py runs such jobs",
    ],
}


def blocks(page: Path) -> list[tuple[int, str, str]]:
    """The fenced blocks of a page: (line number of the opening fence, language, code)."""
    out: list[tuple[int, str, str]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).strip()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        assert i < len(lines), f"{page.name}:{start}: unclosed code fence"
        out.append((start, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _skip_reason(code: str) -> str | None:
    m = SKIP.match(code.lstrip())
    return m.group(1) if m else None


def test_every_block_names_its_language() -> None:
    bad = [f"{_name(p)}:{n} ```{lang}" for p in PAGES for n, lang, _ in blocks(p) if lang not in LANGUAGES]
    assert bad == [], "code blocks need a language tag (python runs in a test; output is text): " + ", ".join(bad)


def test_docs_have_python_blocks_and_only_listed_skips() -> None:
    python_blocks = [(p, n, code) for p in PAGES for n, lang, code in blocks(p) if lang == "python"]
    assert len(python_blocks) >= 20
    skips: dict[str, list[str]] = {}
    for p, _, code in python_blocks:
        if (reason := _skip_reason(code)) is not None:
            skips.setdefault(_name(p), []).append(reason)
    assert skips == ALLOWED_SKIPS


@pytest.mark.parametrize("page", [p for p in PAGES if any(lang == "python" for _, lang, _ in blocks(p))], ids=_name)
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)  # rendered graphs are never opened in a viewer
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for n, lang, code in blocks(page):
        if lang != "python" or _skip_reason(code) is not None:
            continue
        path = tmp_path / f"{page.stem.replace('-', '_')}_line{n}.py"
        path.write_text(code, encoding="utf-8")
        try:
            exec(compile(code, str(path), "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{_name(page)}, block at line {n} raised {type(e).__name__}: {e}") from e
    assert os.getcwd() == str(tmp_path)


def test_index_opens_with_install_quick_start_and_a_picture() -> None:
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[:2] == ["Install", "Quick start"]
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    codes = [code for _, lang, code in blocks(ROOT / "docs" / "index.md") if lang == "python" and code in quick]
    assert "import torchlens as tl\n\nlog = tl.log_forward_pass(model, x)\n" in codes
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", quick)
    assert pictures and all((ROOT / "docs" / p).stat().st_size > 0 for p in pictures)
