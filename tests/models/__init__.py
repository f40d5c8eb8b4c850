"""Every model the tests, benches and examples run, defined once.

It lives under tests/ because pytest (the main user) already has tests/ on sys.path; benches/ and
examples/ put tests/ on sys.path themselves. Submodules: `readme` (the README's SimpleRecurrent),
`zoo` (small models covering the capture rules), `small` (models single tests are written
against), `flops` (one model per FLOPs op family, for test_flops), `large` (torchvision /
transformers models for validation), `bench` (benchmark set).
Nothing here imports torchlens, so benches can run these models under another torchlens too.
"""

from __future__ import annotations

from .readme import SimpleRecurrent

__all__ = ["SimpleRecurrent"]
