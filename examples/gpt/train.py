"""Train a small character-level GPT with weft.

    python examples/gpt/train.py                       # 2 processes, DDP, float32, on the CPU
    python examples/gpt/train.py --strategy fsdp       # the same loop, parameters sharded
    python examples/gpt/train.py --precision bf16-mixed
    python examples/gpt/train.py --accelerator cuda    # unchanged on a GPU machine
    python examples/gpt/train.py --resume              # continue from the last checkpoint

The training loop is plain PyTorch; weft appears only in ``Fabric(...)``,
``launch``, ``setup``/``setup_dataloaders``, ``backward``, ``save``/``load`` and the logging
(``fabric.log_dict`` and ``weft.utilities.ThroughputMonitor``).
Outputs go to ``--out-dir``: the checkpoint, its config (JSON), the metrics (CSV under
``logs/``, and TensorBoard event files there when the weft-loggers plugin is installed) and
``loss.png``, drawn from the CSV logs of the run and of the runs it resumed.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # model.py and data.py sit next to this file

from data import DEFAULT_TEXT, CharVocab, CharWindows, load_text, split  # noqa: E402
from model import GPT, GPTConfig, num_parameters  # noqa: E402

from weft import Fabric  # noqa: E402
from weft.loggers import CSVLogger  # noqa: E402
from weft.utilities import ThroughputMonitor, measure_flops  # noqa: E402

CHECKPOINT = "gpt.ckpt"
META = "gpt.json"
PLOT = "loss.png"
LOGS = "logs"  # under --out-dir: logs/csv/version_N/metrics.csv (and logs/tensorboard/version_N), one version per run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run = p.add_argument_group("where and how to run")
    run.add_argument("--accelerator", default="auto", help="cpu, cuda, mps or auto")
    run.add_argument("--devices", default="2", help="processes (devices) to train on")
    run.add_argument("--strategy", default=None, help="ddp or fsdp (default: ddp, or single_device for --devices 1)")
    run.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed, ...")
    train = p.add_argument_group("training")
    train.add_argument("--steps", type=int, default=600, help="optimizer steps to run (more steps after --resume)")
    train.add_argument("--batch-size", type=int, default=16, help="sequences per process per step")
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--warmup", type=int, default=30, help="steps of linear learning-rate warmup")
    train.add_argument("--seed", type=int, default=1234)
    train.add_argument("--log-every", type=int, default=25, help="steps between loss and throughput reports")
    train.add_argument("--eval-batches", type=int, default=8, help="validation batches per process at the end")
    model = p.add_argument_group("model (ignored with --resume: the checkpoint's sizes are used)")
    model.add_argument("--block-size", type=int, default=128)
    model.add_argument("--n-layer", type=int, default=4)
    model.add_argument("--n-head", type=int, default=4)
    model.add_argument("--n-embd", type=int, default=128)
    model.add_argument("--dropout", type=float, default=0.1)
    io = p.add_argument_group("files")
    io.add_argument("--data", default=str(DEFAULT_TEXT), help="a UTF-8 text file")
    io.add_argument("--out-dir", default="out/gpt", help="checkpoint, config and loss plot go here")
    io.add_argument("--resume", action="store_true", help=f"continue from OUT_DIR/{CHECKPOINT} at its saved step")
    io.add_argument("--sample-chars", type=int, default=300, help="characters to sample after training (0: none)")
    io.add_argument("--no-progress", action="store_true", help="no progress bar (loss lines only)")
    args = p.parse_args(argv)
    args.devices = int(args.devices) if args.devices.lstrip("-").isdigit() else args.devices
    if args.strategy is None:
        args.strategy = "single_device" if args.devices == 1 else "ddp"
    return args


def make_loggers(out_dir: Path) -> list:
    """CSV always (the plot is drawn from it); TensorBoard too when the weft-loggers plugin is installed."""
    loggers = [CSVLogger(root_dir=out_dir / LOGS, name="csv")]
    try:
        from weft_loggers import TensorBoardLogger
    except ImportError:
        return loggers
    return loggers + [TensorBoardLogger(root_dir=out_dir / LOGS, name="tensorboard")]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    fabric = Fabric(
        accelerator=args.accelerator, strategy=args.strategy, devices=args.devices, precision=args.precision,
        loggers=make_loggers(out_dir),
    )
    fabric.launch()  # with devices > 1 this starts the other processes; each runs the rest of this script
    if fabric.device.type == "cpu":
        # Processes on one machine share its cores: give each its part instead of letting all oversubscribe.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, fabric.num_devices)))
    fabric.seed_everything(args.seed)
    checkpoint_path = out_dir / CHECKPOINT

    text = load_text(args.data)
    if args.resume:
        meta = _read_meta(out_dir)
        config, vocab = GPTConfig(**meta["config"]), CharVocab(meta["vocab"])
    else:
        vocab = CharVocab.from_text(text)
        config = GPTConfig(vocab_size=len(vocab), block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout)
    train_ids, val_ids = split(vocab.encode(text))

    # A window every half block, shifted at random each epoch; shuffled; each process gets its share.
    train_windows = CharWindows(train_ids, config.block_size, config.block_size // 2, jitter=True)
    train_loader = DataLoader(train_windows, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(CharWindows(val_ids, config.block_size, config.block_size), batch_size=args.batch_size)
    train_loader, val_loader = fabric.setup_dataloaders(train_loader, val_loader)

    with fabric.init_module():
        model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    n_params = num_parameters(model)
    flops_per_step = _flops_per_step(model, args.batch_size, config.block_size)
    model, optimizer = fabric.setup(model, optimizer)

    # `runs` lists the CSV log of each run that led to this checkpoint: the loss plot joins them.
    state = {"model": model, "optimizer": optimizer, "loader": train_loader, "step": 0, "runs": []}
    if args.resume:
        fabric.load(checkpoint_path, state)
        fabric.print(f"resumed from {checkpoint_path} at step {state['step']}")
    start, end = state["step"], state["step"] + args.steps
    csv_logger = fabric.logger
    # Rank 0 writes the logs; every process records its folder (each would pick the next free version itself).
    state["runs"].append({"log_dir": fabric.broadcast(os.path.relpath(csv_logger.log_dir, out_dir)), "start": start})
    csv_logger.log_hyperparams({**vars(args), **config.to_dict(), "world_size": fabric.world_size})
    tokens_per_step = args.batch_size * config.block_size * fabric.world_size
    fabric.print(
        f"{fabric!r}\nmodel: {n_params / 1e6:.2f}M parameters, {config.n_layer} layers, context {config.block_size}, "
        f"vocabulary {config.vocab_size} | {len(text) / 1e3:.0f} kB of text | {tokens_per_step} tokens/step"
    )

    progress = _progress(fabric, start, end, disable=args.no_progress)
    batches = iter(train_loader)
    model.train()
    window_loss = torch.zeros((), device=fabric.device)
    window_steps = 0
    # Rates over the last report interval: updated at each report (window_size=2: this one and the one before).
    throughput = ThroughputMonitor(fabric, window_size=2)
    t0 = time.perf_counter()
    throughput.update(time=0.0, batches=0, samples=0, lengths=0, flops=0)
    tokens_per_second, mean_loss = 0.0, float("nan")
    for step in range(start, end):
        lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        for group in optimizer.param_groups:
            group["lr"] = lr
        try:
            inputs, targets = next(batches)
        except StopIteration:  # an epoch is over: the next pass reshuffles
            batches = iter(train_loader)
            inputs, targets = next(batches)
        _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(loss)
        # With 16-mixed an overflow step has an infinite norm: the scaler skips that step, so don't raise.
        fabric.clip_gradients(model, optimizer, max_norm=1.0, error_if_nonfinite=False)
        optimizer.step()
        state["step"] = step + 1
        window_loss += loss.detach()
        window_steps += 1

        if window_steps == args.log_every or step + 1 == end:
            mean_loss = fabric.all_reduce(window_loss / window_steps, reduce_op="mean").item()  # waits for the device
            done = step + 1 - start
            # Totals on this device since the start of this run; FLOPs since the previous update.
            throughput.update(
                time=time.perf_counter() - t0, batches=done, samples=done * args.batch_size,
                lengths=done * args.batch_size * config.block_size, flops=window_steps * flops_per_step,
            )
            fabric.log_dict({"train_loss": mean_loss, "lr": lr}, step=step + 1)
            metrics = throughput.compute_and_log(step=step + 1)  # {} except on global rank 0
            # All processes' tokens/s (one process: the device's own, the same number).
            tokens_per_second = metrics.get("items_per_sec", metrics.get("device/items_per_sec", tokens_per_second))
            mfu = f" | MFU {metrics['device/mfu']:.1%}" if "device/mfu" in metrics else ""
            if progress is not None:
                progress.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{tokens_per_second:,.0f}")
            _log(fabric, progress, f"step {step + 1:5d} | loss {mean_loss:.4f} | {tokens_per_second:,.0f} tokens/s{mfu}")
            window_loss.zero_()
            window_steps = 0
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()

    val_loss = evaluate(fabric, model, val_loader, args.eval_batches)
    fabric.log_dict({"val_loss": val_loss}, step=state["step"])
    fabric.print(f"validation loss {val_loss:.4f} (perplexity {math.exp(val_loss):.2f}) at step {state['step']}")

    out_dir.mkdir(parents=True, exist_ok=True)
    fabric.save(checkpoint_path, state)  # every process calls it; the strategy decides who writes what
    if fabric.is_global_zero:
        _write_meta(out_dir, config, vocab)
        for logger in fabric.loggers:
            logger.save()  # write what the loggers buffered: the plot reads the CSV
        plot = _plot(_read_logs(out_dir, state["runs"]), out_dir / PLOT)
        print(f"saved checkpoint {checkpoint_path} (step {state['step']}), metrics in {csv_logger.log_dir} and loss curve {plot}")

    if args.sample_chars > 0:
        sample = generate(fabric, model, vocab, prompt="\n", new_chars=args.sample_chars, seed=args.seed)
        fabric.print("---- sample ----\n" + sample.strip() + "\n----------------")
    if fabric.is_global_zero:  # the only process with the throughput
        print(f"done: {state['step']} steps, final train loss {mean_loss:.4f}, {tokens_per_second:,.0f} tokens/s")


def _flops_per_step(model: GPT, batch_size: int, block_size: int) -> int:
    """FLOPs of one training step (forward, loss, backward) on one device, counted on a copy of
    the model on the "meta" device: shapes only, no memory, no computation."""
    meta_model = copy.deepcopy(model).to("meta")
    inputs = torch.zeros(batch_size, block_size, dtype=torch.long, device="meta")
    return measure_flops(meta_model, lambda: meta_model(inputs, inputs)[1], loss_fn=lambda loss: loss)


@torch.no_grad()
def evaluate(fabric: Fabric, model, loader, max_batches: int) -> float:
    """Mean validation loss over the first ``max_batches`` batches of every process."""
    model.eval()
    total = torch.zeros((), device=fabric.device)
    count = 0
    for inputs, targets in loader:
        if count == max_batches:
            break
        total += model(inputs, targets)[1].float()
        count += 1
    model.train()
    return fabric.all_reduce(total / max(count, 1), reduce_op="mean").item()


@torch.no_grad()
def generate(fabric: Fabric, model, vocab: CharVocab, prompt: str, new_chars: int, seed: int, temperature: float = 0.8, top_k: int = 10) -> str:
    """Sample text. Every process runs the same forwards (a sharded model needs all of them);
    one shared seed keeps them in step, and rank 0 prints the result."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    block_size = model.config.block_size
    idx = vocab.encode(prompt).unsqueeze(0).to(fabric.device)
    for _ in range(new_chars):
        logits, _ = model(idx[:, -block_size:])
        logits = logits[0, -1].float().cpu() / temperature
        threshold = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        probs = torch.softmax(logits.masked_fill(logits < threshold, float("-inf")), dim=-1)
        next_id = torch.multinomial(probs, 1, generator=generator)
        idx = torch.cat([idx, next_id.to(idx.device).view(1, 1)], dim=1)
    model.train()
    return vocab.decode(idx[0].tolist())


