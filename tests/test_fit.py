"""fit(): the loop against hand-written torch loops, data modes, accumulation, clipping,
precision, validation, tol, NaN policies, optimizers and schedules, argument checks."""

from __future__ import annotations

import copy
import functools
import itertools
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import bergab
from bergab import schedules
from bergab.training import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    NonFiniteError,
    Trainer,
    fit,
    load_checkpoint,
)
from bergab.training._step import check_precision

mse = nn.functional.mse_loss


def regression(n: int = 24, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, 1, generator=g, dtype=torch.float64)
    return x, x @ w + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)


def linear(d: int = 3, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, 1).double()


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def quiet(**kw: Any) -> dict[str, Any]:
    return {"progress": False, **kw}


# ----------------------------------------------------------------------------- GD modes
@pytest.mark.parametrize("batch_size", ["full", 1, 5])
def test_gd_modes_equal_a_hand_written_loop(batch_size: Any) -> None:
    x, y = regression()
    model = linear()
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    h = fit(
        model, (x, y), mse, optimizer=opt, epochs=3, batch_size=batch_size, shuffle=False, **quiet()
    )
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    bs = len(x) if batch_size == "full" else batch_size
    losses = []
    for _ in range(3):
        for i in range(0, len(x), bs):
            ref_opt.zero_grad()
            loss = mse(ref(x[i : i + bs]), y[i : i + bs])
            loss.backward()
            ref_opt.step()
            losses.append(loss.item())
    assert same(model, ref)  # bitwise: fit adds nothing to the update
    assert h.steps["loss"] == losses
    assert len(h) == 3 * math.ceil(len(x) / bs)


def test_shuffled_epochs_are_seeded_permutations() -> None:
    n = 20
    x = torch.randn(n, 2)
    idx = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    seen: list[list[int]] = []

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append([int(v) for v in y.flatten().tolist()])
        return out.double().sum() * 0.0 + y.sum() * 0.0

    def run(seed: int) -> list[list[int]]:
        seen.clear()
        fit(
            nn.Linear(2, 1),
            (x, idx),
            loss_fn,
            optimizer="sgd",
            lr=0.1,
            epochs=3,
            batch_size=4,
            seed=seed,
            **quiet(),
        )
        return [functools.reduce(operator.iadd, seen[i : i + 5], []) for i in range(0, 15, 5)]

    a, b, c = run(1), run(1), run(2)
    assert a == b
    assert a != c
    for epoch in a:
        assert sorted(epoch) == list(range(n))
    assert a[0] != a[1]  # reshuffled every epoch


def test_dataset_and_dataloader_and_dict_batches() -> None:
    x, y = regression(n=16)

    class Pairs(Dataset[Any]):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"x": x[i], "y": y[i]}

    m1, m2, m3 = linear(), linear(), linear()
    kw = quiet(optimizer="sgd", lr=0.1, epochs=2, shuffle=False)
    fit(m1, (x, y), mse, batch_size=4, **kw)
    fit(m2, Pairs(), mse, batch_size=4, **kw)
    fit(m3, DataLoader(TensorDataset(x, y), batch_size=4), mse, **kw)
    for a, b in ((m1, m2), (m1, m3)):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-14)


def test_custom_batch_fn_and_multi_input_model() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.lin(torch.cat([a, b], dim=1))

    a, b = torch.randn(8, 1), torch.randn(8, 1)
    y = a + b
    h = fit(Two(), (a, b, y), mse, optimizer="sgd", lr=0.1, max_steps=3, **quiet())
    assert len(h) == 3
    h2 = fit(
        Two(),
        [{"in": (a, b), "out": y}],
        mse,
        batch_fn=lambda d: (d["in"], d["out"]),
        optimizer="sgd",
        lr=0.1,
        max_steps=3,
        **quiet(),
    )
    assert len(h2) == 3


