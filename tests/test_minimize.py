"""minimize(): rates from theory, saddle escape, divergence as a result, the contract."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

import bergab
from bergab import landscapes as ls
from bergab.minimization import MinimizeResult, compare, format_table, minimize, tune_lr


def test_public_names() -> None:
    assert bergab.minimize is minimize
    assert bergab.init is bergab.initialization.init
    # no module shadows a function of the same name: importing the modules leaves them be
    code = (
        "import bergab, bergab.minimization, bergab.initialization, types\n"
        "assert not isinstance(bergab.minimize, types.ModuleType)\n"
        "assert not isinstance(bergab.init, types.ModuleType)\n"
        "assert bergab.minimize is bergab.minimization.minimize\n"
        "assert bergab.init is bergab.initialization.init\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert bergab.MinimizeResult is MinimizeResult
    assert bergab.landscapes is ls


# ---------------------------------------------------------------------------- theory
@pytest.mark.parametrize("optimizer", ["sgd", torch.optim.SGD], ids=["bergab", "torch"])
def test_gd_on_quadratic_at_lr_one_over_L_contracts_at_one_minus_one_over_kappa(
    optimizer: Any,
) -> None:
    kappa = 50.0
    q = ls.quadratic(kappa, dim=4)
    res = minimize(q, optimizer=optimizer, lr=1.0 / q.L, max_steps=400, tol=0.0)
    assert res.steps == 400
    traj = torch.from_numpy(res.trajectory)
    x0 = traj[0]
    # closed form: each coordinate shrinks by (1 - λᵢ/L) per step
    t = torch.arange(401, dtype=torch.float64)[:, None]
    want = x0 * (1.0 - q.eigenvalues / q.L) ** t
    torch.testing.assert_close(traj, want, rtol=1e-10, atol=1e-15)
    # the error obeys the bound ‖x_t − x*‖ <= (1 − 1/κ)^t ‖x_0 − x*‖ ...
    err = traj.norm(dim=1)
    rate = 1.0 - 1.0 / kappa
    assert bool((err <= rate ** t[:, 0] * err[0] * (1 + 1e-12)).all())
    # ... and the measured contraction tends to exactly 1 − 1/κ (the slowest direction)
    measured = (err[1:] / err[:-1]).numpy()
    assert measured[-1] == pytest.approx(rate, rel=1e-9)
    assert np.all(measured <= rate + 1e-12)
    # f − f* contracts by (1 − 1/κ)² in the end
    assert res.losses[-1] / res.losses[-2] == pytest.approx(rate**2, rel=1e-8)


def test_gd_at_lr_just_below_two_over_L_oscillates_but_converges() -> None:
    q = ls.quadratic(10.0)
    res = minimize(q, optimizer="sgd", lr=1.9 / q.L, max_steps=3000, tol=1e-12)
    y = res.trajectory[:40, 1]
    assert np.all(np.sign(y[1:]) == -np.sign(y[:-1]))  # flips sign every step: oscillation
    assert np.abs(y[1:] / y[:-1]) == pytest.approx(0.9, rel=1e-9)  # |1 − 1.9| = 0.9
    assert res.converged
    assert res.fun < 1e-12


@pytest.mark.parametrize("lr", [2.5, 20.0])
def test_too_large_lr_is_reported_as_divergence(lr: float) -> None:
    q = ls.quadratic(10.0)  # stable only for lr < 2/L = 0.2
    res = minimize(q, optimizer="sgd", lr=lr / q.L, max_steps=10_000)
    assert res.status == "diverged"
    assert res.diverged
    assert not res.converged
    assert "diverged" in res.message
    # it stops as soon as f passes the bound f(x0) + 1e10 (|f(x0)| + 1) ...
    f0 = res.losses[0]
    assert res.losses[-1] > f0 + 1e10 * (abs(f0) + 1)
    assert np.all(res.losses[:-1] <= f0 + 1e10 * (abs(f0) + 1))
    # ... which at |1 − lr·L/κ·κ| growth per step is this many steps
    growth = (lr - 1.0) ** 2  # f grows by (lr·λ_max/L − 1)² per step once x_y dominates
    assert res.steps <= math.ceil(math.log(1e10 * (abs(f0) + 1)) / math.log(growth)) + 3
    assert len(res.losses) == res.steps + 1
    assert res.trajectory.shape == (res.steps + 1, 2)


def test_overflow_to_nonfinite_is_divergence_not_an_exception() -> None:
    res = minimize(ls.rosenbrock, optimizer="sgd", lr=1.0, max_steps=1000)
    assert res.status == "diverged"
    assert not res.converged
    # non-finite f is a divergence too
    res2 = minimize(lambda x: 1e300 * (x**2).sum(), [1.0], optimizer="sgd", lr=1.0, max_steps=5)
    assert (res2.status, res2.steps) == ("diverged", 1)
    assert res2.fun == math.inf
    assert "f = inf" in res2.message


def gd_escape_steps(beta: float, lr: float, nesterov: bool = False) -> int:
    """Reference: plain loops of heavy-ball / Nesterov GD on x² − y² until f < −1."""
    x, y, vx, vy = 1.0, 1e-3, 0.0, 0.0
    for t in range(1, 100_000):
        gx, gy = 2 * x, -2 * y
        if beta:
            vx, vy = (gx, gy) if t == 1 else (beta * vx + gx, beta * vy + gy)
            dx, dy = (gx + beta * vx, gy + beta * vy) if nesterov else (vx, vy)
        else:
            dx, dy = gx, gy
        x, y = x - lr * dx, y - lr * dy
        if x * x - y * y < -1:
            return t
    raise AssertionError("no escape")


def escape_steps(optimizer: str, lr: float) -> int:
    res = minimize(
        ls.saddle,
        optimizer=optimizer,
        lr=lr,
        max_steps=5000,
        tol=0.0,
        callback=lambda step, x, f: f < -1.0,
    )
    assert res.status == "callback"
    assert res.losses[-1] < -1.0 <= res.losses[-2]
    return res.steps


@pytest.mark.parametrize("lr", [0.01, 0.05])
def test_momentum_escapes_the_saddle_faster_than_gd(lr: float) -> None:
    gd = escape_steps("sgd", lr)
    mom = escape_steps("momentum", lr)
    nag = escape_steps("nesterov", lr)
    assert gd == gd_escape_steps(0.0, lr)
    assert mom == gd_escape_steps(0.9, lr)
    assert nag == gd_escape_steps(0.9, lr, nesterov=True)
    # GD's y grows by (1 + 2 lr) per step: ~ln(1000)/ln(1 + 2 lr) steps; momentum far fewer
    assert gd >= math.log(1000) / math.log(1 + 2 * lr)
    assert mom < 0.4 * gd
    assert nag < 0.4 * gd


def test_saddle_run_reports_unbounded_below() -> None:
    res = minimize(ls.saddle, optimizer="sgd", lr=0.1, max_steps=10_000)
    assert res.status == "unbounded"
    assert res.diverged
    assert not res.converged
    assert "unbounded" in res.message


# ---------------------------------------------------------------------------- contract
def test_convergence_by_gradient_norm_and_by_change_in_f() -> None:
    # lr = 1/2 on Σx² jumps straight to the minimum: gradient exactly 0
    res = minimize(lambda x: (x**2).sum(), [3.0, -1.0], optimizer="sgd", lr=0.5, tol=1e-10)
    assert (res.status, res.steps) == ("converged", 1)
    assert "gradient norm" in res.message
    assert res.grad_norm == 0.0
    # a slow run: f changes by <= tol for 10 steps in a row before the gradient is small
    res = minimize(ls.booth, optimizer="sgd", lr=0.01, tol=1e-6, max_steps=10_000)
    assert res.converged
    assert "change in f" in res.message
    assert np.all(np.abs(np.diff(res.losses[-11:])) <= 1e-6)
    assert np.abs(np.diff(res.losses[-12:-10])).max() > 1e-6 or res.steps < 11
    assert res.grad_norm > 1e-6
    # already stationary at x0: zero steps
    res = minimize(ls.booth, [1.0, 3.0], lr=0.1)
    assert (res.status, res.steps, len(res.losses)) == ("converged", 0, 1)


def test_result_fields_and_record_false() -> None:
    res = minimize(ls.himmelblau, optimizer="sgd", lr=0.01, max_steps=50, tol=0.0)
    assert res.steps == 50
    assert res.status == "max_steps"
    assert res.trajectory.shape == (51, 2)
    assert res.losses.shape == (51,)
    np.testing.assert_array_equal(res.trajectory[0], ls.himmelblau.start)
    np.testing.assert_array_equal(res.trajectory[-1], res.x)
    assert res.fun == res.losses[-1]
    assert res.fun == pytest.approx(ls.himmelblau(torch.from_numpy(res.x)).item(), rel=1e-15)
    assert res.grad_norm == pytest.approx(
        float(ls.himmelblau.grad(torch.from_numpy(res.x)).norm()), rel=1e-12
    )
    assert res.optimizer == "sgd"
    assert res.lr == 0.01
    assert res.nfev == 51
    assert "sgd" in repr(res)
    lean = minimize(ls.himmelblau, optimizer="sgd", lr=0.01, max_steps=50, tol=0.0, record=False)
    assert lean.trajectory is None
    np.testing.assert_array_equal(lean.losses, res.losses)
    np.testing.assert_array_equal(lean.x, res.x)


def test_callback_sees_every_step_and_can_stop() -> None:
    seen: list[tuple[int, float]] = []

    def cb(step: int, x: torch.Tensor, f: float) -> bool:
        assert isinstance(x, torch.Tensor)
        assert not x.requires_grad
        seen.append((step, f))
        return step == 7

    res = minimize(ls.booth, optimizer="sgd", lr=0.01, callback=cb)
    assert res.status == "callback"
    assert res.steps == 7
    assert [s for s, _ in seen] == list(range(1, 8))
    assert [f for _, f in seen] == res.losses[1:].tolist()


def booth_np(x: np.ndarray) -> float:
    return float((x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2)


def booth_grad_np(x: np.ndarray) -> np.ndarray:
    a, b = x[0] + 2 * x[1] - 7, 2 * x[0] + x[1] - 5
    return np.array([2 * a + 4 * b, 4 * a + 2 * b])


def test_numpy_function_with_user_gradient_matches_autograd() -> None:
    kw: dict[str, Any] = {"optimizer": "momentum", "lr": 0.01, "max_steps": 300, "tol": 0.0}
    a = minimize(booth_np, [-8.0, 7.0], grad=booth_grad_np, **kw)
    b = minimize(ls.booth, [-8.0, 7.0], **kw)
    np.testing.assert_allclose(a.trajectory, b.trajectory, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-12, atol=1e-12)
    xs = []
    minimize(
        booth_np,
        [0.0, 0.0],
        grad=booth_grad_np,
        lr=0.01,
        max_steps=3,
        callback=lambda s, x, f: xs.append(x),
    )
    assert all(isinstance(x, np.ndarray) for x in xs)
    with pytest.raises(ValueError, match="grad"):
        minimize(booth_np, [0.0, 0.0], grad=lambda x: np.zeros(3), max_steps=1)


def test_lr_schedule_for_bergab_and_torch_optimizers_equals_hand_written_gd() -> None:
    def schedule(step: int) -> float:
        return 0.1 / (1 + step)

    q = ls.quadratic(5.0)
    runs = [
        minimize(q, optimizer=o, lr=schedule, max_steps=30, tol=0.0)
        for o in ("sgd", torch.optim.SGD)
    ]
    x = np.array(q.start)
    lam = q.eigenvalues.numpy()
    want = [x.copy()]
    for t in range(30):
        x = x - schedule(t) * lam * x
        want.append(x.copy())
    for r in runs:
        np.testing.assert_allclose(r.trajectory, np.array(want), rtol=1e-13, atol=1e-15)
        assert r.lr is schedule


def test_optimizer_as_name_class_or_factory_agree() -> None:
    kw: dict[str, Any] = {"max_steps": 200, "tol": 0.0}
    by_name = minimize(ls.rosenbrock, optimizer="momentum", lr=1e-3, **kw)
    by_class = minimize(ls.rosenbrock, optimizer=torch.optim.SGD, lr=1e-3, momentum=0.9, **kw)
    by_factory = minimize(
        ls.rosenbrock,
        optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        lr=1e-3,
        **kw,
    )
    np.testing.assert_allclose(by_name.trajectory, by_class.trajectory, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(by_factory.trajectory, by_class.trajectory, rtol=0, atol=0)
    assert by_class.optimizer == "SGD"
    # lr=None leaves the optimizer's own default
    res = minimize(ls.booth, optimizer=torch.optim.Adam, lr=None, max_steps=3)
    assert res.lr is None


def test_optimizers_that_reevaluate_through_the_closure() -> None:
    res = minimize(ls.rosenbrock, optimizer=torch.optim.LBFGS, lr=1.0, max_steps=50, tol=1e-12)
    assert res.converged
    assert np.allclose(res.x, [1.0, 1.0], atol=1e-5)
    assert res.nfev > res.steps + 1  # the line search evaluated f again


def test_dtype_of_tensor_start_is_kept() -> None:
    res = minimize(ls.booth, torch.tensor([0.0, 0.0]), lr=0.01, max_steps=5)
    assert res.x.dtype == np.float32
    res = minimize(ls.booth, [0, 0], lr=0.01, max_steps=5)
    assert res.x.dtype == np.float64


def test_noisy_landscape_runs_are_reproducible() -> None:
    f = ls.noisy(ls.rosenbrock, sigma=1.0, seed=4)
    a = minimize(f, optimizer="sgd", lr=1e-3, max_steps=100, tol=0.0)
    b = minimize(f, optimizer="sgd", lr=1e-3, max_steps=100, tol=0.0)
    c = minimize(ls.rosenbrock, optimizer="sgd", lr=1e-3, max_steps=100, tol=0.0)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    assert not np.array_equal(a.trajectory, c.trajectory)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"lr": -0.1}, ValueError, "lr must be in"),
        ({"lr": math.nan}, ValueError, "lr must be in"),
        ({"lr": "fast"}, TypeError, "lr must be a real number"),
        ({"max_steps": -1}, ValueError, "max_steps"),
        ({"max_steps": 1.5}, TypeError, "max_steps"),
        ({"tol": -1e-3}, ValueError, "tol"),
        ({"record": "yes"}, TypeError, "record"),
        ({"callback": 3}, TypeError, "callback"),
        ({"grad": 3}, TypeError, "grad"),
        ({"optimizer": "no-such-optimizer"}, ValueError, "unknown optimizer"),
        ({"optimizer": 3}, TypeError, "optimizer must be"),
        ({"optimizer": lambda p, lr: "not an optimizer"}, TypeError, "torch.optim.Optimizer"),
        ({"x0": [math.inf, 0.0]}, ValueError, "x0 must be finite"),
        ({"x0": []}, ValueError, "x0 must not be empty"),
        ({"x0": [1.0, 2.0, 3.0]}, ValueError, r"x0 must be one point of 2 coordinates for booth"),
        ({"x0": [[1.0, 2.0]]}, ValueError, r"x0 must be one point .* got shape \(1, 2\)"),
        ({"max_steps": 0}, ValueError, r"max_steps must be an integer in \[1, inf\)"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        minimize(ls.booth, **{"lr": 0.01, "max_steps": 2, **kwargs})


def test_bad_functions() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        minimize(3, [0.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x0 is required"):
        minimize(lambda x: (x**2).sum())
    with pytest.raises(TypeError, match="scalar tensor"):
        minimize(lambda x: x**2, [1.0, 2.0])
    with pytest.raises(TypeError, match="scalar tensor"):
        minimize(lambda x: 1.0, [1.0])
    with pytest.raises(ValueError, match="does not depend on x"):
        minimize(lambda x: torch.tensor(1.0), [1.0])
    with pytest.raises(ValueError, match="fn\\(x0\\) must be finite"):
        minimize(lambda x: torch.log(x).sum(), [-1.0])


# ---------------------------------------------------------------------------- tune/compare
def test_tune_lr_picks_the_fastest_stable_lr() -> None:
    q = ls.quadratic(10.0)  # GD is stable for lr < 0.2; fastest near 2/(L + μ) = 0.18
    best, runs = tune_lr(q, "sgd", steps=300, grid=[0.01, 0.05, 0.15, 0.25], tol=1e-8)
    assert best == 0.15
    assert runs[0.25].status == "diverged"
    assert runs[0.01].steps_to(1e-8) is None
    # each run stops when f − f* <= tol; GD's rate is max |1 − lr λ| per step on the error
    for lr, rate in [(0.05, 0.95), (0.15, 0.85)]:
        r = runs[lr]
        assert r.converged
        assert r.losses[-1] <= 1e-8 < r.losses[-2]
        f0_slow = 0.5 * q.start[0] ** 2  # the λ = 1 part of f(x0); the λ = 10 part dies faster
        assert abs(r.steps - math.log(1e-8 / f0_slow) / math.log(rate**2)) < 1
    with pytest.raises(ValueError, match="grid"):
        tune_lr(q, "sgd", steps=10, grid=[])
    with pytest.raises(ValueError, match="grid"):
        tune_lr(q, "sgd", steps=10, grid=[0.0])


@pytest.mark.parametrize("optimizer", ["momentum", torch.optim.Adam], ids=["momentum", "Adam"])
def test_tune_lr_batched_runs_equal_one_by_one_runs(optimizer: Any) -> None:
    grid = [1e-4, 1e-3, 1e-2, 0.3, 3.0]
    best, runs = tune_lr(ls.rosenbrock, optimizer, steps=150, grid=grid, tol=1e-8)
    for lr in grid:
        alone = minimize(
            ls.rosenbrock, optimizer=optimizer, lr=lr, max_steps=150, tol=0.0, target=1e-8
        )
        r = runs[lr]
        assert (r.status, r.steps, r.lr) == (alone.status, alone.steps, lr)
        np.testing.assert_allclose(r.losses, alone.losses, rtol=1e-12, atol=0)
        np.testing.assert_allclose(r.x, alone.x, rtol=1e-12, atol=0)
    if optimizer == "momentum":  # the grid spans a stable and an unstable end
        assert runs[3.0].status == "diverged"
    finals = {lr: r.fun for lr, r in runs.items() if r.status != "diverged"}
    reached = [lr for lr, r in runs.items() if r.converged]
    assert best == (
        min(reached, key=lambda v: runs[v].steps) if reached else min(finals, key=finals.get)
    )


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adagrad", "adam"])
def test_tuned_lr_on_the_saddle_escapes_it_in_a_path_the_figure_shows(optimizer: str) -> None:
    # the lowest final f rewarded the lr that flings the iterate out of the window at once
    # (sgd: lr 1, where x flips between +1 and -1 while y triples each step)
    best, runs = tune_lr(ls.saddle, optimizer, steps=500)
    res = minimize(ls.saddle, optimizer=optimizer, lr=best, max_steps=500)
    (x0, x1), (y0, y1) = ls.saddle.domain
    t = res.trajectory
    inside = (t[:, 0] >= x0) & (t[:, 0] <= x1) & (t[:, 1] >= y0) & (t[:, 1] <= y1)
    shown = int(np.argmin(inside)) if not inside.all() else len(t)
    assert shown > 30  # a path of many steps inside the plot window
    assert np.hypot(*res.x) > 1.5  # and away from the saddle point: it escaped
    assert abs(t[shown - 1, 0]) < 0.3  # down the valley: x shrank on the way out
    assert runs[best].status != "diverged"


def test_tuning_on_the_saddle_ranks_a_run_that_leaves_the_window_at_once_last() -> None:
    # lr 1 for sgd leaves the window after 7 steps: below MIN_WINDOW_STEPS it can only win
    # against diverged runs
    best, _ = tune_lr(ls.saddle, "sgd", steps=500, grid=[1e-5, 1.0])
    assert best == 1e-5
    best, _ = tune_lr(ls.saddle, "sgd", steps=500, grid=[0.01, 0.1, 1.0])
    assert best in (0.01, 0.1)


def test_compare_and_table() -> None:
    rs = compare(ls.booth, ["sgd", "momentum"], steps=40, lr={"sgd": 0.02, "momentum": 0.01})
    assert [(r.optimizer, r.lr) for r in rs] == [("sgd", 0.02), ("momentum", 0.01)]
    table = format_table(rs, ls.booth, tol=1e-8).splitlines()
    assert table[0].split() == ["optimizer", "lr", "final", "f", "steps", "to", "tol", "status"]
    assert table[1].split()[:2] == ["sgd", "0.02"]
    assert float(table[1].split()[2]) == pytest.approx(rs[0].fun, rel=1e-2)
    sweep = compare(ls.booth, ["sgd", "momentum"], steps=20, lr=[0.001, 0.01])
    assert [(r.optimizer, r.lr) for r in sweep] == [
        ("sgd", 0.001),
        ("sgd", 0.01),
        ("momentum", 0.001),
        ("momentum", 0.01),
    ]
    tuned = compare(ls.booth, ["sgd"], steps=30, lr="tune", grid=[0.001, 0.01, 0.05])
    assert tuned[0].lr == 0.05
    assert set(tuned[0].extra["tuning"]) == {0.001, 0.01, 0.05}
    with pytest.raises(ValueError, match="no value for optimizer 'momentum'"):
        compare(ls.booth, ["momentum"], steps=5, lr={"sgd": 0.1})
    with pytest.raises(ValueError, match="'tune'"):
        compare(ls.booth, ["sgd"], steps=5, lr="fast")
    with pytest.raises(ValueError, match="at least one"):
        compare(ls.booth, [], steps=5)
    with pytest.raises(ValueError, match="at least one learning rate"):
        compare(ls.booth, ["sgd"], steps=5, lr=[])
