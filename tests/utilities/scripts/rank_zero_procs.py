"""Two real processes: what rank_zero_only and friends do on each. argv: STRATEGY OUT_DIR.

The parent imports weft.utilities (and reads the rank) before launching, so under ddp_fork the
children inherit the module as the parent left it."""

import json
import sys
import warnings
from pathlib import Path

from weft import Fabric
from weft.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

strategy, out = sys.argv[1], Path(sys.argv[2])
before_launch = rank_zero_only.rank


@rank_zero_only
def only_on_zero():
    return "ran"


def work(fabric):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank_zero_warn("a warning from rank zero")
    record = {
        "global_rank": fabric.global_rank,
        "rank_zero_only.rank": rank_zero_only.rank,
        "decorated": only_on_zero(),
        "default": rank_zero_only(lambda: "ran", default="skipped")(),
        "warnings": [str(w.message) for w in caught],
        "info": rank_zero_info("hello") is None,
        "before_launch": before_launch,
    }
    (out / f"rank{fabric.global_rank}.json").write_text(json.dumps(record))


fabric = Fabric(accelerator="cpu", devices=2, strategy=strategy)
if strategy == "ddp":
    fabric.launch()  # the whole script runs again in each process
    work(fabric)
else:
    fabric.launch(work)