# ----------------------------------------------------------------------------- accumulation
@pytest.mark.parametrize(("n", "b", "k"), [(24, 4, 3), (10, 4, 3), (12, 2, 2)])
def test_accumulation_equals_one_big_batch_for_sgd(n: int, b: int, k: int) -> None:
    x, y = regression(n=n)
    m_acc, m_big = linear(), linear()
    fit(
        m_acc,
        (x, y),
        mse,
        optimizer="sgd",
        lr=0.1,
        epochs=4,
        batch_size=b,
        accumulation_steps=k,
        shuffle=False,
        **quiet(),
    )
    # each group of k micro-batches (the last one possibly partial) is one big batch
    sizes = [min(b, n - i) for i in range(0, n, b)]
    bounds = [sum(sizes[: j + 1]) for j in range(len(sizes))][k - 1 :: k]
    if bounds[-1] != n:
        bounds.append(n)
    opt = torch.optim.SGD(m_big.parameters(), lr=0.1)
    for _ in range(4):
        start = 0
        for end in bounds:
            opt.zero_grad()
            mse(m_big(x[start:end]), y[start:end]).backward()
            opt.step()
            start = end
    for p, q in zip(m_acc.parameters(), m_big.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clipping_matches_torch_and_logs_the_unclipped_norm(mode: str) -> None:
    x, y = regression(n=16)
    y = 50 * y  # large gradients, so clipping bites
    model, ref = linear(), linear()
    kw = {"clip_norm": 0.5} if mode == "norm" else {"clip_value": 0.1}
    h = fit(
        model,
        (x, y),
        mse,
        optimizer="sgd",
        lr=0.05,
        max_steps=6,
        batch_size=8,
        shuffle=False,
        **kw,
        **quiet(),
    )
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    norms = []
    for step in range(6):
        i = (step % 2) * 8
        opt.zero_grad()
        mse(ref(x[i : i + 8]), y[i : i + 8]).backward()
        norms.append(
            torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ref.parameters()])).item()
        )
        if mode == "norm":
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        else:
            torch.nn.utils.clip_grad_value_(ref.parameters(), 0.1)
        opt.step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    assert h.steps["grad_norm"] == pytest.approx(norms, rel=1e-12)
    assert min(norms) > 0.5


# ----------------------------------------------------------------------------- precision
def test_bf16_autocast_on_cpu() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    dtypes = set()

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dtypes.add(out.dtype)
        return mse(out.float(), t)

    h = fit(
        model,
        (x, y),
        loss_fn,
        val_data=(x, y),
        optimizer="adam",
        lr=1e-2,
        epochs=20,
        batch_size=16,
        precision="bf16",
        seed=0,
        **quiet(),
    )
    assert dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert h.records[-1]["val_loss"] < 0.3 * h.records[0]["val_loss"]


def model_steps(h: Any) -> int:
    return sum(not s for s in h.steps["skipped"])


def test_fp16_grad_scaler_skip_does_not_advance_the_schedule() -> None:
    """A step the GradScaler skips (inf gradients) leaves the optimizer's step count and lr.

    Runs on the CPU (torch's CPU GradScaler); the same code path runs on CUDA.
    """
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = x.sum(1, keepdim=True)
    model = nn.Linear(4, 1)
    calls = {"n": 0}

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = mse(out.float(), t)
        if calls["n"] == 3:  # a finite loss whose gradient overflows fp16
            loss = loss + (out.float() * 1e30).mean()
        return loss

    sched = schedules.linear(0.1, 0.0, 10)
    h = fit(
        model,
        (x, y),
        loss_fn,
        optimizer="sgd",
        lr=sched,
        max_steps=6,
        batch_size=8,
        precision="fp16",
        seed=0,
        **quiet(),
    )
    skipped = h.steps["skipped"]
    assert skipped[2]  # the injected overflow (the scaler may also skip while it calibrates)
    assert not all(skipped)
    # lr of each step: skipped steps did not advance the schedule
    applied = [sum(not s for s in skipped[:i]) for i in range(len(skipped))]
    assert h.steps["lr"] == pytest.approx([sched(t) for t in applied])
    assert model_steps(h) == applied[-1] + (not skipped[-1])
    scales = h.steps["loss_scale"]
    assert all(scales[i] < (scales[i - 1] if i else 65536.0) for i in range(6) if skipped[i])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_and_bf16_on_cuda() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = x @ torch.randn(16, 1)
    for precision in ("fp16", "bf16"):
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
        h = fit(
            model,
            (x, y),
            lambda o, t: mse(o.float(), t),
            val_data=(x, y),
            optimizer="adamw",
            lr=3e-3,
            epochs=10,
            batch_size=32,
            precision=precision,
            device="cuda",
            **quiet(),
        )
        assert next(model.parameters()).device.type == "cuda"
        assert h.records[-1]["val_loss"] < h.records[0]["val_loss"]


