"""fit's answers to mistakes (issue 17): monitors' modes, learning rates that are negative
or NaN, param-group ratios, broadcasting targets, first-batch checks, devices, folders,
numpy data, NaN data, evaluate(), and metrics on the training batches."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import bergab
from bergab import schedules
from bergab.training import (
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    NonFiniteError,
    ReduceLROnPlateau,
    RunState,
    fit,
)
from bergab.training.callbacks import infer_mode
from tests.fit_helpers import data, model, mse


def quiet(**kw: Any) -> dict[str, Any]:
    return {"progress": False, **kw}


def scripted(values: list[float]) -> Any:
    """A validation metric returning the given values in turn."""
    it = iter(values)
    return lambda out, y: next(it)


def weights(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


class CountCalls:
    """A loss that counts the calls made with gradients (training steps)."""

    def __init__(self, fn: Any = mse) -> None:
        self.fn, self.training_calls = fn, 0

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.training_calls += int(out.requires_grad)
        return self.fn(out, y)


# ----------------------------------------------------------------------------- 1: monitor modes
@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("val_accuracy", "max"),
        ("val_acc", "max"),
        ("train_top1_acc", "max"),
        ("val_auc", "max"),
        ("val_f1", "max"),
        ("val_precision", "max"),
        ("val_recall", "max"),
        ("val_r2", "max"),
        ("val_loss", "min"),
        ("loss", "min"),
        ("val_mse", "min"),
        ("val_mae", "min"),
        ("val_perplexity", "min"),
        ("val_top5_error", "min"),
        ("val_nllloss", "min"),
        ("val_score", None),
        ("val_speed", None),
        ("val_acc_loss", None),  # words of both kinds: no guess
    ],
)
def test_infer_mode_from_the_metric_name(monitor: str, mode: str | None) -> None:
    assert infer_mode(monitor) == mode


def test_an_unknown_monitor_without_a_mode_names_mode_and_the_monitor() -> None:
    for make in (
        lambda: EarlyStopping("val_score"),
        lambda: ReduceLROnPlateau("val_score"),
        lambda: ModelCheckpoint(monitor="val_score"),
    ):
        with pytest.raises(ValueError, match=r"^mode: .*monitor 'val_score'.*mode='max'"):
            make()
    assert EarlyStopping("val_score", mode="max").mode == "max"
    assert ModelCheckpoint(monitor="val_score", save="last").save == "last"  # no ranking
    with pytest.raises(ValueError, match="mode must be one of 'auto', 'min', 'max'"):
        ReduceLROnPlateau(mode="up")


def test_early_stopping_on_accuracy_maximizes_and_restores_the_best_weights() -> None:
    x, y = data()
    accuracy = [0.5, 0.7, 0.9, 0.8, 0.6, 0.55, 0.5]  # best at the third evaluation
    snapshots: dict[int, list[torch.Tensor]] = {}
    snap = LambdaCallback(
        on_validation_end=lambda t, logs: snapshots.update({t.step: weights(t.model)})
    )
    m = model()
    h = fit(m, (x, y), mse, val_data=(x, y), metrics={"accuracy": scripted(accuracy)},
            optimizer="sgd", lr=0.05, epochs=len(accuracy), batch_size="full",
            early_stopping={"monitor": "val_accuracy", "patience": 2}, callbacks=[snap],
            **quiet())  # fmt: skip
    assert h.stop_reason.startswith("early stopping: val_accuracy did not improve")
    assert "best 0.9 at step 3" in h.stop_reason
    assert len(h.records) == 5  # 0.9, then two evaluations without improvement
    assert all(torch.equal(p, q) for p, q in zip(weights(m), snapshots[3], strict=True))


def test_plateau_and_model_checkpoint_follow_an_accuracy_upwards(tmp_path: Path) -> None:
    x, y = data()
    accuracy = [0.5, 0.6, 0.7, 0.8]  # always improving: never a cut
    cb = ReduceLROnPlateau("val_accuracy", patience=0, factor=0.5)
    mc = ModelCheckpoint(tmp_path, monitor="val_accuracy", keep=1)
    h = fit(model(), (x, y), mse, val_data=(x, y), metrics={"accuracy": scripted(accuracy)},
            optimizer=torch.optim.SGD, lr=0.1, epochs=4, batch_size="full", callbacks=[cb, mc],
            **quiet())  # fmt: skip
    assert h.steps["lr"] == pytest.approx([0.1] * 4)
    assert cb.mode == mc.mode == "max"
    assert mc.kept[0][0] == 0.8


def test_a_monitor_that_is_not_logged_is_refused_before_the_first_step() -> None:
    x, y = data()
    loss = CountCalls()
    with pytest.raises(ValueError, match="monitor 'val_acc' is not logged; available here: "
                                         "val_loss, val_accuracy"):  # fmt: skip
        fit(model(), (x, y), loss, val_data=(x, y), metrics={"accuracy": scripted([1.0])},
            early_stopping=EarlyStopping("val_acc"), **quiet())  # fmt: skip
    with pytest.raises(ValueError, match="monitors 'train_accuracy': pass train_metrics=True"):
        fit(model(), (x, y), loss, val_data=(x, y), metrics={"accuracy": scripted([1.0])},
            callbacks=[ReduceLROnPlateau("train_accuracy")], **quiet())  # fmt: skip
    assert loss.training_calls == 0


# ----------------------------------------------------------------------------- 2: bad lrs
def test_a_negative_lr_from_a_schedule_is_refused_before_the_update() -> None:
    x, y = data()

    def sched(t: int) -> float:
        return 0.05 if t < 3 else -0.05

    fits = "lr: the learning rate of step 4 is -0.05 in param group 0; it must be finite and "
    for optimizer in ("sgd", torch.optim.SGD, lambda p: torch.optim.SGD(p, lr=1.0)):
        ref = model()  # three steps at 0.05: what the run may have done before it stops
        fit(ref, (x, y), mse, optimizer=optimizer, lr=lambda t: 0.05, max_steps=3, batch_size=4,
            **quiet())  # fmt: skip
        m = model()
        # a bergab optimizer may refuse the value itself, when it evaluates it after step 3
        message = r"lr.*-0\.05" if optimizer == "sgd" else re.escape(fits)
        with pytest.raises(ValueError, match=message):
            fit(m, (x, y), mse, optimizer=optimizer, lr=sched, max_steps=6, batch_size=4,
                **quiet())  # fmt: skip
        assert all(torch.equal(p, q) for p, q in zip(weights(m), weights(ref), strict=True))


def test_a_nan_lr_is_reported_as_the_lr_not_as_divergence() -> None:
    x, y = data()
    with pytest.raises(ValueError, match="lr: the learning rate of step 1 is nan"):
        fit(model(), (x, y), mse, optimizer=torch.optim.SGD, lr=lambda t: float("nan"),
            max_steps=3, **quiet())  # fmt: skip
    with pytest.raises(ValueError, match=r"lr.* inf"):  # fit's check, or the optimizer's
        fit(model(), (x, y), mse, optimizer="sgd", lr=lambda t: float("inf"), max_steps=3,
            **quiet())  # fmt: skip


def test_a_torch_scheduler_going_negative_is_named() -> None:
    x, y = data()
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - t)  # 1, 0, -1, ...
    with pytest.raises(ValueError, match=r"^scheduler: the learning rate of step 3 is -0\.1"):
        fit(m, (x, y), mse, optimizer=opt, scheduler=sch, max_steps=5, **quiet())


def test_a_zero_lr_is_allowed() -> None:  # warmup from 0 and decay to 0 are common
    x, y = data()
    sched = schedules.linear(0.0, 0.1, 3)
    h = fit(model(), (x, y), mse, optimizer="sgd", lr=sched, max_steps=3, **quiet())
    assert h.steps["lr"][0] == 0.0


# ----------------------------------------------------------------------------- 3: group ratios
def two_groups(m: nn.Module, kind: str = "torch") -> torch.optim.Optimizer:
    groups = [{"params": [m.weight]}, {"params": [m.bias], "lr": 1e-2}]
    if kind == "torch":
        return torch.optim.SGD(groups, lr=1e-3)
    return bergab.optim.SGD(groups, lr=1e-3)


@pytest.mark.parametrize("kind", ["torch", "bergab"])
def test_fit_keeps_each_groups_ratio_to_the_first_group(kind: str) -> None:
    x, y = data()
    sched = schedules.warmup(schedules.cosine(0.1, 6), steps=2)
    m = model()
    h = fit(m, (x, y), mse, optimizer=two_groups(m, kind), lr=sched, max_steps=8,
            batch_size=4, **quiet())  # fmt: skip
    expected = [sched(t) for t in range(8)]
    assert h.steps["lr_0"] == pytest.approx(expected, rel=1e-12)
    assert h.steps["lr_1"] == pytest.approx([10 * v for v in expected], rel=1e-12)
    m = model()
    h = fit(m, (x, y), mse, optimizer=two_groups(m, kind), lr=0.05, max_steps=2, **quiet())
    assert h.steps["lr_0"] == pytest.approx([0.05, 0.05])
    assert h.steps["lr_1"] == pytest.approx([0.5, 0.5])


def test_group_ratios_hold_under_auto_lr_and_plateau_cuts() -> None:
    torch.manual_seed(0)
    x = torch.randn(128, 3, dtype=torch.float64)
    y = x.sum(1, keepdim=True)
    m = model()
    h = fit(m, (x, y), mse, optimizer=two_groups(m), lr="auto", max_steps=20, batch_size=32,
            seed=0, **quiet())  # fmt: skip
    assert [b / a for a, b in zip(h.steps["lr_0"], h.steps["lr_1"], strict=True)] == (
        pytest.approx([10.0] * 20)
    )
    m = model()
    plateau = schedules.ReduceOnPlateau(0.1, patience=0, factor=0.5)  # fed once, not per group
    h = fit(m, (x, y), mse, val_data=(x + 100, y), optimizer=two_groups(m), lr=plateau,
            epochs=4, batch_size="full", **quiet())  # fmt: skip
    ref = schedules.ReduceOnPlateau(0.1, patience=0, factor=0.5)
    expected = []
    for rec in h.records:
        expected.append(ref(0))
        ref.update(rec["val_loss"])
    assert h.steps["lr_0"] == pytest.approx(expected, rel=1e-12)
    assert h.steps["lr_1"] == pytest.approx([10 * v for v in expected], rel=1e-12)


# ----------------------------------------------------------------------------- 4: broadcasting
@pytest.mark.parametrize(
    "loss_fn",
    [
        mse,
        nn.MSELoss(),
        nn.L1Loss(),
        functools.partial(nn.functional.smooth_l1_loss, beta=0.5),
        lambda out, y: nn.functional.mse_loss(out, y) * 2,  # torch's warning, inside a lambda
    ],
    ids=["mse_loss", "MSELoss", "L1Loss", "partial", "lambda"],
)
def test_targets_that_would_broadcast_are_refused(loss_fn: Any) -> None:
    x, _ = data(n=32)
    y2 = torch.zeros(32, 2, dtype=torch.float64)
    message = ("train_data/loss_fn: the first batch's outputs have shape (32, 1) and its "
               "targets shape (32, 2)")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(model(), (x, y2), loss_fn, batch_size=32, max_steps=1, **quiet())
    x, y = data(n=32)
    with pytest.raises(ValueError, match=re.escape("val_data/loss_fn: the first batch's outputs "
                                                   "have shape (32, 1) and its targets shape "
                                                   "(32,)")):  # fmt: skip
        fit(model(), (x, y), loss_fn, val_data=(x, y.squeeze(1)), max_steps=1, **quiet())


def test_losses_of_other_shapes_still_train() -> None:
    torch.manual_seed(0)
    x = torch.randn(30, 4)
    y = torch.randint(0, 3, (30,))
    h = fit(nn.Linear(4, 3), (x, y), nn.functional.cross_entropy, val_data=(x, y),
            max_steps=3, **quiet())  # fmt: skip
    assert len(h) == 3


# ----------------------------------------------------------------------------- 5: first batch
def test_wrong_input_width_or_dtype_names_the_data_and_the_shapes() -> None:
    x, y = data(n=8)
    with pytest.raises(ValueError, match=re.escape(
        "train_data: the model could not take the first batch's inputs of shape (8, 3) dtype "
        "torch.float64 (the model's parameters are torch.float64 on cpu): mat1 and mat2"
    )):  # fmt: skip
        fit(nn.Linear(4, 1).double(), (x, y), mse, **quiet())
    with pytest.raises(ValueError, match=re.escape(
        "train_data: the model could not take the first batch's inputs of shape (8, 3) dtype "
        "torch.float64 (the model's parameters are torch.float32 on cpu)"
    )):  # fmt: skip
        fit(nn.Linear(3, 1), (x, y), mse, **quiet())
    with pytest.raises(ValueError, match="val_data: the model could not take the first batch"):
        fit(model(), (x, y), mse, val_data=(torch.zeros(4, 5, dtype=torch.float64), y[:4]),
            **quiet())  # fmt: skip
    with pytest.raises(ValueError, match=r"^train_data: the model could not take"):
        bergab.lr_find(nn.Linear(4, 1).double(), (x, y), mse, steps=5)


@pytest.mark.parametrize(
    ("loss_fn", "exc", "message"),
    [
        (lambda o, t: (o - t) ** 2, ValueError,
         "loss_fn must return a scalar (0-d) tensor, got a tensor of shape (8, 1)"),
        (lambda o, t: 1.0, TypeError, "loss_fn must return a scalar tensor, got a float"),
        (lambda o, t: mse(o, t).detach(), ValueError, "does not depend on the model's parameters"),
        (lambda o, t: torch.tensor(mse(o, t).item()), ValueError, "requires_grad is False"),
        (lambda o, t: (o > t).sum(), TypeError, "loss_fn must return a floating-point tensor"),
    ],
    ids=["vector", "float", "detached", "item", "integer"],
)  # fmt: skip
def test_a_loss_that_is_not_a_scalar_tensor_is_named(loss_fn: Any, exc: type, message: str) -> None:
    x, y = data(n=8)
    with pytest.raises(exc, match=re.escape(message)):
        fit(model(), (x, y), loss_fn, **quiet())


def test_a_failing_loss_names_the_batch() -> None:
    x, y = data(n=8)
    with pytest.raises(ValueError, match=re.escape(
        "loss_fn failed on the first batch of train_data: outputs of shape (8, 1) dtype "
        "torch.float64, targets of shape (8, 1) dtype torch.float64"
    )):  # fmt: skip
        fit(model(), (x, y), lambda o, t: (o @ t).sum(), **quiet())


def test_a_metric_must_return_a_number() -> None:
    x, y = data(n=8)
    with pytest.raises(ValueError, match=re.escape(
        "metrics['acc'] must return a number, got a tensor of shape (8, 1)"
    )):  # fmt: skip
        fit(model(), (x, y), mse, val_data=(x, y), metrics={"acc": lambda o, t: o}, **quiet())
    with pytest.raises(
        TypeError, match=re.escape("metrics['acc'] must return a number, got a str")
    ):
        fit(model(), (x, y), mse, val_data=(x, y), metrics={"acc": lambda o, t: "high"},
            **quiet())  # fmt: skip
    with pytest.raises(ValueError, match="metrics: the name 'loss' is not allowed"):
        fit(model(), (x, y), mse, val_data=(x, y), metrics={"loss": lambda o, t: 0.0}, **quiet())


def test_batch_fn_must_return_a_pair() -> None:
    x, y = data(n=8)
    with pytest.raises(TypeError, match="batch_fn must return a pair"):
        fit(model(), (x, y), mse, batch_fn=lambda b: (b[0], b[1], b[1]), **quiet())
    with pytest.raises(TypeError, match="batch_fn must return a pair"):  # accumulation
        fit(model(), (x, y), mse, batch_fn=lambda b: {"x": b[0], "y": b[1]},
            accumulation_steps=2, batch_size=2, **quiet())  # fmt: skip


def test_devices_that_are_not_there_are_refused() -> None:
    x, y = data(n=4)
    cases: list[tuple[str, str]] = [
        ("tpu", "device must be 'auto' or a torch device"),
        ("meta", "device='meta': the meta device holds no data"),
    ]
    if not torch.cuda.is_available():
        cases.append(("cuda", "CUDA is not available"))
    else:
        cases.append(("cuda:99", "use an index in [0,"))
    if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        cases.append(("mps", "device='mps': MPS is not available in this process"))
    for device, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            fit(model(), (x, y), mse, device=device, **quiet())


@pytest.mark.parametrize("option", ["checkpoint_dir", "log_dir", "ModelCheckpoint", "CSVLogger"])
def test_unwritable_folders_are_refused_before_the_first_step(tmp_path: Path, option: str) -> None:
    x, y = data()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    loss = CountCalls()
    kwargs: dict[str, Any] = {option: blocker / "run"}
    name = option
    if option == "ModelCheckpoint":
        kwargs = {"callbacks": [ModelCheckpoint(blocker / "run", save="last")]}
        name = "ModelCheckpoint dirpath"
    elif option == "CSVLogger":
        kwargs = {"callbacks": [CSVLogger(blocker / "run")]}
        name = "CSVLogger log_dir"
    with pytest.raises(ValueError, match=f"^{name}: cannot create or write the folder"):
        fit(model(), (x, y), loss, **kwargs, **quiet())
    assert loss.training_calls == 0


# ----------------------------------------------------------------------------- 5: numpy
def test_numpy_arrays_train_as_tensors_do() -> None:
    x, y = data()
    a, b = model(), model()
    ha = fit(a, (x, y), mse, val_data=(x, y), optimizer="sgd", lr=0.1, epochs=2, batch_size=4,
             seed=0, **quiet())  # fmt: skip
    hb = fit(b, (x.numpy(), y.numpy()), mse, val_data=[x.numpy(), y.numpy()], optimizer="sgd",
             lr=0.1, epochs=2, batch_size=4, seed=0, **quiet())  # fmt: skip
    assert ha.steps["loss"] == hb.steps["loss"]
    assert [r["val_loss"] for r in ha.records] == [r["val_loss"] for r in hb.records]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_numpy_float64_data_become_the_models_dtype() -> None:
    x = np.random.default_rng(0).normal(size=(8, 3))  # numpy's float64
    h = fit(nn.Linear(3, 1), (x, x[:, :1]), mse, val_data=(x, x[:, :1]), **quiet())
    assert math.isfinite(h.last["loss"])
    assert math.isfinite(h.last["val_loss"])
    h = fit(nn.Linear(3, 1).double(), (x.astype(np.float32), x[:, :1]), mse, **quiet())
    assert math.isfinite(h.last["loss"])
    # tensors are not cast: a float64 tensor for a float32 model is still refused
    with pytest.raises(ValueError, match=re.escape(
        "inputs of shape (8, 3) dtype torch.float64 (the model's parameters are torch.float32"
    )):  # fmt: skip
        fit(nn.Linear(3, 1), (torch.from_numpy(x), torch.zeros(8, 1)), mse, **quiet())
    with pytest.raises(TypeError, match="train_data: a numpy array of dtype object"):
        fit(nn.Linear(3, 1), (x, np.array([object()] * 8)), mse, **quiet())


# ----------------------------------------------------------------------------- 6: NaN data
def test_nan_inputs_are_named_not_blamed_on_the_learning_rate() -> None:
    x, y = data()
    x[5, 1] = float("nan")  # the second batch of 4
    with pytest.raises(NonFiniteError) as info:
        fit(model(), (x, y), mse, optimizer="sgd", lr=0.01, batch_size=4, shuffle=False,
            **quiet())  # fmt: skip
    message = str(info.value)
    assert (
        "loss is nan at step 2 (epoch 0, batch 2): the inputs of batch 2 (step 2) contain NaN"
        in (message)
    )
    assert "lower the learning rate" not in message
    y[13, 0] = float("inf")
    x[5, 1] = 0.0
    with pytest.raises(
        NonFiniteError, match=re.escape("the targets of batch 4 (step 4) contain inf")
    ):
        fit(model(), (x, y), mse, optimizer="sgd", lr=0.01, batch_size=4, shuffle=False,
            **quiet())  # fmt: skip


def test_nan_data_under_skip_and_rollback(tmp_path: Path) -> None:
    x, y = data()
    x[5, 1] = float("nan")
    h = fit(model(), (x, y), mse, optimizer="sgd", lr=0.01, batch_size=4, shuffle=False,
            nan_policy="skip", **quiet())  # fmt: skip
    skips = [e for e in h.events if e["event"] == "skip"]
    assert len(skips) == 1
    assert "the inputs of batch 2 (step 2) contain NaN" in skips[0]["reason"]
    with pytest.raises(NonFiniteError, match="contain NaN; this is no learning-rate problem"):
        fit(model(), (x, y), mse, optimizer="sgd", lr=0.01, batch_size=4, shuffle=False,
            nan_policy="rollback", checkpoint_dir=tmp_path, **quiet())  # fmt: skip


def test_nan_in_val_data_is_named_not_recorded_as_val_loss() -> None:
    from bergab.training import evaluate

    x, y = data()
    vx = x.clone()
    vx[5, 1] = float("nan")
    with pytest.raises(ValueError, match=r"val_data: the inputs of batch 1 contain NaN"):
        fit(model(), (x, y), mse, val_data=(vx, y), optimizer="sgd", lr=0.01, **quiet())
    vy = y.clone()
    vy[3] = float("inf")  # batches of 4: the first has 4 examples
    with pytest.raises(ValueError, match=r"the targets of batch 1 contain inf"):
        fit(model(), (x, y), mse, val_data=[(x[:4], vy[:4])], optimizer="sgd", lr=0.01,
            **quiet())  # fmt: skip
    with pytest.raises(ValueError, match=r"data: the inputs of batch 1 contain NaN"):
        evaluate(model(), (vx, y), mse)


def test_callbacks_must_be_a_list_of_callbacks() -> None:
    x, y = data()
    with pytest.raises(TypeError, match="callbacks must be a list of Callback instances"):
        fit(model(), (x, y), mse, callbacks=5, **quiet())
    with pytest.raises(TypeError, match="callbacks must be Callback instances, got int"):
        fit(model(), (x, y), mse, callbacks=[5], **quiet())
    seen: list[int] = []
    cb = LambdaCallback(on_batch_end=lambda t, rec: seen.append(rec["step"]))
    fit(model(), (x, y), mse, callbacks=cb, max_steps=2, **quiet())  # one Callback is fine
    assert seen == [1, 2]


def test_nan_in_the_initial_weights_is_named() -> None:
    x, y = data()
    m = model()
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="the model's parameter 'weight' holds NaN/inf"):
        fit(m, (x, y), mse, **quiet())


# ----------------------------------------------------------------------------- 7: evaluate
def test_evaluate_is_the_weighted_mean_in_eval_mode_without_gradients() -> None:
    from bergab.training import evaluate

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1)).double()
    net[2].eval()  # a submodule the user set to eval mode stays so
    x, y = data(n=10)
    mae = lambda o, t: (o - t).abs().mean()  # noqa: E731
    got = evaluate(net, (x, y), mse, metrics={"mae": mae}, batch_size=4)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert got == pytest.approx({"loss": mse(out, y).item(), "mae": mae(out, y).item()},
                                rel=1e-12)  # fmt: skip
    assert [m.training for m in net.modules()] == [False] * 4  # eval() above
    net.train()
    net[2].eval()
    evaluate(net, (x, y), mse)
    assert [m.training for m in net.modules()] == [True, True, True, False]
    assert all(p.grad is None for p in net.parameters())
    assert bergab.evaluate is evaluate
    assert set(evaluate(net, (x.numpy(), y.numpy()), mse, batch_size="full")) == {"loss"}
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    assert evaluate(net, loader, mse)["loss"] == pytest.approx(mse(out, y).item(), rel=1e-12)


def test_evaluate_checks_its_arguments() -> None:
    from bergab.training import evaluate

    x, y = data(n=4)
    with pytest.raises(ValueError, match="batch_size must be None when data is a DataLoader"):
        evaluate(model(), DataLoader(TensorDataset(x, y)), mse, batch_size=2)
    with pytest.raises(ValueError, match="data is empty"):
        evaluate(model(), (x[:0], y[:0]), mse)
    with pytest.raises(ValueError, match=r"^data: the model could not take"):
        evaluate(nn.Linear(5, 1).double(), (x, y), mse)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model(), (x, y), mse, batch_size=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluate(model(), (x, y), mse, precision="8")
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        evaluate("model", (x, y), mse)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- 8: train metrics
def test_train_metrics_come_from_the_training_steps() -> None:
    x, y = data(n=12)
    calls: list[int] = []

    def size(out: torch.Tensor, t: torch.Tensor) -> float:  # the batch size, as a metric
        calls.append(len(t))
        return float(len(t))

    h = fit(model(), (x, y), mse, metrics={"size": size}, train_metrics=True, optimizer="sgd",
            lr=0.01, epochs=2, batch_size=5, **quiet())  # fmt: skip
    assert calls == [5, 5, 2] * 2  # once per training batch: no second pass
    # batches of 5, 5 and 2: the mean weighted by batch size
    assert [r["train_size"] for r in h.records] == pytest.approx([(25 + 25 + 4) / 12] * 2)
    h = fit(model(), (x, y), mse, val_data=(x, y), metrics={"size": size}, optimizer="sgd",
            lr=0.01, epochs=1, batch_size=5, **quiet())  # fmt: skip
    assert "train_size" not in h.records[0]
    assert calls[6:] == [12]  # off: the metric sees the validation batch only


def test_train_metrics_leave_out_skipped_steps_and_feed_monitors() -> None:
    x, y = data(n=12)
    x[6, 0] = float("nan")  # the second batch of 5 is skipped
    mae = lambda o, t: (o - t).abs().mean()  # noqa: E731
    m = model()
    ref = model()
    h = fit(m, (x, y), mse, metrics={"mae": mae}, train_metrics=True, optimizer="sgd",
            lr=lambda t: 0.0,
            epochs=1, batch_size=5, shuffle=False, nan_policy="skip",
            early_stopping={"monitor": "train_mae", "patience": 3}, **quiet())  # fmt: skip
    with torch.no_grad():  # lr 0: the weights never move, so the batches can be redone
        kept = [(ref(x[:5]), y[:5]), (ref(x[10:]), y[10:])]
    expected = sum(mae(o, t).item() * len(t) for o, t in kept) / 7
    assert h.records[0]["train_mae"] == pytest.approx(expected, rel=1e-12)


def test_train_metrics_option_checks_and_config_key() -> None:
    x, y = data(n=4)
    with pytest.raises(ValueError, match="train_metrics=True needs metrics"):
        fit(model(), (x, y), mse, train_metrics=True, **quiet())
    with pytest.raises(TypeError, match="train_metrics must be True or False"):
        fit(model(), (x, y), mse, train_metrics=1, **quiet())
    from bergab import config

    assert "train_metrics" in config.FitSection.model_fields


def test_a_run_state_from_before_train_metrics_loads() -> None:
    saved = RunState(step=3).to_dict()
    del saved["train_metric_sums"], saved["train_metric_n"]
    assert RunState.from_dict(saved) == RunState(step=3)
