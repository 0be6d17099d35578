"""bergab's fused CPU kernels on every instruction-set level this CPU runs, in both
threading flavors, on 1, 2 and 3 threads: each float32 step within the documented
tolerance of the float64 reference (``docs/optimizers.md``, "How close a fused path
is"), and the same bits on every level.

The comparison is one step at a time from a common state: the float64 reference runs a
trajectory; at each of its steps the state is rounded to float32, and from those same
numbers the fused optimizer (float32) and the reference (float64) each take the step. So
what is measured is the kernel's own arithmetic, not the rounding of its inputs nor how a
method's dynamics amplify rounding over many steps (they can: on noisy gradients
Prodigy's step size comes from a cancelling sum, and torch's own float32 ops drift from
float64 by several per cent after 50 steps).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
import torch

from bergab.optim import _native
from tests.optim_specs import SPECS, Spec

#: uneven sizes: below, at and across the kernels' lane (32) and block (2048) widths
SIZES = (1, 33, 2047, 4097, 12289)
STEPS = 6
#: the documented tolerance of one float32 step (docs/optimizers.md): 32 units in the last
#: place of the parameter or of the step it took, whichever is larger
ULP = 32 * torch.finfo(torch.float32).eps


def _status() -> _native.NativeStatus:
    return _native.native_status()


NATIVE_SPECS = [
    s
    for s in SPECS
    if getattr(s.cls([torch.nn.Parameter(torch.zeros(1))], **s.kwargs), "native", None)
]
LEVELS = [lv for lv in _status().built if lv in _status().cpu] if _status().available else []

pytestmark = pytest.mark.skipif(not LEVELS, reason=f"no CPU kernels: {_status().reason}")


def _params(dtype: torch.dtype) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(11)
    return [
        torch.nn.Parameter(torch.randn(n, generator=g, dtype=torch.float64).to(dtype))
        for n in SIZES
    ]


def _grads(step: int) -> list[torch.Tensor]:
    # a noisy quadratic, gradients drawn in float64 (rounded where the run is float32)
    g = torch.Generator().manual_seed(100 + step)
    scale = [0.5 + torch.rand(n, generator=g, dtype=torch.float64) for n in SIZES]
    return [s * torch.randn(len(s), generator=g, dtype=torch.float64) + 0.3 for s in scale]


def _trajectory(spec: Spec) -> list[tuple[dict[str, Any], list[torch.Tensor], list]]:
    """The float64 reference's (state before, params before, grads) for each step, and
    its params after the last one."""
    ps = _params(torch.float64)
    opt = spec.cls(ps, **spec.kwargs, impl="reference")
    out = []
    for t in range(STEPS):
        grads = _grads(t)
        out.append((copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in ps], grads))
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    out.append(({}, [p.detach().clone() for p in ps], []))
    return out


_TRAJECTORIES: dict[str, list] = {}


def trajectory(spec: Spec) -> list:
    if spec.id not in _TRAJECTORIES:
        _TRAJECTORIES[spec.id] = _trajectory(spec)
    return _TRAJECTORIES[spec.id]


def _rounded(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every floating state tensor rounded to float32 (kept float64)."""
    state = copy.deepcopy(state)
    for per_param in state["state"].values():
        for key, v in per_param.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point() and key != "step":
                per_param[key] = v.float().double()
    return state


def _step(
    spec: Spec, impl: str, dtype: torch.dtype, state: dict[str, Any], before: list, grads: list
) -> list[torch.Tensor]:
    """One step of ``impl`` in ``dtype`` from ``state``, ``before`` and ``grads``."""
    ps = [torch.nn.Parameter(b.to(dtype, copy=True)) for b in before]
    opt = spec.cls(ps, **spec.kwargs, impl=impl)
    opt.load_state_dict(copy.deepcopy(state))  # floating state tensors cast to dtype
    for p, g in zip(ps, grads, strict=True):
        p.grad = g.to(dtype)
    opt.step()
    return [p.detach().double() for p in ps]


class Step(NamedTuple):
    fused: list[torch.Tensor]  # float32, bergab's kernel
    ref: list[torch.Tensor]  # float64 reference
    ref32: list[torch.Tensor]  # the reference formula in float32 (torch's ops)
    before: list[torch.Tensor]


