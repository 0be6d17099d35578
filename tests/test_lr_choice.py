"""``lr="auto"`` as a search: the bracket rules, the trial search, the fallback, and what
the choice records (:mod:`bergab._lr_rules`, :func:`bergab.auto_lr.choose_lr`)."""

from __future__ import annotations

import itertools
import json
import math
import random
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bergab import auto_lr, optim
from bergab._lr_rules import Trial, bottom, centred, next_lr, pick
from bergab.lr_finder import LRFindResult, LRFindWarning, _smooth
from bergab.tasks import suite
from bergab.training import Callback, fit

mse = nn.functional.mse_loss


# ----------------------------------------------------------------------------- bracket rules
def _falls_then_blows_up(lrs: np.ndarray) -> np.ndarray:
    """Falls around 1e-3, rises linearly in lr: lowest at lr = sqrt(1e-3) - 1e-3."""
    return 1 / (1 + lrs / 1e-3) + lrs


TRUE_BOTTOM = math.sqrt(1e-3) - 1e-3  # d/dlr of the curve above is 0 there


def test_the_ema_lags_the_curve_and_the_centred_smoothing_does_not() -> None:
    fine = np.logspace(-6, 1, 200_001)
    assert fine[np.argmin(_falls_then_blows_up(fine))] == pytest.approx(TRUE_BOTTOM, rel=1e-3)
    lrs = np.logspace(-6, 1, 100)
    noise = 1 + 0.02 * np.random.default_rng(0).standard_normal(len(lrs))
    loss = _falls_then_blows_up(lrs) * noise
    ema = np.asarray(_smooth(list(loss), 0.98))
    ema_off = math.log10(lrs[np.argmin(ema)] / TRUE_BOTTOM)
    centred_off = math.log10(lrs[np.argmin(centred(lrs, loss))] / TRUE_BOTTOM)
    assert ema_off > 0.5  # the EMA's minimum sits where the raw loss is already rising
    assert abs(centred_off) < 0.15
    lr, why = bottom(lrs, loss)
    assert lr is not None
    assert abs(math.log10(lr / TRUE_BOTTOM)) < 0.15
    assert why == "the bottom of the centred range-test curve"


def test_centred_has_its_minimum_where_a_symmetric_curve_has_it() -> None:
    lrs = np.logspace(-4, 0, 41)
    loss = (np.log10(lrs) + 2) ** 2
    smooth = centred(lrs, loss)
    assert lrs[np.argmin(smooth)] == pytest.approx(1e-2)
    assert smooth.shape == loss.shape
    # a wider kernel still does not move the minimum of a symmetric curve
    assert lrs[np.argmin(centred(lrs, loss, decades=1.0))] == pytest.approx(1e-2)


def test_a_lucky_first_batch_gives_no_bracket() -> None:
    lrs = np.logspace(-6, 1, 80)
    loss = 1 + 0.01 * np.random.default_rng(1).standard_normal(len(lrs))
    loss[0] = 0.3  # far below every later point
    lr, why = bottom(lrs, loss)
    assert lr is None
    assert "lowest at its very start" in why


@pytest.mark.parametrize("noise", [0.0, 0.005])
def test_a_flat_curve_gives_no_bracket(noise: float) -> None:
    lrs = np.logspace(-6, 1, 80)
    loss = 1 + noise * np.random.default_rng(2).standard_normal(len(lrs))
    lr, why = bottom(lrs, loss)
    assert lr is None
    assert "below its start" in why


def test_too_short_a_curve_gives_no_bracket() -> None:
    lr, why = bottom([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.5, 0.3, 2.0])
    assert lr is None
    assert "only 4 steps" in why


def _sweep_that_explodes(after: float) -> tuple[np.ndarray, np.ndarray]:
    """The curve above over a sweep 1e-7 .. 10 of 100 steps, until at lr ``after`` the
    loss starts growing tenfold per step; cut where lr_find stops (its EMA over 4 times
    its best), so the last recorded points are the explosion."""
    lrs = np.logspace(-7, 1, 100)
    loss = _falls_then_blows_up(lrs)
    i0 = int(np.searchsorted(lrs, after))
    loss[i0:] = loss[i0 - 1] * 10.0 ** np.arange(1, len(lrs) - i0 + 1)
    ema = np.asarray(_smooth(list(loss), 0.98))
    stop = np.nonzero(ema > 4 * np.minimum.accumulate(ema))[0]
    n = int(stop[0]) + 1
    return lrs[:n], loss[:n]


