"""Benchmark weft against raw PyTorch, and against Lightning Fabric / Accelerate when installed.

    python -m bench                      # everything, about 5 minutes on 2 cores
    python -m bench --only step,ddp      # some sections
    python -m bench --quick              # few repetitions: a smoke run, not a measurement

Each section runs in fresh processes; within a section the variants take turns
(alternating repetitions, rotating order) and the table shows medians. Ratios are
weft / baseline for times (lower is better) and weft / baseline for throughputs
(higher is better). Training steps are compared by the CPU time each process spends
(steady on a machine shared with other work, where wall-clock time is mostly noise);
the wall-clock ratio is in the note column. The table is printed and written, with the raw numbers, to
``--out`` (default ``bench/out/``): ``report.md``, ``results.json`` and ``report.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ANCHORS, alternate, installed_anchors, median, parse, spread  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("imports", "step", "ddp", "fsdp", "checkpoint", "gpu")

# (full reps, quick reps) per section
REPS = {"imports": (8, 2), "step": (40, 3), "ddp": (15, 2), "fsdp": (12, 2), "checkpoint": (7, 2), "gpu": (10, 2)}

TARGETS = {
    "import": ("<=", 1.05),
    "step": ("<=", 1.03),
    "ddp": ("<=", 1.02),
    "fsdp": ("<=", 1.03),
    "fsdp_memory": ("<=", 1.05),
    "checkpoint": (">=", 0.9),
}


class Row(dict):
    """One line of the table."""


def row(section: str, what: str, weft: str, baseline: str, ratio: float | None, target: str | None = None, note: str = "") -> Row:
    ok = None
    if target is not None and ratio is not None:
        op, bound = TARGETS[target]
        ok = ratio <= bound if op == "<=" else ratio >= bound
        target = f"{op} {bound:g}x"
    return Row(section=section, what=what, weft=weft, baseline=baseline, ratio=ratio, target=target or "", ok=ok, note=note)


# ---------------------------------------------------------------------- running workers


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_CLI_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "TORCHELASTIC"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_worker(module: str, args: list[str], processes: int = 1, timeout: float = 300) -> dict[str, Any]:
    """Run ``python -m bench.workers.<module>`` (under torchrun for several processes); its result."""
    if processes > 1:
        command = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
            "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", f"bench.workers.{module}", *args,
        ]
    else:
        command = [sys.executable, "-m", f"bench.workers.{module}", *args]
    try:
        proc = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    result = parse(proc.stdout)
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        return {"error": f"exit {proc.returncode}", "output": tail}
    return result


# ---------------------------------------------------------------------- sections


IMPORTS = {
    "torch": "import torch",
    "weft": "import weft",
    "weft Fabric": "from weft import Fabric",
    "lightning": "from lightning.fabric import Fabric",
    "accelerate": "from accelerate import Accelerator",
}


def bench_imports(reps: int) -> tuple[list[Row], dict]:
    """Whole-process time of ``python -c '<import>'`` (interpreter start included, as users pay it)."""
    anchors = installed_anchors()
    statements = {k: v for k, v in IMPORTS.items() if k not in ANCHORS or k in anchors}
    env = _env()

    def one(statement: str):
        def run() -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], env=env, check=True, capture_output=True)
            return time.perf_counter() - start

        return run

    samples = alternate({k: one(v) for k, v in statements.items()}, reps=reps, warmup=1)
    seconds = {k: median(v) for k, v in samples.items()}
    torch_s = seconds["torch"]
    rows = [
        row("import", "`from weft import Fabric` vs `import torch`", _ms(seconds["weft Fabric"]), _ms(torch_s), seconds["weft Fabric"] / torch_s, "import"),
        row("import", "`import weft` (no torch) vs `import torch`", _ms(seconds["weft"]), _ms(torch_s), seconds["weft"] / torch_s, None, "import weft is lazy"),
    ]
    for name in anchors:
        rows.append(row("import", f"`{IMPORTS[name]}` vs `import torch` (anchor)", _ms(seconds[name]), _ms(torch_s), seconds[name] / torch_s))
    return rows, {"seconds": seconds, "spread": {k: spread(v) for k, v in samples.items()}}


def bench_step(reps: int) -> tuple[list[Row], dict]:
    result = run_worker("step", ["--reps", str(reps)])
    if "error" in result:
        return [row("step", "tiny MLP step, 1 process", "error", "", None, note=result["error"])], result
    t, wall = result["cpu_per_step_s"], result["per_step_s"]
    rows = [row("step", "tiny MLP step, 1 process: weft vs torch", _us(t["weft"]), _us(t["torch"]), t["weft"] / t["torch"], "step", _wall(wall, "weft"))]
    for name in ANCHORS:
        if name in t:
            rows.append(row("step", f"tiny MLP step: {name} vs torch (anchor)", _us(t[name]), _us(t["torch"]), t[name] / t["torch"], None, _wall(wall, name)))
        elif name in result.get("errors", {}):
            rows.append(row("step", f"tiny MLP step: {name} (anchor)", "error", "", None, note=result["errors"][name][:80]))
    return rows, result


def bench_ddp(reps: int) -> tuple[list[Row], dict]:
    result = run_worker("ddp", ["--reps", str(reps)], processes=2)
    if "error" in result:
        return [row("ddp", "DDP step, 2 processes", "error", "", None, note=result["error"])], result
    t, wall = result["cpu_per_step_s"], result["per_step_s"]
    same = "losses identical to torch" if result["loss_identical"]["weft"] else f"LOSS MISMATCH (max {result['loss_max_abs_diff']['weft']:.2e})"
    rows = [row("ddp", "DDP step, 2 processes: weft vs torch DDP", _ms(t["weft"]), _ms(t["torch"]), t["weft"] / t["torch"], "ddp", f"{same}; {_wall(wall, 'weft')}")]
    if "lightning" in t:
        same = "losses identical" if result["loss_identical"]["lightning"] else "loss mismatch"
        rows.append(row("ddp", "DDP step: lightning vs torch DDP (anchor)", _ms(t["lightning"]), _ms(t["torch"]), t["lightning"] / t["torch"], None, f"{same}; {_wall(wall, 'lightning')}"))
    r = result.get("all_reduce_s")
    if r:
        note = "weft checks every rank passes the same call first (WEFT_CHECK_COLLECTIVES=0 skips it)"
        rows.append(row("ddp", "fabric.all_reduce of a scalar: weft vs torch", _us(r["weft"]), _us(r["torch"]), r["weft"] / r["torch"], None, note))
        if "lightning" in r:
            rows.append(row("ddp", "fabric.all_reduce of a scalar: lightning vs torch (anchor)", _us(r["lightning"]), _us(r["torch"]), r["lightning"] / r["torch"], None, ""))
    for name, error in result.get("errors", {}).items():
        rows.append(row("ddp", f"DDP step: {name} (anchor)", "error", "", None, note=error[:80]))
    return rows, result


def bench_fsdp(reps: int) -> tuple[list[Row], dict]:
    result = run_worker("fsdp", ["--reps", str(reps)], processes=2)
    if "error" in result:
        return [row("fsdp", "FSDP step, 2 processes", "error", "", None, note=result["error"])], result
    t, wall = result["cpu_per_step_s"], result["per_step_s"]
    diff = result["loss_max_abs_diff"]["weft"]
    same = "losses identical to torch" if diff == 0 else f"loss max diff {diff:.2e}"
    half = sum(result["memory_total"].values()) / result["world_size"]
    held = {name: max(sum(rank[name].values()) for rank in result["memory_per_rank"]) for name in ("weft", "torch")}
    return [
        row("fsdp", "FSDP step, 2 processes: weft vs torch fully_shard", _ms(t["weft"]), _ms(t["torch"]), t["weft"] / t["torch"], "fsdp", f"{same}; {_wall(wall, 'weft')}"),
        row("fsdp", "per-rank param+grad+optimizer bytes vs total/2", _mb(held["weft"]), _mb(half), held["weft"] / half, "fsdp_memory", f"raw fully_shard: {held['torch'] / half:.3f}x"),
    ], result


def bench_checkpoint(reps: int) -> tuple[list[Row], dict]:
    result = run_worker("checkpoint", ["--reps", str(reps)])
    if "error" in result:
        return [row("checkpoint", "save/load", "error", "", None, note=result["error"])], result
    save, load = result["save_MBps"], result["load_MBps"]
    size = f"{result['state_bytes'] / 1e6:.0f} MB of state"
    return [
        row("checkpoint", "save throughput: fabric.save vs torch.save", _rate(save["weft"]), _rate(save["torch"]), save["weft"] / save["torch"], "checkpoint",
            f"{size}; vs torch.save+fsync: {save['weft'] / save['torch+fsync']:.2f}x"),
        row("checkpoint", "load throughput: fabric.load vs torch.load+load_state_dict", _rate(load["weft"]), _rate(load["torch"]), load["weft"] / load["torch"], "checkpoint", size),
    ], result


def bench_gpu(reps: int) -> tuple[list[Row], dict]:
    result = run_worker("gpu", ["--reps", str(reps)])
    if "skipped" in result:
        return [row("gpu", "bf16-mixed demo-GPT step (CUDA)", "skipped", "", None, note=result["skipped"])], result
    if "error" in result:
        return [row("gpu", "bf16-mixed demo-GPT step (CUDA)", "error", "", None, note=result["error"])], result
    t, tps = result["per_step_s"], result["tokens_per_s"]
    return [
        row("gpu", "bf16-mixed GPT step: weft vs torch autocast", _ms(t["weft"]), _ms(t["torch"]), t["weft"] / t["torch"], "step",
            f"{tps['weft']:,.0f} vs {tps['torch']:,.0f} tokens/s on {result['device']}"),
    ], result


BENCHES = {"imports": bench_imports, "step": bench_step, "ddp": bench_ddp, "fsdp": bench_fsdp, "checkpoint": bench_checkpoint, "gpu": bench_gpu}


# ---------------------------------------------------------------------- formatting


def _wall(wall: dict[str, float], name: str) -> str:
    return f"wall-clock ratio {wall[name] / wall['torch']:.3f}x"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def _mb(size: float) -> str:
    return f"{size / 1e6:.2f} MB"


def _rate(mbps: float) -> str:
    return f"{mbps:,.0f} MB/s"


def _status(r: Row) -> str:
    return "" if r["ok"] is None else ("ok" if r["ok"] else "MISSED")


COLUMNS = (("what", "measurement"), ("weft", "weft / subject"), ("baseline", "baseline"), ("ratio", "ratio"), ("target", "target"), ("status", ""), ("note", "note"))


def _cells(r: Row) -> list[str]:
    return [r["what"], r["weft"], r["baseline"], "" if r["ratio"] is None else f"{r['ratio']:.3f}x", r["target"], _status(r), r["note"]]


def text_table(rows: list[Row]) -> str:
    lines = [[title for _, title in COLUMNS]] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(title or "status" for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import torch

    import weft

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "weft": weft.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    for name in ("lightning", "accelerate"):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    return info


def write_report(out: Path, rows: list[Row], raw: dict, env: dict, elapsed: float, quick: bool, png: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    anchors = [f"{n} {env[n]}" for n in ANCHORS if env.get(n)] or ["none installed (pip install -r bench/requirements.txt)"]
    missed = [r for r in rows if r["ok"] is False]
    md = [
        "# weft benchmark report",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M')}, {elapsed:.0f} s{' (--quick: too few repetitions to trust)' if quick else ''}",
        f"- Python {env['python']}, torch {env['torch']}, weft {env['weft']}, {env['cpus']} CPUs, GPU: {env['cuda'] or 'none'}",
        f"- anchors: {', '.join(anchors)}",
        f"- load average at start: {env.get('load_average_at_start')}",
        "",
        "Medians of alternating repetitions. Time ratios: lower is better; throughput ratios: higher is better.",
        "Training steps compare the CPU time per step of each process (the wall-clock ratio is in the note):",
        "on a busy machine wall-clock time mostly measures the other work. Imports and checkpoints are wall-clock.",
        "",
        markdown_table(rows),
        "",
        f"Targets missed: {', '.join(r['what'] for r in missed) if missed else 'none'}.",
        "",
        "Raw numbers: `results.json`.",
    ]
    written = [out / "report.md", out / "results.json"]
    written[0].write_text("\n".join(md) + "\n", encoding="utf-8")
    written[1].write_text(json.dumps({"environment": env, "rows": rows, "raw": raw, "elapsed_s": elapsed}, indent=1), encoding="utf-8")
    if png:
        path = _plot(out / "report.png", rows)
        if path is not None:
            written.append(path)
    return written


def _plot(path: Path, rows: list[Row]) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["ratio"] is not None]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.2), dpi=110)
    labels = [r["what"].replace("`", "") for r in shown]
    colors = ["tab:green" if r["ok"] else "tab:red" if r["ok"] is False else "tab:gray" for r in shown]
    ax.barh(range(len(shown)), [r["ratio"] for r in shown], color=colors)
    for i, r in enumerate(shown):
        if r["target"]:
            ax.plot([float(r["target"].split()[1].rstrip("x"))] * 2, [i - 0.4, i + 0.4], color="black", linewidth=1.5)
    ax.axvline(1.0, color="black", linewidth=0.5)
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio to baseline (black ticks: targets; green met, red missed, grey: reference)")
    ax.set_title("weft vs baselines")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="few repetitions (checks the bench runs; figures are noise)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"), help="folder for report.md, results.json, report.png")
    parser.add_argument("--no-png", action="store_true")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")

    env = environment()
    print(f"weft {env['weft']} | torch {env['torch']} | {env['cpus']} CPUs | anchors: {', '.join(installed_anchors()) or 'none'}", flush=True)
    started = time.perf_counter()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for section in chosen:
        reps = REPS[section][1 if args.quick else 0]
        t0 = time.perf_counter()
        print(f"[{section}] {reps} repetitions ...", end=" ", flush=True)
        section_rows, raw[section] = BENCHES[section](reps)
        rows += section_rows
        print(f"{time.perf_counter() - t0:.0f} s", flush=True)
    elapsed = time.perf_counter() - started
    print()
    print(text_table(rows))
    written = write_report(Path(args.out), rows, raw, env, elapsed, args.quick, not args.no_png)
    print(f"\n{elapsed:.0f} s in all; wrote {', '.join(str(p) for p in written)}")
    errors = [r for r in rows if r["weft"] == "error"]
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
