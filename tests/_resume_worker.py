"""A small training run for the resume tests, importable and runnable as a script.

``python tests/_resume_worker.py CKPT_DIR LOG_DIR [--slow SECONDS]`` trains (resuming from
CKPT_DIR/last.pt when it exists) and sleeps ``SECONDS`` after every step so that a test
can kill it with SIGKILL in the middle of an epoch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import bergab
from bergab import schedules
from bergab.training import EarlyStopping, LambdaCallback, ReduceLROnPlateau

EPOCHS = 3
STEPS_PER_EPOCH = 12  # 96 examples, batches of 8


def build() -> tuple[nn.Module, DataLoader[Any], tuple[torch.Tensor, torch.Tensor]]:
    """The model (with dropout, so the global RNG matters) and shuffled DataLoader."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(123)
    x = torch.randn(96, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g))
    xv = torch.randn(32, 8, generator=g)
    yv = torch.sin(xv @ torch.randn(8, 1, generator=g))
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    # shuffle=True without a generator: the order comes from the global torch RNG
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    return model, loader, (xv, yv)


def train(ckpt_dir: Path, log_dir: Path | None, slow: float = 0.0) -> nn.Module:
    model, loader, val = build()
    callbacks: list[Any] = [ReduceLROnPlateau(patience=0, factor=0.7)]
    if slow:
        callbacks.append(LambdaCallback(on_batch_end=lambda trainer, logs: time.sleep(slow)))
    bergab.fit(
        model,
        loader,
        nn.functional.mse_loss,
        val_data=val,
        optimizer="adamw",
        lr=schedules.warmup(schedules.cosine(1e-2, 30), steps=6),
        epochs=EPOCHS,
        val_every=5,
        clip_norm=1.0,
        callbacks=callbacks,
        early_stopping=EarlyStopping(patience=50),
        checkpoint_dir=ckpt_dir,
        checkpoint_every=3,
        resume=True,
        seed=0,
        log_dir=log_dir,
        progress=False,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt_dir", type=Path)
    parser.add_argument("log_dir", type=Path)
    parser.add_argument("--slow", type=float, default=0.0)
    args = parser.parse_args()
    train(args.ckpt_dir, args.log_dir, args.slow)


if __name__ == "__main__":
    main()