@pytest.mark.parametrize("after", [0.3, 1.0])
def test_divergence_at_the_end_does_not_move_the_bottom(after: float) -> None:
    lrs, loss = _sweep_that_explodes(after)
    assert loss[-1] > 50 * loss.min()  # the sweep ended on the explosion
    lr, why = bottom(lrs, loss)
    assert lr is not None, why
    assert abs(math.log10(lr / TRUE_BOTTOM)) < 0.15


def test_divergence_just_past_the_bottom_does_not_move_it_much() -> None:
    # half a decade above the true bottom; smoothing the raw losses put the bottom 0.40
    # decades low, cutting them at the start level first leaves 0.15
    lrs, loss = _sweep_that_explodes(0.1)
    lr, why = bottom(lrs, loss)
    assert lr is not None, why
    assert abs(math.log10(lr / TRUE_BOTTOM)) < 0.2


# ----------------------------------------------------------------------------- next_lr
def test_next_lr_extends_past_the_end_that_scored_best() -> None:
    up = next_lr([Trial(1e-3, 0.9, "a"), Trial(1e-2, 0.5, "a")], 10.0)
    assert up is not None
    assert up[0] == pytest.approx(0.1)
    assert "highest" in up[1]
    down = next_lr([Trial(1e-2, 0.9, "a"), Trial(1e-3, 0.5, "a")], 10.0)  # any order
    assert down is not None
    assert down[0] == pytest.approx(1e-4)
    assert "lowest" in down[1]
    # the step is the spacing
    up3 = next_lr([Trial(1e-3, 0.9, "a"), Trial(1e-2, 0.5, "a")], math.sqrt(10))
    assert up3 is not None
    assert up3[0] == pytest.approx(1e-2 * math.sqrt(10))


def test_next_lr_goes_below_everything_when_all_diverged() -> None:
    nxt = next_lr([Trial(1e-2, math.inf, "a"), Trial(1e-3, math.inf, "a")], 10.0)
    assert nxt is not None
    lr, why = nxt
    assert lr == pytest.approx(1e-5)  # spacing**2 below the lowest
    assert "diverged" in why


def test_next_lr_with_a_diverged_lr_above_the_best() -> None:
    # the best finite lr is not the highest tried: no step up, the gap to the finite
    # neighbour is halved instead
    t = [Trial(1e-3, 0.9, "a"), Trial(1e-2, 0.5, "a"), Trial(1e-1, math.inf, "a")]
    nxt = next_lr(t, 10.0)
    assert nxt is not None
    assert nxt[0] == pytest.approx(math.sqrt(1e-5))
    assert "between" in nxt[1]
    # best at the bottom, a diverged one above: extend downwards
    nxt = next_lr([Trial(1e-2, 0.5, "a"), Trial(1e-1, math.inf, "a")], 10.0)
    assert nxt is not None
    assert nxt[0] == pytest.approx(1e-3)
    # next_lr itself does not rule out lrs above one that diverged lower down (an unusual
    # curve): it proposes a step up, and choose_lr's loop refuses to take it
    nxt = next_lr([Trial(1e-3, math.inf, "a"), Trial(1e-2, 0.5, "a")], 10.0)
    assert nxt is not None
    assert nxt[0] == pytest.approx(0.1)