def test_fp16_on_an_unsupported_device_is_refused() -> None:
    # fit refuses the meta device before precision (it holds no data); the precision
    # check itself is fit's, called with a device type autocast+GradScaler do not serve
    with pytest.raises(ValueError, match="precision='fp16'"):
        check_precision("fp16", torch.device("meta"))
    with pytest.raises(ValueError, match="device='meta': the meta device holds no data"):
        fit(
            nn.Linear(1, 1),
            (torch.zeros(2, 1), torch.zeros(2, 1)),
            mse,
            precision="fp16",
            device="meta",
            **quiet(),
        )


# ----------------------------------------------------------------------------- stopping
def test_epochs_max_steps_and_default_one_epoch() -> None:
    x, y = regression(n=20)
    assert len(fit(linear(), (x, y), mse, batch_size=4, **quiet())) == 5
    h = fit(linear(), (x, y), mse, batch_size=4, epochs=3, max_steps=7, val_data=(x, y), **quiet())
    assert len(h) == 7
    assert h.stop_reason == "max_steps"
    # one record per epoch end plus a final one mid-epoch, with validation
    assert [r["step"] for r in h.records] == [5, 7]
    assert h.records[-1]["val_loss"] is not None
    h = fit(linear(), (x, y), mse, batch_size=4, epochs=2, max_steps=100, **quiet())
    assert len(h) == 10
    assert h.stop_reason == "epochs"


def test_tol_stops_full_batch_gd_by_loss_change_and_by_grad_norm() -> None:
    x, y = regression(n=32)
    h = fit(
        linear(),
        (x, y),
        mse,
        optimizer="sgd",
        lr=0.2,
        batch_size="full",
        max_steps=10_000,
        tol={"loss": 1e-12},
        **quiet(),
    )
    assert h.stop_reason.startswith("tol: the loss changed")
    losses = h.steps["loss"]
    assert len(losses) < 10_000
    assert abs(losses[-1] - losses[-2]) <= 1e-12 * max(1.0, abs(losses[-2]))
    assert all(abs(a - b) > 1e-12 * max(1.0, abs(a)) for a, b in itertools.pairwise(losses[:-1]))
    h = fit(
        linear(),
        (x, y),
        mse,
        optimizer="sgd",
        lr=0.2,
        batch_size="full",
        max_steps=10_000,
        tol={"grad_norm": 1e-6},
        **quiet(),
    )
    assert h.stop_reason.startswith("tol: the gradient norm")
    assert h.steps["grad_norm"][-1] <= 1e-6 < min(h.steps["grad_norm"][:-1])


