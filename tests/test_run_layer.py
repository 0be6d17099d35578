"""The seams of #16: fit's options declared once, the run state saved whole, a stop with a
checkpoint, the run layer, and the rank-aware World with sharded data."""

from __future__ import annotations

import dataclasses
import inspect
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import bergab
import bergab.run
from bergab import config
from bergab.training import (
    Callback,
    FitOptions,
    RunState,
    Trainer,
    World,
    _data,
    fit,
    load_checkpoint,
)
from bergab.training.options import toml_fields

torch.set_num_threads(1)


def _data_xy(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.randn(4, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


# ----------------------------------------------------------------------------- options
def test_every_option_is_a_keyword_of_fit_and_a_documented_arg() -> None:
    names = [f.name for f in dataclasses.fields(FitOptions)]
    params = inspect.signature(fit).parameters
    assert list(params)[:3] == ["model", "train_data", "loss_fn"]
    assert list(params)[3:] == names
    for f in dataclasses.fields(FitOptions):
        assert params[f.name].default == f.default or params[f.name].default is f.default
        assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert f"{f.name}: " in (fit.__doc__ or "")


def test_the_config_fit_table_is_made_from_the_option_declarations() -> None:
    declared = [name for name, _, _ in toml_fields()]
    assert list(config.FitSection.model_fields) == declared
    defaults = config.FitSection()
    for name, _, default in toml_fields():
        assert getattr(defaults, name) == default
    assert defaults.seed == 0  # a config's own default: runs are reproducible
    assert FitOptions().seed is None


def test_an_option_fit_does_not_have_is_a_type_error_with_a_hint() -> None:
    x, y = _data_xy()
    with pytest.raises(TypeError, match=r"fit\(\) got an unexpected keyword argument 'epoch' "):
        fit(_model(), (x, y), torch.nn.functional.mse_loss, epoch=3)
    with pytest.raises(TypeError, match=r"Trainer\(\) got an unexpected keyword argument 'lrr'"):
        Trainer(_model(), (x, y), torch.nn.functional.mse_loss, lrr=0.1)


def test_trainer_takes_options_or_keywords_not_both() -> None:
    x, y = _data_xy()
    opts = FitOptions(lr=0.1, max_steps=3, progress=False)
    t = Trainer(_model(), (x, y), torch.nn.functional.mse_loss, opts)
    assert t.options is opts
    assert len(t.run()) == 3
    with pytest.raises(TypeError, match="not both"):
        Trainer(_model(), (x, y), torch.nn.functional.mse_loss, opts, lr=0.2)


def test_options_are_frozen_and_normalized() -> None:
    opts = FitOptions(tol=1e-3, max_steps=5, callbacks=[], early_stopping={"patience": 2})
    assert opts.tol == (1e-3, 1e-3)
    assert opts.callbacks == ()
    assert opts.early_stopping.patience == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.max_steps = 6  # type: ignore[misc]


# ----------------------------------------------------------------------------- run state
def test_the_checkpoint_holds_the_run_state_whole(tmp_path: Path) -> None:
    x, y = _data_xy()
    fit(
        _model(),
        (x, y),
        torch.nn.functional.mse_loss,
        optimizer="sgd",
        lr=0.05,
        epochs=2,
        batch_size=32,
        checkpoint_dir=tmp_path,
        progress=False,
        seed=0,
    )
    saved = load_checkpoint(tmp_path / "last.pt")["fit"]
    assert set(saved) == {f.name for f in dataclasses.fields(RunState)}
    state = RunState.from_dict(saved)
    assert (state.step, state.epoch, state.batch_in_epoch) == (6, 2, 0)
    assert state.should_stop is False  # a run stopped by its length may be extended


# ----------------------------------------------------------------------------- stop(checkpoint)
class _PauseAt(Callback):
    def __init__(self, at: int, hook: str = "on_batch_end") -> None:
        self.at = at
        self.hook = hook

    def on_batch_end(self, trainer: Any, logs: Any) -> None:
        if self.hook == "on_batch_end" and trainer.step == self.at:
            trainer.stop("paused by a test", checkpoint=True)

    def on_epoch_end(self, trainer: Any, logs: Any) -> None:
        if self.hook == "on_epoch_end" and trainer.step == self.at:
            trainer.stop("paused by a test", checkpoint=True)


@pytest.mark.parametrize(
    ("at", "hook"), [(5, "on_batch_end"), (6, "on_batch_end"), (6, "on_epoch_end")]
)
def test_stop_with_a_checkpoint_resumes_bit_for_bit(tmp_path: Path, at: int, hook: str) -> None:
    x, y = _data_xy()
    kw: dict[str, Any] = dict(  # noqa: C408
        val_data=(x[:32], y[:32]),
        optimizer="adamw",
        lr=0.01,
        epochs=4,
        batch_size=16,
        progress=False,
        seed=3,
    )
    whole = _model()
    h_whole = fit(whole, (x, y), torch.nn.functional.mse_loss, **kw)

    cut = _model()
    ckpt = tmp_path / "ckpt"
    h1 = fit(
        cut,
        (x, y),
        torch.nn.functional.mse_loss,
        checkpoint_dir=ckpt,
        callbacks=[_PauseAt(at, hook)],
        **kw,
    )
    assert h1.stop_reason == "paused by a test"
    assert len(h1) == at
    saved = load_checkpoint(ckpt / "last.pt")["fit"]
    assert saved["step"] == at
    assert not saved["should_stop"]
    assert saved["stop_reason"] is None

    resumed = _model()
    h2 = fit(resumed, (x, y), torch.nn.functional.mse_loss, checkpoint_dir=ckpt, resume=True, **kw)
    assert h2.stop_reason == "epochs"
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert h2.steps["loss"] == h_whole.steps["loss"]
    assert [r.get("val_loss") for r in h2.records] == [r.get("val_loss") for r in h_whole.records]


def test_stop_with_a_checkpoint_needs_a_checkpoint_dir() -> None:
    x, y = _data_xy()
    t = Trainer(_model(), (x, y), torch.nn.functional.mse_loss)
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        t.stop("x", checkpoint=True)


def test_a_pause_after_a_final_stop_keeps_the_final_stop(tmp_path: Path) -> None:
    class StopThenPause(Callback):
        def on_batch_end(self, trainer: Any, logs: Any) -> None:
            if trainer.step == 2:
                trainer.stop("done")
                trainer.stop("interrupted", checkpoint=True)

    x, y = _data_xy()
    h = fit(
        _model(),
        (x, y),
        torch.nn.functional.mse_loss,
        lr=0.01,
        epochs=3,
        batch_size=16,
        checkpoint_dir=tmp_path,
        callbacks=[StopThenPause()],
        progress=False,
        seed=0,
    )
    assert h.stop_reason == "done"
    saved = load_checkpoint(tmp_path / "last.pt")["fit"]
    assert saved["should_stop"]
    assert saved["stop_reason"] == "done"


# ----------------------------------------------------------------------------- run layer
def test_the_run_layer_trains_resumes_and_writes_through_one_world(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config.validate(
        {
            "task": {"name": "linreg", "standardize": True},
            "schedule": {"lr": 0.1},
            "fit": {"max_steps": 12, "progress": False},
            "output": {"dir": str(out), "plots": False},
        }
    )
    result = bergab.run.train(cfg)
    assert result.steps == 12
    assert not result.interrupted
    assert {"config.toml", "summary.json", "model.pt", "checkpoints", "logs"} <= set(result.files)
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    assert not list(out.glob(".*.tmp"))  # files are replaced whole
    more = bergab.run.resume(out, ["fit.max_steps=20"])
    assert more.steps == 20


# ----------------------------------------------------------------------------- world + shards
def test_world_of_one_is_the_default() -> None:
    w = World.current()
    assert (w.rank, w.size, w.is_main, w.shard) == (0, 1, True, None)
    with pytest.raises(ValueError, match="rank must be in"):
        World(rank=2, size=2)


def test_a_rank_other_than_0_writes_nothing(tmp_path: Path) -> None:
    w = World(rank=1, size=2)
    w.write_text(tmp_path / "a.txt", "x")
    w.save({"w": torch.ones(1)}, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_are_disjoint_and_cover_the_epoch(size: int, shuffle: bool) -> None:
    n = 50
    x = torch.arange(n).float().unsqueeze(1)
    seen = []
    counts = set()
    for rank in range(size):
        src = _data.make_source((x, x), 8, shuffle, seed=4, shard=(rank, size))
        batches = list(src.batches(1, 0, None))
        counts.add((src.num_batches, len(batches)))
        seen.append(torch.cat([b[0] for b in batches]).long().flatten().tolist())
    assert len(counts) == 1  # every rank takes the same number of steps
    flat = [i for s in seen for i in s]
    assert set(flat) == set(range(n))
    assert len(flat) == size * -(-n // size)  # padded by wrapping to a multiple of size
    per = -(-n // size)
    assert all(len(s) == per for s in seen)


def test_a_full_batch_shard_is_the_whole_shard() -> None:
    x = torch.arange(9).float().unsqueeze(1)
    src = _data.make_source((x, x), "full", True, seed=0, shard=(1, 2))
    (batch,) = list(src.batches(0, 0, None))
    assert src.num_batches == 1
    assert len(batch[0]) == 5  # ceil(9 / 2): this process's share, padded by wrapping


def test_one_process_draws_exactly_as_before() -> None:
    x = torch.arange(40).float().unsqueeze(1)
    a = [b[0] for b in _data.make_source((x, x), 8, True, seed=1).batches(2, 0, None)]
    b = [b[0] for b in _data.make_source((x, x), 8, True, seed=1, shard=(0, 1)).batches(2, 0, None)]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_a_dataloader_must_shard_itself() -> None:
    x = torch.zeros(8, 1)
    loader = DataLoader(TensorDataset(x, x), batch_size=2)
    with pytest.raises(ValueError, match="DistributedSampler"):
        _data.make_source(loader, None, True, 0, shard=(0, 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, size: int, port: int, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size
    )
    try:
        torch.set_num_threads(1)
        x = torch.arange(40).float().unsqueeze(1)
        seen: list[int] = []

        def batch_fn(batch: Any) -> Any:
            seen.extend(batch[0].long().flatten().tolist())
            return batch[0], batch[1]

        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(1, 1))
        h = fit(
            model,
            (x, x),
            torch.nn.functional.mse_loss,
            optimizer="sgd",
            lr=1e-3,
            epochs=2,
            batch_size=5,
            batch_fn=batch_fn,
            seed=0,
            progress=False,
            checkpoint_dir=Path(out) / "ckpt",
            log_dir=Path(out) / "logs",
        )
        weights = [p.detach().flatten().tolist() for p in model.parameters()]
        Path(out, f"rank{rank}.json").write_text(
            json.dumps({"steps": len(h), "seen": seen, "weights": weights})
        )
        if rank == 0:  # without gradient averaging, sharded training would be wrong
            with pytest.raises(ValueError, match="DistributedDataParallel"):
                fit(torch.nn.Linear(1, 1), (x, x), torch.nn.functional.mse_loss, strategy="none")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_shard_the_data_and_only_rank_0_writes(tmp_path: Path) -> None:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["steps"] == r1["steps"] == 8  # 20 examples each, batches of 5, 2 epochs
    epoch0 = [r0["seen"][:20], r1["seen"][:20]]
    assert set(epoch0[0]).isdisjoint(epoch0[1])
    assert set(epoch0[0]) | set(epoch0[1]) == set(range(40))
    assert r0["weights"] == r1["weights"]  # DDP averaged the shards' gradients
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.prev.pt", "last.pt"]
    logs = tmp_path / "logs"
    assert len(list(logs.glob("events.out.tfevents.*"))) <= 1  # one writer, not two
    assert len((logs / "steps.csv").read_text().splitlines()) == 1 + 8  # header + rank 0's


def test_bergab_exports_the_seams() -> None:
    assert bergab.training.FitOptions is FitOptions
    assert callable(bergab.run.train)
    assert callable(bergab.run.resume)


def test_model_checkpoint_writes_on_rank_0_only(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bergab.training import ModelCheckpoint

    model = torch.nn.Linear(1, 1)
    for rank in (1, 0):
        cb = ModelCheckpoint(tmp_path / "models", save="last", keep=1)
        trainer = SimpleNamespace(
            model=model, step=3, epoch=0, world=World(rank=rank, size=2),
            checkpoint_dir=None, log_dir=None,
        )  # fmt: skip
        cb.on_fit_start(trainer)
        cb.on_epoch_end(trainer, {})
        files = sorted(p.name for p in (tmp_path / "models").glob("*.pt"))
        assert files == ([] if rank == 1 else ["epoch0-step3.pt"])


def test_loggers_and_bars_given_as_callbacks_stay_off_other_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bergab.training import CSVLogger, ProgressBar
    from bergab.training import _fit as fit_module

    # rank 1 of 2 with a model taken to average its gradients (no process group needed)
    monkeypatch.setattr(World, "current", classmethod(lambda cls: World(rank=1, size=2)))
    monkeypatch.setattr(fit_module, "synchronizes_gradients", lambda model: True)
    monkeypatch.setattr(fit_module._strategy, "check_same_options", lambda *args: None)
    x, y = _data_xy(8)
    mine = Callback()
    t = Trainer(_model(), (x, y), torch.nn.functional.mse_loss,
                callbacks=[CSVLogger(tmp_path / "logs"), ProgressBar(), mine])  # fmt: skip
    assert t._make_callbacks() == [mine]
