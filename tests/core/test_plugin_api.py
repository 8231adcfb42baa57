"""First-party plugins use weft only through the documented plugin API (weft.contract.PLUGIN_API).

The scan reads every ``plugins/*/weft_*/**/*.py`` with ``ast`` (nothing is imported from the
plugins) and fails on an import of a weft module outside the API, of a name the API does not
list, of a ``_private`` name, on ``from weft.x import *``, and on ``alias._private`` /
``alias.internal_module`` attribute uses of an imported weft module. The fixture snippets below
prove each rule catches what it should.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from weft.contract import PLUGIN_API, is_plugin_api

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_FILES = sorted(ROOT.glob("plugins/*/weft_*/**/*.py"))


def _is_weft(module: str) -> bool:
    return module == "weft" or module.startswith("weft.")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _module_of(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The weft module an expression names (``wdist``, ``weft.builtins``), or ``None``."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _module_of(node.value, aliases)
        if base is not None and _is_module(f"{base}.{node.attr}"):
            return f"{base}.{node.attr}"
    return None


def violations(source: str, filename: str = "<snippet>") -> list[str]:
    """Every use of weft outside the plugin API in ``source``, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the weft module it is bound to

    def bad(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _is_weft(alias.name):
                    continue
                if not is_plugin_api(alias.name):
                    bad(node, f"import {alias.name}: not a plugin API module")
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases["weft"] = "weft"  # `import weft.x` binds `weft`
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_weft(node.module):
            if not is_plugin_api(node.module):
                bad(node, f"from {node.module} import ...: not a plugin API module")
                continue
            for alias in node.names:
                if alias.name == "*":
                    bad(node, f"from {node.module} import *: import the names you use")
                elif not is_plugin_api(node.module, alias.name):
                    bad(node, f"from {node.module} import {alias.name}: not in the plugin API")
                elif _is_module(f"{node.module}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = _module_of(node.value, aliases)
            if base is None:
                continue
            target = f"{base}.{node.attr}"
            if _is_module(target):
                if not is_plugin_api(target):
                    bad(node, f"{target}: not a plugin API module")
            elif not is_plugin_api(base, node.attr):
                bad(node, f"{target}: not in the plugin API")
    return found


def test_the_scan_covers_every_first_party_plugin() -> None:
    packages = {path.relative_to(ROOT).parts[2] for path in PLUGIN_FILES}
    assert {"weft_ddp", "weft_fsdp", "weft_precision", "weft_accelerators", "weft_loggers"} <= packages


def test_first_party_plugins_use_only_the_plugin_api() -> None:
    problems = [p for path in PLUGIN_FILES for p in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "first-party plugins reach past the plugin API (weft.contract.PLUGIN_API):\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        # the import this task removed from weft_ddp: a private name of an internal module
        ("from weft.builtins.single_device import _skip_init\n", "weft.builtins.single_device"),
        ("import weft.builtins.cpu\n", "weft.builtins.cpu"),
        ("from weft.distributed import _require\n", "_require"),
        ("from weft.errors import *\n", "import *"),
        ("from weft import fabric\n", "fabric"),
        ("from weft.launch import run_command\n", "run_command"),
        ("from weft import distributed as wdist\nwdist._group\n", "weft.distributed._group"),
        ("import weft\nweft.builtins.single_device._skip_init()\n", "weft.builtins"),
        ("from weft.consolidate import _run\n", "_run"),
    ],
)
def test_the_scan_catches_uses_outside_the_api(snippet: str, expected: str) -> None:
    found = violations(snippet)
    assert found and expected in found[0], found


def test_the_scan_accepts_the_documented_api() -> None:
    snippet = (
        "import weft\nfrom weft import checkpoint, distributed as wdist\nfrom weft.hookspecs import hookimpl\n"
        "from weft.utilities.init import skip_init\nfrom weft.utilities.devices import parse_count\n"
        "from weft.utilities.rank_zero import rank_zero_only\nwdist.broadcast_tensor\nwdist.average_parameters\n"
        "checkpoint.atomic_torch_save\nweft.Fabric\n"
    )
    assert violations(snippet) == []


def test_every_plugin_api_module_is_documented() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("## Plugin API"):]
    missing = [module for module in PLUGIN_API if f"`{module}`" not in section]
    assert not missing, f"docs/api.md's Plugin API section does not list {missing}"


