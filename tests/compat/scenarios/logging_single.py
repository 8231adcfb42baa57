"""Callbacks and loggers in one process: ``Fabric(callbacks=..., loggers=...)``, ``call``, ``log``,
``log_dict``, the CSV files each framework's ``CSVLogger`` writes, and a LightningModule's ``self.log``.

Steps are given explicitly to the logger that flushes (Lightning's CSVLogger restarts its step
count after each flush when none is given; weft's keeps counting: a documented difference). The
LightningModule, whose ``self.log`` gives no step, logs through a second Fabric.
"""

import csv
import os

import lightning.pytorch as pl
import torch

from compat import OUT, Recorder, api

rec = Recorder(0)
calls = []
ROOT = OUT / f"{api.name}-logs"


class First:
    def on_after_setup(self, fabric, module):
        calls.append(["first", "on_after_setup", type(module).__name__])

    def on_train_start(self, note=None):
        calls.append(["first", "on_train_start", note])

    def on_batch_end(self, loss, batch_idx):
        calls.append(["first", "on_batch_end", batch_idx, loss])

    def on_after_optimizer_step(self, strategy, optimizer):
        calls.append(["first", "on_after_optimizer_step", type(optimizer).__name__])


class Second:
    on_train_start = None  # an attribute that is None counts as missing

    def on_batch_end(self, loss, **kwargs):
        calls.append(["second", "on_batch_end", sorted(kwargs)])

    def on_train_end(self):
        calls.append(["second", "on_train_end"])


class Raises:
    def on_batch_end(self, batch_idx):
        if batch_idx == 3:
            raise KeyError(batch_idx)


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch):
        loss = self.layer(batch).pow(2).mean()
        self.log("module_loss", loss)
        return loss

    def on_train_end(self):
        calls.append(["module", "on_train_end", type(self.logger).__name__, len(self.loggers), self.fabric is not None])


api.seed_everything(7, verbose=False)
main = api.CSVLogger(ROOT, name="exp", flush_logs_every_n_steps=4)
second = api.CSVLogger(ROOT, name="exp2", prefix="p")
fabric = api.Fabric(accelerator="cpu", devices=1, callbacks=[First(), Second(), Raises()], loggers=[main, second])
rec.put("loggers", [type(logger).__name__ for logger in fabric.loggers])
rec.put("logger_is_first", fabric.logger is main)

layer = torch.nn.Linear(4, 1)
model, optimizer = fabric.setup(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
rec.error("call/on_train_start", fabric.call, "on_train_start", note="go", unused=1)
data = torch.randn(6, 8, 4)
for step, batch in enumerate(data):
    loss = model(batch).pow(2).mean()
    fabric.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    rec.error(f"call/on_batch_end/{step}", fabric.call, "on_batch_end", loss=loss.item(), batch_idx=step, epoch=0)
    metrics = {"loss": loss.detach(), "lr": 0.1}
    if step >= 4:  # new keys after the first flush: the header grows
        metrics["val_loss"] = torch.tensor([step / 10])
    fabric.log_dict(metrics, step=step)
    fabric.log("step_loss", loss, step=step)
fabric.call("on_train_end")

module_logger = api.CSVLogger(ROOT, name="module")
module_fabric = api.Fabric(accelerator="cpu", devices=1, loggers=module_logger)
module = Module()
module_model, module_optimizer = module_fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
for batch in data[:3]:
    module_fabric.backward(module_model.training_step(batch))
    module_optimizer.step()
module_fabric.call("on_train_end")
module_logger.finalize("success")
rec.error("non_scalar_tensor", fabric.log, "weights", torch.ones(2, 2))
rec.error("not_a_dict", fabric.log_dict, [("a", 1)])
rec.error("no_logger", lambda: api.Fabric(accelerator="cpu", devices=1).logger)

for logger in fabric.loggers:
    logger.finalize("success")


def read(path):
    if not os.path.exists(path):
        return None
    with open(path, newline="") as file:
        header, *rows = list(csv.reader(file))
    # cells as numbers (compared with a tolerance), rows as read: a row wider than the header shows
    return {"header": header, "rows": [[float(cell) if cell else None for cell in row] for row in rows]}


for key, logger in (("main", main), ("second", second), ("module", module_logger)):
    rec.put(f"{key}/name", logger.name)
    rec.put(f"{key}/version", logger.version)
    rec.put(f"{key}/log_dir", str(logger.log_dir).replace(str(ROOT), "ROOT"))
    rec.put(f"{key}/csv", read(f"{logger.log_dir}/metrics.csv"))
rec.put("calls", calls)
rec.write()
