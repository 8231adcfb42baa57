"""The `weft plugins` and `weft env` commands, run as users run them."""

import json
import sys
from pathlib import Path

WEFT = [str(Path(sys.executable).with_name("weft"))]


def run_cli(args, env=None, check=True):
    import subprocess

    proc = subprocess.run(WEFT + args, capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_plugins_json_lists_core_builtins_without_importing_them():
    rows = json.loads(run_cli(["plugins", "--json"]).stdout)
    names = {(r["kind"], r["name"]): r for r in rows}
    for key in [("accelerators", "cpu"), ("strategies", "single_device"), ("precisions", "32-true"), ("environments", "local")]:
        assert names[key]["distribution"] == "weft"
        assert names[key]["status"] == "registered"
        assert names[key]["version"]


def test_plugins_check_imports_and_reports_loadable():
    rows = json.loads(run_cli(["plugins", "--json", "--check"]).stdout)
    core = [r for r in rows if r["distribution"] == "weft"]
    assert core and all(r["status"] == "loadable" for r in core)


def test_plugins_check_reports_a_broken_plugin(tmp_path):
    import os

    info = tmp_path / "weft_bad-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: weft-bad\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[weft.strategies]\nbad = weft_bad_missing:Strategy\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    rows = json.loads(run_cli(["plugins", "--json", "--check"], env=env).stdout)
    bad = [r for r in rows if r["name"] == "bad"][0]
    assert bad["status"] == "failed" and "weft_bad_missing" in bad["reason"] and bad["version"] == "0.3"
    table = run_cli(["plugins"], env=env).stdout
    assert "weft-bad" in table and "bad" in table


def test_run_accepts_lightnings_underscore_spellings():
    from weft.cli import build_parser

    parser = build_parser()
    underscore = parser.parse_args(["run", "--num_nodes", "2", "--node_rank", "1", "--main_address", "10.0.0.1", "--main_port", "1234", "t.py"])
    dashed = parser.parse_args(["run", "--num-nodes", "2", "--node-rank", "1", "--main-address", "10.0.0.1", "--main-port", "1234", "t.py"])
    assert vars(underscore) == vars(dashed)
    assert (underscore.num_nodes, underscore.node_rank, underscore.main_address, underscore.main_port) == (2, 1, "10.0.0.1", 1234)


def test_env_reports_versions_and_accelerators():
    info = json.loads(run_cli(["env", "--json"]).stdout)
    assert info["weft"] and info["torch"].startswith("2.")
    assert "cpu" in info["accelerators_available"]
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
