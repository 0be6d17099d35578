"""fit, lr_find and checkpoints under several processes (torch.distributed, gloo on the CPU).

Each test starts two processes with torchrun's environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...) and lets ``fit(strategy="auto")`` start the process group itself, as
it does under ``torchrun``; the reference runs in this process, alone. Two processes with
a per-process batch of b must train exactly as one process with a batch of 2b: the same
examples each step (the shards of one order), gradients averaged over the same examples.
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

import bergab
from bergab.training import Callback, strategy

# under CI (which sets CI) a machine without them fails these tests instead of skipping
pytestmark = pytest.mark.skipif(
    not os.environ.get("CI")
    and (not torch.distributed.is_available() or strategy.usable_cores() < 2),
    reason="needs torch.distributed and 2 CPU cores",
)

MSE = torch.nn.functional.mse_loss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _data() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=g, dtype=torch.float64)
    w = torch.randn(5, 1, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ w) + 0.1 * torch.randn(256, 1, generator=g, dtype=torch.float64)
    return (x[:200], y[:200]), (x[200:], y[200:])  # 56 validation examples: 28 a process


def _model(dropout: float = 0.0) -> torch.nn.Module:
    g = torch.get_rng_state()
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Dropout(dropout), torch.nn.Linear(16, 1)
    ).double()
    torch.set_rng_state(g)  # the caller's random stream goes on as it was
    return model


def _big_val() -> tuple[torch.Tensor, torch.Tensor]:
    """513 validation examples: 257 and 256 a process, in 2 and 1 batches of 256."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(513, 5, generator=g, dtype=torch.float64)
    return x, torch.tanh(x.sum(1, keepdim=True))


def _flat(tensors: Any) -> list[float]:
    """The values of ``tensors``, whole (an FSDP shard is gathered), in one list."""
    whole = [t.full_tensor() if hasattr(t, "full_tensor") else t for t in tensors]
    return torch.cat([t.detach().flatten() for t in whole]).tolist()


def _mae(out: torch.Tensor, y: torch.Tensor) -> float:
    return float((out - y).abs().mean())


#: torch's SGD: fit records its lr as it steps (a bergab optimizer's lr_scale is apart)
TORCH_SGD = {"optimizer": torch.optim.SGD, "optimizer_kwargs": {"momentum": 0.9}, "lr": 0.05}
OPTIMIZERS = {
    "momentum": {"optimizer": "momentum", "lr": 0.05},
    "adamw": {"optimizer": "adamw", "lr": 1e-2},
    "prodigy": {"optimizer": "prodigy", "lr": 1.0},  # its d comes from global sums
}


#: early stopping that triggers within the test runs, restoring the best weights
EARLY: dict[str, Any] = {
    "early_stopping": {"monitor": "val_loss", "patience": 1, "restore_best": True},
    "val_every": 2,
}


class _PauseAt(Callback):
    """Pause the run (a checkpoint to resume from) after ``step`` steps."""

    def __init__(self, step: int) -> None:
        self.at = step

    def on_batch_end(self, trainer: Any, record: Any) -> None:
        if trainer.step == self.at:
            trainer.stop("pause", checkpoint=True)


def _train(batch: int, steps: int = 50, dropout: float = 0.0, **kw: Any) -> dict[str, Any]:
    """A run on the test data; its final weights (the bare module's), losses and records."""
    train, val = _data()
    model = _model(dropout)
    kw = {"val_data": val, "seed": 3, **kw}
    h = bergab.fit(model, train, MSE, metrics={"mae": _mae}, max_steps=steps,
                   batch_size=batch, progress=False, **kw)  # fmt: skip
    return {
        "w": _flat(strategy.unwrap(model).state_dict().values()),
        "loss": list(h.steps["loss"]),
        "lr": list(h.steps["lr"]),
        "records": [{k: v for k, v in r.items() if k != "time"} for r in h.records],
        "events": [dict(e) for e in h.events],
    }


# ----------------------------------------------------------------------------- jobs
def _job_equal(out: Path) -> dict[str, Any]:
    res = {name: _train(16, **kw) for name, kw in OPTIMIZERS.items()}
    res["accumulate"] = _train(8, accumulation_steps=2, **OPTIMIZERS["momentum"])
    res["clip"] = _train(16, clip_norm=0.05, **OPTIMIZERS["momentum"])
    return res


