"""The tables of the bad-input suite (issue #17): one row per bad call.

``tests/test_bad_input.py`` runs the library tables and ``tests/test_bad_input_cli.py``
the command-line table; ``docs/bad-input.md`` says what the suite covers and how to add a
case. A row names the exception it expects and the argument (or TOML key, or file) the
message must name, so that a case never passes on some unrelated error from deep inside
torch.

Kinds (``Case.kind``): ``type`` (a value of the wrong kind), ``range`` (out of range,
wrong order, unknown names), ``nan`` (NaN or infinity), ``data`` (empty or mismatched
data, shapes, losses and metrics that do not return a scalar), ``path`` (missing files,
directories where files belong and the reverse, unwritable paths), ``file`` (corrupt or
truncated files, invalid TOML/JSON), ``interrupted`` (resuming runs that stopped, were
cut short or are resumed with changed settings), ``silent`` (calls that returned a wrong
result instead of raising).
"""

# The tables keep one case per line, however long: a row reads as one sentence.
# ruff: noqa: E501

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import bergab
from bergab import auto_lr, diagnostics, landscapes, optim, scaling, tasks
from bergab import schedules as sch
from bergab._validate import MissingDependencyError
from bergab.lr_finder import LRFindResult, suggest
from bergab.minimization import compare, steps_to_tolerance, tune_lr
from bergab.training import (
    CSVLogger,
    EarlyStopping,
    FitOptions,
    History,
    JSONLLogger,
    LambdaCallback,
    ModelCheckpoint,
    NonFiniteError,
    ProgressBar,
    ReduceLROnPlateau,
    TensorBoardLogger,
    Trainer,
    World,
    load_checkpoint,
    save_checkpoint,
)

NAN = math.nan
INF = math.inf

KINDS = ("type", "range", "nan", "data", "path", "file", "interrupted", "silent")

#: what a case may raise when the suite does not fix one exception type
BAD_VALUE = (ValueError, TypeError)


# =========================================================================== the rows


@dataclass
class Ctx:
    """What a case's call gets: a fresh temporary folder and the suite's shared fixtures.

    ``run(name)`` copies a finished tiny training run (config.toml, checkpoints, logs,
    model.pt, summary.json) into ``tmp/name`` and returns its path.
    """

    tmp: Path
    template_run: Callable[[], Path] | None = None

    def run(self, name: str = "run") -> Path:
        assert self.template_run is not None, "this case needs the finished-run fixture"
        dst = self.tmp / name
        shutil.copytree(self.template_run(), dst)
        return dst

    def dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def file(self, name: str, data: bytes | str = "x") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return path


@dataclass(frozen=True)
class Case:
    """One bad call of the library.

    Attributes:
        id: the pytest id, ``<area>-<what>``.
        call: ``call(ctx)`` makes the bad call (it builds every object it needs).
        exc: the exception type(s) it must raise.
        must_name: the argument (or key, or file name) the message must contain, as a
            whole word; a tuple: every one of them.
        kind: one of :data:`KINDS`.
    """

    id: str
    call: Callable[[Ctx], Any]
    exc: type[BaseException] | tuple[type[BaseException], ...]
    must_name: str | tuple[str, ...]
    kind: str

    @property
    def area(self) -> str:
        return self.id.split("-", 1)[0]


@dataclass(frozen=True)
class Check:
    """A call that must work (``must work``) or give the right result (``silent``).

    ``check(ctx)`` raises ``AssertionError`` (or any exception) when the behaviour is
    wrong; it returns normally when it is right.
    """

    id: str
    check: Callable[[Ctx], Any]
    kind: str

    @property
    def area(self) -> str:
        return self.id.split("-", 1)[0]


class AnyOf(tuple[str, ...]):
    """``must_name`` that is satisfied by any one of the names (``--out`` or ``output.dir``)."""


Names = str | tuple[str, ...]


def names_in(message: str, must_name: Names) -> list[str]:
    """The names of ``must_name`` missing from ``message``; each must appear as a whole word
    (``lr`` is not found in ``lr_find``, ``err`` not in ``error``). A tuple needs every
    name, an :class:`AnyOf` one of them."""
    wanted = (must_name,) if isinstance(must_name, str) else must_name
    missing = []
    for name in wanted:
        pattern = rf"(?<![\w]){re.escape(name)}(?![\w])"
        if re.search(pattern, message) is None:
            missing.append(name)
    if isinstance(must_name, AnyOf) and len(missing) < len(must_name):
        return []
    return missing


def verdict(case: Case, ctx: Ctx) -> str | None:
    """Run one case; ``None`` when it holds, else a one-line reason starting with
    ``SILENT`` (nothing raised), ``UNCLEAR`` (another exception, or a message that does
    not name the argument)."""
    try:
        result = case.call(ctx)
    except case.exc as exc:
        message = str(exc)
        if isinstance(exc, KeyError) and exc.args:
            message = str(exc.args[0])
        missing = names_in(message, case.must_name)
        if missing:
            return f"UNCLEAR: {type(exc).__name__} does not name {missing}: {message[:300]!r}"
        if "\n" in message.strip() and "Traceback" in message:
            return f"UNCLEAR: the message holds a traceback: {message[:300]!r}"
        return None
    except Exception as exc:  # any other exception is the finding
        want = case.exc if isinstance(case.exc, tuple) else (case.exc,)
        shown = "/".join(e.__name__ for e in want)
        return f"UNCLEAR: raised {type(exc).__name__}, not {shown}: {str(exc)[:300]!r}"
    return f"SILENT: returned {type(result).__name__} {str(result)[:120]!r} instead of raising"


# =========================================================================== helpers


def xy(n: int = 8, d: int = 3, out: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, out, generator=g)


def linear(d: int = 3, out: int = 1) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(d, out)


mse = torch.nn.functional.mse_loss

_DROP = object()


def fit_(
    *,
    model: Callable[[], Any] = linear,
    data: Callable[[], Any] = xy,
    loss: Any = mse,
    **options: Any,
) -> Callable[[Ctx], Any]:
    """A case call running ``bergab.fit`` on a tiny problem (2 steps, no progress bar)
    with ``options`` changed; ``_DROP`` removes a default option."""
    base: dict[str, Any] = {"max_steps": 2, "progress": False}

    def call(ctx: Ctx) -> Any:
        opts = {**base, **options}
        opts = {k: (v(ctx) if isinstance(v, _Lazy) else v) for k, v in opts.items()}
        opts = {k: v for k, v in opts.items() if v is not _DROP}
        return bergab.fit(model(), data(), loss, **opts)

    return call


class _Lazy:
    """An option value computed from the case's ``Ctx`` (a path in its folder)."""

    def __init__(self, fn: Callable[[Ctx], Any]) -> None:
        self.fn = fn

    def __call__(self, ctx: Ctx) -> Any:
        return self.fn(ctx)


def in_tmp(*parts: str, make_file: str | None = None) -> _Lazy:
    """A path under the case's folder; ``make_file``: first create that regular file."""

    def fn(ctx: Ctx) -> Path:
        if make_file is not None:
            ctx.file(make_file)
        return ctx.tmp.joinpath(*parts)

    return _Lazy(fn)


def params() -> list[nn.Parameter]:
    return list(linear().parameters())


def opt(cls: type, **kw: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: cls(params(), **kw)


def finished_history(ctx: Ctx) -> History:
    m = linear()
    return bergab.fit(
        m, xy(), mse, val_data=xy(seed=1), optimizer="sgd", lr=0.1, max_steps=2, progress=False
    )


def checkpoint_of(ctx: Ctx, optimizer: str = "adamw", model: Callable[[], Any] = linear) -> Path:
    """A real checkpoint of a 2-step run in ``ctx.tmp/ckpt/last.pt``."""
    folder = ctx.tmp / "ckpt"
    bergab.fit(
        model(),
        xy(),
        mse,
        optimizer=optimizer,
        lr=0.01,
        max_steps=2,
        checkpoint_dir=folder,
        progress=False,
    )
    return folder / "last.pt"


def truncated(path: Path, keep: int | None = None) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])
    return path


def truncate_all(last: Path) -> None:
    """Truncate ``last.pt`` and every older checkpoint kept beside it (``last.prev*.pt``)."""
    for path in [last, *last.parent.glob(f"{last.stem}.prev*{last.suffix}")]:
        truncated(path)


def cfg_dict(**tables: Any) -> dict[str, Any]:
    """A small valid run config (linreg, 3 steps) with ``tables`` merged in."""
    base: dict[str, Any] = {
        "task": {"name": "linreg", "n_train": 64, "n_val": 16},
        "optimizer": {"name": "adamw"},
        "schedule": {"lr": 0.01},
        "fit": {"max_steps": 3, "batch_size": 16, "progress": False},
        "output": {"plots": False},
    }
    for table, values in tables.items():
        if values is None:
            base.pop(table, None)
        elif table != "schedule" and isinstance(values, dict) and isinstance(base.get(table), dict):
            base[table] = {**base[table], **values}
        else:
            base[table] = values
    return base


def validate_(**tables: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        from bergab import config

        return config.validate(cfg_dict(**tables))

    return call


# =========================================================================== fit


def _vector_loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (o - t) ** 2


def _float_loss(o: torch.Tensor, t: torch.Tensor) -> float:
    return float(((o - t) ** 2).mean())


def _nan_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = xy()
    x[3, 1] = NAN
    return x, y


def _nan_targets() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = xy()
    y[2, 0] = INF
    return x, y


def _dict_batches() -> list[dict[str, torch.Tensor]]:
    x, y = xy()
    return [{"a": x, "b": y}]


def _torch_sgd_instance() -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        m = linear()
        other = torch.optim.SGD(linear(4, 2).parameters(), lr=0.1)
        return bergab.fit(m, xy(), mse, optimizer=other, max_steps=2, progress=False)

    return call


def _scheduler_on_another_optimizer(ctx: Ctx) -> Any:
    m = linear()
    o = torch.optim.SGD(m.parameters(), lr=0.1)
    other = torch.optim.SGD(linear().parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(other, step_size=1)
    return bergab.fit(m, xy(), mse, optimizer=o, scheduler=sched, max_steps=2, progress=False)


def _dataloader_with_batch_size(ctx: Ctx) -> Any:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*xy()), batch_size=4)
    return bergab.fit(linear(), loader, mse, batch_size=4, max_steps=2, progress=False)


