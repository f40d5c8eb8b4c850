"""Multi-trace bundles (spec §12.7): several logs of one model matched into one supergraph.

`bundle` builds a `TraceBundle`; `bundle[node]` is a `NodeView`. The graph view is
`torchlens.show_bundle_graph` (`viz/_bundle_graph.py`). `compare_logs` compares two runs layer by
layer (the `torchlens diff` command and the pytest plugin).
"""

from ._bundle import TraceBundle, bundle
from ._compare import CompareReport, LayerDiff, compare_logs
from ._metrics import METRICS, divergence
from ._node import NodeView

__all__ = ["METRICS", "CompareReport", "LayerDiff", "NodeView", "TraceBundle", "bundle", "compare_logs", "divergence"]
