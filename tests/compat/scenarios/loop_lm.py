"""A small language-model loop in the style of Lightning's example: shuffled loader, value clipping,
validation in eval mode, a checkpoint saved and loaded back.

Run with ``DEVICES`` processes (argument 3). Records losses and the parameters after training.
"""

import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from compat import OUT, Recorder, api

devices = int(sys.argv[3])
api.seed_everything(42)
fabric = api.Fabric(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto")
fabric.launch()
rec = Recorder(fabric.global_rank)

vocab, context = 17, 6
tokens = torch.randint(0, vocab, (64, context + 1))
train = DataLoader(TensorDataset(tokens[:48, :-1], tokens[:48, 1:]), batch_size=4, shuffle=True)
val = DataLoader(TensorDataset(tokens[48:, :-1], tokens[48:, 1:]), batch_size=4)


class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 12)
        self.mix = torch.nn.GRU(12, 12, batch_first=True)
        self.head = torch.nn.Linear(12, vocab)

    def forward(self, x):
        return self.head(self.mix(self.embed(x))[0])


model = TinyLM()
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
model, optimizer = fabric.setup(model, optimizer)
train, val = fabric.setup_dataloaders(train, val)
losses = []
for epoch in range(2):
    model.train()
    for x, y in train:
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        fabric.backward(loss)
        fabric.clip_gradients(model, optimizer, clip_val=0.25)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        val_losses = torch.stack([F.cross_entropy(model(x).flatten(0, 1), y.flatten()) for x, y in val])
    rec.put(f"epoch{epoch}/val", fabric.all_reduce(val_losses.mean(), reduce_op="mean"))
rec.put("train_losses", losses)
rec.put("params", [p.detach() for p in model.parameters()])
fabric.save(OUT / f"{api.name}.ckpt", {"model": model, "optimizer": optimizer, "epoch": 2})
fabric.barrier()
fresh = TinyLM()
fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.5)
fresh, fresh_optimizer = fabric.setup(fresh, fresh_optimizer)
state = {"model": fresh, "optimizer": fresh_optimizer, "epoch": 0}
remainder = fabric.load(OUT / f"{api.name}.ckpt", state)
rec.put("loaded_epoch", state["epoch"])
rec.put("remainder", sorted(remainder))
rec.put("loaded_params_equal", all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters())))
rec.write()
