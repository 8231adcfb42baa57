"""fabric.launch(fn) with a strategy given on the command line; collectives inside the function.
Prints rank 0's return value as one JSON line."""

import json
import sys

import torch

from weft import Fabric


def work(fabric, offset):
    rank = fabric.global_rank
    x = torch.tensor([rank + 1.0, 10.0 * rank])
    # all_reduce reduces in place (as Lightning's): each reduction gets its own copy of x
    out = {name: fabric.all_reduce(x.clone(), reduce_op=name).tolist() for name in ("sum", "mean", "max", "min")}
    out["gather"] = fabric.all_gather(torch.tensor(rank)).tolist()
    out["broadcast"] = fabric.broadcast({"from": rank, "offset": offset}, src=1)
    fabric.barrier("end")
    out["rank"] = rank
    out["world_size"] = fabric.world_size
    return out


if __name__ == "__main__":
    fabric = Fabric(accelerator="cpu", devices=2, strategy=sys.argv[1])
    result = fabric.launch(work, 5)
    # One write per line: ranks share the pipe, and print() writes the text and its newline apart.
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