def fused_steps(spec: Spec, with_ref32: bool = False) -> Iterator[Step]:
    """For each step of the reference's trajectory: the fused float32 step and the float64
    reference step, both from that step's state rounded to float32 (so both start from
    the same numbers)."""
    for state, params, grads in trajectory(spec)[:-1]:
        state = _rounded(state)
        before = [p.float() for p in params]
        grads32 = [g.float() for g in grads]
        yield Step(
            _step(spec, "fused", torch.float32, state, before, grads32),
            _step(spec, "reference", torch.float64, state, before, grads32),
            _step(spec, "reference", torch.float32, state, before, grads32) if with_ref32 else [],
            [b.double() for b in before],
        )


#: the threading flavors this process can load: POSIX threads always, torch's OpenMP
#: threads where torch runs on GNU OpenMP (the pthread libraries are what a forked child,
#: and a torch without GNU OpenMP, use)
FLAVORS = ["omp", "pthread"] if _native._torch_libgomp() else ["pthread"]


@pytest.fixture
def level(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    lv, flavor = request.param
    monkeypatch.setenv("BERGAB_NATIVE_ISA", lv)
    monkeypatch.setenv("BERGAB_NATIVE_OPENMP", "1" if flavor == "omp" else "0")
    status = _native.reload()
    assert (status.level, status.flavor) == (lv, flavor)
    yield lv
    monkeypatch.undo()
    _native.reload()


@pytest.mark.parametrize(
    "level",
    [(lv, fl) for lv in LEVELS for fl in FLAVORS],
    ids=[f"{lv}-{fl}" for lv in LEVELS for fl in FLAVORS],
    indirect=True,
)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("spec", NATIVE_SPECS, ids=[s.id for s in NATIVE_SPECS])
def test_each_fused_step_within_float32_rounding_of_the_float64_reference(
    spec: Spec, threads: int, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 1)  # small tensors on many threads
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    for t, step in enumerate(fused_steps(spec, with_ref32=True)):
        for i, (a, b, c, p0) in enumerate(zip(*step, strict=True)):
            # 32 ulps, or where the formula itself cancels, no further than 1.5 times
            # torch's own float32 evaluation of the reference formula
            bound = torch.maximum(ULP * torch.maximum(b.abs(), (b - p0).abs()), 1.5 * (c - b).abs())
            excess = ((a - b).abs() / (bound + 1e-30)).max().item()
            assert excess <= 1.0, (
                f"{spec.id} on {level}, {threads} threads, step {t}, tensor {i} "
                f"(size {SIZES[i]}): {excess:.2f} x the tolerance"
            )


@pytest.mark.skipif(len(LEVELS) < 2, reason="this CPU runs one level only")
@pytest.mark.parametrize("spec", NATIVE_SPECS, ids=[s.id for s in NATIVE_SPECS])
def test_every_level_gives_the_same_bits(spec: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    results = {}
    try:
        for lv in LEVELS:
            monkeypatch.setenv("BERGAB_NATIVE_ISA", lv)
            assert _native.reload().level == lv
            results[lv] = [torch.cat(f) for f, *_ in fused_steps(spec)]
    finally:
        monkeypatch.delenv("BERGAB_NATIVE_ISA")
        _native.reload()
    first = results[LEVELS[0]]
    for lv in LEVELS[1:]:
        for t, (a, b) in enumerate(zip(results[lv], first, strict=True)):
            assert torch.equal(a, b), f"{spec.id}: {lv} differs from {LEVELS[0]} at step {t}"


@pytest.mark.parametrize("spec", NATIVE_SPECS, ids=[s.id for s in NATIVE_SPECS])
def test_thread_count_changes_at_most_the_last_bit(
    spec: Spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sums each thread makes are added in double: another split moves them by about
    # 1e-16, which can flip the rounding of a float32 result, by one unit, rarely
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 1)
    results = {}
    for threads in (1, 2, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda n=threads: n)
        results[threads] = [torch.cat(f) for f, *_ in fused_steps(spec)]
    one_ulp = torch.finfo(torch.float32).eps
    for threads in (2, 3):
        for t, (a, b) in enumerate(zip(results[threads], results[1], strict=True)):
            diff = ((a - b).abs() / (b.abs() + 1e-30)).max().item()
            assert diff <= one_ulp, f"{spec.id}: {threads} threads vs 1, step {t}: {diff:.1e}"