def _metric_vector(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (o - t).abs().squeeze(1)


def _metric_string(o: torch.Tensor, t: torch.Tensor) -> str:
    return "good"


# fmt: off
FIT: list[Case] = [
    # types
    Case("fit-model-type", lambda c: bergab.fit("net", xy(), mse), TypeError, "model", "type"),
    Case("fit-loss_fn-type", lambda c: bergab.fit(linear(), xy(), None), TypeError, "loss_fn", "type"),
    Case("fit-unknown-option", fit_(epoch=3), TypeError, "epoch", "type"),
    Case("fit-epochs-float", fit_(epochs=1.5, max_steps=_DROP), TypeError, "epochs", "type"),
    Case("fit-epochs-str", fit_(epochs="3", max_steps=_DROP), TypeError, "epochs", "type"),
    Case("fit-max_steps-float", fit_(max_steps=2.5), TypeError, "max_steps", "type"),
    Case("fit-max_steps-bool", fit_(max_steps=True), TypeError, "max_steps", "type"),
    Case("fit-batch_size-float", fit_(batch_size=2.5), TypeError, "batch_size", "type"),
    Case("fit-batch_size-str", fit_(batch_size="half"), BAD_VALUE, "batch_size", "type"),
    Case("fit-shuffle-str", fit_(shuffle="yes"), TypeError, "shuffle", "type"),
    Case("fit-clip_norm-str", fit_(clip_norm="1.0"), TypeError, "clip_norm", "type"),
    Case("fit-accumulation_steps-float", fit_(accumulation_steps=1.5), TypeError, "accumulation_steps", "type"),
    Case("fit-device-list", fit_(device=["cpu"]), TypeError, "device", "type"),
    Case("fit-metrics-list", fit_(metrics=["acc"], val_data=xy()), TypeError, "metrics", "type"),
    Case("fit-metrics-not-callable", fit_(metrics={"acc": 1}, val_data=xy()), TypeError, "metrics", "type"),
    Case("fit-callbacks-object", fit_(callbacks=[object()]), TypeError, "callbacks", "type"),
    Case("fit-callbacks-int", fit_(callbacks=5), TypeError, "callbacks", "type"),
    Case("fit-early_stopping-str", fit_(early_stopping="val_loss"), TypeError, "early_stopping", "type"),
    Case("fit-checkpoint_dir-int", fit_(checkpoint_dir=5), TypeError, "checkpoint_dir", "type"),
    Case("fit-log_dir-float", fit_(log_dir=3.0), TypeError, "log_dir", "type"),
    Case("fit-resume-int", fit_(resume=1), TypeError, "resume", "type"),
    Case("fit-seed-float", fit_(seed=1.5), TypeError, "seed", "type"),
    Case("fit-seed-str", fit_(seed="0"), TypeError, "seed", "type"),
    Case("fit-progress-int", fit_(progress=1), TypeError, "progress", "type"),
    Case("fit-lr-list", fit_(lr=[0.1]), TypeError, "lr", "type"),
    Case("fit-optimizer-int", fit_(optimizer=5), TypeError, "optimizer", "type"),
    Case("fit-optimizer_kwargs-list", fit_(optimizer_kwargs=[("weight_decay", 0.1)]), TypeError, "optimizer_kwargs", "type"),
    Case("fit-optimizer_kwargs-unknown", fit_(optimizer="adamw", optimizer_kwargs={"betaz": (0.9, 0.9)}), TypeError, "betaz", "type"),
    Case("fit-optimizer_kwargs-with-instance", lambda c: bergab.fit(linear(), xy(), mse, optimizer=torch.optim.SGD(params(), lr=0.1), optimizer_kwargs={"momentum": 0.9}, max_steps=2, progress=False), TypeError, "optimizer_kwargs", "type"),
    Case("fit-scheduler-str", fit_(scheduler="cosine"), TypeError, "scheduler", "type"),
    Case("fit-batch_fn-int", fit_(batch_fn=3), TypeError, "batch_fn", "type"),
    Case("fit-tol-str", fit_(tol="1e-3"), TypeError, "tol", "type"),
    Case("fit-train_data-int", fit_(data=lambda: 5), TypeError, "train_data", "type"),
    Case("fit-train_data-none", fit_(data=lambda: None), TypeError, "train_data", "type"),
    Case("fit-train_data-single-tensor", fit_(data=lambda: xy()[0]), TypeError, "train_data", "type"),
    Case("fit-train_data-one-tuple", fit_(data=lambda: (xy()[0],)), TypeError, "train_data", "type"),
    Case("fit-train_data-one-shot-iterator", fit_(data=lambda: iter([xy()]), batch_size=None), TypeError, "train_data", "type"),
    Case("fit-val_data-int", fit_(val_data=7), TypeError, "val_data", "type"),
    Case("fit-val_data-one-shot-iterator", fit_(val_data=iter([xy()])), TypeError, "val_data", "type"),
    Case("fit-dict-batch-unknown-keys", fit_(data=_dict_batches), TypeError, "batch_fn", "type"),
    Case("fit-lr-schedule-returns-str", fit_(optimizer="sgd", lr=lambda t: "0.1"), BAD_VALUE, "lr", "type"),
    Case("fit-loss-returns-float", fit_(loss=_float_loss, optimizer="sgd", lr=0.1), TypeError, "loss_fn", "type"),
    Case("fit-metric-returns-str", fit_(val_data=xy(), metrics={"quality": _metric_string}), BAD_VALUE, "quality", "type"),
    Case("trainer-options-type", lambda c: Trainer(linear(), xy(), mse, options={"epochs": 1}), TypeError, "options", "type"),
    Case("trainer-options-and-kwargs", lambda c: Trainer(linear(), xy(), mse, FitOptions(), epochs=2), TypeError, "options", "type"),
    Case("trainer-unknown-option", lambda c: Trainer(linear(), xy(), mse, epoch=2), TypeError, "epoch", "type"),
    Case("trainer-model-type", lambda c: Trainer(None, xy(), mse), TypeError, "model", "type"),
    Case("fitoptions-unknown", lambda c: FitOptions(max_step=3), TypeError, "max_step", "type"),
    Case("fitoptions-nan_policy-int", lambda c: FitOptions(nan_policy=1), BAD_VALUE, "nan_policy", "type"),
    # ranges
    Case("fit-epochs-zero", fit_(epochs=0, max_steps=_DROP), ValueError, "epochs", "range"),
    Case("fit-max_steps-negative", fit_(max_steps=-1), ValueError, "max_steps", "range"),
    Case("fit-batch_size-zero", fit_(batch_size=0), ValueError, "batch_size", "range"),
    Case("fit-clip_norm-zero", fit_(clip_norm=0.0), ValueError, "clip_norm", "range"),
    Case("fit-clip_norm-negative", fit_(clip_norm=-1.0), ValueError, "clip_norm", "range"),
    Case("fit-clip_value-negative", fit_(clip_value=-0.5), ValueError, "clip_value", "range"),
    Case("fit-clip-both", fit_(clip_norm=1.0, clip_value=1.0), ValueError, ("clip_norm", "clip_value"), "range"),
    Case("fit-accumulation_steps-zero", fit_(accumulation_steps=0), ValueError, "accumulation_steps", "range"),
    Case("fit-precision-16", fit_(precision="16"), ValueError, "precision", "range"),
    Case("fit-device-tpu", fit_(device="tpu"), ValueError, "device", "range"),
    Case("fit-val_every-zero", fit_(val_every=0, val_data=xy()), ValueError, "val_every", "range"),
    Case("fit-val_every-without-val_data", fit_(val_every=2), ValueError, ("val_every", "val_data"), "range"),
    Case("fit-metrics-without-val_data", fit_(metrics={"acc": tasks.accuracy}), ValueError, ("metrics", "val_data"), "range"),
    Case("fit-checkpoint_every-zero", fit_(checkpoint_every=0, checkpoint_dir=in_tmp("c")), ValueError, "checkpoint_every", "range"),
    Case("fit-checkpoint_every-without-dir", fit_(checkpoint_every=2), ValueError, ("checkpoint_every", "checkpoint_dir"), "range"),
    Case("fit-resume-without-dir", fit_(resume=True), ValueError, ("resume", "checkpoint_dir"), "range"),
    Case("fit-seed-negative", fit_(seed=-1), ValueError, "seed", "range"),
    Case("fit-nan_policy-ignore", fit_(nan_policy="ignore"), ValueError, "nan_policy", "range"),
    Case("fit-nan_policy-rollback-without-dir", fit_(nan_policy="rollback"), ValueError, ("nan_policy", "checkpoint_dir"), "range"),
    Case("fit-strategy-unknown", fit_(strategy="zero"), ValueError, "strategy", "range"),
    Case("fit-strategy-ddp-alone", fit_(strategy="ddp"), ValueError, "strategy", "range"),
    Case("fit-strategy-fsdp-alone", fit_(strategy="fsdp"), ValueError, "strategy", "range"),
    Case("fit-shard_optimizer-int", fit_(shard_optimizer=1), TypeError, "shard_optimizer", "type"),
    Case("fit-shard_optimizer-instance", lambda c: bergab.fit(linear(), xy(), mse, optimizer=torch.optim.SGD(params(), lr=0.1), shard_optimizer=True), TypeError, "shard_optimizer", "type"),
    Case("fit-lr_scaling-unknown", fit_(lr_scaling="cubic"), ValueError, "lr_scaling", "range"),
    Case("fit-lr_scaling_warmup-negative", fit_(lr_scaling_warmup=-1), ValueError, "lr_scaling_warmup", "range"),
    Case("fit-lr_scaling_warmup-float", fit_(lr_scaling_warmup=2.5), TypeError, "lr_scaling_warmup", "type"),
    Case("fit-tol-zero", fit_(tol=0.0), ValueError, "tol", "range"),
    Case("fit-tol-unknown-key", fit_(tol={"los": 1e-3}), ValueError, "tol", "range"),
    Case("fit-tol-without-cap", fit_(tol=1e-3, max_steps=_DROP), ValueError, ("tol", "max_steps"), "range"),
    Case("fit-lr-zero", fit_(lr=0.0), ValueError, "lr", "range"),
    Case("fit-lr-negative", fit_(lr=-0.1), ValueError, "lr", "range"),
    Case("fit-lr-str", fit_(lr="fast"), ValueError, "lr", "range"),
    Case("fit-optimizer-unknown", fit_(optimizer="adamz"), ValueError, "adamz", "range"),
    Case("fit-optimizer_kwargs-lr", fit_(optimizer_kwargs={"lr": 0.1}), ValueError, "lr", "range"),
    Case("fit-optimizer_kwargs-weight_decay", fit_(optimizer_kwargs={"weight_decay": -1.0}), ValueError, "weight_decay", "range"),
    Case("fit-optimizer-holds-other-params", _torch_sgd_instance(), ValueError, "optimizer", "range"),
    Case("fit-scheduler-other-optimizer", _scheduler_on_another_optimizer, ValueError, "scheduler", "range"),
    Case("fit-early_stopping-patience", fit_(early_stopping={"patience": -1}), ValueError, "patience", "range"),
    Case("fit-early_stopping-unknown-key", fit_(early_stopping={"patiense": 2}), TypeError, "patiense", "range"),
    Case("fit-model-without-parameters", fit_(model=nn.ReLU), ValueError, "model", "range"),
    Case("fitoptions-epochs-zero", lambda c: FitOptions(epochs=0), ValueError, "epochs", "range"),
    Case("trainer-stop-checkpoint-without-dir", lambda c: Trainer(linear(), xy(), mse, progress=False).stop("x", checkpoint=True), ValueError, "checkpoint_dir", "range"),
    # NaN / inf
    Case("fit-lr-nan", fit_(lr=NAN), ValueError, "lr", "nan"),
    Case("fit-lr-inf", fit_(lr=INF), ValueError, "lr", "nan"),
    Case("fit-clip_norm-nan", fit_(clip_norm=NAN), ValueError, "clip_norm", "nan"),
    Case("fit-clip_norm-inf", fit_(clip_norm=INF), ValueError, "clip_norm", "nan"),
    Case("fit-clip_value-nan", fit_(clip_value=NAN), ValueError, "clip_value", "nan"),
    Case("fit-tol-nan", fit_(tol=NAN), ValueError, "tol", "nan"),
    Case("fit-tol-grad_norm-inf", fit_(tol={"grad_norm": INF}), ValueError, "grad_norm", "nan"),
    Case("fit-epochs-nan", fit_(epochs=NAN, max_steps=_DROP), BAD_VALUE, "epochs", "nan"),
    Case("fit-max_steps-inf", fit_(max_steps=INF), BAD_VALUE, "max_steps", "nan"),
    Case("fit-early_stopping-min_delta-nan", fit_(early_stopping={"min_delta": NAN}), ValueError, "min_delta", "nan"),
    Case("fit-nan-in-inputs", fit_(data=_nan_inputs, optimizer="sgd", lr=0.1), (ValueError, NonFiniteError), AnyOf(("train_data", "inputs")), "nan"),
    Case("fit-inf-in-targets", fit_(data=_nan_targets, optimizer="sgd", lr=0.1), (ValueError, NonFiniteError), AnyOf(("train_data", "targets")), "nan"),
    Case("fit-nan-in-val_data", fit_(val_data=_nan_inputs(), optimizer="sgd", lr=0.1), (ValueError, NonFiniteError), AnyOf(("val_data", "inputs")), "nan"),
    # data
    Case("fit-train_data-empty", fit_(data=lambda: xy(n=0)), ValueError, "train_data", "data"),
    Case("fit-train_data-empty-list", fit_(data=list, batch_size=None), ValueError, "train_data", "data"),
    Case("fit-train_data-lengths", fit_(data=lambda: (xy(n=8)[0], xy(n=7)[1])), ValueError, "train_data", "data"),
    Case("fit-val_data-lengths", fit_(val_data=(xy(n=8)[0], xy(n=5)[1])), ValueError, "val_data", "data"),
    Case("fit-val_data-empty", fit_(val_data=xy(n=0)), ValueError, "val_data", "data"),
    Case("fit-input-width", fit_(data=lambda: xy(d=4)), BAD_VALUE, "train_data", "data"),
    Case("fit-val-input-width", fit_(val_data=xy(d=5)), BAD_VALUE, "val_data", "data"),
    Case("fit-targets-shape", fit_(data=lambda: xy(out=2), model=lambda: linear(3, 3)), BAD_VALUE, "targets", "data"),
    Case("fit-loss-returns-vector", fit_(loss=_vector_loss, optimizer="sgd", lr=0.1), BAD_VALUE, "loss_fn", "data"),
    Case("fit-metric-returns-vector", fit_(val_data=xy(), metrics={"mae_vec": _metric_vector}), BAD_VALUE, "mae_vec", "data"),
    Case("fit-dataloader-with-batch_size", _dataloader_with_batch_size, ValueError, "batch_size", "data"),
    Case("fit-batch_fn-returns-one", fit_(batch_fn=lambda b: b[0]), BAD_VALUE, "batch_fn", "data"),
]
# fmt: on


# =========================================================================== lr_find, auto_lr


def lr_find_(**kw: Any) -> Callable[[Ctx], Any]:
    data = kw.pop("data", xy)
    base = {"steps": 10, "warn": False}
    return lambda ctx: bergab.lr_find(linear(), data(), mse, **{**base, **kw})


def auto_(**kw: Any) -> Callable[[Ctx], Any]:
    base: dict[str, Any] = {"total_steps": 20, "warn": False, "lr_find_kwargs": {"steps": 10}}
    return lambda ctx: auto_lr.auto_schedule(linear(), xy(), mse, **{**base, **kw})


def _curve() -> LRFindResult:
    return LRFindResult.from_curve([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.8, 0.3, 2.0])


# fmt: off
LR_FIND: list[Case] = [
    Case("lr_find-start_lr-zero", lr_find_(start_lr=0.0), ValueError, "start_lr", "range"),
    Case("lr_find-end_lr-negative", lr_find_(end_lr=-1.0), ValueError, "end_lr", "range"),
    Case("lr_find-start-above-end", lr_find_(start_lr=1.0, end_lr=1e-3), ValueError, AnyOf(("start_lr", "end_lr")), "range"),
    Case("lr_find-start-equals-end", lr_find_(start_lr=1e-3, end_lr=1e-3), ValueError, AnyOf(("start_lr", "end_lr")), "range"),
    Case("lr_find-steps-one", lr_find_(steps=1), ValueError, "steps", "range"),
    Case("lr_find-steps-float", lr_find_(steps=10.5), TypeError, "steps", "type"),
    Case("lr_find-mode-log", lr_find_(mode="log"), ValueError, "mode", "range"),
    Case("lr_find-smoothing-one", lr_find_(smoothing=1.0), ValueError, "smoothing", "range"),
    Case("lr_find-diverge_factor-one", lr_find_(diverge_factor=1.0), ValueError, "diverge_factor", "range"),
    Case("lr_find-accumulation_steps-zero", lr_find_(accumulation_steps=0), ValueError, "accumulation_steps", "range"),
    Case("lr_find-batch_size-zero", lr_find_(batch_size=0), ValueError, "batch_size", "range"),
    Case("lr_find-precision", lr_find_(precision="8"), ValueError, "precision", "range"),
    Case("lr_find-clip_norm-negative", lr_find_(clip_norm=-1.0), ValueError, "clip_norm", "range"),
    Case("lr_find-seed-negative", lr_find_(seed=-3), ValueError, "seed", "range"),
    Case("lr_find-warn-str", lr_find_(warn="no"), TypeError, "warn", "type"),
    Case("lr_find-optimizer-unknown", lr_find_(optimizer="adamz"), ValueError, "adamz", "range"),
    Case("lr_find-optimizer-kwarg-unknown", lr_find_(optimizer="adamw", betaz=(0.9, 0.9)), TypeError, "betaz", "type"),
    Case("lr_find-model-type", lambda c: bergab.lr_find("net", xy(), mse, steps=10), TypeError, "model", "type"),
    Case("lr_find-loss_fn-type", lambda c: bergab.lr_find(linear(), xy(), "mse", steps=10), TypeError, "loss_fn", "type"),
    Case("lr_find-start_lr-nan", lr_find_(start_lr=NAN), ValueError, "start_lr", "nan"),
    Case("lr_find-end_lr-inf", lr_find_(end_lr=INF), ValueError, "end_lr", "nan"),
    Case("lr_find-smoothing-nan", lr_find_(smoothing=NAN), ValueError, "smoothing", "nan"),
    Case("lr_find-clip_value-inf", lr_find_(clip_value=INF), ValueError, "clip_value", "nan"),
    Case("lr_find-empty-data", lr_find_(data=lambda: xy(n=0)), ValueError, "train_data", "data"),
    Case("lr_find-lengths", lr_find_(data=lambda: (xy(n=8)[0], xy(n=6)[1])), ValueError, "train_data", "data"),
    Case("lr_find-input-width", lr_find_(data=lambda: xy(d=2)), BAD_VALUE, "train_data", "data"),
    Case("lr_find-val_data-lengths", lr_find_(val_data=(xy(n=8)[0], xy(n=3)[1])), ValueError, "val_data", "data"),
    Case("lr_find_result-cosine-total_steps", lambda c: _curve().cosine(total_steps=0), ValueError, "total_steps", "range"),
    Case("lr_find_result-cosine-warmup", lambda c: _curve().cosine(total_steps=10, warmup_steps=-1), ValueError, "warmup_steps", "range"),
    Case("lr_find_result-from_curve-lengths", lambda c: LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5]), ValueError, "losses", "data"),
    Case("lr_find_result-from_curve-empty", lambda c: LRFindResult.from_curve([], []), ValueError, "lrs", "data"),
    Case("lr_find_result-from_curve-nan-lr", lambda c: LRFindResult.from_curve([1e-3, NAN, 1e-1], [1.0, 0.5, 0.4]), ValueError, "lrs", "nan"),
    Case("lr_find_result-plot-under-file", lambda c: _curve().plot(in_tmp("f.txt", "lr.png", make_file="f.txt")(c)), (OSError, ValueError), AnyOf(("path", "lr.png")), "path"),
    Case("lr_find_result-one_cycle-total_steps", lambda c: _curve().one_cycle(total_steps=1), ValueError, "total_steps", "range"),
    Case("lr_find_result-from_dict-missing-key", lambda c: LRFindResult.from_dict({"lrs": [1e-3, 1e-2, 1e-1]}), (ValueError, KeyError), "losses", "data"),
    Case("suggest-lengths", lambda c: suggest([1e-3, 1e-2, 1e-1], [1.0, 0.5]), ValueError, "smoothed", "data"),
    Case("suggest-empty", lambda c: suggest([], []), ValueError, "lrs", "data"),
    Case("auto_lr-total_steps-zero", auto_(total_steps=0), ValueError, "total_steps", "range"),
    Case("auto_lr-policy", auto_(policy="linear"), ValueError, "policy", "range"),
    Case("auto_lr-warmup_steps-negative", auto_(warmup_steps=-1), ValueError, "warmup_steps", "range"),
    Case("auto_lr-warmup-with-one_cycle", auto_(policy="one_cycle", warmup_steps=5), ValueError, "warmup_steps", "range"),
    Case("auto_lr-warmup-beyond-total", auto_(warmup_steps=30), ValueError, "warmup_steps", "range"),
    Case("auto_lr-lr_find_kwargs-unknown", auto_(lr_find_kwargs={"stepz": 10}), BAD_VALUE, "stepz", "type"),
    Case("auto_lr-lr_find_kwargs-type", auto_(lr_find_kwargs=5), TypeError, "lr_find_kwargs", "type"),
    Case("auto_lr-optimizer_kwargs-type", auto_(optimizer_kwargs=0.1), TypeError, "optimizer_kwargs", "type"),
    Case("auto_lr-total_steps-float", auto_(total_steps=20.5), TypeError, "total_steps", "type"),
    Case("auto_lr-build_schedule-peak-zero", lambda c: auto_lr.build_schedule(0.0, 10), ValueError, "peak", "range"),
    Case("auto_lr-build_schedule-peak-nan", lambda c: auto_lr.build_schedule(NAN, 10), ValueError, "peak", "nan"),
    Case("auto_lr-build_schedule-policy", lambda c: auto_lr.build_schedule(0.1, 10, policy="step"), ValueError, "policy", "range"),
]
# fmt: on


