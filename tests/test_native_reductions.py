"""The global sums and norms of bergab's CPU kernels accumulate in double.

Each kernel is called directly on float32 tensors and each sum it returns is compared with
the same sum taken in float64 from the same float32 elementwise values (the kernels keep
their elementwise math in float32, and a product of two floats is exact in double): the
two may differ only by double rounding, far below what a float32 accumulator loses, and
so may the sums of different thread counts.
"""

from __future__ import annotations

import math

import pytest
import torch

from bergab.optim import _abi, _native

LIB = _native.library("layerwise")  # one library holds every family

pytestmark = pytest.mark.skipif(LIB is None, reason="bergab's CPU kernels cannot be built here")

#: several tensors: sizes for the four-stream sums, tails shorter than the lanes, one element
SIZES = (100_003, 8_191, 4_096, 31, 1)
THREADS = (1, 2, 3)
#: double rounding over these sizes stays far below this, float32 accumulation far above
RTOL = 1e-12


def tensors(seed: int, count: int, *, positive: bool = False) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ts = [torch.randn(n, generator=gen) for n in SIZES]
        out.append([t.abs() + 0.1 for t in ts] if positive else ts)
    return out


def call(kernel: str, lists: list[list[torch.Tensor]], *args: object, nthreads: int) -> None:
    assert LIB is not None
    _native.call(LIB, kernel, lists, *args, nthreads=nthreads)


def close(got: float, terms: torch.Tensor) -> bool:
    """``got`` equals the float64 sum of ``terms`` up to double rounding (relative to the
    sum of their magnitudes, which bounds the rounding of any order)."""
    exact = terms.double().sum().item()
    return abs(got - exact) <= RTOL * terms.double().abs().sum().item()


