"""One CUDA device, bf16-mixed: a training step of the demo GPT through weft vs a raw
``torch.autocast`` loop, taking turns; reports tokens/s. Exits with a "skipped" result
when CUDA is not available."""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from bench.common import alternate, emit, median, spread

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "gpt"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="steps per repetition")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        emit({"skipped": "CUDA is not available"})
        return
    from model import GPT, GPTConfig

    from weft import Fabric

    config = GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)
    torch.manual_seed(0)
    base = GPT(config)
    device = torch.device("cuda", 0)
    data = torch.randint(0, config.vocab_size, (args.steps, args.batch_size, config.block_size + 1), device=device)
    tokens = args.steps * args.batch_size * config.block_size

    raw = copy.deepcopy(base).to(device)
    raw_opt = torch.optim.AdamW(raw.parameters(), lr=3e-4)

    fabric = Fabric(accelerator="cuda", devices=1, precision="bf16-mixed")
    model = copy.deepcopy(base)
    model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=3e-4))

    def timed_cuda(body) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        body()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000

    def raw_steps() -> None:
        for batch in data:
            raw_opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                _, loss = raw(batch[:, :-1], batch[:, 1:])
            loss.backward()
            raw_opt.step()

    def weft_steps() -> None:
        for batch in data:
            optimizer.zero_grad(set_to_none=True)
            _, loss = model(batch[:, :-1], batch[:, 1:])
            fabric.backward(loss)
            optimizer.step()

    samples = alternate({"torch": lambda: timed_cuda(raw_steps), "weft": lambda: timed_cuda(weft_steps)}, reps=args.reps, warmup=2)
    emit(
        {
            "device": torch.cuda.get_device_name(0),
            "per_step_s": {k: median(v) / args.steps for k, v in samples.items()},
            "tokens_per_s": {k: tokens / median(v) for k, v in samples.items()},
            "spread": {k: spread(v) for k, v in samples.items()},
            "reps": args.reps,
        }
    )


if __name__ == "__main__":
    main()