def test_callback_stop_and_hook_order() -> None:
    x, y = regression(n=8)
    calls: list[str] = []

    class Recorder(Callback):
        def on_fit_start(self, trainer: Trainer) -> None:
            calls.append("fit_start")

        def on_epoch_start(self, trainer: Trainer) -> None:
            calls.append(f"epoch_start{trainer.epoch}")

        def on_batch_end(self, trainer: Trainer, logs: Any) -> None:
            calls.append(f"batch{logs['step']}")
            if logs["step"] == 5:
                trainer.stop("enough")

        def on_validation_end(self, trainer: Trainer, logs: Any) -> None:
            calls.append("val")

        def on_epoch_end(self, trainer: Trainer, logs: Any) -> None:
            calls.append(f"epoch_end{logs['epoch']}")

        def on_fit_end(self, trainer: Trainer) -> None:
            calls.append("fit_end")

    h = fit(
        linear(),
        (x, y),
        mse,
        val_data=(x, y),
        batch_size=4,
        epochs=5,
        callbacks=[Recorder()],
        **quiet(),
    )
    assert calls == [
        "fit_start", "epoch_start0", "batch1", "batch2", "val", "epoch_end0",
        "epoch_start1", "batch3", "batch4", "val", "epoch_end1",
        "epoch_start2", "batch5", "val", "fit_end",
    ]  # fmt: skip
    assert h.stop_reason == "enough"


# ----------------------------------------------------------------------------- validation
def test_validation_loss_and_metrics_are_exact_weighted_means() -> None:
    x, y = regression(n=30)
    xv, yv = regression(n=300, seed=1)
    model = linear()

    def mae(out: torch.Tensor, t: torch.Tensor) -> float:
        return float((out - t).abs().mean())

    h = fit(
        model,
        (x, y),
        mse,
        val_data=(xv, yv),
        metrics={"mae": mae},
        optimizer="sgd",
        lr=0.1,
        epochs=2,
        batch_size=10,
        **quiet(),
    )
    with torch.no_grad():
        out = model(xv)
    assert h.records[-1]["val_loss"] == pytest.approx(mse(out, yv).item(), rel=1e-12)
    assert h.records[-1]["val_mae"] == pytest.approx(mae(out, yv), rel=1e-12)
    assert h.records[-1]["loss"] == pytest.approx(sum(h.steps["loss"][3:]) / 3, rel=1e-12)


def test_val_every_and_model_modes() -> None:
    x, y = regression(n=16)
    xv, yv = regression(n=10, seed=1)
    seen: list[tuple[int, bool, bool]] = []

    class Probe(nn.Module):
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            seen.append((len(h), self.training, torch.is_grad_enabled()))
            return h

    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), Probe(), nn.Linear(4, 1)).double()
    model[1].eval()  # a submodule the user set to eval mode stays so
    h = fit(
        model, (x, y), mse, val_data=(xv, yv), val_every=3, max_steps=8, batch_size=4, **quiet()
    )
    assert [r["step"] for r in h.records if "val_loss" in r] == [3, 6, 8]
    assert {s for s in seen if s[0] == 10} == {(10, False, False)}  # validation: eval, no grad
    assert {s for s in seen if s[0] == 4} == {(4, True, True)}
    assert model.training
    assert not model[1].training
    assert model[2].training


