"""`import weft` loads no plugin, no torch._dynamo and scans no entry points."""

import json


def test_import_weft_is_lazy(python):
    code = (
        "import sys, json, weft, weft.registry as r\n"
        "mods = sorted(sys.modules)\n"
        "print(json.dumps({'mods': mods, 'scanned': r._cache is not None}))\n"
    )
    out = json.loads(python(["-c", code]).stdout)
    mods = out["mods"]
    assert not out["scanned"]
    assert not [m for m in mods if m.startswith("weft_")], "a plugin was imported"
    assert "torch._dynamo" not in mods
    assert "importlib_metadata" not in mods
    assert "torch" not in mods  # `import weft` itself does not even need torch


def test_importing_fabric_does_not_scan_or_load_plugins(python):
    code = (
        "import sys, json\nfrom weft import Fabric\nimport weft.registry as r\n"
        "print(json.dumps({'plugins': [m for m in sys.modules if m.startswith('weft_')],"
        " 'dynamo': 'torch._dynamo' in sys.modules, 'scanned': r._cache is not None}))\n"
    )
    out = json.loads(python(["-c", code]).stdout)
    assert out == {"plugins": [], "dynamo": False, "scanned": False}


def test_importtime_report_names_no_plugin(python):
    proc = python(["-X", "importtime", "-c", "import weft"])
    names = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "weft" in names
    assert not [n for n in names if n.startswith(("weft_", "torch._dynamo", "importlib_metadata"))]


def test_fabric_with_one_strategy_loads_only_that_plugin(python):
    code = (
        "import sys, json\nfrom weft import Fabric\nFabric(accelerator='cpu', strategy='single_device')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('weft_'))))\n"
    )
    assert json.loads(python(["-c", code]).stdout) == []
