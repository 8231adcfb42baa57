"""DDP with one CUDA device, once per precision given: prints one RESULT line per precision."""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "precision", "scripts"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from seed_loop import seed_loop  # noqa: E402

from weft import Fabric  # noqa: E402

for precision in sys.argv[1:]:
    fabric = Fabric(accelerator="cuda", devices=1, strategy="ddp", precision=precision)
    fabric.launch()
    model, optimizer, losses = seed_loop(fabric, epochs=3, max_norm=5.0)
    print(
        "RESULT "
        + json.dumps(
            {
                "precision": fabric.precision_name,
                "backend": dist.get_backend(),
                "world_size": dist.get_world_size(),
                "device": str(next(model.parameters()).device),
                "current_device": torch.cuda.current_device(),
                "losses": losses,
            }
        ),
        flush=True,
    )