# =========================================================================== optimizers

#: (class, its own bad arguments: (argument, value, exception, kind))
# fmt: off
OPTIMIZERS: list[tuple[type, list[tuple[str, Any, Any, str]]]] = [
    (optim.SGD, [("momentum", -0.1, ValueError, "range"), ("momentum", 1.5, ValueError, "range"), ("dampening", NAN, ValueError, "nan"), ("maximize", 1, TypeError, "type")]),
    (optim.Adagrad, [("lr_decay", -1.0, ValueError, "range"), ("initial_accumulator_value", -1.0, ValueError, "range"), ("eps", -1e-10, ValueError, "range")]),
    (optim.RMSprop, [("alpha", 1.5, ValueError, "range"), ("alpha", NAN, ValueError, "nan"), ("momentum", -0.5, ValueError, "range"), ("centered", "no", TypeError, "type"), ("eps", INF, ValueError, "nan")]),
    (optim.Adam, [("betas", (1.0, 0.999), ValueError, "range"), ("betas", (0.9,), ValueError, "range"), ("betas", 0.9, ValueError, "type"), ("eps", -1e-8, ValueError, "range"), ("amsgrad", "true", TypeError, "type")]),
    (optim.AdamW, [("betas", (0.9, NAN), ValueError, "nan"), ("betas", ("0.9", 0.99), TypeError, "type"), ("eps", NAN, ValueError, "nan")]),
    (optim.NAdam, [("momentum_decay", -0.1, ValueError, "range"), ("betas", (0.9, 1.0), ValueError, "range")]),
    (optim.RAdam, [("betas", (-0.1, 0.99), ValueError, "range"), ("eps", "1e-8", TypeError, "type")]),
    (optim.LARS, [("trust_coefficient", 0.0, ValueError, "range"), ("momentum", 1.0 + 1e-9, ValueError, "range"), ("eps", -1.0, ValueError, "range"), ("exclude_from_adaptation", 3, TypeError, "type")]),
    (optim.LAMB, [("clamp_value", 0.0, ValueError, "range"), ("betas", (0.9, 2.0), ValueError, "range"), ("bias_correction", None, TypeError, "type")]),
    (optim.ScheduleFreeSGD, [("warmup_steps", -1, ValueError, "range"), ("momentum", 1.0, ValueError, "range"), ("weight_lr_power", NAN, ValueError, "nan")]),
    (optim.ScheduleFreeAdamW, [("warmup_steps", 2.5, TypeError, "type"), ("r", -1.0, ValueError, "range"), ("betas", (1.0, 0.999), ValueError, "range")]),
    (optim.Prodigy, [("d0", 0.0, ValueError, "range"), ("d_coef", -1.0, ValueError, "range"), ("growth_rate", 0.5, ValueError, "range"), ("beta3", 1.5, ValueError, "range"), ("d0", INF, ValueError, "nan")]),
    (optim.DoG, [("reps_rel", 0.0, ValueError, "range"), ("init_eta", -1.0, ValueError, "range"), ("eps", NAN, ValueError, "nan")]),
    (optim.LDoG, [("reps_rel", -1e-6, ValueError, "range"), ("init_eta", INF, ValueError, "nan")]),
    (optim.HypergradientSGD, [("hypergrad_lr", -1e-3, ValueError, "range"), ("min_lr", -1.0, ValueError, "range"), ("momentum", 2.0, ValueError, "range"), ("hypergrad_lr", NAN, ValueError, "nan")]),
    (optim.HypergradientAdam, [("hypergrad_lr", INF, ValueError, "nan"), ("betas", (0.9, -0.5), ValueError, "range"), ("multiplicative", "yes", TypeError, "type")]),
]
# fmt: on

#: every optimizer takes these: (argument, value, exception, kind)
# fmt: off
COMMON_OPTIMIZER_ARGS: list[tuple[str, Any, Any, str]] = [
    ("lr", -0.1, ValueError, "range"),
    ("lr", NAN, ValueError, "nan"),
    ("lr", INF, ValueError, "nan"),
    ("lr", "0.1", TypeError, "type"),
    ("weight_decay", -0.01, ValueError, "range"),
    ("impl", "fast", ValueError, "range"),
]
# fmt: on


def _value_label(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, str):
        return f"str{value}"
    return str(value).replace(" ", "")


def _optimizer_cases() -> list[Case]:
    out = []
    for cls, own in OPTIMIZERS:
        name = cls.__name__
        for arg, value, exc, kind in [*COMMON_OPTIMIZER_ARGS, *own]:
            case_id = f"optim-{name}-{arg}-{_value_label(value)}"
            out.append(Case(case_id, opt(cls, **{arg: value}), exc, arg, kind))
    return out


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)
        self.out = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.fc(x)))


def _schedulefree_step_in_eval() -> None:
    p = params()
    o = optim.ScheduleFreeAdamW(p, lr=0.01)
    o.eval()
    for t in p:
        t.grad = torch.ones_like(t)
    o.step()


def _register(name: Any, cls: Any) -> None:
    """``optim.register`` that leaves the registry as it was (a wrong entry stays out)."""
    from bergab.optim import _registry

    saved = dict(_registry._REGISTRY)
    try:
        optim.register(name, cls)
    finally:
        _registry._REGISTRY.clear()
        _registry._REGISTRY.update(saved)


# fmt: off
OPTIM_MORE: list[Case] = [
    Case("optim-params-empty", lambda c: optim.SGD([], lr=0.1), ValueError, "params", "data"),
    Case("optim-params-tensor", lambda c: optim.Adam(torch.zeros(3, requires_grad=True)), TypeError, "params", "type"),
    Case("optim-params-none", lambda c: optim.AdamW(None), TypeError, "params", "type"),
    Case("optim-SGD-nesterov-str", opt(optim.SGD, lr=0.1, momentum=0.9, nesterov="yes"), TypeError, "nesterov", "type"),
    Case("optim-SGD-nesterov-without-momentum", opt(optim.SGD, lr=0.1, nesterov=True), ValueError, "nesterov", "range"),
    Case("optim-HypergradientAdam-min-above-max", opt(optim.HypergradientAdam, min_lr=0.1, max_lr=0.01), ValueError, ("min_lr", "max_lr"), "range"),
    Case("optim-create-unknown", lambda c: optim.create("adamz", params()), ValueError, "adamz", "range"),
    Case("optim-create-name-type", lambda c: optim.create(5, params()), TypeError, "name", "type"),
    Case("optim-create-lr-negative", lambda c: optim.create("sgd", params(), lr=-1.0), ValueError, "lr", "range"),
    Case("optim-create-unknown-kwarg", lambda c: optim.create("adamw", params(), momentm=0.9), TypeError, "momentm", "type"),
    Case("optim-create-preset-clash", lambda c: optim.create("nesterov", params(), lr=0.1, nesterov=False), (TypeError, ValueError), "nesterov", "range"),
    Case("optim-register-cls-type", lambda c: _register("mine", 5), TypeError, "cls", "type"),
    Case("optim-register-name-empty", lambda c: _register("", optim.SGD), ValueError, "name", "range"),
    Case("optim-param_groups-model-type", lambda c: optim.param_groups("net", weight_decay=0.1), TypeError, "model", "type"),
    Case("optim-param_groups-weight_decay-negative", lambda c: optim.param_groups(_Net(), weight_decay=-0.1), ValueError, "weight_decay", "range"),
    Case("optim-param_groups-weight_decay-nan", lambda c: optim.param_groups(_Net(), weight_decay=NAN), ValueError, "weight_decay", "nan"),
    Case("optim-param_groups-layer_decay-zero", lambda c: optim.param_groups(_Net(), weight_decay=0.1, layer_decay=0.0), ValueError, "layer_decay", "range"),
    Case("optim-param_groups-layer_decay-above-one", lambda c: optim.param_groups(_Net(), weight_decay=0.1, layer_decay=1.5), ValueError, "layer_decay", "range"),
    Case("optim-param_groups-no_decay-type", lambda c: optim.param_groups(_Net(), weight_decay=0.1, no_decay=5), TypeError, "no_decay", "type"),
    Case("optim-param_groups-lr-negative", lambda c: optim.param_groups(_Net(), weight_decay=0.1, lr=-1.0), ValueError, "lr", "range"),
    Case("optim-param_groups-layer_of-type", lambda c: optim.param_groups(_Net(), weight_decay=0.1, layer_decay=0.5, layer_of="fc"), TypeError, "layer_of", "type"),
    Case("optim-set_schedule-key", lambda c: optim.SGD(params(), lr=0.1).set_schedule("bogus", sch.constant(0.1)), ValueError, "bogus", "range"),
    Case("optim-set_schedule-group", lambda c: optim.SGD(params(), lr=0.1).set_schedule("lr", sch.constant(0.1), group=5), (ValueError, IndexError), "group", "range"),
    Case("optim-ScheduleFreeAdamW-step-in-eval-mode", lambda c: _schedulefree_step_in_eval(), optim.ScheduleFreeEvalModeError, "train()", "type"),
    Case("optim-recompute_batchnorm_stats-num_batches", lambda c: optim.recompute_batchnorm_stats(nn.BatchNorm1d(3), [torch.randn(4, 3)], num_batches=0), ValueError, "num_batches", "range"),
    Case("optim-PolynomialDecayAverager-gamma", lambda c: optim.PolynomialDecayAverager(linear(), gamma=-1.0), ValueError, "gamma", "range"),
]
# fmt: on


# =========================================================================== schedules


def _cos() -> sch.Schedule:
    return sch.cosine(peak=0.1, total_steps=10)