def copies(lists: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    return [[t.clone() for t in ts] for ts in lists]


def sqrt32(t: torch.Tensor) -> torch.Tensor:
    """The correctly rounded float32 square root, as the kernels' sqrtf (torch's own
    float32 sqrt on CPU may differ in the last bit)."""
    return t.double().sqrt().float()


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("nthreads", THREADS)
def test_prodigy_sums(wd: float, nthreads: int) -> None:
    x, g, x0, s = tensors(0, 4)
    lists = copies([x, g, x0, s])
    hp = _abi.ProdigySumsHp(beta3=0.9, c3=0.01, coupled_weight_decay=wd)
    out = _native.zeros(2 * len(SIZES) * nthreads)
    call("prodigy_sums", lists, hp, out, nthreads=nthreads)
    for i, (xi, gi, x0i, si) in enumerate(zip(x, g, x0, lists[3], strict=True)):
        gd = gi + wd * xi if wd else gi
        assert close(out[2 * i], gd.double() * (x0i - xi).double()), i
        assert close(out[2 * i + 1], si.abs()), i  # ||s||_1 of the updated s


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("nthreads", THREADS)
def test_dog_reduce_and_update(wd: float, nthreads: int) -> None:
    x, g, x0 = tensors(1, 3)
    lists = copies([x, g, x0])
    hp = _abi.DogHp(weight_decay=wd)
    out = _native.zeros(2 * len(SIZES))
    call("dog_reduce", lists, hp, _native.doubles([1.0] * len(SIZES)), out, nthreads=nthreads)
    for i, (xi, gi, x0i) in enumerate(zip(x, g, x0, strict=True)):
        gd = (gi + wd * xi if wd else gi).double()
        assert close(out[2 * i], gd * gd), i
        diff = (xi - x0i).double()
        assert close(out[2 * i + 1], diff * diff), i
    dist = _native.zeros(len(SIZES))
    etas = _native.doubles([0.01 * (i + 1) for i in range(len(SIZES))])
    call("dog_update", lists, hp, etas, dist, nthreads=nthreads)
    for i, (xi, x0i) in enumerate(zip(lists[0], x0, strict=True)):
        diff = (xi - x0i).double()
        assert close(dist[i], diff * diff), i


@pytest.mark.parametrize("nthreads", THREADS)
def test_ldog(nthreads: int) -> None:
    x, g, x0 = tensors(2, 3)
    lists = copies([x, g, x0])
    wd = 0.05
    hp = _abi.LdogHp(weight_decay=wd, scale=1.0, init_eta=math.nan)
    pt = _native.doubles([v for _ in SIZES for v in (1e-3, 1.0, -1.0, 0.0)])
    out = _native.zeros(4 * len(SIZES))
    call("ldog", lists, hp, pt, out, nthreads=nthreads)
    for i, (xi, gi, x0i) in enumerate(zip(x, g, x0, strict=True)):
        gd = (gi + wd * xi).double()
        assert close(out[4 * i + 1] - 1.0, gd * gd), i  # G = 1 + ||g + wd x||^2
        diff = (lists[0][i] - x0i).double()
        assert close(out[4 * i + 3], diff * diff), i


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("nthreads", THREADS)
def test_lars_norms(momentum: float, nthreads: int) -> None:
    w, g, buf = tensors(3, 3)
    lists = copies([w, g, buf])
    tc, wd, eps = 0.02, 0.01, 1e-8
    hp = _abi.LarsHp(lr=0.1, momentum=momentum, weight_decay=wd, trust_coefficient=tc, eps=eps)
    out = _native.zeros(2 * len(SIZES))
    pt = _native.doubles([v for _ in SIZES for v in (1.0, -1.0)])
    call("lars", lists, hp, pt, out, nthreads=nthreads)
    for i, (wi, gi) in enumerate(zip(w, g, strict=True)):
        wn = wi.double().norm().item()
        gn = gi.double().norm().item()
        assert out[2 * i] == pytest.approx(tc * wn / (gn + wd * wn + eps), rel=RTOL), i
        new = lists[0][i].double()
        assert close(out[2 * i + 1], new * new), i


@pytest.mark.parametrize("nthreads", THREADS)
def test_lamb_ratio(nthreads: int) -> None:
    p, g, m = tensors(4, 3)
    (v,) = tensors(5, 1, positive=True)
    lists = copies([p, g, m, v])
    b1, b2, eps, wd = 0.9, 0.999, 1e-6, 0.01
    hp = _abi.LambHp(lr=0.1, beta1=b1, beta2=b2, eps=eps, weight_decay=wd, clamp=math.inf)
    bias1, bias2 = 1 - b1**3, 1 - b2**3
    scratch = torch.empty(nthreads * max(SIZES))
    out = _native.zeros(len(SIZES))
    pt = _native.doubles([v for _ in SIZES for v in (bias1, bias2)])
    call("lamb", lists, hp, pt, out, scratch.data_ptr(), max(SIZES), nthreads=nthreads)
    for i in range(len(SIZES)):
        mk = m[i] * b1 + g[i] * (1 - b1)  # the kernel's float32 elementwise math, op by op
        vk = v[i] * b2 + (1 - b2) * (g[i] * g[i])
        u = (mk / bias1) / (sqrt32(vk / bias2) + eps) + wd * p[i]
        ratio = p[i].double().norm().item() / u.double().norm().item()
        assert out[i] == pytest.approx(ratio, rel=RTOL), i


@pytest.mark.parametrize("norms", [False, True])
@pytest.mark.parametrize("nthreads", THREADS)
def test_sgd_hd_reduce(norms: bool, nthreads: int) -> None:
    p, g, b, d = tensors(6, 4)
    lists = copies([p, g, b, d])
    hp = _abi.SgdHdReduceHp(mode=0, weight_decay=0.0, norms=norms, momentum=0.0)
    out = _native.zeros(3)
    pt = _native.doubles([v for _ in SIZES for v in (1.0, 0.0)])
    call("sgd_hd_reduce", lists, hp, pt, out, nthreads=nthreads)
    gs, ds = torch.cat(g).double(), torch.cat(d).double()  # d: the previous direction
    assert close(out[0], gs * ds)
    if norms:
        assert close(out[1], gs * gs)
        assert close(out[2], ds * ds)


@pytest.mark.parametrize("nthreads", THREADS)
def test_adam_hd_reduce(nthreads: int) -> None:
    p, g, m = tensors(7, 3)
    (v,) = tensors(8, 1, positive=True)
    lists = copies([p, g, m, v])
    hp = _abi.AdamHdReduceHp(beta1=0.9, beta2=0.999, weight_decay=0.0, norms=True)
    out = _native.zeros(3)
    eprev = 1e-8
    pt = _native.doubles([v for _ in SIZES for v in (1.0, 1.0, eprev)])  # cprev = 1
    call("adam_hd_reduce", lists, hp, pt, out, nthreads=nthreads)
    r = torch.cat([mi / (sqrt32(vi) + eprev) for mi, vi in zip(m, v, strict=True)]).double()
    gs = torch.cat(g).double()
    assert close(out[0], gs * r)
    assert close(out[1], gs * gs)
    assert close(out[2], r * r)


def test_the_thread_count_changes_a_sum_only_by_double_rounding() -> None:
    x, g, x0, s = tensors(9, 4)
    results = []
    for nthreads in THREADS:
        out = _native.zeros(2 * len(SIZES) * nthreads)
        hp = _abi.ProdigySumsHp(beta3=0.9, c3=0.01, coupled_weight_decay=0.0)
        call("prodigy_sums", copies([x, g, x0, s]), hp, out, nthreads=nthreads)
        results.append(out[: 2 * len(SIZES)])
    scale = sum(
        (gi.double() * (x0i - xi).double()).abs().sum().item()
        for xi, gi, x0i in zip(x, g, x0, strict=True)
    )
    for other in results[1:]:
        for a, b in zip(results[0][0::2], other[0::2], strict=True):
            assert abs(a - b) <= 1e-14 * scale