# ---------------------------------------------------------------------- the two new weft.distributed helpers

COLLECTIVES_SCRIPT = r'''
import json, os, sys
import torch
import torch.distributed as dist
from weft import Fabric
from weft import distributed as wdist
from weft.errors import ConfigurationError, MisuseValueError


def model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1, bias=False).double())


def is_mean_of_both(module):
    expected = [(a.detach() + b.detach()) / 2 for a, b in zip(model(0).parameters(), model(1).parameters())]
    return all(torch.allclose(p, e) for p, e in zip(module.parameters(), expected))


def broken_average(module):  # the bug the check must catch: a sum, not a mean
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(wdist.all_reduce(p, "sum"))


def broken_broadcast(tensor, src):  # the bug the check must catch: a view's copy is never written back
    buffer = tensor.contiguous()
    dist.broadcast(buffer, src=src)
    return tensor


def main(fabric):
    rank = fabric.global_rank
    out = {}
    m = model(rank)
    wdist.average_parameters(m, timeout=60)
    out["average_ok"] = is_mean_of_both(m)
    m = model(rank)
    broken_average(m)
    out["broken_average_detected"] = not is_mean_of_both(m)

    t = torch.full((2, 3), float(rank))
    out["broadcast_in_place"] = wdist.broadcast_tensor(t, src=1, timeout=60) is t and bool((t == 1).all())
    view = torch.full((3, 2), float(rank)).t()
    wdist.broadcast_tensor(view, src=0)
    out["broadcast_view"] = bool((view == 0).all())
    view = torch.full((3, 2), float(rank)).t()
    broken_broadcast(view, src=0)
    out["broken_broadcast_detected"] = not bool((view == 0).all())
    leaf = torch.nn.Parameter(torch.full((2,), float(rank)))
    wdist.broadcast_tensor(leaf, src=1)
    out["broadcast_leaf"] = bool((leaf == 1).all()) and leaf.requires_grad

    try:
        wdist.broadcast_tensor(torch.zeros(2 + rank), src=0, timeout=60)
        out["mismatch"] = "no error"
    except MisuseValueError as exc:
        out["mismatch"] = str(exc)
    try:
        wdist.broadcast_tensor(t, src=5)
        out["bad_src"] = "no error"
    except ConfigurationError as exc:
        out["bad_src"] = str(exc)
    wdist.barrier("end", timeout=60)
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    Fabric(accelerator="cpu", devices=2, strategy="ddp").launch(main)
'''


@pytest.fixture(scope="module")
def collectives_job(tmp_path_factory) -> list[dict]:
    import json
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("helpers")
    script = folder / "helpers.py"
    script.write_text(COLLECTIVES_SCRIPT)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("WEFT_CLI_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))}
    env["WEFT_COLLECTIVE_TIMEOUT"] = "60"
    try:
        proc = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=150, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the 2-rank job timed out after 150s\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_average_parameters_gives_the_mean_on_every_rank(collectives_job) -> None:
    for rank, out in enumerate(collectives_job):
        assert out["average_ok"], f"rank {rank}: parameters are not the mean of both ranks'"
        assert out["broken_average_detected"], f"rank {rank}: the check missed a sum posing as a mean"


@pytest.mark.slow
def test_broadcast_tensor_overwrites_in_place(collectives_job) -> None:
    for rank, out in enumerate(collectives_job):
        assert out["broadcast_in_place"] and out["broadcast_view"] and out["broadcast_leaf"], (rank, out)
    # Rank 1 receives (rank 0 sends): there a view left unwritten shows.
    assert collectives_job[1]["broken_broadcast_detected"], "rank 1: the check missed a view left unwritten"


@pytest.mark.slow
def test_broadcast_tensor_refuses_mismatched_calls(collectives_job) -> None:
    for out in collectives_job:
        assert "rank 0 passes float32 (2,)" in out["mismatch"] and "rank 1 passes float32 (3,)" in out["mismatch"], out["mismatch"]
        assert "src=5" in out["bad_src"] and "world of 2" in out["bad_src"], out["bad_src"]
