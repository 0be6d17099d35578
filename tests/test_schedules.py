"""bergab.schedules: edge steps, formulas, monotonicity, properties, configs, errors, plots.

Equivalence with torch's schedulers and the ``attach`` adapter are in
test_schedules_torch.py; the ``bergab schedule`` command in test_schedules_cli.py.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bergab import schedules as sch
from bergab.schedules._base import factory, schedule_arg
from bergab.schedules._declare import choice, integer, real

BIG = 10**12  # "past the end": far beyond every schedule's last boundary

# --------------------------------------------------------------------------- edge steps
# Each case: a schedule, hand-computed values at step 0, at each boundary, at the last
# step and past the end, and the key steps it reports below 200.
EDGE_CASES: list[tuple[str, sch.Schedule, dict[int, float], list[int]]] = [
    ("constant", sch.constant(0.1), {0: 0.1, 199: 0.1, BIG: 0.1}, []),
    (
        "step_decay",
        sch.step_decay(1.0, 0.5, 10),
        {0: 1.0, 9: 1.0, 10: 0.5, 19: 0.5, 20: 0.25, 10**6: 0.0},
        list(range(10, 200, 10)),
    ),
    (
        "multistep",
        sch.multistep(1.0, [10, 30], 0.1),
        {0: 1.0, 9: 1.0, 10: 0.1, 29: 0.1, 30: 0.01, BIG: 0.01},
        [10, 30],
    ),
    (
        "exponential",
        sch.exponential(2.0, math.log(2)),
        {0: 2.0, 1: 1.0, 10: 2 / 1024, BIG: 0.0},
        [],
    ),
    (
        "polynomial",
        sch.polynomial(1.0, 10, final=0.1, power=2.0),
        {0: 1.0, 5: 0.325, 9: 0.109, 10: 0.1, 11: 0.1, BIG: 0.1},
        [10],
    ),
    (
        "linear-up",
        sch.linear(0.0, 1.0, 4),
        {0: 0.0, 2: 0.5, 3: 0.75, 4: 1.0, 5: 1.0, BIG: 1.0},
        [4],
    ),
    ("linear-down", sch.linear(1.0, 0.5, 10), {0: 1.0, 5: 0.75, 10: 0.5, BIG: 0.5}, [10]),
    (
        "cosine",
        sch.cosine(1.0, 100, final=0.1),
        {0: 1.0, 50: 0.55, 99: 0.1 + 0.45 * (1 + math.cos(math.pi * 0.99)), 100: 0.1, BIG: 0.1},
        [100],
    ),
    (
        "cosine_restarts",
        sch.cosine_restarts(1.0, 10, final=0.0, period_mult=2.0, peak_mult=0.5),
        {
            0: 1.0,
            5: 0.5,
            9: (1 + math.cos(0.9 * math.pi)) / 2,
            10: 0.5,
            20: 0.25,
            30: 0.25,
            70: 0.125,
        },
        [10, 30, 70, 150],
    ),
    (
        "cosine_restarts-m1",
        sch.cosine_restarts(1.0, 4),
        {0: 1.0, 2: 0.5, 4: 1.0, 6: 0.5, 8: 1.0},
        list(range(4, 200, 4)),
    ),
    (
        "cyclic",
        sch.cyclic(0.1, 1.0, 2, 4),
        {0: 0.1, 1: 0.55, 2: 1.0, 3: 0.775, 5: 0.325, 6: 0.1, 8: 1.0},
        sorted({*range(2, 200, 6), *range(6, 200, 6)}),
    ),
    (
        "cyclic-triangular2",
        sch.cyclic(0.0, 1.0, 2, mode="triangular2"),
        {0: 0.0, 2: 1.0, 4: 0.0, 6: 0.5, 10: 0.25, 5000: 0.0},
        sorted({*range(2, 200, 2)}),
    ),
    (
        "cyclic-exp_range",
        sch.cyclic(0.0, 1.0, 2, mode="exp_range", gamma=0.5),
        {0: 0.0, 1: 0.25, 2: 0.25, 6: 0.5**6, BIG: 0.0},
        list(range(2, 200, 2)),
    ),
    (
        "cyclic-square",
        sch.cyclic(0.1, 1.0, 3, 2, mode="square"),
        {0: 1.0, 2: 1.0, 3: 0.1, 4: 0.1, 5: 1.0, BIG: 1.0},
        sorted({*range(3, 200, 5), *range(5, 200, 5)}),
    ),
    (
        "one_cycle",
        sch.one_cycle(1.0, 100, pct_start=0.3),
        {0: 0.04, 29: 1.0, 99: 4e-6, 100: 4e-6, BIG: 4e-6},
        [29, 99],
    ),
    (
        "one_cycle-three_phase",
        sch.one_cycle(1.0, 100, pct_start=0.3, anneal="linear", three_phase=True),
        {0: 0.04, 29: 1.0, 58: 0.04, 99: 4e-6, BIG: 4e-6},
        [29, 58, 99],
    ),
    (
        "one_cycle_momentum",
        sch.one_cycle_momentum(100, 0.3),
        {0: 0.95, 29: 0.85, 99: 0.95, BIG: 0.95},
        [29, 99],
    ),
    (
        "inverse_sqrt",
        sch.inverse_sqrt(1.0, 4),
        {0: 0.25, 3: 1.0, 4: math.sqrt(0.8), 15: 0.5, 99: 0.2},
        [3],
    ),
    (
        "wsd-linear",
        sch.wsd(1.0, 10, 1, 4),
        {0: 0.5, 1: 1.0, 5: 1.0, 6: 1.0, 7: 0.75, 9: 0.25, 10: 0.0, BIG: 0.0},
        [1, 6, 10],
    ),
    (
        "wsd-cosine",
        sch.wsd(1.0, 100, 10, 20, final=0.1, decay_shape="cosine"),
        {0: 1 / 11, 9: 10 / 11, 10: 1.0, 80: 1.0, 90: 0.55, 100: 0.1, BIG: 0.1},
        [10, 80, 100],
    ),
    (
        "wsd-1-sqrt",
        sch.wsd(1.0, 100, 0, 25, decay_shape="1-sqrt"),
        {0: 1.0, 75: 1.0, 76: 0.8, 100: 0.0},
        [75, 100],
    ),
    (
        "wsd-exponential",
        sch.wsd(1.0, 100, 0, 10, final=0.01, decay_shape="exponential"),
        {89: 1.0, 90: 1.0, 95: 0.1, 100: 0.01, BIG: 0.01},
        [90, 100],
    ),
    ("warmup-linear", sch.warmup(sch.constant(1.0), 4), {0: 0.2, 3: 0.8, 4: 1.0, BIG: 1.0}, [4]),
    (
        "warmup-start",
        sch.warmup(sch.constant(2.0), 3, start_factor=0.5),
        {0: 1.25, 2: 1.75, 3: 2.0},
        [3],
    ),
    (
        "warmup-exponential",
        sch.warmup(sch.constant(1.0), 1, 0.01, "exponential"),
        {0: 0.1, 1: 1.0},
        [1],
    ),
    ("warmup-none", sch.warmup(sch.linear(1.0, 0.0, 10), 0), {0: 1.0, 5: 0.5, 10: 0.0}, [10]),
    (
        "warmup-cosine",
        sch.warmup(sch.cosine(1.0, 10), 5),
        {0: 1 / 6, 4: 5 / 6, 5: 1.0, 10: 0.5, 15: 0.0, BIG: 0.0},
        [5, 15],
    ),
    (
        "join",
        sch.join([sch.linear(0.0, 1.0, 2), sch.cosine(1.0, 4)], [2]),
        {0: 0.0, 1: 0.5, 2: 1.0, 4: 0.5, 6: 0.0, BIG: 0.0},
        [2, 6],
    ),
    ("scale", sch.scale(sch.linear(1.0, 0.0, 10), 0.1), {0: 0.1, 5: 0.05, 10: 0.0}, [10]),
    (
        "clamp",
        sch.clamp(sch.exponential(1.0, 1.0), 0.1, 0.5),
        {0: 0.5, 1: math.exp(-1), 10: 0.1, BIG: 0.1},
        [],
    ),
    ("shift", sch.shift(sch.linear(1.0, 0.0, 10), 4), {0: 0.6, 3: 0.3, 6: 0.0, BIG: 0.0}, [6]),
    (
        "shift in join",
        sch.join([sch.constant(2.0), sch.shift(sch.linear(1.0, 0.0, 10), 4)], [4]),
        {0: 2.0, 3: 2.0, 4: 0.6, 7: 0.3, 10: 0.0},
        [4, 10],
    ),
    ("reduce_on_plateau", sch.ReduceOnPlateau(0.1), {0: 0.1, BIG: 0.1}, []),
]


@pytest.mark.parametrize(
    ("name", "sched", "expected", "keys"), EDGE_CASES, ids=[c[0] for c in EDGE_CASES]
)
def test_edge_steps(
    name: str, sched: sch.Schedule, expected: dict[int, float], keys: list[int]
) -> None:
    for step, value in expected.items():
        assert sched(step) == pytest.approx(value, rel=1e-12, abs=1e-15), f"{name} at step {step}"
    assert sched.key_steps(200) == keys


def test_every_schedule_type_has_an_edge_case() -> None:
    assert {c[1].name for c in EDGE_CASES} == set(sch._REGISTRY)


# --------------------------------------------------------------------------- formulas
def restarts_reference(t: int, peak: float, period: int, final: float, m: float, p: float) -> float:
    """SGDR the iterative way: walk cycle by cycle until the one holding t."""
    start, length, top = 0.0, float(period), peak
    while start + length <= t:
        start += length
        length *= m
        top *= p
    top = max(top, final)  # restart peaks decay, but never below final
    return final + (top - final) * (1 + math.cos(math.pi * (t - start) / length)) / 2


@pytest.mark.parametrize(("m", "p"), [(1.0, 1.0), (1.5, 0.7), (2.0, 0.9), (1.1, 1.0), (3.0, 0.5)])
def test_cosine_restarts_equals_iterative_reference(m: float, p: float) -> None:
    s = sch.cosine_restarts(0.3, period=7, final=0.01, period_mult=m, peak_mult=p)
    for t in range(3000):
        assert s(t) == pytest.approx(restarts_reference(t, 0.3, 7, 0.01, m, p), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("shape", ["linear", "exponential"])
def test_warmup_equals_formula(shape: str) -> None:
    inner = sch.cosine(2.0, 50, final=0.2)
    w, a = 13, 0.05
    s = sch.warmup(inner, w, start_factor=a, shape=shape)
    for t in range(200):
        if t < w:
            q = (t + 1) / (w + 1)
            f = a + (1 - a) * q if shape == "linear" else a ** (1 - q)
            ref = f * 2.0
        else:
            ref = inner(t - w)
        assert s(t) == pytest.approx(ref, rel=1e-12)


def test_join_gives_each_piece_its_local_step() -> None:
    a, b, c = sch.linear(0.0, 1.0, 10), sch.constant(1.0), sch.cosine(1.0, 100)
    s = sch.join([a, b, c], [10, 25])
    for t in range(300):
        ref = a(t) if t < 10 else b(t - 10) if t < 25 else c(t - 25)
        assert s(t) == ref


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt", "exponential"])
def test_wsd_equals_formula(shape: str) -> None:
    peak, T, w, d, final = 3e-3, 500, 40, 120, 3e-5
    s = sch.wsd(peak, T, w, d, final, shape)
    for t in range(T + 20):
        if t < w:
            ref = peak * (t + 1) / (w + 1)
        elif t < T - d:
            ref = peak
        elif t >= T:
            ref = final
        else:
            p = (t - (T - d)) / d
            ref = {
                "linear": final + (peak - final) * (1 - p),
                "cosine": final + (peak - final) * 0.5 * (1 + math.cos(math.pi * p)),
                "1-sqrt": final + (peak - final) * (1 - math.sqrt(p)),
                "exponential": peak * (final / peak) ** p,
            }[shape]
        assert s(t) == pytest.approx(ref, rel=1e-12), t


def test_inverse_sqrt_equals_noam_formula() -> None:
    # Vaswani et al.: d^-0.5 * min(n^-0.5, n * w^-1.5) with n = t + 1, normalized to peak
    w, peak = 400, 7e-4
    s = sch.inverse_sqrt(peak, w)
    for t in range(5000):
        n = t + 1
        ref = peak * math.sqrt(w) * min(n**-0.5, n * w**-1.5)
        assert s(t) == pytest.approx(ref, rel=1e-12)


# --------------------------------------------------------------------------- monotonicity
def is_nonincreasing(xs: list[float]) -> bool:
    return all(b <= a for a, b in itertools.pairwise(xs))


def is_nondecreasing(xs: list[float]) -> bool:
    return all(b >= a for a, b in itertools.pairwise(xs))


def values(s: sch.Schedule, start: int, stop: int) -> list[float]:
    return [s(t) for t in range(start, stop)]


@given(
    peak=st.floats(1e-6, 10.0),
    frac_final=st.floats(0.0, 1.0),
    T=st.integers(1, 400),
    power=st.floats(0.1, 5.0),
)
@settings(max_examples=60, deadline=None)
def test_decays_are_nonincreasing(peak: float, frac_final: float, T: int, power: float) -> None:
    final = peak * frac_final
    for s in [
        sch.cosine(peak, T, final),
        sch.polynomial(peak, T, final, power),
        sch.linear(peak, final, T),
        sch.step_decay(peak, 1 - frac_final / 2, max(1, T // 7)),
        sch.exponential(peak, power / 100),
        sch.multistep(peak, [T, T + 5, 2 * T + 6], 1 - frac_final / 2),
    ]:
        assert is_nonincreasing(values(s, 0, 2 * T + 20)), s


@given(
    peak=st.floats(1e-6, 10.0),
    frac_final=st.floats(0.001, 1.0),
    T=st.integers(1, 300),
    w_frac=st.floats(0.0, 1.0),
    d_frac=st.floats(0.0, 1.0),
    shape=st.sampled_from(["linear", "cosine", "1-sqrt", "exponential"]),
)
@settings(max_examples=60, deadline=None)
def test_wsd_rises_then_falls(
    peak: float, frac_final: float, T: int, w_frac: float, d_frac: float, shape: str
) -> None:
    w = int(w_frac * T)
    d = int(d_frac * (T - w))
    s = sch.wsd(peak, T, w, d, peak * frac_final, shape)
    assert is_nondecreasing(values(s, 0, min(w, T - 1) + 1))
    assert all(v <= peak for v in values(s, 0, T + 10))
    if w < T:  # else warmup fills the whole run: a ramp, then final
        assert s(w) == peak
        assert is_nonincreasing(values(s, w, T + 10))


@given(
    T=st.integers(10, 400),
    pct=st.floats(0.05, 0.5),
    anneal=st.sampled_from(["cos", "linear"]),
    three=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_one_cycle_shape(T: int, pct: float, anneal: str, three: bool) -> None:
    if pct * T <= 1:
        pct = 2 / T
    s = sch.one_cycle(1.0, T, pct, anneal=anneal, three_phase=three)
    m = sch.one_cycle_momentum(T, pct, anneal=anneal, three_phase=three)
    top = math.floor(pct * T - 1)  # the last step of the rising phase
    assert is_nondecreasing(values(s, 0, top + 1))
    assert is_nonincreasing(values(m, 0, top + 1))
    if not three:
        assert is_nonincreasing(values(s, top + 1, T + 5))
        assert is_nondecreasing(values(m, top + 1, T + 5))
    assert max(values(s, 0, T)) <= 1.0
    assert s(T - 1) == s(T + 100) == 1.0 / 25 / 1e4


@given(
    w=st.integers(1, 200),
    a=st.floats(0.001, 1.0),
    shape=st.sampled_from(["linear", "exponential"]),
)
@settings(max_examples=40, deadline=None)
def test_warmup_ramps_are_nondecreasing_and_never_zero(w: int, a: float, shape: str) -> None:
    s = sch.warmup(sch.constant(0.5), w, start_factor=a, shape=shape)
    ramp = values(s, 0, w + 2)
    assert is_nondecreasing(ramp)
    assert ramp[0] > 0
    assert ramp[w] == 0.5
    assert sch.warmup(sch.constant(0.5), w)(0) == pytest.approx(0.5 / (w + 1))


def test_inverse_sqrt_and_restarts_monotone_pieces() -> None:
    s = sch.inverse_sqrt(1.0, 50)
    assert is_nondecreasing(values(s, 0, 50))
    assert is_nonincreasing(values(s, 49, 3000))
    r = sch.cosine_restarts(1.0, 10, 0.1, 1.5, 0.8)
    starts = [0, *r.key_steps(2000), 2000]
    for a, b in itertools.pairwise(starts):
        assert is_nonincreasing(values(r, a, b))


# --------------------------------------------------------------------------- properties
POS = st.floats(1e-9, 1e3)
NONNEG = st.one_of(st.just(0.0), POS)
STEPS = st.integers(1, 10_000)
UNIT_OPEN = st.floats(1e-6, 1.0)  # (0, 1]


@st.composite
def basic_schedules(draw: st.DrawFn) -> sch.Schedule:  # noqa: PLR0911 - one branch per type
    combinators = {"warmup", "join", "scale", "clamp", "shift"}
    kind = draw(st.sampled_from(sorted(set(sch._REGISTRY) - combinators)))
    if kind == "constant":
        return sch.constant(draw(NONNEG))
    if kind == "step_decay":
        return sch.step_decay(draw(NONNEG), draw(UNIT_OPEN), draw(STEPS))
    if kind == "multistep":
        ms = sorted(set(draw(st.lists(st.integers(1, 10**6), max_size=6))))
        return sch.multistep(draw(NONNEG), ms, draw(UNIT_OPEN))
    if kind == "exponential":
        return sch.exponential(draw(NONNEG), draw(st.floats(0.0, 10.0)))
    if kind == "polynomial":  # a decay: final in [0, initial]
        initial = draw(NONNEG)
        final = initial * draw(st.floats(0.0, 1.0))
        return sch.polynomial(initial, draw(STEPS), final, draw(st.floats(1e-3, 10.0)))
    if kind == "linear":
        return sch.linear(draw(NONNEG), draw(NONNEG), draw(STEPS))
    if kind == "cosine":  # an annealing: final in [0, peak]
        peak = draw(NONNEG)
        return sch.cosine(peak, draw(STEPS), peak * draw(st.floats(0.0, 1.0)))
    if kind == "cosine_restarts":
        mult = draw(st.one_of(st.sampled_from([1.0, 2.0, 3.0]), st.floats(1.0, 5.0)))
        peak = draw(NONNEG)
        final = peak * draw(st.floats(0.0, 1.0))
        return sch.cosine_restarts(peak, draw(STEPS), final, mult, draw(UNIT_OPEN))
    if kind == "cyclic":
        low = draw(NONNEG)
        mode = draw(st.sampled_from(["triangular", "triangular2", "exp_range", "square"]))
        gamma = draw(UNIT_OPEN) if mode == "exp_range" else 1.0
        down = draw(st.one_of(st.none(), STEPS))
        return sch.cyclic(low, low + draw(NONNEG), draw(STEPS), down, mode, gamma)
    if kind in ("one_cycle", "one_cycle_momentum"):
        T = draw(st.integers(3, 10_000))
        three = draw(st.booleans())
        lo, hi = 1.0 / T, (0.5 if three else 1.0)
        pct = lo + (hi - lo) * (0.001 + 0.998 * draw(st.floats(0.0, 1.0)))  # strictly inside
        anneal = draw(st.sampled_from(["cos", "linear"]))
        if kind == "one_cycle":
            div, fdiv = draw(st.floats(1.0, 1e4)), draw(st.floats(1.0, 1e6))
            return sch.one_cycle(draw(POS), T, pct, div, fdiv, anneal, three)
        base = draw(st.floats(0.0, 1.0))
        return sch.one_cycle_momentum(T, pct, base, draw(st.floats(base, 1.0)), anneal, three)
    if kind == "inverse_sqrt":
        return sch.inverse_sqrt(draw(NONNEG), draw(STEPS))
    if kind == "wsd":
        T = draw(STEPS)
        w = draw(st.integers(0, T))
        d = draw(st.integers(0, T - w))
        peak = draw(POS)
        shape = draw(st.sampled_from(["linear", "cosine", "1-sqrt", "exponential"]))
        final = peak * draw(st.floats(1e-6 if shape == "exponential" else 0.0, 1.0))
        return sch.wsd(peak, T, w, d, final, shape)
    assert kind == "reduce_on_plateau"
    s = sch.ReduceOnPlateau(
        draw(POS),
        draw(st.sampled_from(["min", "max"])),
        draw(st.floats(0.01, 0.99)),
        draw(st.integers(0, 3)),
    )
    for m in draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20)):
        s.update(m)
    return s


def combinators(inner: st.SearchStrategy[sch.Schedule]) -> st.SearchStrategy[sch.Schedule]:
    shape = st.sampled_from(["linear", "exponential"])
    return st.one_of(
        st.builds(sch.warmup, inner, st.integers(0, 5000), st.floats(1e-6, 1.0), shape),
        st.lists(inner, min_size=1, max_size=3).flatmap(
            lambda ss: st.builds(
                sch.join,
                st.just(ss),
                st.lists(
                    st.integers(1, 10**6), min_size=len(ss) - 1, max_size=len(ss) - 1, unique=True
                ).map(sorted),
            )
        ),
        st.builds(sch.scale, inner, NONNEG),
        st.builds(
            sch.clamp, inner, st.floats(0.0, 1.0), st.one_of(st.none(), st.floats(1.0, 10.0))
        ),
    )


SCHEDULES = st.recursive(basic_schedules(), combinators, max_leaves=4)
ANY_STEP = st.one_of(st.integers(0, 20_000), st.integers(0, BIG))


@given(sched=SCHEDULES, steps=st.lists(ANY_STEP, min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_no_valid_arguments_give_negative_or_nonfinite_values(
    sched: sch.Schedule, steps: list[int]
) -> None:
    for t in [0, 1, *steps, *sched.key_steps(20_000)[:50]]:
        v = sched(t)
        assert isinstance(v, float)
        assert math.isfinite(v), (sched, t, v)
        assert v >= 0.0, (sched, t, v)


@given(sched=SCHEDULES, steps=st.lists(ANY_STEP, min_size=1, max_size=10))
@settings(max_examples=200, deadline=None)
def test_config_round_trip(sched: sch.Schedule, steps: list[int]) -> None:
    config = sch.to_config(sched)
    assert "null" not in json.dumps(config)  # TOML has no null: None arguments are left out
    again = sch.from_config(json.loads(json.dumps(config)))
    assert again.to_config() == config
    assert repr(again) == repr(sched)
    if sched.stateful:
        again.load_state_dict(sched.state_dict())
    for t in [0, *steps, *sched.key_steps(20_000)[:20]]:
        assert again(t) == sched(t)


@pytest.mark.parametrize(
    ("name", "sched", "expected", "keys"), EDGE_CASES, ids=[c[0] for c in EDGE_CASES]
)
def test_config_round_trip_every_type(
    name: str, sched: sch.Schedule, expected: dict[int, float], keys: list[int]
) -> None:
    again = sch.from_config(json.loads(json.dumps(sch.to_config(sched))))
    assert type(again) is type(sched)
    assert repr(again) == repr(sched)
    for t in [*range(300), *expected]:
        assert again(t) == sched(t)


def test_config_from_toml() -> None:
    text = """
