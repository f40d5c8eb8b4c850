"""The 2.15 import path `torchlens._io.TorchLensIOError`, kept for code written against it."""

from ._errors import TorchLensIOError as TorchLensIOError
