"""Landscapes: values against the published formulas, minima, gradients vs finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bergab import landscapes as ls

TWO_D = [
    ls.rosenbrock,
    ls.beale,
    ls.booth,
    ls.himmelblau,
    ls.rastrigin,
    ls.styblinski_tang,
    ls.saddle,
]
ALL = [*TWO_D, ls.quadratic(10.0), ls.quadratic(1000.0)]
IDS = [f.name for f in ALL]


# The published formulas, written plainly in NumPy (one point at a time).
REF = {
    "rosenbrock": lambda p: sum(
        100 * (p[i + 1] - p[i] ** 2) ** 2 + (1 - p[i]) ** 2 for i in range(len(p) - 1)
    ),
    "beale": lambda p: (
        (1.5 - p[0] + p[0] * p[1]) ** 2
        + (2.25 - p[0] + p[0] * p[1] ** 2) ** 2
        + (2.625 - p[0] + p[0] * p[1] ** 3) ** 2
    ),
    "booth": lambda p: (p[0] + 2 * p[1] - 7) ** 2 + (2 * p[0] + p[1] - 5) ** 2,
    "himmelblau": lambda p: (p[0] ** 2 + p[1] - 11) ** 2 + (p[0] + p[1] ** 2 - 7) ** 2,
    "rastrigin": lambda p: 10 * len(p) + sum(t**2 - 10 * math.cos(2 * math.pi * t) for t in p),
    "styblinski_tang": lambda p: sum(t**4 - 16 * t**2 + 5 * t for t in p) / 2,
    "saddle": lambda p: p[0] ** 2 - p[1] ** 2,
}


def ref_value(name: str, p: np.ndarray) -> float:
    p = [float(t) for t in p]
    if name.startswith("quadratic"):  # "quadratic(κ=10)": eigenvalues 1 and κ
        kappa = float(name.split("=")[1].rstrip(")"))
        return 0.5 * (p[0] ** 2 + kappa * p[1] ** 2)
    return float(REF[name](p))


def random_points(fn: ls.Landscape, n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    (x0, x1), (y0, y1) = fn.domain
    pts = np.stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)], axis=1)
    return torch.tensor(pts, dtype=torch.float64)


def fd_grad(fn: ls.Landscape, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    for i in range(x.shape[-1]):
        e = torch.zeros_like(x)
        e[i] = h
        g[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("fn", ALL, ids=IDS)
def test_values_match_published_formula(fn: ls.Landscape) -> None:
    pts = random_points(fn, 50, seed=0)
    got = fn(pts)  # batched
    assert got.shape == (50,)
    assert got.dtype == torch.float64
    want = torch.tensor([ref_value(fn.name, p) for p in pts.numpy()], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)
    # one point at a time gives the same numbers as the batch
    torch.testing.assert_close(torch.stack([fn(p) for p in pts]), got, rtol=1e-14, atol=0)


@pytest.mark.parametrize("fn", ALL, ids=IDS)
def test_gradient_matches_finite_differences(fn: ls.Landscape) -> None:
    for p in random_points(fn, 20, seed=1):
        g = fn.grad(p)
        fd = fd_grad(fn, p)
        scale = max(1.0, float(g.abs().max()))
        torch.testing.assert_close(g, fd, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("fn", [f for f in ALL if f.minima], ids=[f.name for f in ALL if f.minima])
def test_minima_are_stationary_and_global(fn: ls.Landscape) -> None:
    for m in fn.minima:
        x = torch.tensor(m, dtype=torch.float64)
        assert abs(fn(x).item() - fn.min_value) <= 1e-12 * max(1.0, abs(fn.min_value))
        assert abs(ref_value(fn.name, x.numpy()) - fn.min_value) <= 1e-12 * max(
            1.0, abs(fn.min_value)
        )
        assert fn.grad(x).abs().max().item() < 1e-9
        # positive-definite Hessian: a strict local minimum
        h = torch.autograd.functional.hessian(fn, x)
        assert torch.linalg.eigvalsh(h).min().item() > 0
        # and nothing lower on a fine grid over the plot domain
        (x0, x1), (y0, y1) = fn.domain
        gx, gy = torch.meshgrid(
            torch.linspace(x0, x1, 401, dtype=torch.float64),
            torch.linspace(y0, y1, 401, dtype=torch.float64),
            indexing="ij",
        )
        assert fn(torch.stack([gx, gy], -1)).min().item() >= fn.min_value - 1e-12
    # the minima lie inside the domain and the start does too
    (x0, x1), (y0, y1) = fn.domain
    for px, py in [*fn.minima, fn.start]:
        assert x0 <= px <= x1
        assert y0 <= py <= y1


def test_himmelblau_has_four_distinct_minima() -> None:
    ms = np.array(ls.himmelblau.minima)
    assert ms.shape == (4, 2)
    assert min(np.linalg.norm(a - b) for i, a in enumerate(ms) for b in ms[i + 1 :]) > 1.0


def test_saddle_is_unbounded_below_with_a_stationary_origin() -> None:
    assert ls.saddle.minima == []
    assert ls.saddle.min_value == -math.inf
    assert ls.saddle.grad([0.0, 0.0]).tolist() == [0.0, 0.0]
    h = torch.autograd.functional.hessian(ls.saddle, torch.zeros(2, dtype=torch.float64))
    assert torch.linalg.eigvalsh(h).tolist() == [-2.0, 2.0]


@pytest.mark.parametrize("n", [1, 3, 7])
def test_n_dimensional_versions(n: int) -> None:
    for fn in (ls.rosenbrock, ls.rastrigin, ls.styblinski_tang):
        if n < fn.min_dim:
            with pytest.raises(ValueError, match="n must be"):
                fn.with_dim(n)
            continue
        fn_n = fn.with_dim(n)
        assert fn_n.dim == n
        assert len(fn_n.start) == n
        x = torch.tensor(fn_n.minima[0], dtype=torch.float64)
        assert fn_n(x).item() == pytest.approx(fn_n.min_value, abs=1e-10)
        assert fn_n.grad(x).abs().max().item() < 1e-9
        p = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        torch.testing.assert_close(fn_n.grad(p), fd_grad(fn_n, p), rtol=0, atol=1e-5)
        assert fn_n(p).item() == pytest.approx(ref_value(fn.name, p.numpy()), rel=1e-12)


def test_styblinski_tang_minimum_is_the_lowest_critical_point() -> None:
    # ½(t⁴ − 16t² + 5t): the critical points are the real roots of 4t³ − 32t + 5
    roots = np.roots([4.0, 0.0, -32.0, 5.0]).real
    values = 0.5 * (roots**4 - 16 * roots**2 + 5 * roots)
    best = roots[np.argmin(values)]
    assert ls.styblinski_tang.minima[0][0] == pytest.approx(best, abs=1e-12)
    assert ls.styblinski_tang.min_value == pytest.approx(2 * values.min(), abs=1e-10)


def test_fixed_dimension_landscapes_reject_other_sizes() -> None:
    with pytest.raises(ValueError, match="size 2"):
        ls.beale(torch.zeros(3))
    with pytest.raises(ValueError, match="size >= 2"):
        ls.rosenbrock(torch.zeros(1))
    with pytest.raises(ValueError, match="scalar"):
        ls.booth(torch.tensor(1.0))
    with pytest.raises(ValueError, match="only in 2 dimensions"):
        ls.himmelblau.with_dim(3)


def test_quadratic_hessian_and_constants() -> None:
    q = ls.quadratic(1000.0, dim=4)
    h = torch.autograd.functional.hessian(q, torch.ones(4, dtype=torch.float64))
    want = torch.diag(torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=torch.float64))
    torch.testing.assert_close(h, want, rtol=1e-12, atol=0)
    assert (q.L, q.mu, q.condition_number) == (1000.0, 1.0, 1000.0)
    assert q.start == (-4.0, 2.0, 2.0, 2.0)
    assert ls.quadratic(1.0, dim=1)(torch.tensor([2.0])).item() == 2.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"condition_number": 0.5}, "condition_number"),
        ({"condition_number": math.inf}, "condition_number"),
        ({"condition_number": 10.0, "dim": 0}, "dim"),
        ({"condition_number": 10.0, "dim": 1}, "condition_number must be 1"),
    ],
)
def test_quadratic_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ls.quadratic(**kwargs)  # type: ignore[arg-type]


def test_noisy_value_is_exact_and_gradient_is_unbiased_with_sigma_spread() -> None:
    sigma = 0.7
    f = ls.noisy(ls.rosenbrock, sigma=sigma, seed=3)
    x0 = torch.tensor([-0.5, 1.5], dtype=torch.float64)
    assert f(x0).item() == ls.rosenbrock(x0).item()
    true = ls.rosenbrock.grad(x0)
    draws = f.grad(x0.expand(4000, 2))  # batched: one independent draw per row
    err = draws - true
    # mean within 5 standard errors, per-coordinate std within 5%
    assert err.mean(0).abs().max().item() < 5 * sigma / math.sqrt(4000)
    torch.testing.assert_close(
        err.std(0), torch.full((2,), sigma, dtype=torch.float64), rtol=0.05, atol=0
    )
    # independent coordinates
    assert abs(np.corrcoef(err.numpy().T)[0, 1]) < 0.1


def test_noisy_is_reproducible_and_respects_the_chain_rule() -> None:
    f = ls.noisy(ls.booth, sigma=1.0, seed=5)
    x = torch.tensor([0.3, -0.2], dtype=torch.float64)
    first = torch.stack([f.grad(x) for _ in range(5)])
    f.reset()
    with torch.no_grad():
        f(x)  # evaluations without gradient draw no noise
    f(x)  # nor does one on a tensor that does not require grad
    again = torch.stack([f.grad(x) for _ in range(5)])
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])
    other = ls.noisy(ls.booth, sigma=1.0, seed=6)
    assert not torch.equal(other.grad(x), first[0])
    # d(3 f)/dx = 3 (∇f + σξ) for the same draw
    f.reset()
    xr = x.clone().requires_grad_(True)
    (3.0 * f(xr)).backward()
    assert xr.grad is not None
    torch.testing.assert_close(xr.grad, 3.0 * first[0], rtol=1e-14, atol=0)
    # sigma = 0 is the clean landscape
    assert torch.equal(ls.noisy(ls.booth, 0.0).grad(x), ls.booth.grad(x))


def test_noisy_batched_gives_each_point_its_own_noise() -> None:
    f = ls.noisy(ls.himmelblau, sigma=2.0, seed=0)
    pts = torch.zeros(3, 2, dtype=torch.float64)
    g = f.grad(pts)
    assert g.shape == (3, 2)
    assert not torch.equal(g[0], g[1])


def test_noisy_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sigma"):
        ls.noisy(ls.booth, sigma=-1.0)
    with pytest.raises(ValueError, match="seed"):
        ls.noisy(ls.booth, sigma=1.0, seed=-1)
    with pytest.raises(TypeError, match="Landscape"):
        ls.noisy(lambda x: x, sigma=1.0)  # type: ignore[arg-type]


def test_get_and_names() -> None:
    assert set(ls.names()) == {*(f.name for f in TWO_D), "quadratic"}
    assert ls.get("ROSENBROCK") is ls.rosenbrock
    assert ls.get("styblinski-tang") is ls.styblinski_tang
    q = ls.get("quadratic", condition_number=25.0)
    assert isinstance(q, ls.Quadratic)
    assert q.L == 25.0
    n = ls.get("beale", noise=0.1, seed=2)
    assert isinstance(n, ls.Noisy)
    assert (n.sigma, n.seed, n.base) == (0.1, 2, ls.beale)
    assert ls.get("rastrigin", dim=5).dim == 5
    with pytest.raises(ValueError, match="name must be one of"):
        ls.get("banana")
    with pytest.raises(ValueError, match="noise"):
        ls.get("booth", noise=-0.1)