def test_next_lr_halves_the_gap_once_then_stops() -> None:
    t = [Trial(1e-3, 0.9, "a"), Trial(1e-2, 0.5, "a"), Trial(1e-1, 0.7, "a")]
    nxt = next_lr(t, 10.0)
    assert nxt is not None
    lr, why = nxt
    assert lr == pytest.approx(math.sqrt(1e-3))  # towards the better neighbour, 1e-1
    assert why == "between the best lr and its better neighbour"
    # towards the left neighbour when it is the better one
    left = next_lr([Trial(1e-3, 0.6, "a"), Trial(1e-2, 0.5, "a"), Trial(1e-1, 0.7, "a")], 10.0)
    assert left is not None
    assert left[0] == pytest.approx(math.sqrt(1e-5))
    for score in (0.4, 0.6):  # the midpoint was better, or worse: either way, done
        assert next_lr([*t, Trial(lr, score, why)], 10.0) is None
    # it is the reason that marks the halving: a better lr between the two, tried for
    # another reason, brackets the best anew and the gap is halved again
    again = next_lr([*t, Trial(lr, 0.4, "first candidates")], 10.0)
    assert again is not None
    assert lr < again[0] < 0.1 or 1e-2 < again[0] < lr


# ----------------------------------------------------------------------------- pick
def test_pick_finds_the_vertex_of_a_parabola() -> None:
    def parabola(lr: float) -> float:
        return (math.log10(lr) + 2.2) ** 2 + 0.1

    t = [Trial(lr, parabola(lr), "") for lr in (1e-3, 1e-2, 1e-1)]
    lr, why = pick(t)
    assert lr == pytest.approx(10**-2.2, rel=1e-9)
    assert why.startswith("vertex")
    # symmetric around the middle: exactly the middle
    lr, _ = pick([Trial(1e-3, 1.0, ""), Trial(1e-2, 0.0, ""), Trial(1e-1, 1.0, "")])
    assert lr == pytest.approx(1e-2, rel=1e-9)
    # the order of the trials does not matter
    assert pick(t[::-1])[0] == pytest.approx(10**-2.2, rel=1e-9)


def test_pick_stays_within_half_the_gap_to_either_neighbour() -> None:
    # a tie with the right neighbour puts the vertex exactly at the half-way point
    lr, _ = pick([Trial(1e-3, 1.0, ""), Trial(1e-2, 0.5, ""), Trial(10**-1.5, 0.5, "")])
    assert lr == pytest.approx(10**-1.75, rel=1e-9)
    rng = random.Random(0)
    for _ in range(200):
        xs = sorted(rng.uniform(-6, 0) for _ in range(3))
        best = rng.uniform(0.1, 1.0)
        scores = [best + rng.uniform(0, 5), best, best + rng.uniform(0, 5)]
        lr, _ = pick([Trial(10**x, s, "") for x, s in zip(xs, scores, strict=True)])
        x = math.log10(lr)
        assert (xs[0] + xs[1]) / 2 - 1e-9 <= x <= (xs[1] + xs[2]) / 2 + 1e-9


def test_pick_returns_the_best_at_an_end_and_ignores_divergence() -> None:
    t = [Trial(1e-3, 0.9, ""), Trial(1e-2, 0.7, ""), Trial(1e-1, 0.5, "")]
    assert pick(t) == (0.1, "the best trial (at the end of the lrs tried)")
    assert pick(t[::-1])[0] == 0.1
    # the lowest is best
    assert pick([Trial(1e-3, 0.1, ""), Trial(1e-2, 0.7, "")])[0] == 1e-3
    # a diverged trial is no neighbour: the best finite one is at the end of the others
    t = [Trial(1e-3, 0.9, ""), Trial(1e-2, 0.5, ""), Trial(1e-1, math.inf, "")]
    assert pick(t)[0] == 1e-2
    assert pick([Trial(1e-2, 0.5, "")]) == (1e-2, "the best trial (at the end of the lrs tried)")


def test_pick_raises_when_every_trial_diverged() -> None:
    with pytest.raises(ValueError, match="every trial diverged"):
        pick([Trial(1e-3, math.inf, ""), Trial(1e-2, math.inf, "")])
    with pytest.raises(ValueError, match="every trial diverged"):
        pick([])


