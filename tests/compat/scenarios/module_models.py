"""The model and optimizer the module_* scenarios set up (imported by them, not a scenario itself)."""

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """A small regression model with the methods a Lightning-style script calls on it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)
        self.scale = 1.0

    def forward(self, x):
        return self.head(torch.tanh(self.body(x))) * self.scale

    def training_step(self, batch):
        x, y = batch
        return F.mse_loss(self(x), y)

    def custom_step(self, batch):
        # Runs the layers itself, not through forward: under DDP it must be marked.
        x, y = batch
        return F.mse_loss(self.head(torch.relu(self.body(x))), y)

    def other_step(self, batch):
        x, y = batch
        return (self.head(self.body(x)) - y).abs().mean()

    def describe(self):
        return f"Net(scale={self.scale})"


class PlainSGD(torch.optim.Optimizer):
    """An optimizer with its own signatures: ``step`` takes no closure, ``zero_grad`` a keyword more."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
        return "stepped"

    def zero_grad(self, set_to_none=True, *, scale=0.0):
        if scale:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(scale)
            return "scaled"
        super().zero_grad(set_to_none=set_to_none)
        return "zeroed"
