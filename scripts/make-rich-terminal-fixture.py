"""Makes tests/fixtures/lightning/train-rich-terminal.log: Lightning's RichProgressBar with a
terminal forced but the output in a file, as a job whose launcher sets FORCE_COLOR writes it.

A 2-layer MLP on 256 random samples (batches of 32: 8 per epoch), 3 epochs on the CPU,
validation every epoch, `train_loss` and `val_loss` in the bar, CSVLogger beside it.

    python3 -m venv /tmp/lvenv && /tmp/lvenv/bin/pip install torch lightning rich
    FORCE_COLOR=1 /tmp/lvenv/bin/python scripts/make-rich-terminal-fixture.py \
        > tests/fixtures/lightning/train-rich-terminal.log 2>&1
"""

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("val_loss", loss, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


L.seed_everything(0)
x = torch.randn(256, 8)
y = x.sum(dim=1, keepdim=True) * 0.1
train = DataLoader(TensorDataset(x, y), batch_size=32)
val = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=32)
trainer = L.Trainer(
    max_epochs=3,
    accelerator="cpu",
    logger=CSVLogger("logs"),
    enable_model_summary=False,
    callbacks=[RichProgressBar()],
)
trainer.fit(Net(), train, val)