def _job_sharded(out: Path) -> dict[str, Any]:
    res = {}
    for name, kw in (("zero", {"shard_optimizer": True}), ("fsdp", {"strategy": "fsdp"})):
        res[name] = _train(16, steps=30, **OPTIMIZERS["adamw"], **kw)
        ckpt = out / name
        _train(16, steps=30, checkpoint_dir=ckpt, callbacks=[_PauseAt(12)],
               **OPTIMIZERS["adamw"], **kw)  # fmt: skip
        res[name + "_resumed"] = _train(16, steps=30, checkpoint_dir=ckpt, resume=True,
                                        **OPTIMIZERS["adamw"], **kw)  # fmt: skip
        res[name + "_best"] = _train(16, steps=30, **EARLY, **OPTIMIZERS["adamw"], **kw)
    # validation in step under FSDP: 2 batches on rank 0, 1 on rank 1 (a forward to match)
    res["fsdp_big_val"] = _train(16, steps=4, val_data=_big_val(), strategy="fsdp",
                                 **OPTIMIZERS["adamw"])  # fmt: skip
    # a ZeRO run paused here is resumed by one process (in the test)
    _train(16, steps=30, checkpoint_dir=out / "zero_to_one", callbacks=[_PauseAt(12)],
           shard_optimizer=True, **OPTIMIZERS["adamw"])  # fmt: skip
    errors = {}
    for name, kw in (("sf", {"optimizer": "schedulefree_adamw", "shard_optimizer": True}),
                     ("fsdp_zero", {"strategy": "fsdp", "shard_optimizer": True})):  # fmt: skip
        try:
            _train(16, steps=2, **kw)
        except ValueError as exc:
            errors[name] = str(exc)
    res["errors"] = errors
    model = _model()
    strategy.wrap(model, "fsdp", torch.device("cpu"))
    res["fsdp_units"] = sum(strategy.is_fsdp(m) for m in model.modules())
    return res


def _job_lr_find(out: Path) -> dict[str, Any]:
    train, val = _data()
    res = bergab.lr_find(_model(), train, MSE, optimizer="sgd", steps=30, batch_size=16,
                         seed=2, val_data=val, warn=False)  # fmt: skip
    auto = _train(16, steps=40, lr="auto", optimizer="adamw")
    return {
        "suggestion": res.suggestion,
        "losses": [float(v) for v in res.losses],
        "auto": auto["lr"],
        "auto_w": auto["w"],
    }


def _job_resize(out: Path) -> dict[str, Any]:
    # the run was paused after 5 steps by one process (batch 16); two go on (global 32)
    return _train(16, steps=12, checkpoint_dir=out / "resize", resume=True, lr_scaling="linear",
                  lr_scaling_warmup=4, **TORCH_SGD)  # fmt: skip


def _job_rng(out: Path) -> dict[str, Any]:
    """Dropout with each process's own random stream (seed=None after a seed a rank):
    a resume gives each process its own random state back, so it is bitwise."""
    rank = int(os.environ["RANK"])
    kw = {"seed": None, "dropout": 0.3, "steps": 16, **OPTIMIZERS["adamw"]}
    torch.manual_seed(100 + rank)
    whole = _train(16, **kw)
    torch.manual_seed(100 + rank)
    _train(16, checkpoint_dir=out / "rng", callbacks=[_PauseAt(7)], **kw)
    torch.manual_seed(999)  # whatever this process draws now, the checkpoint's state wins
    resumed = _train(16, checkpoint_dir=out / "rng", resume=True, **kw)
    return {"whole": whole["w"], "resumed": resumed["w"]}


def _job_mismatch(out: Path) -> dict[str, Any]:
    rank = int(os.environ["RANK"])
    try:
        _train(16 + rank, steps=2, **OPTIMIZERS["momentum"])
    except ValueError as exc:
        return {"error": str(exc)}
    return {"error": None}


def _worker(rank: int, size: int, port: int, job: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    result = globals()[f"_job_{job}"](Path(out))
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def _spawn(job: str, out: Path) -> list[dict[str, Any]]:
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), job, str(out)), nprocs=2)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _close(a: list[float], b: list[float], tol: float = 1e-9) -> bool:
    return len(a) == len(b) and all(
        math.isclose(u, v, rel_tol=tol, abs_tol=tol) for u, v in zip(a, b, strict=True)
    )


# ----------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_two_processes_equal_one_with_twice_the_batch(tmp_path: Path) -> None:
    two = _spawn("equal", tmp_path)
    assert two[0] == two[1]  # every process holds the same weights and records
    for name, kw in OPTIMIZERS.items():
        one = _train(32, **kw)
        got = two[0][name]
        assert _close(got["w"], one["w"]), name
        assert _close(got["loss"], one["loss"]), name  # the mean over both shards
        # validation: exact means over the 56 examples, each counted once
        for a, b in zip(got["records"], one["records"], strict=True):
            assert _close([a["val_loss"], a["val_mae"]], [b["val_loss"], b["val_mae"]]), name
    assert _close(two[0]["accumulate"]["w"], _train(16, accumulation_steps=2,
                                                    **OPTIMIZERS["momentum"])["w"])  # fmt: skip
    clipped = _train(32, clip_norm=0.05, **OPTIMIZERS["momentum"])
    assert _close(two[0]["clip"]["w"], clipped["w"])
    assert not _close(clipped["w"], _train(32, **OPTIMIZERS["momentum"])["w"])  # it clipped