def _one_group_opt() -> torch.optim.Optimizer:
    return torch.optim.SGD(params(), lr=0.1)


# fmt: off
SCHEDULES: list[Case] = [
    Case("schedules-constant-negative", lambda c: sch.constant(-0.1), ValueError, "lr", "range"),
    Case("schedules-constant-nan", lambda c: sch.constant(NAN), ValueError, "lr", "nan"),
    Case("schedules-constant-str", lambda c: sch.constant("0.1"), TypeError, "lr", "type"),
    Case("schedules-step_decay-gamma-zero", lambda c: sch.step_decay(0.1, gamma=0.0, step_size=5), ValueError, "gamma", "range"),
    Case("schedules-step_decay-gamma-above-one", lambda c: sch.step_decay(0.1, gamma=1.5, step_size=5), ValueError, "gamma", "range"),
    Case("schedules-step_decay-step_size-zero", lambda c: sch.step_decay(0.1, gamma=0.5, step_size=0), ValueError, "step_size", "range"),
    Case("schedules-step_decay-step_size-float", lambda c: sch.step_decay(0.1, gamma=0.5, step_size=2.5), TypeError, "step_size", "type"),
    Case("schedules-multistep-unsorted", lambda c: sch.multistep(0.1, milestones=[5, 3], gamma=0.1), ValueError, "milestones", "range"),
    Case("schedules-multistep-negative", lambda c: sch.multistep(0.1, milestones=[-1, 3], gamma=0.1), ValueError, "milestones", "range"),
    Case("schedules-multistep-str", lambda c: sch.multistep(0.1, milestones="5", gamma=0.1), TypeError, "milestones", "type"),
    Case("schedules-multistep-gamma-nan", lambda c: sch.multistep(0.1, milestones=[5], gamma=NAN), ValueError, "gamma", "nan"),
    Case("schedules-exponential-rate-negative", lambda c: sch.exponential(0.1, rate=-0.5), ValueError, "rate", "range"),
    Case("schedules-exponential-initial-inf", lambda c: sch.exponential(INF, rate=0.5), ValueError, "initial", "nan"),
    Case("schedules-polynomial-total_steps-zero", lambda c: sch.polynomial(0.1, total_steps=0), ValueError, "total_steps", "range"),
    Case("schedules-polynomial-power-zero", lambda c: sch.polynomial(0.1, total_steps=10, power=0.0), ValueError, "power", "range"),
    Case("schedules-polynomial-final-negative", lambda c: sch.polynomial(0.1, total_steps=10, final=-0.1), ValueError, "final", "range"),
    Case("schedules-linear-start-negative", lambda c: sch.linear(-0.1, 0.0, total_steps=10), ValueError, "start", "range"),
    Case("schedules-linear-total_steps-float", lambda c: sch.linear(0.1, 0.0, total_steps=10.5), TypeError, "total_steps", "type"),
    Case("schedules-linear-end-nan", lambda c: sch.linear(0.1, NAN, total_steps=10), ValueError, "end", "nan"),
    Case("schedules-cosine-peak-negative", lambda c: sch.cosine(peak=-0.1, total_steps=10), ValueError, "peak", "range"),
    Case("schedules-cosine-peak-nan", lambda c: sch.cosine(peak=NAN, total_steps=10), ValueError, "peak", "nan"),
    Case("schedules-cosine-peak-inf", lambda c: sch.cosine(peak=INF, total_steps=10), ValueError, "peak", "nan"),
    Case("schedules-cosine-total_steps-zero", lambda c: sch.cosine(peak=0.1, total_steps=0), ValueError, "total_steps", "range"),
    Case("schedules-cosine-total_steps-str", lambda c: sch.cosine(peak=0.1, total_steps="10"), TypeError, "total_steps", "type"),
    Case("schedules-cosine-final-negative", lambda c: sch.cosine(peak=0.1, total_steps=10, final=-0.01), ValueError, "final", "range"),
    Case("schedules-inverse_sqrt-warmup_steps-zero", lambda c: sch.inverse_sqrt(0.1, warmup_steps=0), ValueError, "warmup_steps", "range"),
    Case("schedules-wsd-peak-zero", lambda c: sch.wsd(0.0, total_steps=10, warmup_steps=2, decay_steps=2), ValueError, "peak", "range"),
    Case("schedules-wsd-phases-too-long", lambda c: sch.wsd(0.1, total_steps=10, warmup_steps=8, decay_steps=5), ValueError, ("warmup_steps", "decay_steps"), "range"),
    Case("schedules-wsd-final-above-peak", lambda c: sch.wsd(0.1, total_steps=10, warmup_steps=2, decay_steps=2, final=0.5), ValueError, "final", "range"),
    Case("schedules-wsd-decay_shape", lambda c: sch.wsd(0.1, total_steps=10, warmup_steps=2, decay_steps=2, decay_shape="sqrt"), ValueError, "decay_shape", "range"),
    Case("schedules-cosine_restarts-period-zero", lambda c: sch.cosine_restarts(0.1, period=0), ValueError, "period", "range"),
    Case("schedules-cosine_restarts-period_mult", lambda c: sch.cosine_restarts(0.1, period=5, period_mult=0.5), ValueError, "period_mult", "range"),
    Case("schedules-cosine_restarts-peak_mult", lambda c: sch.cosine_restarts(0.1, period=5, peak_mult=1.5), ValueError, "peak_mult", "range"),
    Case("schedules-cosine_restarts-final-above-peak", lambda c: sch.cosine_restarts(0.1, period=5, final=0.2), ValueError, "final", "range"),
    Case("schedules-cyclic-low-above-high", lambda c: sch.cyclic(0.1, 0.01, step_size_up=5), ValueError, "high", "range"),
    Case("schedules-cyclic-step_size_up-zero", lambda c: sch.cyclic(0.01, 0.1, step_size_up=0), ValueError, "step_size_up", "range"),
    Case("schedules-cyclic-mode", lambda c: sch.cyclic(0.01, 0.1, step_size_up=5, mode="tri"), ValueError, "mode", "range"),
    Case("schedules-cyclic-gamma-nan", lambda c: sch.cyclic(0.01, 0.1, step_size_up=5, gamma=NAN), ValueError, "gamma", "nan"),
    Case("schedules-one_cycle-total_steps-one", lambda c: sch.one_cycle(0.1, total_steps=1), ValueError, "total_steps", "range"),
    Case("schedules-one_cycle-pct_start-one", lambda c: sch.one_cycle(0.1, total_steps=10, pct_start=1.0), ValueError, "pct_start", "range"),
    Case("schedules-one_cycle-div_factor", lambda c: sch.one_cycle(0.1, total_steps=10, div_factor=0.5), ValueError, "div_factor", "range"),
    Case("schedules-one_cycle-anneal", lambda c: sch.one_cycle(0.1, total_steps=10, anneal="exp"), ValueError, "anneal", "range"),
    Case("schedules-one_cycle-three_phase-str", lambda c: sch.one_cycle(0.1, total_steps=10, three_phase="yes"), TypeError, "three_phase", "type"),
    Case("schedules-one_cycle_momentum-order", lambda c: sch.one_cycle_momentum(10, base_momentum=0.95, max_momentum=0.85), ValueError, "max_momentum", "range"),
    Case("schedules-one_cycle_momentum-max-above-one", lambda c: sch.one_cycle_momentum(10, max_momentum=1.5), ValueError, "max_momentum", "range"),
    Case("schedules-warmup-steps-negative", lambda c: sch.warmup(_cos(), steps=-1), ValueError, "steps", "range"),
    Case("schedules-warmup-start_factor", lambda c: sch.warmup(_cos(), steps=5, start_factor=1.5), ValueError, "start_factor", "range"),
    Case("schedules-warmup-shape", lambda c: sch.warmup(_cos(), steps=5, shape="cos"), ValueError, "shape", "range"),
    Case("schedules-warmup-schedule-type", lambda c: sch.warmup(5, steps=5), TypeError, "schedule", "type"),
    Case("schedules-join-lengths", lambda c: sch.join([_cos(), _cos()], boundaries=[]), ValueError, "boundaries", "range"),
    Case("schedules-join-unsorted", lambda c: sch.join([_cos(), _cos(), _cos()], boundaries=[5, 3]), ValueError, "boundaries", "range"),
    Case("schedules-join-empty", lambda c: sch.join([], boundaries=[]), ValueError, "schedules", "range"),
    Case("schedules-join-not-schedule", lambda c: sch.join([_cos(), 0.1], boundaries=[5]), TypeError, "schedules", "type"),
    Case("schedules-scale-factor-negative", lambda c: sch.scale(_cos(), factor=-1.0), ValueError, "factor", "range"),
    Case("schedules-scale-factor-nan", lambda c: sch.scale(_cos(), factor=NAN), ValueError, "factor", "nan"),
    Case("schedules-clamp-order", lambda c: sch.clamp(_cos(), low=0.2, high=0.1), ValueError, "high", "range"),
    Case("schedules-clamp-high-nan", lambda c: sch.clamp(_cos(), high=NAN), ValueError, "high", "nan"),
    Case("schedules-ReduceOnPlateau-initial-zero", lambda c: sch.ReduceOnPlateau(0.0), ValueError, "initial", "range"),
    Case("schedules-ReduceOnPlateau-factor-one", lambda c: sch.ReduceOnPlateau(0.1, factor=1.0), ValueError, "factor", "range"),
    Case("schedules-ReduceOnPlateau-mode", lambda c: sch.ReduceOnPlateau(0.1, mode="up"), ValueError, "mode", "range"),
    Case("schedules-ReduceOnPlateau-patience", lambda c: sch.ReduceOnPlateau(0.1, patience=-1), ValueError, "patience", "range"),
    Case("schedules-ReduceOnPlateau-min_lr", lambda c: sch.ReduceOnPlateau(0.1, min_lr=0.5), ValueError, "min_lr", "range"),
    Case("schedules-ReduceOnPlateau-threshold_mode", lambda c: sch.ReduceOnPlateau(0.1, threshold_mode="x"), ValueError, "threshold_mode", "range"),
    Case("schedules-call-negative-step", lambda c: _cos()(-1), ValueError, "step", "range"),
    Case("schedules-call-str-step", lambda c: _cos()("3"), TypeError, "step", "type"),
    Case("schedules-from_config-unknown-type", lambda c: sch.from_config({"type": "cosinus", "peak": 0.1}), ValueError, "cosinus", "range"),
    Case("schedules-from_config-missing-type", lambda c: sch.from_config({"peak": 0.1, "total_steps": 10}), ValueError, "type", "range"),
    Case("schedules-from_config-missing-arg", lambda c: sch.from_config({"type": "cosine", "peak": 0.1}), (ValueError, TypeError), "total_steps", "range"),
    Case("schedules-from_config-unknown-arg", lambda c: sch.from_config({"type": "cosine", "peak": 0.1, "total_steps": 10, "warmup": 3}), (ValueError, TypeError), "warmup", "range"),
    Case("schedules-from_config-not-mapping", lambda c: sch.from_config("cosine"), TypeError, "config", "type"),
    Case("schedules-from_config-nested-type", lambda c: sch.from_config({"type": "warmup", "steps": 5, "schedule": 5}), (ValueError, TypeError), "schedule", "type"),
    Case("schedules-from_config-value-type", lambda c: sch.from_config({"type": "cosine", "peak": "0.1", "total_steps": 10}), TypeError, "peak", "type"),
    Case("schedules-from_config-nan", lambda c: sch.from_config({"type": "constant", "lr": NAN}), ValueError, "lr", "nan"),
    Case("schedules-to_config-lambda", lambda c: sch.to_config(lambda t: 0.1), TypeError, "schedule", "type"),
    Case("schedules-attach-optimizer-type", lambda c: sch.attach("sgd", _cos()), TypeError, "optimizer", "type"),
    Case("schedules-attach-schedule-float", lambda c: sch.attach(_one_group_opt(), 0.1), TypeError, "schedule", "type"),
    Case("schedules-attach-key", lambda c: sch.attach(_one_group_opt(), _cos(), key="bogus"), ValueError, "bogus", "range"),
    Case("schedules-attach-too-many", lambda c: sch.attach(_one_group_opt(), [_cos(), _cos()]), ValueError, "schedule", "range"),
    Case("schedules-plot-steps-zero", lambda c: sch.plot(_cos(), 0), ValueError, "steps", "range"),
    Case("schedules-plot-schedule-type", lambda c: sch.plot(5, 10), TypeError, "schedule", "type"),
    Case("schedules-plot-under-file", lambda c: sch.plot(_cos(), 10, in_tmp("f.txt", "lr.png", make_file="f.txt")(c)), (OSError, ValueError), AnyOf(("path", "lr.png")), "path"),
]
# fmt: on


# =========================================================================== minimize, landscapes

rosen = landscapes.rosenbrock


def _min(**kw: Any) -> Callable[[Ctx], Any]:
    base = {"max_steps": 5}
    return lambda ctx: bergab.minimize(rosen, **{**base, **kw})