# ----------------------------------------------------------------------------- NaN
def nan_at(calls: set[int]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    counter = {"n": 0}

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        counter["n"] += 1
        loss = mse(out, t)
        return loss * float("nan") if counter["n"] in calls else loss

    return loss_fn


def test_nan_policy_stop_names_the_step_and_keeps_the_history() -> None:
    x, y = regression(n=16)
    with pytest.raises(NonFiniteError, match=r"loss is nan at step 3 \(epoch 0, batch 3\)") as info:
        fit(
            linear(),
            (x, y),
            nan_at({3}),
            batch_size=4,
            optimizer="sgd",
            lr=0.1,
            epochs=2,
            **quiet(),
        )
    assert len(info.value.history) == 2
    assert info.value.history.stop_reason.startswith("nan: loss is nan at step 3")


def test_nan_policy_skip_leaves_weights_and_schedule() -> None:
    x, y = regression(n=16)
    model = linear()
    before: list[list[torch.Tensor]] = []
    cb = LambdaCallback(on_batch_end=lambda t, logs: before.append(params(t.model)))
    sched = schedules.linear(0.1, 0.0, 10)
    h = fit(
        model,
        (x, y),
        nan_at({3}),
        batch_size=4,
        optimizer="sgd",
        lr=sched,
        epochs=1,
        nan_policy="skip",
        callbacks=[cb],
        **quiet(),
    )
    assert h.steps["skipped"] == [False, False, True, False]
    assert all(torch.equal(p, q) for p, q in zip(before[1], before[2], strict=True))
    assert h.steps["lr"] == pytest.approx([sched(t) for t in (0, 1, 2, 2)])
    assert [e["event"] for e in h.events] == ["skip", "stop"]


def test_nan_policy_rollback_restores_the_checkpoint_and_halves_the_lr(tmp_path: Path) -> None:
    x, y = regression(n=16)
    model = linear()
    h = fit(
        model,
        (x, y),
        nan_at({7}),
        batch_size=4,
        optimizer="sgd",
        lr=0.1,
        epochs=3,
        nan_policy="rollback",
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        seed=0,
        **quiet(),
    )
    (event,) = [e for e in h.events if e["event"] == "rollback"]
    assert event["step"] == 7
    assert event["to_step"] == 6
    assert event["lr_factor"] == 0.5
    assert len(h) == 12
    eff = h.steps["effective_lr"]
    assert eff[:6] == [0.1] * 6
    assert eff[6:] == [0.05] * 6
    # the same run without the NaN, its lr halved from step 7 on
    ref2 = linear()
    fit(
        ref2,
        (x, y),
        mse,
        batch_size=4,
        optimizer="sgd",
        lr=lambda t: 0.1 if t < 6 else 0.05,
        epochs=3,
        seed=0,
        **quiet(),
    )
    for p, q in zip(model.parameters(), ref2.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-14)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["fit"]["rollbacks"] == 1


def test_nan_rollback_with_a_schedule_on_a_torch_optimizer(tmp_path: Path) -> None:
    x, y = regression(n=16)
    model = linear()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = schedules.cosine(0.1, 12)
    h = fit(
        model,
        (x, y),
        nan_at({5}),
        optimizer=opt,
        lr=sched,
        batch_size=4,
        epochs=3,
        nan_policy="rollback",
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
        **quiet(),
    )
    expected = [sched(t) for t in range(4)] + [0.5 * sched(t) for t in range(4, 12)]
    assert h.steps["lr"] == pytest.approx(expected, rel=1e-12)


def test_nan_rollback_gives_up_after_too_many(tmp_path: Path) -> None:
    x, y = regression(n=8)
    with pytest.raises(NonFiniteError, match="rolled back 10 times"):
        fit(
            linear(),
            (x, y),
            nan_at(set(range(3, 1000))),
            batch_size=4,
            optimizer="sgd",
            lr=0.1,
            epochs=5,
            nan_policy="rollback",
            checkpoint_dir=tmp_path,
            **quiet(),
        )


# ----------------------------------------------------------------------------- optimizers, lr
def test_optimizer_forms_and_lr_override() -> None:
    x, y = regression(n=8)
    ms = [linear() for _ in range(4)]
    fit(ms[0], (x, y), mse, optimizer="sgd", lr=0.1, max_steps=3, **quiet())
    fit(ms[1], (x, y), mse, optimizer=torch.optim.SGD, lr=0.1, max_steps=3, **quiet())
    fit(
        ms[2],
        (x, y),
        mse,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
        lr=0.1,
        max_steps=3,
        **quiet(),
    )
    fit(
        ms[3],
        (x, y),
        mse,
        optimizer=torch.optim.SGD(ms[3].parameters(), lr=0.7),
        lr=0.1,
        max_steps=3,
        **quiet(),
    )
    for m in ms[1:]:
        for p, q in zip(ms[0].parameters(), m.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-14)
    h = fit(
        linear(),
        (x, y),
        mse,
        optimizer="adamw",
        optimizer_kwargs={"weight_decay": 0.0},
        max_steps=2,
        **quiet(),
    )
    assert h.steps["lr"] == [1e-3, 1e-3]  # the optimizer's own default


@pytest.mark.parametrize("kind", ["bergab", "torch"])
def test_schedule_lr_per_step(kind: str) -> None:
    x, y = regression(n=8)
    sched = schedules.warmup(schedules.cosine(0.1, 8), steps=2)
    opt: Any = "sgd" if kind == "bergab" else torch.optim.SGD
    h = fit(linear(), (x, y), mse, optimizer=opt, lr=sched, max_steps=10, batch_size=4, **quiet())
    assert h.steps["lr"] == pytest.approx([sched(t) for t in range(10)], rel=1e-14)


def test_user_torch_scheduler_is_stepped_per_step() -> None:
    x, y = regression(n=8)
    model = linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sch = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    h = fit(model, (x, y), mse, optimizer=opt, scheduler=sch, max_steps=6, batch_size=4, **quiet())
    assert h.steps["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_metric_driven_schedule_is_fed_the_validation_loss() -> None:
    x, y = regression(n=8)
    xv = x + 100.0  # a validation set the model cannot fit: val_loss plateaus
    sched = schedules.warmup(schedules.ReduceOnPlateau(0.1, factor=0.5, patience=0), steps=2)
    h = fit(
        linear(),
        (x, y),
        mse,
        val_data=(xv, y),
        optimizer="sgd",
        lr=sched,
        epochs=4,
        batch_size="full",
        **quiet(),
    )
    # the reference: the same schedule object fed the same val losses
    ref = schedules.warmup(schedules.ReduceOnPlateau(0.1, factor=0.5, patience=0), steps=2)
    expected = []
    for step, rec in enumerate(h.records):
        expected.append(ref(step))
        ref.update(rec["val_loss"])
    assert h.steps["lr"] == pytest.approx(expected, rel=1e-14)


def test_schedule_free_optimizer_validates_and_ends_on_averaged_weights() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4, dtype=torch.float64)
    y = x.sum(1, keepdim=True)
    model = nn.Linear(4, 1).double()
    modes: list[bool] = []
    cb = LambdaCallback(
        on_batch_end=lambda t, logs: modes.append(t.optimizer.training),
        on_validation_end=lambda t, logs: modes.append(t.optimizer.training),
    )
    h = fit(
        model,
        (x, y),
        mse,
        val_data=(x, y),
        optimizer="schedulefree_sgd",
        lr=0.5,
        epochs=3,
        batch_size=16,
        callbacks=[cb],
        **quiet(),
    )
    assert modes == ([True] * 4 + [False]) * 3
    with torch.no_grad():
        final = mse(model(x), y).item()
    assert h.records[-1]["val_loss"] == pytest.approx(final, rel=1e-12)  # x, not y


def test_lr_auto_picks_a_schedule_and_records_it() -> None:
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = x @ torch.tensor([[1.0], [-1.0], [2.0], [0.5]])
    h = fit(
        nn.Linear(4, 1),
        (x, y),
        mse,
        optimizer="sgd",
        lr="auto",
        max_steps=40,
        batch_size=32,
        seed=0,
        **quiet(),
    )
    auto = h.info["auto_lr"]
    assert auto["policy"] == "cosine"
    assert auto["total_steps"] == 40
    assert h.steps["lr"][0] == pytest.approx(auto["peak"])
    assert h.steps["lr"][-1] < auto["peak"]


# ----------------------------------------------------------------------------- arguments
BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"epochs": 0}, ValueError, "epochs must be an integer in [1, inf)"),
    ({"max_steps": -1}, ValueError, "max_steps"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": "half"}, ValueError, 'batch_size must be an integer >= 1 or "full"'),
    ({"clip_norm": 0.0}, ValueError, "clip_norm must be in (0, inf)"),
    ({"clip_value": -1.0}, ValueError, "clip_value"),
    ({"clip_norm": 1.0, "clip_value": 1.0}, ValueError, "clip_norm or clip_value, not both"),
    ({"accumulation_steps": 0}, ValueError, "accumulation_steps"),
    ({"precision": "16"}, ValueError, "precision must be one of '32', 'bf16', 'fp16'"),
    ({"device": "nonsense"}, ValueError, "device must be"),
    *(
        [({"device": "cuda"}, ValueError, "CUDA is not available")]
        if not torch.cuda.is_available()
        else []
    ),
    ({"nan_policy": "ignore"}, ValueError, "nan_policy must be one of 'stop', 'skip', 'rollback'"),
    ({"nan_policy": "rollback"}, ValueError, "needs checkpoint_dir"),
    ({"checkpoint_every": 5}, ValueError, "checkpoint_every needs checkpoint_dir"),
    ({"resume": True}, ValueError, "resume=True needs checkpoint_dir"),
    ({"resume": "/no/such/file.pt"}, FileNotFoundError, "does not exist"),
    ({"tol": 0.0}, ValueError, "tol must be in (0, inf)"),
    ({"tol": {"los": 1.0}, "max_steps": 3}, ValueError, "tol keys"),
    ({"tol": 1e-3}, ValueError, "tol needs a cap"),
    ({"lr": -0.1}, ValueError, "lr must be in (0, inf)"),
    ({"lr": "fast"}, ValueError, 'lr must be a number > 0, a schedule or "auto"'),
    ({"optimizer": 3}, TypeError, "optimizer must be a name"),
    ({"optimizer": "adamx"}, ValueError, "unknown optimizer 'adamx'"),
    ({"optimizer_kwargs": {"lr": 0.1}}, ValueError, "fit(lr=...)"),
    ({"seed": -1}, ValueError, "seed"),
    ({"val_every": 2}, ValueError, "val_every needs val_data"),
    ({"metrics": {"acc": len}}, ValueError, "metrics are computed on val_data"),
    ({"callbacks": [object()]}, TypeError, "callbacks must be Callback instances"),
    ({"early_stopping": 3}, TypeError, "early_stopping must be an EarlyStopping"),
    ({"progress": "yes"}, TypeError, "progress must be True or False"),
    ({"shuffle": 1}, TypeError, "shuffle must be True or False"),
    ({"log_dir": 3}, TypeError, "log_dir must be a path"),
]


@pytest.mark.parametrize(("kwargs", "exc", "message"), BAD, ids=[str(b[0]) for b in BAD])
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], exc: type, message: str) -> None:
    x, y = regression(n=4)
    with pytest.raises(exc, match=re.escape(message)):
        fit(linear(), (x, y), mse, **{"progress": False, **kwargs})


def test_bad_data() -> None:
    x, y = regression(n=4)
    with pytest.raises(TypeError, match="one-shot iterator"):
        fit(linear(), iter([(x, y)]), mse, progress=False)
    with pytest.raises(ValueError, match="same length"):
        fit(linear(), (x, y[:3]), mse, progress=False)
    with pytest.raises(ValueError, match="batch_size must be None when train_data is a DataLoader"):
        fit(linear(), DataLoader(TensorDataset(x, y)), mse, batch_size=2, progress=False)
    with pytest.raises(TypeError, match="train_data must be"):
        fit(linear(), 3, mse, progress=False)
    with pytest.raises(ValueError, match="yielded no batches"):
        fit(linear(), [], mse, progress=False)


def test_top_level_names() -> None:
    assert bergab.fit is fit
    assert bergab.History is bergab.training.History
    assert isinstance(EarlyStopping(), Callback)