type = "warmup"
steps = 100
[schedule]
type = "join"
boundaries = [800]
[[schedule.schedules]]
type = "constant"
lr = 3e-3
[[schedule.schedules]]
type = "clamp"
low = 1e-5
schedule = { type = "cosine", peak = 3e-3, total_steps = 200 }
"""
    s = sch.from_config(tomllib.loads(text))
    ref = sch.warmup(
        sch.join([sch.constant(3e-3), sch.clamp(sch.cosine(3e-3, 200), 1e-5)], [800]), 100
    )
    assert s.to_config() == ref.to_config()
    assert [s(t) for t in range(0, 1200, 7)] == [ref(t) for t in range(0, 1200, 7)]


def test_repr_reads_like_the_call() -> None:
    s = sch.warmup(sch.cosine(peak=3e-3, total_steps=10_000, final=3e-5), steps=500)
    assert (
        repr(s) == "warmup(schedule=cosine(peak=0.003, total_steps=10000, final=3e-05), steps=500)"
    )
    assert repr(sch.join([sch.constant(1.0), sch.linear(1.0, 0.0, 5)], [3])) == (
        "join(schedules=[constant(lr=1.0), linear(start=1.0, end=0.0, total_steps=5)], "
        "boundaries=[3])"
    )
    assert (
        repr(sch.ReduceOnPlateau(0.1, patience=3)) == "reduce_on_plateau(initial=0.1, patience=3)"
    )


# --------------------------------------------------------------------------- declaring a schedule
@pytest.fixture
def registry() -> Iterator[dict[str, type[sch.Schedule]]]:
    """The registry of schedule types, restored after the test: a schedule class declared
    in a test registers itself like the built-in ones."""
    saved = dict(sch._REGISTRY)
    yield sch._REGISTRY
    sch._REGISTRY.clear()
    sch._REGISTRY.update(saved)


def test_a_new_schedule_is_one_class(registry: dict[str, type[sch.Schedule]]) -> None:
    class _Staircase(sch.Schedule, name="test_staircase"):
        """Start at ``start``, lower by ``drop`` every ``every`` steps, never below 0."""

        start: float = real(low=0.0, low_open=True)
        every: int = integer(low=1)
        drop: float = real(low=0.0, high="start", default=0.1)
        rounding: str = choice("down", "nearest", default="down")

        def _value(self, t: int) -> float:
            n = t // self.every if self.rounding == "down" else round(t / self.every)
            return max(self.start - n * self.drop, 0.0)

        def key_steps(self, until: int) -> list[int]:
            return list(range(self.every, until, self.every))[:5]

    staircase = factory(_Staircase)

    # the public function: the declared signature, the class docstring, Python's messages
    assert registry["test_staircase"] is _Staircase
    assert staircase.__name__ == "test_staircase"
    assert staircase.__doc__ == _Staircase.__doc__
    assert str(inspect.signature(staircase)) == (
        "(start: 'float', every: 'int', drop: 'float' = 0.1, rounding: 'str' = 'down')"
        " -> 'Schedule'"
    )
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'every'"):
        staircase(1.0)  # type: ignore[call-arg]

    # values, repr (defaults left out), config round trip, key steps
    s = staircase(1.0, 10, drop=0.25)
    assert [s(t) for t in (0, 9, 10, 35, 10**6)] == [1.0, 1.0, 0.75, 0.25, 0.0]
    assert repr(s) == "test_staircase(start=1.0, every=10, drop=0.25)"
    config = s.to_config()
    assert config == {
        "type": "test_staircase",
        "start": 1.0,
        "every": 10,
        "drop": 0.25,
        "rounding": "down",
    }
    again = sch.from_config(json.loads(json.dumps(config)))
    assert type(again) is _Staircase
    assert repr(again) == repr(s)
    assert again.to_config() == config
    assert [again(t) for t in range(100)] == [s(t) for t in range(100)]
    assert s.key_steps(100) == [10, 20, 30, 40, 50]

    # nested in a combinator, from a config naming it
    w = sch.from_config({"type": "warmup", "steps": 5, "schedule": config})
    assert repr(w) == "warmup(schedule=test_staircase(start=1.0, every=10, drop=0.25), steps=5)"
    assert w(5) == 1.0
    assert w.key_steps(30) == [5, 15, 25]

    # checks in declaration order, an earlier argument as a bound, the shared messages
    with pytest.raises(ValueError, match=r"^start must be in \(0, inf\), got 0.0$"):
        staircase(0.0, 10)
    with pytest.raises(TypeError, match="every must be an integer"):
        staircase(1.0, 2.5)
    with pytest.raises(ValueError, match=r"^drop must be in \[0, start\] = \[0, 0.5\], got 0.75$"):
        staircase(0.5, 10, drop=0.75)
    with pytest.raises(ValueError, match="rounding must be one of 'down', 'nearest'; got 'up'"):
        staircase(1.0, 10, rounding="up")
    with pytest.raises(ValueError, match="allowed: start, every, drop, rounding"):
        sch.from_config({"type": "test_staircase", "start": 1.0, "every": 3, "step": 1})
    with pytest.raises(ValueError, match="missing argument 'every'"):
        sch.from_config({"type": "test_staircase", "start": 1.0})


def test_a_new_combinator_gets_children_state_and_post_init(
    registry: dict[str, type[sch.Schedule]],
) -> None:
    class _Product(sch.Schedule, name="test_product"):
        """The product of two schedules, at most ``cap`` (default: no cap)."""

        first: sch.ScheduleLike = schedule_arg()
        second: sch.ScheduleLike = schedule_arg()
        cap: float | None = real(low=0.0, default=None)

        def _post_init(self) -> None:
            if self.cap == 0.0:
                raise ValueError("cap must be > 0 when given")
            self._pair = (self.first, self.second)

        def _value(self, t: int) -> float:
            v = self._pair[0](t) * self._pair[1](t)
            return v if self.cap is None else min(v, self.cap)

    product = factory(_Product)
    plateau = sch.ReduceOnPlateau(2.0, patience=0, factor=0.5)
    p = product(sch.constant(3.0), plateau)
    assert p.children() == (p.first, plateau)
    assert p.stateful
    p.update(1.0)
    p.update(1.0)  # no improvement, patience 0: the plateau halves
    assert p(7) == 3.0
    state = json.loads(json.dumps(p.state_dict()))
    config = p.to_config()
    assert "cap" not in config  # None is "not given": left out (TOML has no null)
    again = sch.from_config(config)
    again.load_state_dict(state)
    assert again(7) == 3.0
    assert repr(again) == "test_product(first=constant(lr=3.0), second=" + repr(plateau) + ")"
    assert product(lambda t: 1.0, sch.constant(2.0), cap=1.5)(0) == 1.5  # a plain function too
    with pytest.raises(ValueError, match="cap must be > 0"):
        product(sch.constant(1.0), sch.constant(1.0), cap=0.0)
    with pytest.raises(TypeError, match="second must be a schedule"):
        product(sch.constant(1.0), 2.0)


def test_declaration_mistakes_fail_at_class_definition(
    registry: dict[str, type[sch.Schedule]],
) -> None:
    with pytest.raises(ValueError, match="'cosine' is already registered"):

        class _Again(sch.Schedule, name="cosine"):
            peak: float = real(low=0.0)

    with pytest.raises(TypeError, match="need a spec"):

        class _NoSpec(sch.Schedule, name="test_no_spec"):
            peak: float

    with pytest.raises(TypeError, match="'end' without a default follows one with"):

        class _Order(sch.Schedule, name="test_order"):
            start: float = real(default=0.0)
            end: float = real()

    with pytest.raises(TypeError, match="registered with name="):
        factory(sch.Schedule)
    assert set(registry) == {c[1].name for c in EDGE_CASES}  # none of these registered


def test_every_registered_type_has_its_public_function() -> None:
    for name, cls in sch._REGISTRY.items():
        public = sch.ReduceOnPlateau if name == "reduce_on_plateau" else getattr(sch, name)
        assert public.__doc__ == cls.__doc__, name
        assert inspect.signature(public).parameters == inspect.signature(cls).parameters, name
        assert [f.name for f in cls._fields] == list(inspect.signature(cls).parameters), name
        if public is not cls:
            assert public.__name__ == name
            assert inspect.signature(public).return_annotation == "Schedule"


def test_hand_written_subclasses_still_work() -> None:
    # The protocol older code uses (training wraps fit's schedule this way): an unregistered
    # subclass with its own __init__ and _config.
    class _Half(sch.Schedule):
        name = "half"

        def __init__(self, inner: sch.Schedule) -> None:
            self.inner = inner

        def _value(self, t: int) -> float:
            return 0.5 * self.inner(t)

        def children(self) -> tuple[sch.Schedule, ...]:
            return (self.inner,)

        def _config(self) -> dict[str, Any]:
            return {"inner": self.inner}

    h = _Half(sch.cosine(1.0, 10))
    assert "half" not in sch._REGISTRY
    assert h(0) == 0.5
    assert repr(h) == "half(inner=cosine(peak=1.0, total_steps=10))"
    assert h.to_config() == {"type": "half", "inner": sch.cosine(1.0, 10).to_config()}
    assert repr(sch.warmup(h, 2)) == f"warmup(schedule={h!r}, steps=2)"


# --------------------------------------------------------------------------- one_cycle
def one_cycle_reference(
    t: int, T: int, pct: float, phases: list[tuple[float, float]], anneal: str
) -> float:
    """torch's ``OneCycleLR`` as published (one param group), written out step by step:
    phase ends ``pct·T − 1``, (``2·pct·T − 2``,) ``T − 1``; phase ``i`` anneals from its
    start to its end value over [end of phase i−1, its end]. Ours holds the last value
    from ``T − 1`` on (torch raises past ``T``)."""
    if len(phases) == 3:
        ends = [float(pct * T) - 1, float(2 * pct * T) - 2, T - 1.0]
    else:
        ends = [float(pct * T) - 1, T - 1.0]
    if t >= T - 1:
        return phases[-1][1]
    start = 0.0
    for end, (a, b) in zip(ends, phases, strict=True):
        if t <= end:
            p = (t - start) / (end - start)
            if anneal == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * p) + 1)
            return (b - a) * p + a
        start = end
    raise AssertionError(t)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize(("T", "pct"), [(10, 0.3), (100, 0.25), (1001, 0.3), (777, 0.45)])
def test_one_cycle_and_its_momentum_follow_the_published_formula(
    anneal: str, three_phase: bool, T: int, pct: float
) -> None:
    peak, div, fdiv, base, top = 0.7, 20.0, 300.0, 0.8, 0.97
    lr = sch.one_cycle(peak, T, pct, div, fdiv, anneal, three_phase)
    mom = sch.one_cycle_momentum(T, pct, base, top, anneal, three_phase)
    initial, final = peak / div, peak / div / fdiv
    if three_phase:
        lr_phases = [(initial, peak), (peak, initial), (initial, final)]
        mom_phases = [(top, base), (base, top), (top, top)]
    else:
        lr_phases = [(initial, peak), (peak, final)]
        mom_phases = [(top, base), (base, top)]
    for t in [*range(T + 20), 10**9]:
        assert lr(t) == one_cycle_reference(t, T, pct, lr_phases, anneal), t
        assert mom(t) == one_cycle_reference(t, T, pct, mom_phases, anneal), t
    ends = [pct * T - 1, 2 * pct * T - 2, T - 1] if three_phase else [pct * T - 1, T - 1]
    assert lr.key_steps(10**6) == mom.key_steps(10**6) == [math.ceil(e) for e in ends]


def test_one_cycle_configs_and_reprs_are_unchanged() -> None:
    assert sch.one_cycle(1.0, 100).to_config() == {
        "type": "one_cycle",
        "peak": 1.0,
        "total_steps": 100,
        "pct_start": 0.3,
        "div_factor": 25.0,
        "final_div_factor": 10000.0,
        "anneal": "cos",
        "three_phase": False,
    }
    assert sch.one_cycle_momentum(100, three_phase=True).to_config() == {
        "type": "one_cycle_momentum",
        "total_steps": 100,
        "pct_start": 0.3,
        "base_momentum": 0.85,
        "max_momentum": 0.95,
        "anneal": "cos",
        "three_phase": True,
    }
    assert repr(sch.one_cycle(1.0, 100)) == "one_cycle(peak=1.0, total_steps=100)"
    assert repr(sch.one_cycle(2.0, 50, anneal="linear")) == (
        "one_cycle(peak=2.0, total_steps=50, anneal='linear')"
    )
    assert repr(sch.one_cycle_momentum(100, 0.4, max_momentum=0.9)) == (
        "one_cycle_momentum(total_steps=100, pct_start=0.4, max_momentum=0.9)"
    )
    # the two are distinct types that share one implementation of the phases
    assert type(sch.one_cycle(1.0, 100)) is not type(sch.one_cycle_momentum(100))
    assert type(sch.one_cycle(1.0, 100))._value is type(sch.one_cycle_momentum(100))._value


# --------------------------------------------------------------------------- plateau + warmup
def test_warmup_over_plateau_ramps_to_its_current_value() -> None:
    plateau = sch.ReduceOnPlateau(1.0, factor=0.5, patience=0)
    s = sch.warmup(plateau, steps=4)
    assert s.stateful
    assert [s(t) for t in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    s.update(1.0)  # forwarded to the plateau schedule: a first best
    s.update(2.0)  # worse, patience 0: cut
    assert plateau(0) == 0.5
    assert [s(t) for t in range(5)] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert s(10**6) == 0.5

    state = json.loads(json.dumps(s.state_dict()))
    fresh = sch.from_config(s.to_config())
    assert fresh(10) == 1.0
    fresh.load_state_dict(state)
    assert fresh(10) == 0.5


def test_join_with_plateau_and_pure_schedules_state() -> None:
    s = sch.join([sch.linear(0.0, 1.0, 10), sch.ReduceOnPlateau(1.0, patience=0, factor=0.1)], [10])
    s.update(1.0)
    s.update(1.0)
    assert s(5) == 0.5
    assert s(10) == pytest.approx(0.1)
    assert sch.cosine(1.0, 10).state_dict() == {}
    with pytest.raises(TypeError, match="metric"):
        sch.cosine(1.0, 10).update(1.0)
    with pytest.raises(ValueError, match="state"):
        sch.cosine(1.0, 10).load_state_dict({"lr": 1.0})
    with pytest.raises(ValueError, match="missing"):
        sch.ReduceOnPlateau(1.0).load_state_dict({"lr": 1.0})


def test_plateau_is_nonincreasing_and_respects_min_lr() -> None:
    rng = np.random.default_rng(0)
    s = sch.ReduceOnPlateau(1.0, factor=0.3, patience=1, min_lr=0.01)
    seen = []
    for _ in range(200):
        s.update(float(rng.normal()))
        seen.append(s(0))
    assert is_nonincreasing(seen)
    assert seen[-1] == 0.01
    s.reset()
    assert s(0) == 1.0


# --------------------------------------------------------------------------- plain functions, steps
def test_plain_functions_compose_but_do_not_serialize() -> None:
    s = sch.warmup(lambda t: 0.1, steps=1)
    assert s(0) == pytest.approx(0.05)
    assert s(5) == 0.1
    assert sch.is_schedule(s)
    assert sch.is_schedule(lambda t: 1.0)
    assert sch.is_schedule(sch.constant(1.0))
    assert not sch.is_schedule(0.1)
    assert not sch.is_schedule(torch.tensor(0.1))
    assert not sch.is_schedule(sch.ReduceOnPlateau)
    with pytest.raises(TypeError, match="serialized"):
        sch.to_config(s)
    with pytest.raises(TypeError, match="schedule"):
        sch.to_config(lambda t: 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule"):
        sch.warmup(0.1, steps=3)  # type: ignore[arg-type]


def test_step_argument_is_checked() -> None:
    s = sch.cosine(1.0, 10)
    with pytest.raises(ValueError, match="step"):
        s(-1)
    with pytest.raises(TypeError, match="step"):
        s(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="step"):
        s(True)
    assert s(np.int64(5)) == s(torch.tensor(5)) == s(5.0) == s(5)  # type: ignore[arg-type]


def test_bergab_optimizer_uses_the_schedule_at_its_step() -> None:
    from bergab.optim import SGD

    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    sched = sch.warmup(sch.cosine(0.1, 20), steps=5)
    opt = SGD([w], lr=sched)
    for t in range(30):
        assert opt.param_groups[0]["lr"] == sched(t)
        w.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
    assert w.item() == pytest.approx(-sum(sched(t) for t in range(30)), rel=1e-12)


# --------------------------------------------------------------------------- bad arguments
BAD: list[tuple[str, Callable[[], Any]]] = [
    ("lr", lambda: sch.constant(-1.0)),
    ("lr", lambda: sch.constant(math.nan)),
    ("initial", lambda: sch.step_decay(-0.1, 0.5, 10)),
    ("gamma", lambda: sch.step_decay(0.1, 1.5, 10)),
    ("gamma", lambda: sch.step_decay(0.1, 0.0, 10)),
    ("step_size", lambda: sch.step_decay(0.1, 0.5, 0)),
    ("milestones", lambda: sch.multistep(0.1, [30, 10], 0.1)),
    ("milestones", lambda: sch.multistep(0.1, [0, 10], 0.1)),
    ("gamma", lambda: sch.multistep(0.1, [10], -0.1)),
    ("rate", lambda: sch.exponential(0.1, -0.01)),
    ("total_steps", lambda: sch.polynomial(0.1, 0)),
    ("power", lambda: sch.polynomial(0.1, 10, power=0.0)),
    ("final", lambda: sch.polynomial(0.1, 10, final=-1.0)),
    ("final", lambda: sch.polynomial(0.1, 10, final=0.2)),  # a decay that rises
    ("end", lambda: sch.linear(0.1, -0.1, 10)),
    ("total_steps", lambda: sch.linear(0.1, 0.0, 0)),
    ("peak", lambda: sch.cosine(-0.1, 10)),
    ("total_steps", lambda: sch.cosine(0.1, -5)),
    ("final", lambda: sch.cosine(0.1, 10, final=0.2)),  # an annealing that rises
    ("period", lambda: sch.cosine_restarts(0.1, 0)),
    ("period_mult", lambda: sch.cosine_restarts(0.1, 10, period_mult=0.5)),
    ("final", lambda: sch.cosine_restarts(0.1, 10, final=0.2)),
    ("peak_mult", lambda: sch.cosine_restarts(0.1, 10, peak_mult=1.5)),
    ("high", lambda: sch.cyclic(0.2, 0.1, 10)),
    ("step_size_up", lambda: sch.cyclic(0.1, 0.2, 0)),
    ("step_size_down", lambda: sch.cyclic(0.1, 0.2, 5, 0)),
    ("mode", lambda: sch.cyclic(0.1, 0.2, 5, mode="sine")),
    ("gamma", lambda: sch.cyclic(0.1, 0.2, 5, mode="triangular", gamma=0.5)),
    ("gamma", lambda: sch.cyclic(0.1, 0.2, 5, mode="exp_range", gamma=1.5)),
    ("peak", lambda: sch.one_cycle(0.0, 100)),
    ("total_steps", lambda: sch.one_cycle(0.1, 1)),
    ("pct_start", lambda: sch.one_cycle(0.1, 100, pct_start=0.0)),
    ("pct_start", lambda: sch.one_cycle(0.1, 100, pct_start=1.0)),
    ("pct_start", lambda: sch.one_cycle(0.1, 100, pct_start=0.01)),
    ("pct_start", lambda: sch.one_cycle(0.1, 100, pct_start=0.6, three_phase=True)),
    ("div_factor", lambda: sch.one_cycle(0.1, 100, div_factor=0.5)),
    ("final_div_factor", lambda: sch.one_cycle(0.1, 100, final_div_factor=0.0)),
    ("anneal", lambda: sch.one_cycle(0.1, 100, anneal="exp")),
    ("max_momentum", lambda: sch.one_cycle_momentum(100, base_momentum=0.9, max_momentum=0.8)),
    ("base_momentum", lambda: sch.one_cycle_momentum(100, base_momentum=1.5)),
    ("warmup_steps", lambda: sch.inverse_sqrt(0.1, 0)),
    ("peak", lambda: sch.wsd(0.0, 100, 10, 10)),
    ("warmup_steps", lambda: sch.wsd(0.1, 100, 60, 50)),
    ("decay_steps", lambda: sch.wsd(0.1, 100, 10, -1)),
    ("final", lambda: sch.wsd(0.1, 100, 10, 10, final=0.2)),
    ("final", lambda: sch.wsd(0.1, 100, 10, 10, final=0.0, decay_shape="exponential")),
    ("decay_shape", lambda: sch.wsd(0.1, 100, 10, 10, decay_shape="step")),
    ("steps", lambda: sch.warmup(sch.constant(0.1), -1)),
    ("start_factor", lambda: sch.warmup(sch.constant(0.1), 5, start_factor=1.5)),
    (
        "start_factor",
        lambda: sch.warmup(sch.constant(0.1), 5, start_factor=0.0, shape="exponential"),
    ),
    ("shape", lambda: sch.warmup(sch.constant(0.1), 5, shape="cosine")),
    ("schedules", lambda: sch.join([], [])),
    ("boundaries", lambda: sch.join([sch.constant(1.0), sch.constant(2.0)], [])),
    ("boundaries", lambda: sch.join([sch.constant(1.0)] * 3, [5, 5])),
    ("boundaries", lambda: sch.join([sch.constant(1.0)] * 2, [0])),
    ("factor", lambda: sch.scale(sch.constant(1.0), -2.0)),
    ("low", lambda: sch.clamp(sch.constant(1.0), low=-1.0)),
    ("high", lambda: sch.clamp(sch.constant(1.0), low=0.5, high=0.1)),
    ("steps", lambda: sch.shift(sch.constant(1.0), -1)),
    ("initial", lambda: sch.ReduceOnPlateau(0.0)),
    ("mode", lambda: sch.ReduceOnPlateau(0.1, mode="mean")),
    ("factor", lambda: sch.ReduceOnPlateau(0.1, factor=1.0)),
    ("patience", lambda: sch.ReduceOnPlateau(0.1, patience=-1)),
    ("threshold", lambda: sch.ReduceOnPlateau(0.1, threshold=-1e-4)),
    ("threshold_mode", lambda: sch.ReduceOnPlateau(0.1, threshold_mode="pct")),
    ("cooldown", lambda: sch.ReduceOnPlateau(0.1, cooldown=-1)),
    ("min_lr", lambda: sch.ReduceOnPlateau(0.1, min_lr=0.2)),
    ("eps", lambda: sch.ReduceOnPlateau(0.1, eps=-1.0)),
    ("type", lambda: sch.from_config({"type": "cosine_decay", "peak": 1.0})),
    ("type", lambda: sch.from_config({"peak": 1.0})),
    ("peak_lr", lambda: sch.from_config({"type": "cosine", "peak_lr": 1.0, "total_steps": 5})),
    ("total_steps", lambda: sch.from_config({"type": "cosine", "peak": 1.0})),
    (
        "total_steps",
        lambda: sch.from_config(
            {"type": "warmup", "steps": 3, "schedule": {"type": "cosine", "peak": 1.0}}
        ),
    ),
    ("steps", lambda: sch.plot(sch.constant(1.0), 0)),
]


@pytest.mark.parametrize(("arg", "make"), BAD, ids=[f"{i}-{a}" for i, (a, _) in enumerate(BAD)])
def test_bad_arguments_raise_valueerror_naming_them(arg: str, make: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match=arg):
        make()


def test_a_decay_that_ends_above_its_start_is_refused_naming_both_arguments() -> None:
    # cosine and polynomial are decays by their docs; their end may not exceed their start
    with pytest.raises(ValueError, match=r"final must be in \[0, peak\] = \[0, 0.1\], got 0.3"):
        sch.cosine(peak=0.1, total_steps=10, final=0.3)
    with pytest.raises(ValueError, match=r"final must be in \[0, initial\] = \[0, 0.1\]"):
        sch.polynomial(0.1, total_steps=10, final=0.3)
    with pytest.raises(ValueError, match=r"final must be in \[0, peak\]"):
        sch.from_config({"type": "cosine", "peak": 0.1, "total_steps": 10, "final": 0.3})
    # final == peak is a constant, allowed; linear may rise (its docs say monotone)
    assert sch.cosine(0.1, 10, final=0.1)(5) == pytest.approx(0.1)
    assert sch.linear(0.0, 1.0, 4)(4) == 1.0


def test_wrong_types_raise_typeerror() -> None:
    with pytest.raises(TypeError, match="total_steps"):
        sch.cosine(1.0, 10.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="three_phase"):
        sch.one_cycle(1.0, 100, three_phase="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config"):
        sch.from_config([("type", "constant")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="milestones"):
        sch.multistep(1.0, 10, 0.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- plot
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_a_png_and_creates_folders(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "sched.png"
    fig = sch.plot(sch.warmup(sch.cosine(1.0, 90), 10), 120, out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == list(range(120))
    assert line.get_ydata()[10] == 1.0


def test_plot_into_given_axes_with_log_scale() -> None:
    from bergab.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        got = sch.plot(sch.exponential(1.0, 0.01), 50, ax=ax, log=True, label="exp")
        sch.plot(sch.constant(0.5), 50, ax=ax, label="const")
        assert got is fig
        assert len(ax.lines) == 2
        assert ax.get_yscale() == "log"
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("sched.xyz", r"path must end in a file extension matplotlib writes"),
        ("sched", r"path must end in a file extension"),  # savefig would write sched.png
        ("f.txt/sched.png", "path: cannot create a folder inside the file"),
        (".", "path must be a file path, got the folder"),
    ],
)
def test_plot_checks_the_path_before_computing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, match: str
) -> None:
    (tmp_path / "f.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []

    def counted(t: int) -> float:
        calls.append(t)
        return 0.1

    with pytest.raises(ValueError, match=match):
        sch.plot(counted, 100, name)
    assert calls == []  # refused before a single value was computed
