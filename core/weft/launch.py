"""Starting processes: ``weft run`` and the elastic launcher behind ``fabric.launch()``. (Filled by the DDP work.)"""

from __future__ import annotations

import argparse


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a training script on several processes / nodes")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("weft run is not implemented yet")))