# fmt: off
MINIMIZE: list[Case] = [
    Case("minimize-fn-type", lambda c: bergab.minimize(5, x0=[0.0, 0.0], max_steps=5), TypeError, "fn", "type"),
    Case("minimize-x0-dim", _min(x0=[1.0]), ValueError, "x0", "data"),
    Case("minimize-x0-empty", _min(x0=[]), ValueError, "x0", "data"),
    Case("minimize-x0-nan", _min(x0=[NAN, 1.0]), ValueError, "x0", "nan"),
    Case("minimize-x0-str", _min(x0="1,2"), TypeError, "x0", "type"),
    Case("minimize-optimizer-unknown", _min(optimizer="adamz"), ValueError, "adamz", "range"),
    Case("minimize-lr-negative", _min(lr=-0.1), ValueError, "lr", "range"),
    Case("minimize-lr-nan", _min(lr=NAN), ValueError, "lr", "nan"),
    Case("minimize-max_steps-zero", _min(max_steps=0), ValueError, "max_steps", "range"),
    Case("minimize-max_steps-float", _min(max_steps=2.5), TypeError, "max_steps", "type"),
    Case("minimize-tol-negative", _min(tol=-1.0), ValueError, "tol", "range"),
    Case("minimize-target-nan", _min(target=NAN), ValueError, "target", "nan"),
    Case("minimize-callback-type", _min(callback=5), TypeError, "callback", "type"),
    Case("minimize-grad-type", _min(grad=5), TypeError, "grad", "type"),
    Case("minimize-record-str", _min(record="yes"), TypeError, "record", "type"),
    Case("minimize-optimizer-kwarg", _min(optimizer="sgd", momentm=0.9), TypeError, "momentm", "type"),
    Case("minimize-compare-empty", lambda c: compare(rosen, [], steps=5), ValueError, "optimizers", "range"),
    Case("minimize-compare-steps-zero", lambda c: compare(rosen, ["sgd"], steps=0), ValueError, "steps", "range"),
    Case("minimize-compare-lr-missing", lambda c: compare(rosen, ["sgd", "adam"], steps=5, lr={"adam": 0.1}), ValueError, "sgd", "range"),
    Case("minimize-compare-lr-str", lambda c: compare(rosen, ["sgd"], steps=5, lr="fast"), ValueError, "lr", "range"),
    Case("minimize-tune_lr-grid-empty", lambda c: tune_lr(rosen, "sgd", steps=5, grid=[]), ValueError, "grid", "range"),
    Case("minimize-tune_lr-grid-negative", lambda c: tune_lr(rosen, "sgd", steps=5, grid=[-1e-3, 1e-2]), ValueError, "grid", "range"),
    Case("minimize-steps_to_tolerance-tol", lambda c: steps_to_tolerance(bergab.minimize(rosen, max_steps=3), rosen, tol=-1.0), ValueError, "tol", "range"),
    Case("landscapes-get-unknown", lambda c: landscapes.get("rosenbrok"), ValueError, "rosenbrok", "range"),
    Case("landscapes-get-name-type", lambda c: landscapes.get(3), TypeError, "name", "type"),
    Case("landscapes-get-condition_number", lambda c: landscapes.get("quadratic", condition_number=0.5), ValueError, "condition_number", "range"),
    Case("landscapes-get-noise-negative", lambda c: landscapes.get("rosenbrock", noise=-1.0), ValueError, "noise", "range"),
    Case("landscapes-get-noise-nan", lambda c: landscapes.get("rosenbrock", noise=NAN), ValueError, "noise", "nan"),
    Case("landscapes-get-dim", lambda c: landscapes.get("rosenbrock", dim=1), ValueError, "dim", "range"),
    Case("landscapes-quadratic-dim", lambda c: landscapes.quadratic(dim=0), ValueError, "dim", "range"),
    Case("landscapes-quadratic-condition_number-inf", lambda c: landscapes.quadratic(condition_number=INF), ValueError, "condition_number", "nan"),
    Case("landscapes-noisy-sigma", lambda c: landscapes.noisy(rosen, sigma=-1.0), ValueError, "sigma", "range"),
    Case("landscapes-noisy-base-type", lambda c: landscapes.noisy(5, sigma=1.0), TypeError, "fn", "type"),
    Case("landscapes-call-wrong-dim", lambda c: landscapes.beale(torch.tensor([1.0, 2.0, 3.0])), ValueError, "x", "data"),
    Case("minimize-x0-wrong-length-quadratic", lambda c: bergab.minimize(landscapes.quadratic(dim=2), x0=[1.0, 2.0, 3.0], max_steps=3), ValueError, "x0", "data"),
    Case("plotting-trajectories-under-file", lambda c: bergab.plotting.trajectories(rosen, bergab.minimize(rosen, max_steps=3), in_tmp("f.txt", "t.png", make_file="f.txt")(c)), (OSError, ValueError), AnyOf(("path", "t.png")), "path"),
    Case("plotting-trajectories-levels", lambda c: bergab.plotting.trajectories(rosen, bergab.minimize(rosen, max_steps=3), c.tmp / "t.png", levels=0), ValueError, "levels", "range"),
    Case("plotting-trajectories-results-type", lambda c: bergab.plotting.trajectories(rosen, 5, c.tmp / "t.png"), TypeError, "results", "type"),
]
# fmt: on


# =========================================================================== tasks, scaling, diagnostics, init

# fmt: off
TASKS: list[Case] = [
    Case("tasks-digits-val_fraction-zero", lambda c: tasks.digits(val_fraction=0.0), ValueError, "val_fraction", "range"),
    Case("tasks-digits-val_fraction-one", lambda c: tasks.digits(val_fraction=1.0), ValueError, "val_fraction", "range"),
    Case("tasks-digits-val_fraction-nan", lambda c: tasks.digits(val_fraction=NAN), ValueError, "val_fraction", "nan"),
    Case("tasks-digits-val_fraction-str", lambda c: tasks.digits(val_fraction="0.2"), TypeError, "val_fraction", "type"),
    Case("tasks-digits-test_fraction-negative", lambda c: tasks.digits(test_fraction=-0.1), ValueError, "test_fraction", "range"),
    Case("tasks-digits-fractions-sum", lambda c: tasks.digits(val_fraction=0.6, test_fraction=0.5), ValueError, AnyOf(("test_fraction", "val_fraction")), "range"),
    Case("tasks-digits-hidden-zero", lambda c: tasks.digits(hidden=0), ValueError, "hidden", "range"),
    Case("tasks-digits-depth-zero", lambda c: tasks.digits(depth=0), ValueError, "depth", "range"),
    Case("tasks-digits-dropout-one", lambda c: tasks.digits(dropout=1.0), ValueError, "dropout", "range"),
    Case("tasks-digits-dtype-str", lambda c: tasks.digits(dtype="float17"), BAD_VALUE, "dtype", "type"),
    Case("tasks-digits-dtype-int", lambda c: tasks.digits(dtype=torch.int64), BAD_VALUE, "dtype", "range"),
    Case("tasks-digits-seed-negative", lambda c: tasks.digits(seed=-1), ValueError, "seed", "range"),
    Case("tasks-digits-seed-float", lambda c: tasks.digits(seed=0.5), TypeError, "seed", "type"),
    Case("tasks-linreg-n_train-zero", lambda c: tasks.linreg(n_train=0), ValueError, "n_train", "range"),
    Case("tasks-linreg-n_val-zero", lambda c: tasks.linreg(n_val=0), ValueError, "n_val", "range"),
    Case("tasks-linreg-features-zero", lambda c: tasks.linreg(features=0), ValueError, "features", "range"),
    Case("tasks-linreg-max_scale", lambda c: tasks.linreg(max_scale=0.5), ValueError, "max_scale", "range"),
    Case("tasks-linreg-noise-negative", lambda c: tasks.linreg(noise=-1.0), ValueError, "noise", "range"),
    Case("tasks-linreg-noise-inf", lambda c: tasks.linreg(noise=INF), ValueError, "noise", "nan"),
    Case("tasks-linreg-standardize-str", lambda c: tasks.linreg(standardize="yes"), TypeError, "standardize", "type"),
    Case("tasks-linreg-dtype-int", lambda c: tasks.linreg(dtype=torch.int32), BAD_VALUE, "dtype", "range"),
    Case("tasks-linreg-seed-str", lambda c: tasks.linreg(seed="1"), TypeError, "seed", "type"),
    Case("tasks-charlm-context-zero", lambda c: tasks.charlm(context=0, max_chars=2000), ValueError, "context", "range"),
    Case("tasks-charlm-hidden-zero", lambda c: tasks.charlm(hidden=0, max_chars=2000), ValueError, "hidden", "range"),
    Case("tasks-charlm-embed-zero", lambda c: tasks.charlm(embed=0, max_chars=2000), ValueError, "embed", "range"),
    Case("tasks-charlm-max_chars-tiny", lambda c: tasks.charlm(context=32, max_chars=10), ValueError, "max_chars", "range"),
    Case("tasks-get-unknown", lambda c: tasks.get("mnist"), ValueError, "mnist", "range"),
    Case("tasks-get-unknown-kwarg", lambda c: tasks.get("linreg", n_trian=10), TypeError, "n_trian", "type"),
    Case("tasks-accuracy-lengths", lambda c: tasks.accuracy(torch.randn(8, 10), torch.zeros(7, dtype=torch.long)), ValueError, "targets", "data"),
    Case("tasks-bits_per_char-lengths", lambda c: tasks.bits_per_char(torch.randn(8, 5), torch.zeros(6, dtype=torch.long)), ValueError, "targets", "data"),
    Case("scaling-scale_lr-lr-negative", lambda c: scaling.scale_lr(-0.1, 256, 512), ValueError, "lr", "range"),
    Case("scaling-scale_lr-lr-nan", lambda c: scaling.scale_lr(NAN, 256, 512), ValueError, "lr", "nan"),
    Case("scaling-scale_lr-base_batch_size", lambda c: scaling.scale_lr(0.1, 0, 512), ValueError, "base_batch_size", "range"),
    Case("scaling-scale_lr-batch_size-float", lambda c: scaling.scale_lr(0.1, 256, 512.5), TypeError, "batch_size", "type"),
    Case("scaling-scale_lr-rule", lambda c: scaling.scale_lr(0.1, 256, 512, rule="cubic"), ValueError, "rule", "range"),
    Case("scaling-scale_adam-betas", lambda c: scaling.scale_adam(1e-3, (0.9, 1.0), 1e-8, 256, 512), ValueError, "betas", "range"),
    Case("scaling-scale_adam-eps", lambda c: scaling.scale_adam(1e-3, (0.9, 0.999), -1e-8, 256, 512), ValueError, "eps", "range"),
    Case("scaling-adam_warmup_steps-beta2", lambda c: scaling.adam_warmup_steps(beta2=1.0), ValueError, "beta2", "range"),
    Case("scaling-warmup_steps_for-dataset_size", lambda c: scaling.warmup_steps_for(256, 512, 0), ValueError, "dataset_size", "range"),
    Case("scaling-warmup_steps_for-epochs", lambda c: scaling.warmup_steps_for(256, 512, 1000, epochs=-1.0), ValueError, "epochs", "range"),
    Case("diagnostics-LRMonitor-window", lambda c: diagnostics.LRMonitor(window=0), ValueError, "window", "range"),
    Case("diagnostics-LRMonitor-divergence_factor", lambda c: diagnostics.LRMonitor(divergence_factor=1.0), ValueError, "divergence_factor", "range"),
    Case("diagnostics-LRMonitor-smoothing", lambda c: diagnostics.LRMonitor(smoothing=1.5), ValueError, "smoothing", "range"),
    Case("diagnostics-LRMonitor-stall_rtol-nan", lambda c: diagnostics.LRMonitor(stall_rtol=NAN), ValueError, "stall_rtol", "nan"),
    Case("diagnostics-LRMonitor-warmup-float", lambda c: diagnostics.LRMonitor(warmup=2.5), TypeError, "warmup", "type"),
    Case("diagnostics-LRMonitor-update-step", lambda c: diagnostics.LRMonitor().update(step=-1, loss=1.0), ValueError, "step", "range"),
    Case("diagnostics-LRMonitor-update-loss-str", lambda c: diagnostics.LRMonitor().update(step=1, loss="1.0"), TypeError, "loss", "type"),
    Case("diagnostics-grad_norm-norm_type", lambda c: diagnostics.grad_norm(params(), norm_type=0.0), ValueError, "norm_type", "range"),
    Case("diagnostics-grad_norm-parameters-type", lambda c: diagnostics.grad_norm(5), TypeError, "parameters", "type"),
    Case("diagnostics-UpdateCosine-parameters-type", lambda c: diagnostics.UpdateCosine(5), TypeError, "parameters", "type"),
    Case("init-scheme-unknown", lambda c: bergab.init(linear(), scheme="glorot"), ValueError, "glorot", "range"),
    Case("init-scheme-type", lambda c: bergab.init(linear(), scheme=5), BAD_VALUE, "scheme", "type"),
    Case("init-model-type", lambda c: bergab.init("net"), TypeError, "model", "type"),
    Case("init-seed-negative", lambda c: bergab.init(linear(), seed=-1), ValueError, "seed", "range"),
]
# fmt: on


# =========================================================================== callbacks, checkpoints, history


