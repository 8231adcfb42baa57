"""Object broadcast works where NumPy is not installed (torch does not require it, nor does weft)."""

from pathlib import Path

import pytest

from conftest import run_python

SCRIPT = Path(__file__).parent / "scripts" / "broadcast_objects.py"


@pytest.mark.timeout(150)
def test_broadcast_objects_without_numpy(tmp_path):
    shadow = tmp_path / "numpy"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError('NumPy is hidden for this test', name='numpy')\n")
    proc = run_python([SCRIPT], timeout=120, env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    expected = "{'sender': 1, 'payload': [0, 1, 2, 3, 4]} None 19999900000"
    assert f"rank 0: {expected}" in proc.stdout and f"rank 1: {expected}" in proc.stdout, proc.stdout + proc.stderr
