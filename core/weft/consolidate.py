"""``weft consolidate``: turn a sharded checkpoint folder into one file. (Filled by the FSDP work.)"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("consolidate", help="turn a sharded checkpoint folder into one torch.save file")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("weft consolidate is not implemented yet")))
