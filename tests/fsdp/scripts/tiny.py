"""A tiny decoder made of nn.TransformerDecoderLayer, and its data, shared by the FSDP test scripts."""

from __future__ import annotations

import torch
from torch import nn

VOCAB, WIDTH, HEADS, LAYERS, SEQ = 16, 16, 2, 2, 8


class TinyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(WIDTH, HEADS, dim_feedforward=2 * WIDTH, dropout=0.0, batch_first=True)
            for _ in range(LAYERS)
        )
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        memory = x
        causal = torch.triu(torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool, device=tokens.device), 1)
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=causal)
        return self.head(x)


def batch(step: int, rank: int, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences counting up by a fixed stride from a random start: the next token is learnable."""
    g = torch.Generator().manual_seed(1000 * step + rank)
    start = torch.randint(0, VOCAB, (size, 1), generator=g)
    seq = (start + 3 * torch.arange(SEQ + 1)) % VOCAB
    return seq[:, :-1], seq[:, 1:]


def loss_of(model: nn.Module, step: int, rank: int, device: torch.device) -> torch.Tensor:
    x, y = batch(step, rank)
    logits = model(x.to(device))
    return nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), y.to(device).reshape(-1))
