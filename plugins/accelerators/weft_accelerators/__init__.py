"""weft's GPU accelerators: ``cuda`` (alias ``gpu``) and ``mps``.

``accelerator="auto"`` picks, among the available accelerators, the one with the
highest priority: ``cuda`` 20, ``mps`` 10, ``cpu`` 0. Nothing here touches a GPU
at import time, and availability is asked in a way that does not initialise CUDA
in the launching process.
"""

from __future__ import annotations

__version__ = "0.1.0"

CUDA_PRIORITY = 20
MPS_PRIORITY = 10