# ----------------------------------------------------------------------------- fallback
def _unlearnable(seed: int = 0) -> tuple[nn.Module, Any, Any]:
    """A model that trains on (x, y) but whose validation loss cannot change: the
    validation inputs are zero and the model has no bias, so it predicts 0 for all of
    them whatever its weights, against targets of 1 (validation MSE 1.0 always)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 3, generator=gen)
    y = x @ torch.tensor([[1.0], [-1.0], [0.5]]) + 0.1 * torch.randn(256, 1, generator=gen)
    val = (torch.zeros(64, 3), torch.ones(64, 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Linear(3, 1, bias=False)
    return model, (x, y), val


def test_adamw_default_lr() -> None:
    p = nn.Parameter(torch.zeros(1))
    assert optim.create("adamw", [p]).param_groups[0]["lr"] == 1e-3


def test_falls_back_to_the_default_lr_when_no_trial_learns() -> None:
    model, train, val = _unlearnable()
    default = optim.create("adamw", [nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"]
    with pytest.warns(LRFindWarning, match="fell back to the optimizer's default lr"):
        res = auto_lr.choose_lr(
            model, train, mse, total_steps=100, val_data=val, batch_size=32, seed=0
        )
    assert res.fallback is True
    assert res.rule == "fallback"
    assert res.suggestion == default
    assert res.initial_score == pytest.approx(1.0)
    assert all(c["score"] == pytest.approx(1.0) for c in res.candidates)
    assert "no trial improved" in res.choice
    assert "val_data" in res.choice
    # the same choice without the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = auto_lr.choose_lr(
            model, train, mse, total_steps=100, val_data=val, batch_size=32, seed=0, warn=False
        )
    assert quiet.fallback
    assert quiet.suggestion == default
    assert quiet.candidates == res.candidates


def test_the_fallback_uses_the_optimizers_own_default() -> None:
    model, train, val = _unlearnable(1)
    res = auto_lr.choose_lr(
        model, train, mse, total_steps=100, val_data=val, batch_size=32, seed=0,
        optimizer="sgd", warn=False,
    )  # fmt: skip
    default = optim.create("sgd", [nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"]
    assert res.fallback
    assert res.suggestion == default


def test_fit_records_the_fallback() -> None:
    model, train, val = _unlearnable(2)
    with pytest.warns(LRFindWarning, match="fell back"):
        h = fit(
            model, train, mse, lr="auto", val_data=val, max_steps=100, batch_size=32, seed=0,
            optimizer="adamw", progress=False,
        )  # fmt: skip
    info = h.info["auto_lr"]
    assert info["fallback"] is True
    assert info["rule"] == "fallback"
    assert info["peak"] == 1e-3
    assert set(info) >= {"peak", "policy", "total_steps", "describe", "rule", "fallback",
                         "choice", "cost_steps", "candidates"}  # fmt: skip
    assert "FALLBACK" in info["describe"]
    events = [e for e in h.events if e["event"] == "auto_lr"]
    assert len(events) == 1
    assert events[0]["fallback"] is True
    assert events[0]["peak"] == 1e-3
    assert h.steps["lr"][0] == pytest.approx(1e-3)  # the cosine starts at the peak


# ----------------------------------------------------------------------------- bookkeeping
def _problem(seed: int = 0) -> tuple[nn.Module, Any, Any]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(384, 5, generator=gen)
    y = torch.tanh(x @ torch.randn(5, 1, generator=gen)) + 0.1 * torch.randn(384, 1, generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1)
        )
    return model, (x[:256], y[:256]), (x[256:], y[256:])


def test_the_choice_records_its_trials_and_its_cost() -> None:
    model, train, val = _problem()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad for p in model.parameters()]
    rng = torch.get_rng_state()
    total = 200
    res = auto_lr.choose_lr(
        model, train, mse, total_steps=total, val_data=val, batch_size=32, seed=0
    )
    # nothing changed: parameters, BatchNorm buffers, gradients, the random state, the mode
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert [p.grad for p in model.parameters()] == grads
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training

    assert res.rule == "trials"
    assert not res.fallback
    length = round(auto_lr.TRIAL_FRACTION * total)
    assert len(res.candidates) >= len(auto_lr.FIRST_CANDIDATES)
    for c in res.candidates:
        assert set(c) == {"lr", "score", "train_score", "steps", "why"}
        assert math.isfinite(c["lr"])
        assert c["lr"] > 0
        assert math.isfinite(c["score"]) or c["score"] == math.inf
        assert c["steps"] == length
        assert isinstance(c["why"], str)
        assert c["why"]
    lrs = sorted(c["lr"] for c in res.candidates)
    assert len(set(lrs)) == len(lrs)  # no lr tried twice
    assert res.cost_steps == len(res.lrs) + length * len(res.candidates)
    assert res.cost_steps <= auto_lr.COST_LIMIT * total + 1
    # the best trial learned; the suggestion is the trials' pick, scaled down for the run
    best = min(c["score"] for c in res.candidates)
    assert math.isfinite(best)
    assert best < res.initial_score * (1 - auto_lr.MIN_IMPROVEMENT)
    picked, _ = pick([Trial(c["lr"], c["score"], c["why"]) for c in res.candidates])
    # the pick, divided by sqrt(validation / training loss) of the best trial when above 1
    top = min(res.candidates, key=lambda c: c["score"])
    gap = max(1.0, top["score"] / top["train_score"])
    assert res.suggestion == pytest.approx(picked / math.sqrt(gap), rel=1e-12)
    assert "val_data" in res.choice


def test_to_dict_round_trips_the_choice() -> None:
    model, train, val = _problem(1)
    res = auto_lr.choose_lr(model, train, mse, total_steps=200, val_data=val, batch_size=32, seed=0)
    res.candidates.append({"lr": 10.0, "score": math.inf, "train_score": math.inf,
                           "steps": 40, "why": "diverged"})  # fmt: skip
    back = LRFindResult.from_dict(json.loads(json.dumps(res.to_dict(), allow_nan=False)))
    assert back.candidates == res.candidates
    assert back.choice == res.choice
    assert back.choice
    assert back.fallback is res.fallback
    assert back.cost_steps == res.cost_steps
    assert back.initial_score == res.initial_score
    assert back.suggestion == res.suggestion
    assert back.rule == res.rule
    # a range test alone has none of it
    plain = LRFindResult.from_dict(
        LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1, 0.5, 2]).to_dict()
    )
    assert plain.candidates == []
    assert plain.choice == ""
    assert plain.fallback is False
    assert plain.cost_steps == 0
    assert math.isnan(plain.initial_score)


def test_without_val_data_trials_are_scored_on_held_out_training_examples() -> None:
    model, train, _ = _problem(2)
    model.eval()  # no dropout noise between the two scores
    res = auto_lr.choose_lr(model, train, mse, total_steps=200, batch_size=32, seed=0)
    assert not model.training  # the mode is kept too
    assert res.rule == "trials"
    # 20% of the 256 examples are held out of the trials and score them
    assert "51 training examples held out from the trials" in res.choice
    assert any(c["score"] != c["train_score"] for c in res.candidates)
    # the split is the seed's: the same seed gives the same choice, another may not
    again = auto_lr.choose_lr(model, train, mse, total_steps=200, batch_size=32, seed=0)
    assert again.suggestion == res.suggestion


def test_without_val_data_a_loader_is_scored_on_a_training_sample() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    model, (x, y), _ = _problem(2)
    model.eval()
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    res = auto_lr.choose_lr(model, loader, mse, total_steps=200, seed=0)
    assert "a sample of the training data" in res.choice
    for c in res.candidates:  # one score: the training sample's
        assert c["score"] == c["train_score"] or c["score"] == c["train_score"] == math.inf


def test_the_holdout_split_is_drawn_from_indexable_data_only() -> None:
    from torch.utils.data import TensorDataset

    model, (x, y), _ = _problem(0)
    trial, out, k = auto_lr._holdout((x, y), model, seed=3)
    assert k == 51
    assert len(trial[0]) == 256 - 51
    assert len(out[0]) == 51
    rows = {tuple(r.tolist()) for r in torch.cat([trial[0], out[0]])}
    assert len(rows) == 256  # a partition of the examples
    sub = auto_lr._holdout(TensorDataset(x, y), model, seed=3)
    assert sub is not None
    assert torch.equal(sub[1][1], out[1])  # a TensorDataset splits as its tensors do
    assert auto_lr._holdout((x[:20], y[:20]), model, seed=3) is None  # too few examples
    assert auto_lr._holdout([(x[:4], y[:4])], model, seed=3) is None  # a list of batches


# ----------------------------------------------------------------------------- suite tasks
@pytest.mark.parametrize(
    ("name", "observed"),
    [
        ("wine-sgd", 0.0173),  # observed: 0.0173 (trials 0.005 .. 0.16, best 0.09)
        ("cancer-logreg", 0.00278),  # observed: 0.00278 (trials 6.7e-5 .. 0.021)
    ],
)
def test_the_choice_on_two_suite_tasks(name: str, observed: float) -> None:
    st = suite.get(name)
    task = st.build(0)
    res = auto_lr.choose_lr(
        task.model, task.train, task.loss_fn, total_steps=st.steps, val_data=task.val,
        optimizer=st.optimizer, optimizer_kwargs=st.optimizer_kwargs(),
        batch_size=st.batch_size, seed=0,
    )  # fmt: skip
    assert res.rule == "trials"
    assert not res.fallback
    best = min(c["score"] for c in res.candidates)
    assert math.isfinite(best)
    assert best < res.initial_score
    # a regression guard, not a quality measure: within a factor of 10 of what was seen
    assert observed / 10 < res.suggestion < observed * 10
    assert res.cost_steps <= auto_lr.COST_LIMIT * st.steps


# ----------------------------------------------------------------------------- fit records
class _EpochEnds(Callback):
    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_epoch_end(self, trainer: Any, logs: Any) -> None:
        self.logs.append(dict(logs))


def _tiny() -> tuple[nn.Module, Any, Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, generator=gen, dtype=torch.float64)
    y = x.sum(1, keepdim=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Linear(3, 1).double()
    val = (x[:8] + 0.1, y[:8])
    return model, torch.utils.data.TensorDataset(x[:16], y[:16]), val


@pytest.mark.parametrize(
    ("val_every", "how"),
    [(2, "max_steps"), (4, "max_steps"), (4, "epochs"), (3, "max_steps"), (None, "epochs")],
)
def test_an_epoch_ending_on_a_validation_records_once(val_every: int | None, how: str) -> None:
    # 16 examples in batches of 4: an epoch is 4 steps, the run 3 epochs (12 steps)
    model, train, val = _tiny()
    cb = _EpochEnds()
    length = {"max_steps": 12} if how == "max_steps" else {"epochs": 3}
    h = fit(
        model, train, mse, val_data=val, val_every=val_every, batch_size=4, lr=0.05,
        optimizer="sgd", callbacks=[cb], seed=0, progress=False, **length,
    )  # fmt: skip
    steps = [r["step"] for r in h.records]
    assert len(steps) == len(set(steps)), steps
    assert all(r["loss"] is not None for r in h.records), h.records
    assert [r["epoch"] for r in cb.logs] == [0, 1, 2]
    assert [r["step"] for r in cb.logs] == [4, 8, 12]
    assert all(r["loss"] is not None for r in cb.logs)
    if val_every is None or 4 % val_every == 0:  # every epoch ends on a validation
        assert all("val_loss" in r for r in h.records)
        assert all("val_loss" in r for r in cb.logs)
    every = val_every or 4
    expected = sorted({*range(every, 13, every), 4, 8, 12})
    assert steps == expected


def test_epochs_ending_on_and_off_a_validation() -> None:
    # epochs whose ends fall on validations and on plain epoch records, alternately
    model, train, val = _tiny()
    cb = _EpochEnds()
    h = fit(
        model, train, mse, val_data=val, val_every=8, batch_size=4, lr=0.05, optimizer="sgd",
        callbacks=[cb], epochs=4, seed=0, progress=False,
    )  # fmt: skip
    steps = [r["step"] for r in h.records]
    assert steps == [4, 8, 12, 16]
    assert all(r["loss"] is not None for r in h.records)
    assert [r["step"] for r in cb.logs] == [4, 8, 12, 16]
    assert ["val_loss" in r for r in h.records] == [False, True, False, True]


def test_loss_of_each_record_is_the_mean_since_the_previous_one() -> None:
    model, train, val = _tiny()
    h = fit(
        model, train, mse, val_data=val, val_every=4, batch_size=4, lr=0.05, optimizer="sgd",
        max_steps=8, seed=0, progress=False,
    )  # fmt: skip
    losses = h.steps["loss"]
    for rec, (a, b) in zip(h.records, itertools.pairwise([0, 4, 8]), strict=True):
        assert rec["loss"] == pytest.approx(sum(losses[a:b]) / (b - a))


def test_next_lr_steps_further_each_time_the_same_end_scores_best() -> None:
    # a bracket far below the optimum must not use up the trials: sqrt(10), then 10, ...
    s = math.sqrt(10)
    t = [Trial(1e-4, 0.9, "a"), Trial(1e-4 * s, 0.8, "a"), Trial(1e-3, 0.7, "a")]
    first = next_lr(t, s)
    assert first is not None
    assert first[0] == pytest.approx(1e-3 * s)
    t.append(Trial(first[0], 0.6, first[1]))
    second = next_lr(t, s)
    assert second is not None
    assert second[0] == pytest.approx(first[0] * s**2)
    t.append(Trial(second[0], 0.5, second[1]))
    third = next_lr(t, s)
    assert third is not None
    assert third[0] == pytest.approx(second[0] * s**3)
    # downwards likewise, counted apart from the steps up
    d = [Trial(1e-2, 0.5, "a"), Trial(1e-1, 0.9, "a")]
    down = next_lr(d, s)
    assert down is not None
    d.append(Trial(down[0], 0.4, down[1]))
    again = next_lr(d, s)
    assert again is not None
    assert again[0] == pytest.approx(down[0] / s**2)


# ----------------------------------------------------------------------------- review fixes
def test_the_choice_puts_back_the_random_state_and_a_loaders_generator() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    model, (x, y), (xv, yv) = _problem(1)
    gen = torch.Generator().manual_seed(5)
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(xv, yv), batch_size=32)
    rng, loader_state = torch.get_rng_state(), gen.get_state()
    auto_lr.choose_lr(model, train, mse, total_steps=40, val_data=val, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(gen.get_state(), loader_state)
    # without validation data, a Dataset's held-out split is read under the same care
    auto_lr.choose_lr(model, TensorDataset(x, y), mse, total_steps=40, batch_size=32, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)


def test_fit_with_lr_auto_trains_as_fit_with_the_chosen_schedule() -> None:
    # the choice must not shift the data order or dropout masks of the run after it
    from torch.utils.data import DataLoader, TensorDataset

    from bergab import fit, schedules

    def run(lr: Any) -> Any:
        model, (x, y), _ = _problem(3)
        loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
        return fit(model, loader, mse, lr=lr, max_steps=24, seed=0, progress=False)

    auto = run("auto")
    peak = auto.info["auto_lr"]["peak"]
    plain = run(schedules.cosine(peak=peak, total_steps=24))
    assert auto.steps["loss"] == plain.steps["loss"]


@pytest.mark.parametrize("total", [4, 5, 9, 13])
def test_one_cycle_trials_on_short_runs(total: int) -> None:
    model, train, val = _problem(0)
    res = auto_lr.choose_lr(
        model, train, mse, total_steps=total, val_data=val, policy="one_cycle", batch_size=32,
        seed=0, warn=False,
    )  # fmt: skip
    assert all(c["steps"] >= 4 for c in res.candidates)


@pytest.mark.parametrize(("warmup", "total"), [(99, 100), (3, 4), (9, 10)])
def test_a_warmup_close_to_the_run_length_still_leaves_the_trials_a_decay(
    warmup: int, total: int
) -> None:
    model, train, val = _problem(0)
    res = auto_lr.choose_lr(
        model, train, mse, total_steps=total, val_data=val, warmup_steps=warmup,
        batch_size=32, seed=0, warn=False,
    )  # fmt: skip
    assert res.candidates


@pytest.mark.parametrize("total", [16, 20, 24, 40, 100, 300])
def test_the_choice_costs_at_most_one_and_a_half_runs(total: int) -> None:
    model, train, val = _problem(0)
    res = auto_lr.choose_lr(
        model, train, mse, total_steps=total, val_data=val, batch_size=32, seed=0, warn=False
    )
    assert res.cost_steps <= 1.5 * total


def test_nan_in_the_validation_data_is_named_before_any_trial() -> None:
    model, train, (xv, yv) = _problem(0)
    xv = xv.clone()
    xv[3, 1] = math.nan
    with pytest.raises(ValueError, match=r"untrained model's loss on val_data is (nan|inf), "):
        auto_lr.choose_lr(model, train, mse, total_steps=100, val_data=(xv, yv), seed=0)


def test_an_endless_stream_of_training_data_is_sampled_not_read_whole() -> None:
    from torch.utils.data import DataLoader, IterableDataset

    class Endless(IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            g = torch.Generator().manual_seed(0)
            while True:
                x = torch.randn(4, generator=g)
                yield x, x.sum(0, keepdim=True)

    res = auto_lr.choose_lr(
        nn.Linear(4, 1), DataLoader(Endless(), batch_size=32), mse, total_steps=40,
        optimizer="sgd", seed=0,
    )  # fmt: skip
    assert "a sample of the training data" in res.choice


def test_a_one_shot_iterator_without_validation_data_is_refused() -> None:
    model, (x, y), _ = _problem(0)
    batches = iter([(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)])
    with pytest.raises(ValueError, match="give val_data, or train_data that is not a one-shot"):
        auto_lr.choose_lr(model, batches, mse, total_steps=40, seed=0)


def test_choose_lr_checks_its_own_arguments() -> None:
    model, train, _ = _problem(0)
    with pytest.raises(ValueError, match=r"lr_find_kwargs: unknown key 'stpes'"):
        auto_lr.choose_lr(model, train, mse, total_steps=40, lr_find_kwargs={"stpes": 10})
    with pytest.raises(TypeError, match="lr_find_kwargs must be a dict"):
        auto_lr.choose_lr(model, train, mse, total_steps=40, lr_find_kwargs=[1])
    with pytest.raises(TypeError, match="warn"):
        auto_lr.choose_lr(model, train, mse, total_steps=40, warn="no")


def test_a_plain_range_test_is_strict_json() -> None:
    plain = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1, 0.5, 2])
    back = LRFindResult.from_dict(json.loads(json.dumps(plain.to_dict(), allow_nan=False)))
    assert math.isnan(back.initial_score)


def test_trials_keep_the_param_groups_ratios() -> None:
    from bergab.lr_finder import _Steps, _trial

    seen: list[list[float]] = []

    class Recording(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:
            seen.append([float(g["lr"]) for g in self.param_groups])
            return super().step(closure)

    model, (x, y), _ = _problem(0)
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
    opt = Recording([{"params": first}, {"params": rest, "lr": 0.1}], lr=0.01)
    steps = _Steps(accumulation_steps=1, batch_size=32, seed=0, batch_fn=None,
                   clip_norm=None, clip_value=None)  # fmt: skip
    _trial(model, (x, y), mse, [0.5, 0.25], [[(x[:32], y[:32])]], optimizer=opt,
           optimizer_kwargs={}, steps=steps, device=None)  # fmt: skip
    assert seen == [[0.5, 5.0], [0.25, 2.5]]


def test_an_lr_cut_at_an_epoch_end_applies_at_once_with_val_every_there_too() -> None:
    from bergab.training import Callback, ReduceLROnPlateau, fit

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, generator=gen)
    y = x.sum(1, keepdim=True)
    lrs: dict[Any, list[float]] = {}
    for every in (None, 4):

        class Spy(Callback):
            def __init__(self, key: Any) -> None:
                self.key = key

            def on_batch_end(self, trainer: Any, logs: Any) -> None:
                lrs.setdefault(self.key, []).append(trainer.optimizer.param_groups[0]["lr"])

        cut = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, threshold=0.0,
                                mode="max")  # fmt: skip
        fit(nn.Linear(3, 1), (x[:16], y[:16]), mse, val_data=(x[16:], y[16:]), val_every=every,
            batch_size=4, lr=0.01, optimizer=torch.optim.SGD, callbacks=[cut, Spy(every)],
            epochs=4, seed=0, progress=False)  # fmt: skip
    assert lrs[4] == lrs[None]
    assert min(lrs[4]) < 0.01  # the cut happened