def _progress(fabric: Fabric, start: int, end: int, disable: bool):
    """A tqdm bar on global rank 0; ``None`` elsewhere (or when disabled)."""
    if disable or not fabric.is_global_zero:
        return None
    from tqdm import tqdm

    return tqdm(total=end, initial=start, desc="training", unit="step", dynamic_ncols=True, file=sys.stdout)


def _log(fabric: Fabric, progress, line: str) -> None:
    if progress is not None:
        progress.write(line, file=sys.stdout)
    else:
        fabric.print(line, flush=True)


def _write_meta(out_dir: Path, config: GPTConfig, vocab: CharVocab) -> None:
    tmp = out_dir / (META + ".tmp")
    tmp.write_text(json.dumps({"config": config.to_dict(), "vocab": vocab.chars}, indent=1), encoding="utf-8")
    os.replace(tmp, out_dir / META)


def _read_meta(out_dir: Path) -> dict:
    path = out_dir / META
    if not path.exists() or not (out_dir / CHECKPOINT).exists():
        raise SystemExit(f"--resume: no checkpoint in {out_dir} (run once without --resume first, or pass --out-dir)")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_logs(out_dir: Path, runs: list[dict]) -> dict:
    """The curves in the CSV logs of ``runs`` (oldest first): train and validation loss by step,
    and the steps where a run resumed. A later run's rows replace an earlier one's at the same step."""
    train, val = {}, {}
    for run in runs:
        with open(out_dir / run["log_dir"] / "metrics.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                step = int(row["step"])
                if row.get("train_loss"):
                    train[step] = float(row["train_loss"])
                if row.get("val_loss"):
                    val[step] = float(row["val_loss"])
    return {
        "step": sorted(train), "loss": [train[s] for s in sorted(train)],
        "val_step": sorted(val), "val_loss": [val[s] for s in sorted(val)],
        "resumed_at": [run["start"] for run in runs[1:]],
    }


def _plot(history: dict, path: Path) -> Path:
    """Draw training (and validation) loss against the step; mark where runs resumed."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(history["step"], history["loss"], label="train loss (mean over processes)")
    if history["val_step"]:
        ax.plot(history["val_step"], history["val_loss"], "o", label="validation loss")
    for i, step in enumerate(history["resumed_at"]):
        ax.axvline(step, color="grey", linestyle="--", linewidth=1, label="resumed" if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title("char-level GPT trained with weft")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    main()
