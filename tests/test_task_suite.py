"""The learning-rate suite (:mod:`bergab.tasks.suite`): its halves, what it spans, and
that every task builds deterministically and runs."""

from __future__ import annotations

import math

import pytest
import torch

from bergab import optim
from bergab.tasks import Task, suite

NAMES = suite.names()


@pytest.fixture(scope="module")
def built() -> dict[str, Task]:
    """Every task built once with seed 0 (a few seconds for all 32)."""
    return {st.name: st.build(0) for st in suite.SUITE}


def test_size_halves_and_names() -> None:
    assert len(suite.SUITE) >= 12
    assert len(suite.SUITE) == 32
    assert len(set(NAMES)) == len(NAMES)
    assert [t.name for t in suite.SUITE] == NAMES
    assert suite.tasks() == list(suite.SUITE)
    assert suite.HALVES == ("tuning", "held-out", "fresh", "fresh-2")
    assert suite.KEPT_ASIDE == ("fresh-2",)
    halves = [suite.tasks(h) for h in suite.HALVES]
    assert [len(h) for h in halves] == [8, 8, 8, 8]
    names = [{t.name for t in h} for h in halves]
    assert sum(len(n) for n in names) == len(set().union(*names))  # no task in two parts
    for half, ts in zip(suite.HALVES, halves, strict=True):
        assert all(t.half == half for t in ts)
    assert all(t.half in suite.HALVES for t in suite.SUITE)
    # the built-in tasks, on which earlier rules were designed, are in the tuning half
    assert {"digits-mlp", "linreg-unscaled", "charlm-mlp"} <= {t.name for t in halves[0]}


def test_get_and_bad_names() -> None:
    for name in NAMES:
        assert suite.get(name).name == name
    with pytest.raises(ValueError, match=r"name must be one of the suite's tasks.*'bogus'"):
        suite.get("bogus")
    with pytest.raises(ValueError, match="half"):
        suite.tasks("bogus")


def test_recipes_are_valid() -> None:
    for st in suite.SUITE:
        assert st.optimizer in {"adamw", "momentum"}
        assert st.steps > 0
        assert st.batch_size > 0
        assert st.tags
        assert len(set(st.tags)) == len(st.tags)
        kwargs = st.optimizer_kwargs()
        if st.optimizer == "adamw":
            assert kwargs == {"weight_decay": 0.01}
        else:
            assert kwargs == {"momentum": 0.9}
        p = torch.nn.Parameter(torch.zeros(1))
        opt = optim.create(st.optimizer, [p], lr=0.1, **kwargs)  # each recipe builds
        assert opt.param_groups[0]["lr"] == 0.1
    # epochs() is steps x batch over the training examples
    moons = suite.get("moons-sgd")
    assert moons.epochs() == moons.steps * moons.batch_size / 100


def test_the_suite_spans_what_makes_a_learning_rate_hard(built: dict[str, Task]) -> None:
    sizes = {name: len(task.train) for name, task in built.items()}
    assert min(sizes.values()) <= 150
    assert max(sizes.values()) >= 20_000
    batches = {t.batch_size for t in suite.SUITE}
    assert {8, 256} <= batches
    tags = {tag for t in suite.SUITE for tag in t.tags}
    assert tags >= {
        "classification", "regression", "language", "mlp", "cnn", "batchnorm", "recurrent",
        "transformer", "unscaled", "small", "sgd",
    }  # fmt: skip
    assert {t.optimizer for t in suite.SUITE} == {"adamw", "momentum"}
    # "sgd" means SGD with momentum, and every SGD task is tagged so
    for t in suite.SUITE:
        assert ("sgd" in t.tags) == (t.optimizer == "momentum"), t.name


@pytest.mark.parametrize("half", ["tuning", "held-out"])
def test_each_half_spans_the_properties_too(half: str, built: dict[str, Task]) -> None:
    ts = suite.tasks(half)
    tags = {tag for t in ts for tag in t.tags}
    # every tag but "linear" is in both halves
    assert tags >= {
        "classification", "regression", "language", "mlp", "cnn", "batchnorm", "recurrent",
        "transformer", "unscaled", "small", "sgd", "large",
    }  # fmt: skip
    assert {t.optimizer for t in ts} == {"adamw", "momentum"}
    assert any(t.optimizer == "momentum" for t in ts)
    assert any("language" in t.tags for t in ts)
    assert {8, 256} <= {t.batch_size for t in ts}
    sizes = [len(built[t.name].train) for t in ts]
    assert min(sizes) <= 150
    assert max(sizes) >= 20_000


def _data_equal(a: Task, b: Task) -> bool:
    return all(
        torch.equal(u, v)
        for split in ("train", "val")
        for u, v in zip(getattr(a, split).tensors, getattr(b, split).tensors, strict=True)
    )


@pytest.mark.parametrize("name", NAMES)
def test_builds_deterministically(name: str, built: dict[str, Task]) -> None:
    st = suite.get(name)
    a, b = built[name], st.build(0)
    assert _data_equal(a, b)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    first = next(a.model.parameters())
    assert not torch.equal(first, next(st.build(1).model.parameters()))


# the built-in tasks take their seed for the data as well (digits: the stratified split;
# linreg: the data itself), as bergab.tasks.digits and linreg always have
_SEED_MOVES_DATA = {"digits-mlp", "linreg-unscaled"}


@pytest.mark.parametrize("name", NAMES)
def test_another_seed_changes_the_init_and_only_the_built_ins_data(
    name: str, built: dict[str, Task]
) -> None:
    assert _data_equal(built[name], suite.get(name).build(1)) == (name not in _SEED_MOVES_DATA)


@pytest.mark.parametrize("part", ["fresh", "fresh-2"])
def test_the_fresh_parts_span_architectures_and_optimizers(part: str) -> None:
    ts = suite.tasks(part)
    tags = {tag for t in ts for tag in t.tags}
    assert tags >= {"classification", "regression", "language", "mlp", "cnn", "recurrent",
                    "transformer", "unscaled", "small", "sgd", "large"}  # fmt: skip
    assert {t.optimizer for t in ts} == {"adamw", "momentum"}


def test_building_leaves_the_global_random_state_alone() -> None:
    before = torch.get_rng_state()
    suite.get("wine-sgd").build(3)
    suite.get("charlm-gru").build(3)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", NAMES)
def test_a_forward_pass_gives_a_finite_loss(name: str, built: dict[str, Task]) -> None:
    task = built[name]
    # the three built-in tasks keep their own names ("digits" for "digits-mlp")
    assert task.name == name or name.startswith(f"{task.name}-")
    x, y = task.train[:4]
    with torch.no_grad():
        out = task.model(x)
        loss = task.loss_fn(out, y)
    assert loss.ndim == 0
    assert math.isfinite(float(loss))
    xv, yv = task.val[:4]
    with torch.no_grad():
        assert math.isfinite(float(task.loss_fn(task.model(xv), yv)))
    assert len(task.val) > 0