def _with_callback(cb: Callable[[Ctx], Any], **kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        return bergab.fit(
            linear(), xy(), mse, callbacks=[cb(ctx)], max_steps=2, progress=False, **kw
        )

    return call


def without(module: str, call: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
    """``call`` as if the optional dependency ``module`` were not installed."""

    def run(ctx: Ctx) -> Any:
        import sys

        saved = {k: v for k, v in sys.modules.items() if k == module or k.startswith(module + ".")}
        for k in saved:
            del sys.modules[k]
        sys.modules[module] = None  # type: ignore[assignment]  # import raises ImportError
        try:
            return call(ctx)
        finally:
            del sys.modules[module]
            sys.modules.update(saved)

    return run


def _corrupt(ctx: Ctx) -> Path:
    return ctx.file("corrupt.pt", b"this is not a torch checkpoint\x00\x01")


def _resume_other_model(ctx: Ctx) -> Any:
    path = checkpoint_of(ctx)
    return bergab.fit(linear(3, 2), xy(out=2), mse, resume=path, max_steps=4, progress=False)


def _resume_truncated_dir(ctx: Ctx) -> Any:
    path = checkpoint_of(ctx)
    truncate_all(path)
    return bergab.fit(
        linear(), xy(), mse, checkpoint_dir=path.parent, resume=True, max_steps=4, progress=False
    )


def _resume_empty_file(ctx: Ctx) -> Any:
    path = checkpoint_of(ctx)
    truncate_all(path)
    truncated(path, keep=0)
    return bergab.fit(linear(), xy(), mse, resume=path, max_steps=4, progress=False)


def _resume_not_a_checkpoint(ctx: Ctx) -> Any:
    path = ctx.tmp / "weights.pt"
    torch.save(linear().state_dict(), path)
    return bergab.fit(linear(), xy(), mse, resume=path, max_steps=4, progress=False)


# fmt: off
CALLBACKS: list[Case] = [
    Case("callbacks-EarlyStopping-patience", lambda c: EarlyStopping(patience=-1), ValueError, "patience", "range"),
    Case("callbacks-EarlyStopping-patience-float", lambda c: EarlyStopping(patience=2.5), TypeError, "patience", "type"),
    Case("callbacks-EarlyStopping-min_delta", lambda c: EarlyStopping(min_delta=-0.1), ValueError, "min_delta", "range"),
    Case("callbacks-EarlyStopping-min_delta-inf", lambda c: EarlyStopping(min_delta=INF), ValueError, "min_delta", "nan"),
    Case("callbacks-EarlyStopping-mode", lambda c: EarlyStopping(mode="up"), ValueError, "mode", "range"),
    Case("callbacks-EarlyStopping-monitor-type", lambda c: EarlyStopping(monitor=5), TypeError, "monitor", "type"),
    Case("callbacks-EarlyStopping-restore_best-str", lambda c: EarlyStopping(restore_best="yes"), TypeError, "restore_best", "type"),
    Case("callbacks-EarlyStopping-unknown-monitor", _with_callback(lambda c: EarlyStopping(monitor="val_acc"), val_data=xy(), metrics={"accuracy": lambda o, t: 1.0}), ValueError, "val_acc", "range"),
    Case("callbacks-ReduceLROnPlateau-factor-one", lambda c: ReduceLROnPlateau(factor=1.0), ValueError, "factor", "range"),
    Case("callbacks-ReduceLROnPlateau-factor-nan", lambda c: ReduceLROnPlateau(factor=NAN), ValueError, "factor", "nan"),
    Case("callbacks-ReduceLROnPlateau-patience", lambda c: ReduceLROnPlateau(patience=-2), ValueError, "patience", "range"),
    Case("callbacks-ReduceLROnPlateau-mode", lambda c: ReduceLROnPlateau(mode="lower"), ValueError, "mode", "range"),
    Case("callbacks-ReduceLROnPlateau-threshold", lambda c: ReduceLROnPlateau(threshold=-1.0), ValueError, "threshold", "range"),
    Case("callbacks-ReduceLROnPlateau-threshold_mode", lambda c: ReduceLROnPlateau(threshold_mode="x"), ValueError, "threshold_mode", "range"),
    Case("callbacks-ReduceLROnPlateau-cooldown", lambda c: ReduceLROnPlateau(cooldown=-1), ValueError, "cooldown", "range"),
    Case("callbacks-ReduceLROnPlateau-min_scale", lambda c: ReduceLROnPlateau(min_scale=-0.1), ValueError, "min_scale", "range"),
    Case("callbacks-ModelCheckpoint-save", lambda c: ModelCheckpoint(c.tmp, save="all"), ValueError, "save", "range"),
    Case("callbacks-ModelCheckpoint-keep", lambda c: ModelCheckpoint(c.tmp, keep=0), ValueError, "keep", "range"),
    Case("callbacks-ModelCheckpoint-mode", lambda c: ModelCheckpoint(c.tmp, mode="best"), ValueError, "mode", "range"),
    Case("callbacks-ModelCheckpoint-dirpath-type", lambda c: ModelCheckpoint(5), TypeError, "dirpath", "type"),
    Case("callbacks-ModelCheckpoint-no-dir", _with_callback(lambda c: ModelCheckpoint(monitor="loss")), ValueError, "dirpath", "range"),
    Case("callbacks-ModelCheckpoint-dirpath-is-file", _with_callback(lambda c: ModelCheckpoint(c.file("taken"), save="last")), (OSError, ValueError), "taken", "path"),
    Case("callbacks-CSVLogger-flush_secs", lambda c: CSVLogger(c.tmp, flush_secs=-1.0), ValueError, "flush_secs", "range"),
    Case("callbacks-CSVLogger-flush_steps", lambda c: CSVLogger(c.tmp, flush_steps=0), ValueError, "flush_steps", "range"),
    Case("callbacks-CSVLogger-log_dir-type", lambda c: CSVLogger(None), TypeError, "log_dir", "type"),
    Case("callbacks-CSVLogger-log_dir-is-file", _with_callback(lambda c: CSVLogger(c.file("logs"))), (OSError, ValueError), "logs", "path"),
    Case("callbacks-JSONLLogger-flush_secs-nan", lambda c: JSONLLogger(c.tmp, flush_secs=NAN), ValueError, "flush_secs", "nan"),
    Case("callbacks-JSONLLogger-under-file", _with_callback(lambda c: JSONLLogger(Path(c.file("f.txt")) / "logs")), (OSError, ValueError), "logs", "path"),
    Case("callbacks-TensorBoardLogger-flush_secs", lambda c: TensorBoardLogger(c.tmp, flush_secs=-1.0), ValueError, "flush_secs", "range"),
    Case("callbacks-TensorBoardLogger-not-installed", without("tensorboard", lambda c: TensorBoardLogger(c.tmp)), MissingDependencyError, AnyOf(("tensorboard", "bergab[log]")), "type"),
    Case("history-to_dataframe-pandas-not-installed", without("pandas", lambda c: finished_history(c).to_dataframe()), MissingDependencyError, AnyOf(("pandas", "bergab[data]")), "type"),
    Case("history-plot-matplotlib-not-installed", without("matplotlib", lambda c: finished_history(c).plot(c.tmp / "h.png")), MissingDependencyError, AnyOf(("matplotlib", "bergab[plot]")), "type"),
    Case("history-plot-empty", lambda c: History().plot(c.tmp / "h.png"), ValueError, "history", "data"),
    Case("callbacks-ProgressBar-min_interval", lambda c: ProgressBar(min_interval=-1.0), ValueError, "min_interval", "range"),
    Case("callbacks-LambdaCallback-unknown-hook", lambda c: LambdaCallback(on_step_end=lambda t, logs: None), BAD_VALUE, "on_step_end", "type"),
    Case("callbacks-LambdaCallback-not-callable", lambda c: LambdaCallback(on_fit_start=5), TypeError, "on_fit_start", "type"),
    Case("callbacks-World-rank", lambda c: World(rank=1, size=1), ValueError, "rank", "range"),
    Case("callbacks-World-size", lambda c: World(rank=0, size=0), ValueError, "size", "range"),
    Case("fit-log_dir-is-file", fit_(log_dir=in_tmp("logfile", make_file="logfile")), (OSError, ValueError), "log_dir", "path"),
    Case("fit-checkpoint_dir-is-file", fit_(checkpoint_dir=in_tmp("ckfile", make_file="ckfile")), (OSError, ValueError), "checkpoint_dir", "path"),
    Case("fit-checkpoint_dir-under-file", fit_(checkpoint_dir=in_tmp("f.txt", "ck", make_file="f.txt")), (OSError, ValueError), "checkpoint_dir", "path"),
    Case("fit-resume-missing", fit_(resume=in_tmp("missing.pt")), FileNotFoundError, "missing.pt", "path"),
    Case("fit-resume-directory", fit_(resume=_Lazy(lambda c: c.dir("resdir"))), (FileNotFoundError, IsADirectoryError, ValueError), "resdir", "path"),
    Case("checkpoint-load-corrupt", lambda c: load_checkpoint(_corrupt(c)), (ValueError, OSError), "corrupt.pt", "file"),
    Case("checkpoint-load-missing", lambda c: load_checkpoint(c.tmp / "missing.pt"), FileNotFoundError, "missing.pt", "path"),
    Case("checkpoint-load-directory", lambda c: load_checkpoint(c.dir("ckdir")), (FileNotFoundError, IsADirectoryError, ValueError), "ckdir", "path"),
    Case("checkpoint-load-truncated", lambda c: load_checkpoint(truncated(checkpoint_of(c))), (ValueError, OSError), "last.pt", "file"),
    Case("checkpoint-save-state-type", lambda c: save_checkpoint([1, 2], c.tmp / "x.pt"), TypeError, "state", "type"),
    Case("checkpoint-save-under-file", lambda c: save_checkpoint({"a": 1}, in_tmp("f.txt", "x.pt", make_file="f.txt")(c)), (OSError, ValueError), AnyOf(("path", "x.pt")), "path"),
    Case("fit-resume-corrupt", fit_(resume=_Lazy(_corrupt)), (ValueError, OSError), AnyOf(("resume", "corrupt.pt")), "file"),
    Case("fit-resume-truncated-last.pt", _resume_truncated_dir, (ValueError, OSError), "last.pt", "interrupted"),
    Case("fit-resume-empty-file", _resume_empty_file, (ValueError, OSError), AnyOf(("resume", "last.pt")), "interrupted"),
    Case("fit-resume-weights-file", _resume_not_a_checkpoint, ValueError, AnyOf(("resume", "weights.pt")), "interrupted"),
    Case("fit-resume-other-model", _resume_other_model, ValueError, AnyOf(("resume", "last.pt")), "interrupted"),
    Case("history-plot-under-file", lambda c: finished_history(c).plot(in_tmp("f.txt", "h.png", make_file="f.txt")(c)), (OSError, ValueError), AnyOf(("path", "h.png")), "path"),
    Case("history-plot-is-dir", lambda c: finished_history(c).plot(c.dir("plotdir")), (OSError, ValueError), "plotdir", "path"),
    Case("history-plot-unknown-suffix", lambda c: finished_history(c).plot(c.tmp / "h.xyz"), ValueError, "xyz", "path"),
    Case("history-best_by-unknown", lambda c: finished_history(c).best_by("val_acc"), (KeyError, ValueError), "val_acc", "range"),
    Case("history-best_by-mode", lambda c: finished_history(c).best_by("val_loss", mode="lowest"), ValueError, "mode", "range"),
]
# fmt: on


# =========================================================================== config, run

# fmt: off
CONFIG: list[Case] = [
    Case("config-validate-not-mapping", lambda c: __import__("bergab.config").config.validate("task"), (TypeError, ValueError), "config", "type"),
    Case("config-validate-no-task", validate_(task=None), ValueError, "task", "range"),
    Case("config-task-unknown", validate_(task={"name": "mnist"}), ValueError, "task.name", "range"),
    Case("config-task-bad-arg", validate_(task={"n_train": 0}), ValueError, "task.n_train", "range"),
    Case("config-task-unknown-arg", validate_(task={"n_trian": 10}), ValueError, "task.n_trian", "range"),
    Case("config-task-dtype", validate_(task={"dtype": "float17"}), ValueError, "task.dtype", "type"),
    Case("config-optimizer-unknown", validate_(optimizer={"name": "adamz"}), ValueError, "optimizer.name", "range"),
    Case("config-optimizer-lr", validate_(optimizer={"lr": 0.1}), ValueError, "optimizer.lr", "range"),
    Case("config-optimizer-betas", validate_(optimizer={"betas": [0.9]}), ValueError, "optimizer.betas", "range"),
    Case("config-optimizer-weight_decay-nan", validate_(optimizer={"weight_decay": NAN}), ValueError, "optimizer.weight_decay", "nan"),
    Case("config-optimizer-unknown-arg", validate_(optimizer={"momentm": 0.9}), ValueError, "optimizer.momentm", "range"),
    Case("config-schedule-lr-str", validate_(schedule={"lr": "fast"}), ValueError, "schedule.lr", "range"),
    Case("config-schedule-lr-negative", validate_(schedule={"lr": -0.1}), ValueError, "schedule.lr", "range"),
    Case("config-schedule-lr-inf", validate_(schedule={"lr": INF}), ValueError, "schedule.lr", "nan"),
    Case("config-schedule-missing-arg", validate_(schedule={"type": "cosine", "peak": 0.1}), ValueError, "schedule.total_steps", "range"),
    Case("config-schedule-lr-and-type", validate_(schedule={"lr": 0.1, "type": "cosine", "peak": 0.1, "total_steps": 5}), ValueError, "schedule", "range"),
    Case("config-schedule-policy", validate_(schedule={"lr": "auto", "policy": "linear"}), ValueError, "schedule.policy", "range"),
    Case("config-schedule-nested", validate_(schedule={"type": "warmup", "steps": 2, "schedule": {"type": "cosine", "peak": -1.0, "total_steps": 5}}), ValueError, "schedule.schedule.peak", "range"),
    Case("config-lr_find-steps", validate_(lr_find={"steps": 1}), ValueError, "lr_find.steps", "range"),
    Case("config-lr_find-steps-two", validate_(lr_find={"steps": 2}), ValueError, "lr_find.steps", "range"),
    Case("config-lr_find-start_lr-nan", validate_(lr_find={"start_lr": NAN}), ValueError, "lr_find.start_lr", "nan"),
    Case("config-lr_find-order", validate_(lr_find={"start_lr": 1.0, "end_lr": 0.1}), ValueError, AnyOf(("lr_find.start_lr", "lr_find.end_lr")), "range"),
    Case("config-lr_find-unknown", validate_(lr_find={"step": 10}), ValueError, "lr_find.step", "range"),
    Case("config-fit-epochs-zero", validate_(fit={"epochs": 0}), ValueError, "fit.epochs", "range"),
    Case("config-fit-strategy-unknown", validate_(fit={"strategy": "zero"}), ValueError, "fit.strategy", "range"),
    Case("config-fit-lr_scaling-unknown", validate_(fit={"lr_scaling": "cubic"}), ValueError, "fit.lr_scaling", "range"),
    Case("config-fit-epochs-str", validate_(fit={"epochs": "3"}), ValueError, "fit.epochs", "type"),
    Case("config-fit-max_steps-float", validate_(fit={"max_steps": 2.5}), ValueError, "fit.max_steps", "type"),
    Case("config-fit-batch_size-zero", validate_(fit={"batch_size": 0}), ValueError, "fit.batch_size", "range"),
    Case("config-fit-batch_size-str", validate_(fit={"batch_size": "half"}), ValueError, "fit.batch_size", "type"),
    Case("config-fit-shuffle-int", validate_(fit={"shuffle": 1}), ValueError, "fit.shuffle", "type"),
    Case("config-fit-clip_norm-nan", validate_(fit={"clip_norm": NAN}), ValueError, "fit.clip_norm", "nan"),
    Case("config-fit-clip_value-inf", validate_(fit={"clip_value": INF}), ValueError, "fit.clip_value", "nan"),
    Case("config-fit-clip-both", validate_(fit={"clip_norm": 1.0, "clip_value": 1.0}), ValueError, ("fit.clip_norm", "fit.clip_value"), "range"),
    Case("config-fit-accumulation_steps", validate_(fit={"accumulation_steps": 0}), ValueError, "fit.accumulation_steps", "range"),
    Case("config-fit-precision", validate_(fit={"precision": "16"}), ValueError, "fit.precision", "range"),
    Case("config-fit-precision-int", validate_(fit={"precision": 32}), ValueError, "fit.precision", "type"),
    Case("config-fit-device", validate_(fit={"device": "tpu"}), ValueError, "fit.device", "range"),
    Case("config-fit-val_every", validate_(fit={"val_every": 0}), ValueError, "fit.val_every", "range"),
    Case("config-fit-checkpoint_every", validate_(fit={"checkpoint_every": -2}), ValueError, "fit.checkpoint_every", "range"),
    Case("config-fit-seed", validate_(fit={"seed": -1}), ValueError, "fit.seed", "range"),
    Case("config-fit-progress-str", validate_(fit={"progress": "no"}), ValueError, "fit.progress", "type"),
    Case("config-fit-nan_policy", validate_(fit={"nan_policy": "ignore"}), ValueError, "fit.nan_policy", "range"),
    Case("config-fit-tol-nan", validate_(fit={"tol": NAN}), ValueError, "fit.tol", "nan"),
    Case("config-fit-tol-negative", validate_(fit={"tol": -1.0}), ValueError, "fit.tol", "range"),
    Case("config-fit-unknown", validate_(fit={"epoch": 3}), ValueError, "fit.epoch", "range"),
    Case("config-fit-lr", validate_(fit={"lr": 0.1}), ValueError, "fit.lr", "range"),
    Case("config-fit-early_stopping-patience", validate_(fit={"early_stopping": {"patience": -1}}), ValueError, "fit.early_stopping.patience", "range"),
    Case("config-fit-early_stopping-unknown", validate_(fit={"early_stopping": {"patiense": 2}}), ValueError, "fit.early_stopping.patiense", "range"),
    Case("config-fit-early_stopping-type", validate_(fit={"early_stopping": 5}), ValueError, "fit.early_stopping", "type"),
    Case("config-output-dir-int", validate_(output={"dir": 5}), ValueError, "output.dir", "type"),
    Case("config-output-overwrite-str", validate_(output={"overwrite": "yes"}), ValueError, "output.overwrite", "type"),
    Case("config-output-unknown", validate_(output={"plot": False}), ValueError, "output.plot", "range"),
    Case("config-unknown-table", validate_(extra={"x": 1}), ValueError, "extra", "range"),
    Case("config-table-not-table", validate_(fit=5), ValueError, "fit", "type"),
    Case("config-load-missing", lambda c: __import__("bergab.config").config.load(c.tmp / "missing.toml"), FileNotFoundError, "missing.toml", "path"),
    Case("config-load-directory", lambda c: __import__("bergab.config").config.load(c.dir("confdir")), (FileNotFoundError, IsADirectoryError, ValueError), "confdir", "path"),
    Case("config-load-invalid-toml", lambda c: __import__("bergab.config").config.load(c.file("bad.toml", "[task\nname=1")), ValueError, "bad.toml", "file"),
    Case("config-load-binary", lambda c: __import__("bergab.config").config.load(c.file("bin.toml", b"\xff\xfe\x00garbage")), ValueError, "bin.toml", "file"),
    Case("config-parse_override-syntax", lambda c: __import__("bergab.config").config.parse_override("nokey"), ValueError, "--set", "range"),
    Case("config-dumps_toml-value-type", lambda c: __import__("bergab.config").config.dumps_toml({"weird_key": object()}), BAD_VALUE, "weird_key", "type"),
    Case("config-load-override-syntax", lambda c: __import__("bergab.config").config.load(c.file("ok.toml", '[task]\nname = "linreg"\n'), ["fit.max_steps"]), ValueError, "--set", "range"),
    Case("config-load-override-unknown", lambda c: __import__("bergab.config").config.load(c.file("ok.toml", '[task]\nname = "linreg"\n'), ["fit.max_step=3"]), ValueError, "fit.max_step", "range"),
]
# fmt: on


def _cfg(ctx: Ctx, **tables: Any) -> Any:
    from bergab import config

    return config.validate(cfg_dict(**tables))


def _train_into(ctx: Ctx, out: Path) -> Any:
    import bergab.run

    return bergab.run.train(_cfg(ctx, output={"dir": str(out), "plots": False}), say=lambda s: None)


def _resume(ctx: Ctx, target: Path, overrides: Any = ()) -> Any:
    import bergab.run

    # passed through as given: a lone string must reach resume() to be refused there
    return bergab.run.resume(target, overrides, say=lambda s: None)


def _run_truncated(ctx: Ctx) -> Any:
    run = ctx.run()
    truncate_all(run / "checkpoints" / "last.pt")
    return _resume(ctx, run, ("fit.max_steps=5",))


def _run_no_config(ctx: Ctx) -> Any:
    run = ctx.run()
    (run / "config.toml").unlink()
    return _resume(ctx, run)


def _run_corrupt_config(ctx: Ctx) -> Any:
    run = ctx.run()
    (run / "config.toml").write_text("[task\n", encoding="utf-8")
    return _resume(ctx, run)


def _run_no_checkpoint(ctx: Ctx) -> Any:
    run = ctx.run()
    shutil.rmtree(run / "checkpoints")
    return _resume(ctx, run, ("fit.max_steps=5",))


# fmt: off
RUN: list[Case] = [
    Case("run-train-cfg-type", lambda c: __import__("bergab.run").run.train({"task": {"name": "linreg"}}), TypeError, "cfg", "type"),
    Case("run-find_lr-cfg-type", lambda c: __import__("bergab.run").run.find_lr({"task": {"name": "linreg"}}), TypeError, "cfg", "type"),
    Case("run-train-out-is-file", lambda c: _train_into(c, c.file("taken")), (ValueError, OSError), "output.dir", "path"),
    Case("run-train-out-under-file", lambda c: _train_into(c, c.file("f.txt") / "run"), (ValueError, OSError), "output.dir", "path"),
    Case("run-train-out-holds-run", lambda c: _train_into(c, c.run()), ValueError, "output.dir", "path"),
    Case("run-resume-missing", lambda c: _resume(c, c.tmp / "nope"), FileNotFoundError, "nope", "path"),
    Case("run-resume-file", lambda c: _resume(c, c.file("notadir")), (FileNotFoundError, NotADirectoryError, ValueError), "notadir", "path"),
    Case("run-resume-empty-dir", lambda c: _resume(c, c.tmp), (FileNotFoundError, ValueError), "config.toml", "path"),
    Case("run-resume-no-config", _run_no_config, (FileNotFoundError, ValueError), "config.toml", "interrupted"),
    Case("run-resume-corrupt-config", _run_corrupt_config, ValueError, "config.toml", "file"),
    Case("run-resume-no-checkpoint", _run_no_checkpoint, (FileNotFoundError, ValueError), "last.pt", "interrupted"),
    Case("run-resume-truncated-checkpoint", _run_truncated, (ValueError, OSError), "last.pt", "interrupted"),
    Case("run-resume-other-optimizer", lambda c: _resume(c, c.run(), ("optimizer.name=sgd", "fit.max_steps=5")), ValueError, "optimizer.name", "interrupted"),
    Case("run-resume-bad-override", lambda c: _resume(c, c.run(), ("fit.max_steps=0",)), ValueError, "fit.max_steps", "range"),
    Case("run-resume-overrides-type", lambda c: _resume(c, c.run(), "fit.max_steps=5"), TypeError, "overrides", "type"),
]
# fmt: on


# =========================================================================== tune


def _tune_fn(**kw: Any) -> Callable[[Ctx], Any]:
    """``bergab.tune`` of a function objective over ``x`` in [0, 1], with ``kw``."""

    def call(c: Ctx) -> Any:
        args: dict[str, Any] = {"trials": 2, "out": c.tmp, "space": {"x": {"uniform": [0, 1]}}}
        args.update(kw)
        space = args.pop("space")
        return bergab.tune(lambda p, r: p["x"], space, **args)

    return call


def _tune_cfg(space: Any = None, **tune_table: Any) -> Callable[[Ctx], Any]:
    """``bergab.tune`` of a tiny linreg config with ``[tune]`` = ``tune_table``."""

    def call(c: Ctx) -> Any:
        data = cfg_dict(fit={"max_steps": 4})
        data["tune"] = {"trials": 1, **tune_table,
                        "space": space or {"schedule.lr": {"loguniform": [1e-3, 1.0]}}}  # fmt: skip
        return bergab.tune(data, out=c.tmp)

    return call


def _tune_other_space(c: Ctx) -> Any:
    bergab.tune(lambda p, r: p["x"], {"x": {"uniform": [0, 1]}}, trials=1, out=c.tmp, study="s")
    return bergab.tune(lambda p, r: p["y"], {"y": {"uniform": [0, 1]}}, trials=1, out=c.tmp,
                       study="s")  # fmt: skip


# fmt: off
TUNE: list[Case] = [
    Case("tune-sampler-unknown", _tune_fn(sampler="bayes"), ValueError, "sampler", "range"),
    Case("tune-pruner-unknown", _tune_fn(pruner="sha"), ValueError, "pruner", "range"),
    Case("tune-trials-zero", _tune_fn(trials=0), ValueError, "trials", "range"),
    Case("tune-trials-float", _tune_fn(trials=2.5), TypeError, "trials", "type"),
    Case("tune-trials-and-timeout-missing", _tune_fn(trials=None), ValueError, "trials", "range"),
    Case("tune-timeout-negative", _tune_fn(timeout=-1.0), ValueError, "timeout", "range"),
    Case("tune-timeout-nan", _tune_fn(timeout=NAN), ValueError, "timeout", "nan"),
    Case("tune-workers-zero", _tune_fn(workers=0), ValueError, "workers", "range"),
    Case("tune-seed-negative", _tune_fn(seed=-1), ValueError, "seed", "range"),
    Case("tune-cv-folds-one", _tune_fn(cv_folds=1), ValueError, "cv_folds", "range"),
    Case("tune-cv-folds-with-a-function", _tune_fn(cv_folds=3), ValueError, "cv_folds", "range"),
    Case("tune-direction-unknown", _tune_fn(direction="down"), ValueError, "direction", "range"),
    Case("tune-direction-unclear", _tune_fn(metric="score"), ValueError, "direction", "range"),
    Case("tune-metric-type", _tune_fn(metric=3), TypeError, "metric", "type"),
    Case("tune-space-missing", _tune_fn(space=None), ValueError, "space", "range"),
    Case("tune-space-log-touching-zero", _tune_fn(space={"x": {"loguniform": [0.0, 1.0]}}), ValueError, "tune.space", "range"),
    Case("tune-space-inverted", _tune_fn(space={"x": {"uniform": [1.0, 0.0]}}), ValueError, "tune.space", "range"),
    Case("tune-space-empty-choice", _tune_fn(space={"x": {"choice": []}}), ValueError, "tune.space", "range"),
    Case("tune-space-unknown-distribution", _tune_fn(space={"x": {"normal": [0, 1]}}), ValueError, "tune.space", "range"),
    Case("tune-space-nan-bound", _tune_fn(space={"x": {"uniform": [0.0, NAN]}}), ValueError, "tune.space", "nan"),
    Case("tune-grid-needs-values", _tune_fn(sampler="grid", trials=None), ValueError, "tune.space", "range"),
    Case("tune-config-unknown-key-path", _tune_cfg(space={"fit.epoch": {"choice": [1, 2]}}), ValueError, "fit.epoch", "range"),
    Case("tune-config-unknown-tune-key", _tune_cfg(trails=3), ValueError, "tune.trails", "range"),
    Case("tune-config-sampler-unknown", _tune_cfg(sampler="bayes"), ValueError, "sampler", "range"),
    Case("tune-config-metric-not-logged", _tune_cfg(metric="val_f1", direction="maximize"), ValueError, "metric", "range"),
    Case("tune-config-missing-file", lambda c: bergab.tune(c.tmp / "nope.toml", out=c.tmp), FileNotFoundError, "nope.toml", "path"),
    Case("tune-config-invalid-toml", lambda c: bergab.tune(c.file("bad.toml", "[tune\n"), out=c.tmp), ValueError, "bad.toml", "file"),
    Case("tune-study-other-space", _tune_other_space, ValueError, "study", "range"),
    Case("tune-storage-unknown-scheme", _tune_fn(storage="mysql://x/y"), ValueError, "storage", "range"),
    Case("tune-storage-malformed", _tune_fn(storage="postgresql://u@127.0.0.1:notaport/db"), ValueError, "storage", "range"),
]
# fmt: on


# =========================================================================== pbt


def _pbt(**kw: Any) -> Callable[[Ctx], Any]:
    """``bergab.tune.pbt`` of a tiny linreg config (12 steps) with ``kw``."""

    def call(c: Ctx) -> Any:
        args: dict[str, Any] = {"population": 2, "interval": 4, "out": c.tmp,
                                "hyperparams": {"schedule.lr": {"loguniform": [1e-3, 0.3]}}}  # fmt: skip
        args.update(kw)
        return bergab.tune.pbt(cfg_dict(fit={"max_steps": 12}), args.pop("hyperparams"), **args)

    return call


# fmt: off
PBT: list[Case] = [
    Case("pbt-population-one", _pbt(population=1), ValueError, "population", "range"),
    Case("pbt-population-float", _pbt(population=2.5), TypeError, "population", "type"),
    Case("pbt-quantile-zero", _pbt(quantile=0.0), ValueError, "quantile", "range"),
    Case("pbt-quantile-above-half", _pbt(quantile=0.75), ValueError, "quantile", "range"),
    Case("pbt-quantile-nan", _pbt(quantile=NAN), ValueError, "quantile", "nan"),
    Case("pbt-perturb-zero", _pbt(perturb=(0.0, 1.2)), ValueError, "perturb", "range"),
    Case("pbt-perturb-negative", _pbt(perturb=(0.8, -1.2)), ValueError, "perturb", "range"),
    Case("pbt-perturb-one-number", _pbt(perturb=1.2), TypeError, "perturb", "type"),
    Case("pbt-interval-longer-than-run", _pbt(interval=20), ValueError, ("interval", "max_steps"), "range"),
    Case("pbt-interval-zero", _pbt(interval=0), ValueError, "interval", "range"),
    Case("pbt-budget_steps-too-small", _pbt(budget_steps=4), ValueError, "budget_steps", "range"),
    Case("pbt-resample_probability-above-one", _pbt(resample_probability=2.0), ValueError, "resample_probability", "range"),
    Case("pbt-hyperparams-empty", _pbt(hyperparams={}), ValueError, "hyperparams", "range"),
    Case("pbt-hyperparams-unknown-key", _pbt(hyperparams={"schedule.lrr": {"uniform": [0, 1]}}), ValueError, "schedule.lrr", "range"),
    Case("pbt-workers-zero", _pbt(workers=0), ValueError, "workers", "range"),
    Case("pbt-metric-direction-unknown", _pbt(metric="val_weird"), ValueError, "direction", "range"),
]
# fmt: on


# =========================================================================== silent

# fmt: off
SILENT_RAISES: list[Case] = [
    Case("silent-cosine-final-above-peak", lambda c: sch.cosine(peak=0.1, total_steps=10, final=1.0), ValueError, "final", "silent"),
    Case("silent-polynomial-final-above-initial", lambda c: sch.polynomial(0.1, total_steps=10, final=1.0), ValueError, "final", "silent"),
    Case("silent-optim-integer-param", lambda c: optim.SGD([torch.zeros(3, dtype=torch.long)], lr=0.1), BAD_VALUE, AnyOf(("params", "parameter")), "silent"),
    Case("silent-optim-create-integer-param", lambda c: optim.create("adamw", [torch.zeros(3, dtype=torch.int32)]), BAD_VALUE, AnyOf(("params", "parameter")), "silent"),
    Case("silent-tasks-digits-val_fraction", lambda c: tasks.digits(val_fraction=0.999), ValueError, "val_fraction", "silent"),
    Case("silent-fit-lr-schedule-negative", fit_(optimizer="sgd", lr=lambda t: -1.0), ValueError, "lr", "silent"),
    Case("silent-fit-lr-schedule-nan", fit_(optimizer="sgd", lr=lambda t: NAN), ValueError, "lr", "silent"),
    Case("silent-fit-torch-optimizer-lr-schedule-negative", lambda c: bergab.fit(linear(), xy(), mse, optimizer=torch.optim.SGD, lr=lambda t: -0.5, max_steps=2, progress=False), ValueError, "lr", "silent"),
    Case("silent-fit-targets-broadcast", fit_(data=lambda: xy(out=2)), BAD_VALUE, "targets", "silent"),
    Case("silent-fit-targets-1d", fit_(data=lambda: (xy()[0], xy()[1].squeeze(1))), BAD_VALUE, "targets", "silent"),
    Case("silent-fit-early_stopping-unknown-monitor", fit_(early_stopping={"monitor": "val_acc"}, val_data=xy(), metrics={"accuracy": lambda o, t: 0.5}), ValueError, "val_acc", "silent"),
    Case("silent-resume-other-optimizer", lambda c: bergab.fit(linear(), xy(), mse, optimizer="sgd", lr=0.1, resume=checkpoint_of(c, "adamw"), max_steps=4, progress=False), ValueError, "optimizer", "silent"),
]
# fmt: on


def _early_stopping_infers_max(ctx: Ctx) -> None:
    es = EarlyStopping(monitor="val_accuracy")
    assert es.mode == "max", f"EarlyStopping(monitor='val_accuracy').mode is {es.mode!r}"


def _early_stopping_max_in_fit(ctx: Ctx) -> None:
    """With accuracy rising every validation, early stopping must not stop the run."""
    values = iter(np.linspace(0.1, 0.9, 50))
    h = bergab.fit(
        linear(),
        xy(),
        mse,
        val_data=xy(seed=1),
        metrics={"accuracy": lambda o, t: float(next(values))},
        optimizer="sgd",
        lr=0.01,
        max_steps=6,
        val_every=1,
        early_stopping={"monitor": "val_accuracy", "patience": 1},
        progress=False,
    )
    assert len(h) == 6, f"stopped after {len(h)} of 6 steps: {h.stop_reason!r}"


def _torch_groups_keep_ratio(ctx: Ctx) -> None:
    m = linear()
    o = torch.optim.SGD([{"params": [m.weight], "lr": 0.1}, {"params": [m.bias], "lr": 0.01}])
    bergab.fit(
        m,
        xy(),
        mse,
        optimizer=o,
        lr=sch.cosine(peak=0.1, total_steps=10),
        max_steps=3,
        progress=False,
    )
    lr0, lr1 = (g["lr"] for g in o.param_groups)
    assert lr0 > 0, f"group lrs {lr0}, {lr1}"
    assert math.isclose(lr1 / lr0, 0.1, rel_tol=1e-9), f"group lrs {lr0}, {lr1}"


def _bergab_groups_keep_ratio(ctx: Ctx) -> None:
    m = linear()
    o = optim.SGD([{"params": [m.weight], "lr": 0.1}, {"params": [m.bias], "lr": 0.01}])
    bergab.fit(
        m,
        xy(),
        mse,
        optimizer=o,
        lr=sch.cosine(peak=0.1, total_steps=10),
        max_steps=3,
        progress=False,
    )
    lr0, lr1 = (g["lr"] for g in o.param_groups)
    assert lr0 > 0, f"group lrs {lr0}, {lr1}"
    assert math.isclose(lr1 / lr0, 0.1, rel_tol=1e-9), f"group lrs {lr0}, {lr1}"


# fmt: off
SILENT_CHECKS: list[Check] = [
    Check("silent-EarlyStopping-val_accuracy-infers-max", _early_stopping_infers_max, "silent"),
    Check("silent-fit-early_stopping-val_accuracy-not-stopped", _early_stopping_max_in_fit, "silent"),
    Check("silent-fit-torch-groups-keep-lr-ratio", _torch_groups_keep_ratio, "silent"),
    Check("silent-fit-bergab-groups-keep-lr-ratio", _bergab_groups_keep_ratio, "silent"),
]
# fmt: on


# =========================================================================== must work


def _numpy_fit(ctx: Ctx) -> None:
    x, y = (t.numpy() for t in xy())
    h = bergab.fit(linear(), (x, y), mse, optimizer="sgd", lr=0.1, max_steps=2, progress=False)
    assert len(h) == 2


def _numpy_float64_fit(ctx: Ctx) -> None:
    x, y = (t.double().numpy() for t in xy())
    h = bergab.fit(
        linear(), (x, y), mse, val_data=(x, y), optimizer="sgd", lr=0.1, max_steps=2, progress=False
    )
    assert len(h) == 2
    assert math.isfinite(h.last["val_loss"])


def _numpy_lr_find(ctx: Ctx) -> None:
    x, y = (t.numpy() for t in xy())
    res = bergab.lr_find(linear(), (x, y), mse, steps=10, warn=False)
    assert len(res.lrs) > 0


def _val_without_metrics(ctx: Ctx) -> None:
    h = bergab.fit(linear(), xy(), mse, val_data=xy(seed=1), max_steps=2, progress=False)
    assert "val_loss" in h.last


def _zero_d_tensor_lr(ctx: Ctx) -> None:
    optim.SGD(params(), lr=torch.tensor(0.1))


def _numpy_float_lr(ctx: Ctx) -> None:
    h = bergab.fit(
        linear(), xy(), mse, optimizer="sgd", lr=np.float64(0.1), max_steps=2, progress=False
    )
    assert len(h) == 2


def _whole_float_epochs_config(ctx: Ctx) -> None:
    from bergab import config

    cfg = config.validate(cfg_dict(fit={"clip_norm": 1}))  # a whole number where a float goes
    assert cfg.fit.clip_norm == 1.0


def _resume_falls_back_and_says_so(ctx: Ctx) -> None:
    """A damaged ``last.pt`` with an older checkpoint beside it: resume from that one, and
    say so (a warning naming the file), not silently."""
    import warnings

    run = ctx.run()
    last = run / "checkpoints" / "last.pt"
    assert list(last.parent.glob("last.prev*.pt")), "the run keeps no previous checkpoint"
    truncated(last)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        said: list[str] = []
        import bergab.run

        bergab.run.resume(run, ["fit.max_steps=5"], say=said.append)
    text = "\n".join([*said, *(str(w.message) for w in caught)])
    assert "last.pt" in text, f"nothing said about the damaged last.pt: {text!r}"


def _fit_falls_back_and_says_so(ctx: Ctx) -> None:
    """fit(resume=True) with a damaged ``last.pt`` and an older checkpoint beside it: resume
    from that one, with a warning naming the damaged file."""
    import warnings

    last = checkpoint_of(ctx)
    assert list(last.parent.glob("last.prev*.pt")), "fit keeps no previous checkpoint"
    truncated(last)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = bergab.fit(
            linear(),
            xy(),
            mse,
            checkpoint_dir=last.parent,
            resume=True,
            max_steps=4,
            progress=False,
        )
    assert len(h) == 4
    text = "\n".join(str(w.message) for w in caught)
    assert "last.pt" in text, f"nothing said about the damaged last.pt: {text!r}"


def _dtype_string(ctx: Ctx) -> None:
    task = tasks.linreg(n_train=32, n_val=8, dtype="float64")
    assert next(task.model.parameters()).dtype == torch.float64


# fmt: off
MUST_WORK: list[Check] = [
    Check("works-tasks-dtype-string", _dtype_string, "type"),
    Check("works-fit-resume-damaged-last-uses-previous", _fit_falls_back_and_says_so, "interrupted"),
    Check("works-run-resume-damaged-last-uses-previous", _resume_falls_back_and_says_so, "interrupted"),
    Check("works-fit-numpy-arrays", _numpy_fit, "data"),
    Check("works-fit-numpy-float64-with-val", _numpy_float64_fit, "data"),
    Check("works-lr_find-numpy-arrays", _numpy_lr_find, "data"),
    Check("works-fit-val_data-without-metrics", _val_without_metrics, "data"),
    Check("works-optim-0d-tensor-lr", _zero_d_tensor_lr, "type"),
    Check("works-fit-numpy-scalar-lr", _numpy_float_lr, "type"),
    Check("works-config-int-for-float", _whole_float_epochs_config, "type"),
]
# fmt: on


# =========================================================================== all of it

# fmt: off
LIBRARY_CASES: list[Case] = [
    *FIT,
    *LR_FIND,
    *_optimizer_cases(),
    *OPTIM_MORE,
    *SCHEDULES,
    *MINIMIZE,
    *TASKS,
    *CALLBACKS,
    *CONFIG,
    *RUN,
    *TUNE,
    *PBT,
]
# fmt: on


#: the label of each library area in docs/bad-input.md, by the first part of a case id
AREAS = {
    "fit": "bergab.fit, Trainer, FitOptions",
    "trainer": "bergab.fit, Trainer, FitOptions",
    "fitoptions": "bergab.fit, Trainer, FitOptions",
    "lr_find": "lr_find, LRFindResult, auto_lr",
    "lr_find_result": "lr_find, LRFindResult, auto_lr",
    "suggest": "lr_find, LRFindResult, auto_lr",
    "auto_lr": "lr_find, LRFindResult, auto_lr",
    "optim": "bergab.optim",
    "schedules": "bergab.schedules",
    "minimize": "minimize, landscapes, plotting",
    "landscapes": "minimize, landscapes, plotting",
    "plotting": "minimize, landscapes, plotting",
    "tasks": "tasks",
    "scaling": "scaling, diagnostics, init",
    "diagnostics": "scaling, diagnostics, init",
    "init": "scaling, diagnostics, init",
    "callbacks": "callbacks, loggers, checkpoints, History",
    "checkpoint": "callbacks, loggers, checkpoints, History",
    "history": "callbacks, loggers, checkpoints, History",
    "config": "bergab.config",
    "run": "bergab.run",
    "tune": "bergab.tune",
    "pbt": "bergab.tune.pbt",
    "silent": "silent results (any module)",
    "works": "inputs that must work",
}


@dataclass
class Counts:
    """How many cases the suite holds: library/CLI, per kind, per library area, per command."""

    library: int = 0
    cli: int = 0
    per_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    per_area: dict[str, int] = field(default_factory=dict)
    per_command: dict[str, int] = field(default_factory=dict)


def counts(cli_cases: list[Any]) -> Counts:
    """Count every case of the library tables and ``cli_cases`` (rows with ``.id`` and
    ``.kind``; a CLI id starts with its command: ``train-...``, ``lr-find-...``)."""
    out = Counts()
    library: list[Any] = [*LIBRARY_CASES, *SILENT_RAISES, *SILENT_CHECKS, *MUST_WORK]
    out.library = len(library)
    out.cli = len(cli_cases)
    for row in [*library, *cli_cases]:
        out.per_kind[row.kind] = out.per_kind.get(row.kind, 0) + 1
    for row in library:
        label = AREAS[row.area]
        out.per_area[label] = out.per_area.get(label, 0) + 1
    for row in cli_cases:
        command = "lr-find" if row.id.startswith("lr-find") else row.id.split("-", 1)[0]
        label = {"top": "no command", "signal": "signals (train)"}.get(command, command)
        label = label if label in ("no command", "signals (train)") else f"bergab {label}"
        out.per_command[label] = out.per_command.get(label, 0) + 1
    return out


__all__ = [
    "AREAS",
    "BAD_VALUE",
    "KINDS",
    "LIBRARY_CASES",
    "MUST_WORK",
    "SILENT_CHECKS",
    "SILENT_RAISES",
    "AnyOf",
    "Case",
    "Check",
    "Counts",
    "Ctx",
    "MissingDependencyError",
    "counts",
    "names_in",
    "truncate_all",
    "verdict",
]