@pytest.mark.slow
def test_zero_and_fsdp_equal_the_unsharded_run_and_resume_exactly(tmp_path: Path) -> None:
    two = _spawn("sharded", tmp_path)
    plain = _train(32, steps=30, **OPTIMIZERS["adamw"])
    best = _train(32, steps=30, **EARLY, **OPTIMIZERS["adamw"])
    assert best["events"][-1]["reason"].startswith("early stopping")  # it stopped early
    for name in ("zero", "fsdp"):
        assert _close(two[0][name]["w"], plain["w"]), name
        # paused at step 12 and resumed: bitwise the run that never stopped
        assert two[0][name + "_resumed"]["w"] == two[0][name]["w"], name
        assert two[0][name + "_resumed"]["loss"] == two[0][name]["loss"], name
        # early stopping keeps and restores the whole best weights (gathered under FSDP)
        assert _close(two[0][name + "_best"]["w"], best["w"]), name
        # one process's checkpoint holds the whole model, loadable without torch.distributed
        ckpt = torch.load(tmp_path / name / "last.pt", weights_only=False)
        assert set(ckpt["model"]) == set(_model().state_dict())
    one = _train(32, steps=4, val_data=_big_val(), **OPTIMIZERS["adamw"])
    got = two[0]["fsdp_big_val"]["records"]
    assert _close([r["val_loss"] for r in got], [r["val_loss"] for r in one["records"]])
    # ZeRO's checkpoint is whole: one process continues it, as the unsharded run went on
    resumed = _train(32, steps=30, checkpoint_dir=tmp_path / "zero_to_one", resume=True,
                     shard_optimizer=True, **OPTIMIZERS["adamw"])  # fmt: skip
    assert resumed["lr"] == plain["lr"]
    assert all(math.isfinite(v) for v in resumed["loss"])
    event = next(e for e in resumed["events"] if e["event"] == "world_size")
    assert (event["from"], event["to"]) == (2, 1)
    assert "shard_optimizer=True: ScheduleFreeAdamW keeps two sets" in two[0]["errors"]["sf"]
    assert "shard_optimizer=True goes with strategy='ddp'" in two[0]["errors"]["fsdp_zero"]
    assert two[0]["fsdp_units"] == 3  # two Linear blocks and the root: gathered one at a time


@pytest.mark.slow
def test_lr_find_under_two_processes_equals_the_single_sweep(tmp_path: Path) -> None:
    two = _spawn("lr_find", tmp_path)
    assert two[0] == two[1]  # one curve, one suggestion on every process
    train, val = _data()
    one = bergab.lr_find(_model(), train, MSE, optimizer="sgd", steps=30, batch_size=32,
                         seed=2, val_data=val, warn=False)  # fmt: skip
    assert _close(two[0]["losses"], [float(v) for v in one.losses])
    assert math.isclose(two[0]["suggestion"], one.suggestion, rel_tol=1e-9)
    # lr="auto": the same range test and trials on the same global batches, one choice
    auto = _train(32, steps=40, lr="auto", optimizer="adamw")
    assert _close(two[0]["auto"], auto["lr"])
    assert _close(two[0]["auto_w"], auto["w"])


@pytest.mark.slow
def test_resuming_with_more_processes_scales_the_lr_with_a_warmup(tmp_path: Path) -> None:
    _train(16, steps=12, checkpoint_dir=tmp_path / "resize", callbacks=[_PauseAt(5)],
           **TORCH_SGD)  # fmt: skip
    two = _spawn("resize", tmp_path)
    assert two[0] == two[1]
    lr = TORCH_SGD["lr"]
    got = two[0]["lr"]
    assert got[:5] == [lr] * 5
    # steps 6.. rise from lr to 2 lr over 4 steps (the global batch doubled), then stay
    assert _close(got[5:], [lr * (1 + k / 4) for k in range(4)] + [2 * lr] * 3)
    event = next(e for e in two[0]["events"] if e["event"] == "world_size")
    assert (event["from"], event["to"], event["step"]) == (1, 2, 5)


@pytest.mark.slow
def test_each_process_resumes_its_own_random_state(tmp_path: Path) -> None:
    two = _spawn("rng", tmp_path)
    assert two[0]["resumed"] == two[0]["whole"]
    assert two[1]["resumed"] == two[1]["whole"]


