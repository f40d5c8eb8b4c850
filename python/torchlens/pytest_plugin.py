"""pytest plugin: the ``torchlens_snapshot`` fixture, an activation-regression check for CI.

Installed with torchlens (entry point ``pytest11``: ``torchlens = "torchlens.pytest_plugin"``),
so pytest loads it in every project that has torchlens; it only registers the fixture and its
options and does nothing in tests that do not use the fixture. Loading it imports the torchlens
package, and so torch (about a second); the logging and comparison code is imported only when a
test uses the fixture. Disable it with ``-p no:torchlens``.

.. code-block:: python

    def test_resnet_internals(torchlens_snapshot):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None).eval()
        torchlens_snapshot(model, torch.randn(1, 3, 64, 64), layers=["conv2d_1_1", "relu"])

The first run logs the chosen layers (``tl.log_forward_pass(..., layers_to_save=layers)``) and
saves them as a bundle (the test passes and the terminal summary lists the snapshot written);
later runs log again and compare with the bundle through `torchlens.compare_logs`, the same
comparison as ``torchlens diff``, and fail the test with a table of the worst layers when one
diverges beyond tolerance.

Snapshots live in ``__snapshots__/torchlens/<test file stem>/<test name>`` next to the test
file, or under ``<dir>/<test file path>/<test name>`` with ``--torchlens-snapshot-dir`` (or the
ini option ``torchlens_snapshot_dir``, relative to the rootdir). ``--torchlens-snapshot-update``
rewrites every snapshot the run touches. Tolerances: the fixture's ``atol``/``rtol``/``metric``
arguments, else the ini options ``torchlens_snapshot_atol`` (1e-6), ``torchlens_snapshot_rtol``
(1e-5) and ``torchlens_snapshot_metric`` (``allclose`` or ``cosine``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torchlens.traces import CompareReport

_WRITTEN = pytest.StashKey[list]()
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchlens", "torchlens activation snapshots")
    group.addoption(
        "--torchlens-snapshot-update",
        action="store_true",
        default=False,
        help="rewrite the torchlens_snapshot bundles instead of comparing with them",
    )
    group.addoption(
        "--torchlens-snapshot-dir",
        default=None,
        help="directory for torchlens_snapshot bundles (default: __snapshots__/torchlens next to each test file)",
    )
    parser.addini("torchlens_snapshot_dir", "directory for torchlens_snapshot bundles, relative to the rootdir")
    parser.addini("torchlens_snapshot_atol", "absolute tolerance of torchlens_snapshot (default 1e-6)")
    parser.addini("torchlens_snapshot_rtol", "relative tolerance of torchlens_snapshot (default 1e-5)")
    parser.addini("torchlens_snapshot_metric", "allclose (default) or cosine")


def _safe(name: str) -> str:
    """A file-name-safe form of ``name`` (a hash suffix keeps distinct names distinct)."""
    clean = _UNSAFE.sub("_", name).strip("._") or "snapshot"
    if clean != name or len(clean) > 100:
        clean = f"{clean[:80]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return clean


def _ini_float(config: pytest.Config, key: str, default: float) -> float:
    raw = config.getini(key)
    if raw in (None, "", []):
        return default
    try:
        return float(raw)
    except ValueError:
        raise pytest.UsageError(f"ini option {key} must be a number, not {raw!r}") from None


class TorchlensSnapshot:
    """The callable behind the ``torchlens_snapshot`` fixture (one per test)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._calls = 0
        config = request.config
        self.update: bool = bool(config.getoption("torchlens_snapshot_update"))
        self.atol = _ini_float(config, "torchlens_snapshot_atol", 1e-6)
        self.rtol = _ini_float(config, "torchlens_snapshot_rtol", 1e-5)
        self.metric = str(config.getini("torchlens_snapshot_metric") or "allclose")

    def path_for(self, name: str | None = None) -> Path:
        """Where the bundle of this test (and ``name``) lives."""
        node = self._request.node
        test_file = Path(str(node.path))
        config = self._request.config
        base = config.getoption("torchlens_snapshot_dir") or config.getini("torchlens_snapshot_dir")
        if base:
            root = Path(base)
            if not root.is_absolute():
                root = Path(str(config.rootpath)) / root
            try:
                rel = test_file.with_suffix("").relative_to(Path(str(config.rootpath)))
            except ValueError:
                rel = Path(test_file.stem)
            folder = root.joinpath(*(_safe(p) for p in rel.parts))
        else:
            folder = test_file.parent / "__snapshots__" / "torchlens" / _safe(test_file.stem)
        stem = _safe(node.name)
        return folder / (stem if name is None else f"{stem}__{_safe(name)}")

    def __call__(
        self,
        model: Any,
        input_args: Any,
        input_kwargs: dict[str, Any] | None = None,
        *,
        layers: Any = "all",
        name: str | None = None,
        atol: float | None = None,
        rtol: float | None = None,
        metric: str | None = None,
        random_seed: int = 0,
    ) -> CompareReport | None:
        """Logs ``model(input_args)`` and checks the chosen layers against the stored snapshot.

        Args:
            model: The model, as for ``tl.log_forward_pass``.
            input_args: Its positional input(s).
            input_kwargs: Its keyword inputs.
            layers: ``layers_to_save`` of the pass ("all", labels, layer types, modules).
            name: Tells several snapshots of one test apart (the default names a second call
                ``<test>__2``, and so on).
            atol: Absolute tolerance, as in ``tl.compare_logs``; default the ini option.
            rtol: Relative tolerance; default the ini option.
            metric: ``"allclose"`` or ``"cosine"``; default the ini option.
            random_seed: Seed applied before the pass (dropout and random ops repeat).

        Returns:
            The `CompareReport` when a snapshot was compared, None when one was written.

        Fails the test (``pytest.fail``) when the run diverges from the snapshot.
        """
        import torchlens as tl

        self._calls += 1
        if name is None and self._calls > 1:
            name = str(self._calls)
        path = self.path_for(name)
        log = tl.log_forward_pass(model, input_args, input_kwargs, layers_to_save=layers, random_seed=random_seed)
        if self.update or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tl.save(log, path, overwrite=True)
            self._request.config.stash.setdefault(_WRITTEN, []).append(str(path))
            return None
        report = tl.compare_logs(
            path,
            log,
            atol=self.atol if atol is None else atol,
            rtol=self.rtol if rtol is None else rtol,
            metric=self.metric if metric is None else metric,
            progress=False,
        )
        if report.diverged:
            pytest.fail(
                f"torchlens snapshot {path} diverges (a = snapshot, b = this run):\n"
                f"{report.format_table(top=10)}\n"
                "Run pytest with --torchlens-snapshot-update to accept the new activations.",
                pytrace=False,
            )
        return report


@pytest.fixture
def torchlens_snapshot(request: pytest.FixtureRequest) -> Iterator[TorchlensSnapshot]:
    """Records chosen layers of a model to a bundle on the first run and compares after."""
    yield TorchlensSnapshot(request)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    written = config.stash.get(_WRITTEN, [])
    if written:
        terminalreporter.section("torchlens snapshots")
        for path in written:
            terminalreporter.write_line(f"snapshot written: {path}")
