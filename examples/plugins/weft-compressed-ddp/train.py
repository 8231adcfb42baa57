"""The plain PyTorch loop with weft's five changes, on two processes with compressed gradients.

    python train.py                                               # Fabric starts the 2 processes
    weft run --strategy compressed_ddp --devices 2 train.py       # weft run starts them
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from weft import Fabric


def make_data(n: int = 512) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    labels = (x[:, :4].sum(dim=1) > 0).long() + (x[:, 4:8].sum(dim=1) > 0).long()  # three classes
    return TensorDataset(x, labels)


def main() -> None:
    fabric = Fabric(strategy="compressed_ddp", devices=2)  # (1) configure
    fabric.launch()  # (2) start the processes
    fabric.seed_everything(42)

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_loader = DataLoader(make_data(), batch_size=32, shuffle=True)

    model, optimizer = fabric.setup(model, optimizer)  # (3) wrap model and optimizer
    train_loader = fabric.setup_dataloaders(train_loader)  # (4) shard the data across processes

    for epoch in range(5):
        total, batches = 0.0, 0
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), targets)
            fabric.backward(loss)  # (5) instead of loss.backward(): gradients travel as bf16
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        epoch_loss = fabric.all_reduce(total / batches, reduce_op="mean")
        fabric.print(f"epoch {epoch} loss {epoch_loss.item():.4f} (world size {fabric.world_size})")


if __name__ == "__main__":
    main()
