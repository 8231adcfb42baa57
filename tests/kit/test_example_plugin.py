"""The worked third-party plugin, weft-compressed-ddp, with core only (no first-party weft-ddp).

``WEFT_PLUGINS=weft-compressed-ddp`` is weft's own allowlist of plugin distributions: with it,
the registry sees core's built-ins and the example plugin, as in an environment where only
those two are installed.
"""

from __future__ import annotations

import ast
import json
import re
import sys

import pytest

from kit_helpers import EXAMPLE, SCRIPTS, assert_kit_passed, clean_env, run, run_kit

ONLY_EXAMPLE = {"WEFT_PLUGINS": "weft-compressed-ddp"}
PUBLIC_CORE = {"weft", "weft.hookspecs", "weft.records", "weft.checkpoint", "weft.distributed", "weft.launch", "weft.errors"}


def _installed() -> bool:
    from weft import registry

    return "compressed_ddp" in registry.names("strategies")


pytestmark = pytest.mark.skipif(not _installed(), reason="pip install -c constraints.txt -e examples/plugins/weft-compressed-ddp")


def test_uses_only_public_core_modules() -> None:
    for path in sorted((EXAMPLE / "weft_compressed_ddp").glob("*.py")) + [EXAMPLE / "train.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "weft":
                assert node.module in PUBLIC_CORE, f"{path.name} imports {node.module}"
                if node.module == "weft":
                    for alias in node.names:
                        assert alias.name in {"Fabric", "hookimpl", "checkpoint", "distributed", "launch", "errors", "hookspecs", "records"}, alias.name
                assert not any(a.name.startswith("_") for a in node.names), f"{path.name} imports a private name from {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in ("weft", "weft_ddp", "weft_fsdp"):
                        assert alias.name in PUBLIC_CORE, f"{path.name} imports {alias.name}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("distributed", "launch", "checkpoint"):
                assert not node.attr.startswith("_"), f"{path.name} uses the private weft.{node.value.id}.{node.attr}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_passes_the_kit_without_first_party_ddp(tmp_path) -> None:
    # Gradients travel in bf16: about 0.4 % off the float32 mean, so it passes a tolerance of 1 %.
    proc = run_kit("compressed_ddp", "--weft-rtol=0.01", "-vv", env=clean_env(**ONLY_EXAMPLE), cwd=tmp_path, timeout=280)
    # It leaves weft_strategy_module_init_context to Fabric's fallback: the empty_init check is skipped.
    assert_kit_passed(proc, {"test_periodic_sync_makes_parameters_agree", "test_init_module_honours_empty_init"})


def test_weft_plugins_lists_it_with_distribution_and_version() -> None:
    proc = run([sys.executable, "-m", "weft.cli", "plugins", "--json", "--check"], timeout=60, env=clean_env(**ONLY_EXAMPLE))
    assert proc.returncode == 0, proc.stdout
    rows = json.loads(proc.stdout)
    mine = {r["name"]: r for r in rows if r["distribution"] == "weft-compressed-ddp"}
    assert set(mine) == {"compressed_ddp", "compressed_ddp_fp16"}, rows
    assert all(r["version"] == "0.1.0" and r["status"] == "loadable" and r["kind"] == "strategies" for r in mine.values()), mine
    assert not any(r["distribution"] == "weft-ddp" for r in rows), "the allowlist should hide first-party weft-ddp"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_weft_run_trains_the_seed_loop() -> None:
    command = [sys.executable, "-m", "weft.cli", "run", "--strategy", "compressed_ddp", "--devices", "2", str(EXAMPLE / "train.py")]
    proc = run(command, timeout=110, env=clean_env(**ONLY_EXAMPLE))
    assert proc.returncode == 0, proc.stdout[-5000:]
    _assert_loss_falls(proc.stdout)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ["compressed_ddp"])
def test_fabric_trains_with_gradients_sent_in_16_bits(strategy) -> None:
    """Fabric(strategy=..., devices=2) + fabric.launch(): gradients are 16-bit on the wire, the loop trains."""
    proc = run([sys.executable, str(SCRIPTS / "compressed_seed_loop.py"), strategy], timeout=110, env=clean_env(**ONLY_EXAMPLE))
    assert proc.returncode == 0, proc.stdout[-5000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["world_size"] == 2, result
    assert result["representable"], "averaged gradients hold values the wire dtype cannot represent: they were not reduced in 16 bits"
    assert not result["exact_fp32"], "gradients equal the exact fp32 mean: no compression happened"
    assert 0 < result["rel_error"] < 0.01, result
    assert result["same_on_all_ranks"], result
    assert result["losses"][-1] < 0.6 * result["losses"][0], result["losses"]


def _assert_loss_falls(output: str) -> None:
    losses = [float(x) for x in re.findall(r"epoch \d+ loss ([0-9.]+) \(world size 2\)", output)]
    assert len(losses) == 5, output[-3000:]
    assert losses[-1] < 0.6 * losses[0], losses