@pytest.mark.slow
def test_processes_given_different_options_are_told_which(tmp_path: Path) -> None:
    two = _spawn("mismatch", tmp_path)
    for r in two:
        assert r["error"] is not None
        assert "batch_size is 16 on rank 0 and 17 on rank 1" in r["error"]


# ----------------------------------------------------------------------------- one process
def test_ddp_and_fsdp_need_several_processes() -> None:
    train, _ = _data()
    for name in ("ddp", "fsdp"):
        with pytest.raises(ValueError, match=f"strategy='{name}' needs several processes"):
            bergab.fit(_model(), train, MSE, strategy=name, progress=False)
    with pytest.raises(ValueError, match="strategy must be one of"):
        bergab.fit(_model(), train, MSE, strategy="zero", progress=False)


def test_strategy_auto_follows_torchrun_environment() -> None:
    m = torch.nn.Linear(1, 1)
    assert strategy.resolve_strategy("auto", m, env={}) == "none"
    assert strategy.resolve_strategy("auto", m, env={"WORLD_SIZE": "1", "RANK": "0"}) == "none"
    assert strategy.resolve_strategy("auto", m, env={"WORLD_SIZE": "2", "RANK": "1"}) == "ddp"
    assert strategy.resolve_strategy("fsdp", m, env={"WORLD_SIZE": "2", "RANK": "1"}) == "fsdp"


def test_more_processes_than_cores_and_other_devices_are_refused() -> None:
    n = strategy.usable_cores() + 1
    with pytest.raises(ValueError, match=f"{n} processes on this machine but"):
        strategy.ensure_process_group(torch.device("cpu"), env={"LOCAL_WORLD_SIZE": str(n)})
    with pytest.raises(ValueError, match="device is 'meta'"):
        strategy.ensure_process_group(torch.device("meta"), env={"LOCAL_WORLD_SIZE": "2"})


def test_which_optimizers_shard() -> None:
    o = bergab.optim
    reach = strategy.optimizer_reach
    assert [reach(c) for c in (o.SGD, o.AdamW, o.ScheduleFreeAdamW, torch.optim.Adam)] == [
        "element"
    ] * 4
    assert [reach(c) for c in (o.LARS, o.LAMB, o.LDoG)] == ["tensor"] * 3
    assert [reach(c) for c in (o.Prodigy, o.DoG, o.HypergradientSGD)] == ["all"] * 3
    with pytest.raises(ValueError, match=r"strategy='fsdp' cuts every tensor.*LAMB"):
        strategy.check_shardable(o.LAMB, "fsdp", False)
    strategy.check_shardable(o.LAMB, "ddp", True)  # ZeRO keeps whole tensors: fine
    with pytest.raises(ValueError, match=r"shard_optimizer=True.*Prodigy"):
        strategy.check_shardable(o.Prodigy, "ddp", True)


def test_shard_optimizer_needs_the_optimizer_by_name_or_class() -> None:
    train, _ = _data()
    model = _model()
    with pytest.raises(TypeError, match=r"shard_optimizer=True .* not an instance"):
        bergab.fit(model, train, MSE, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                   shard_optimizer=True)  # fmt: skip
    with pytest.raises(ValueError, match="lr_scaling must be one of"):
        bergab.fit(model, train, MSE, lr_scaling="cubic")


def test_a_checkpoint_of_a_model_wrapped_by_hand_still_resumes(tmp_path: Path) -> None:
    """Checkpoints of a model you wrapped in DDP yourself held ``module.`` keys: they load."""
    train, _ = _data()
    bergab.fit(_model(), train, MSE, max_steps=2, checkpoint_dir=tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    ckpt["model"] = {f"module.{k}": v for k, v in ckpt["model"].items()}
    del ckpt["fit"]["world_size"]  # and from before the number of processes was recorded
    torch.save(ckpt, tmp_path / "last.pt")
    h = bergab.fit(_model(), train, MSE, max_steps=4, checkpoint_dir=tmp_path, resume=True,
                   progress=False)  # fmt: skip
    assert len(h.steps["loss"]) == 4
    assert not any(e["event"] == "world_size" for e in h.events)


def test_checkpoints_hold_the_bare_model(tmp_path: Path) -> None:
    """One process writes the model's own keys (no ``module.`` prefix), as several do, so a
    checkpoint resumes under any strategy and number of processes."""
    train, _ = _data()
    model = _model()
    bergab.fit(model, train, MSE, max_steps=2, checkpoint_dir=tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert set(ckpt["model"]) == set(model.state_dict())
    assert ckpt["optimizer_layout"] == "index"
    assert ckpt["fit"]["world_size"] == 1
