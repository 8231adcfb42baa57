"""Lightning is a test-only dependency: weft itself never imports it."""

import subprocess
import sys

SCRIPT = """
import sys
import torch
import weft
fabric = weft.Fabric(accelerator="cpu", devices=1)
model, optimizer = fabric.setup(torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
loader = fabric.setup_dataloaders(torch.utils.data.DataLoader(torch.arange(4.0), batch_size=2))
fabric.backward(model(torch.ones(1, 2)).sum())
import weft.strategies
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "lightning_fabric", "pytorch_lightning"))
print("LOADED", loaded)
"""


def test_weft_never_imports_lightning():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout
