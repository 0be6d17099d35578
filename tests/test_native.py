"""bergab's own CPU kernels (``optim/_native.py``, ``optim/csrc``): loading, falling back,
threads, and the LARS/LAMB kernels' carried state (the package build and the choice of
instruction-set level: ``test_native_build.py``, ``test_native_levels.py``).

The kernels' equality to each algorithm's reference is tested with the algorithm (the
``fused`` rows of ``optim_specs.py`` and the per-family test files); here are the parts
every family shares.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time

import pytest
import torch

from bergab import optim
from bergab.optim import _native

NATIVE = pytest.mark.skipif(
    _native.library("layerwise") is None, reason="bergab's CPU kernels cannot be built here"
)


def params(seed: int, sizes: tuple[int, ...], dtype: torch.dtype = torch.float64) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(n, generator=g, dtype=dtype)) for n in sizes]


def run(opt: torch.optim.Optimizer, ps: list, steps: int, seed: int, start: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for t in range(start + steps):
        grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in ps]
        if t < start:
            continue
        for p, g in zip(ps, grads, strict=True):
            p.grad = g
        opt.step()


# ---------------------------------------------------------------------------- loading
def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERGAB_NATIVE", "0")
    _native.reload()
    try:
        assert _native.library("layerwise") is None
        assert _native.unavailable_reason("layerwise") == "disabled by BERGAB_NATIVE=0"
        assert not _native.native_status().available
        w = params(0, (3,), torch.float32)
        assert optim.LAMB(w)._select_impl(w) == "foreach"
    finally:
        monkeypatch.delenv("BERGAB_NATIVE")
        _native.reload()


def test_openmp_flavor_only_where_torch_loaded_libgomp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "_torch_libgomp", lambda: True)
    assert _native._flavors() == ["omp", "pthread"]  # pthreads if it does not load
    monkeypatch.setenv("BERGAB_NATIVE_OPENMP", "0")
    assert _native._flavors() == ["pthread"]
    monkeypatch.delenv("BERGAB_NATIVE_OPENMP")
    monkeypatch.setattr(_native, "_torch_libgomp", lambda: False)  # e.g. macOS, LLVM OpenMP
    assert _native._flavors() == ["pthread"]


@NATIVE
def test_the_openmp_flavor_shares_torchs_libgomp() -> None:
    if not _native._torch_libgomp():
        pytest.skip("torch runs without GNU OpenMP here")
    _native.library("rmsprop")
    with open("/proc/self/maps", encoding="utf-8") as f:
        gomp = {ln.split()[-1] for ln in f if ln.rstrip().endswith("/libgomp.so.1")}
    assert len(gomp) == 1  # one runtime, torch's: the kernels' threads are its threads


@NATIVE
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_steps_on_its_own_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # GNU OpenMP's pool does not survive fork(): after a parallel step in the parent, a
    # child that entered an OpenMP region would wait forever
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    ps = params(0, (3000, 500), torch.float32)
    opt = optim.RMSprop(ps, lr=1e-3, impl="fused")
    run(opt, ps, 2, seed=1)  # in the parent, on 2 threads
    expected = params(0, (3000, 500), torch.float32)
    ref_opt = optim.RMSprop(expected, lr=1e-3, impl="reference")
    run(ref_opt, expected, 2, seed=1)
    pid = os.fork()
    if pid == 0:  # the child: one more step each, then compare (exit code 0 = equal)
        code = 1
        try:
            run(opt, ps, 1, seed=2)
            run(ref_opt, expected, 1, seed=2)
            ok = all(torch.allclose(a, b) for a, b in zip(ps, expected, strict=True))
            code = 0 if ok else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in its step")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0


@NATIVE
def test_optimizers_stepping_in_several_python_threads_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ctypes releases the GIL: each Python thread's kernel forks its own team of threads
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    results: dict[int, list] = {}

    def worker(seed: int) -> None:
        ps = params(seed, (5000, 300))
        run(optim.RMSprop(ps, lr=1e-2, impl="fused"), ps, 30, seed=seed)
        results[seed] = ps

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for seed in range(4):
        ref = params(seed, (5000, 300))
        run(optim.RMSprop(ref, lr=1e-2, impl="reference"), ref, 30, seed=seed)
        for a, b in zip(results[seed], ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@NATIVE
@pytest.mark.parametrize("openmp", ["1", "0"])
def test_both_thread_flavors_split_work_alike(openmp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERGAB_NATIVE_OPENMP", openmp)
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 1)
    status = _native.reload()
    if openmp == "1" and not _native._torch_libgomp():
        pytest.skip("torch runs without GNU OpenMP here")
    assert status.flavor == ("omp" if openmp == "1" else "pthread")
    try:
        base = params(3, (7_001, 3, 5_000, 0, 11), torch.float64)
        results = []
        for threads in (1, 2, 5):
            monkeypatch.setattr(torch, "get_num_threads", lambda n=threads: n)
            ps = copy.deepcopy(base)
            run(optim.RMSprop(ps, lr=1e-2, momentum=0.5, impl="fused"), ps, 5, seed=4)
            results.append(torch.cat([p.detach() for p in ps]))
        ref_ps = copy.deepcopy(base)
        run(optim.RMSprop(ref_ps, lr=1e-2, momentum=0.5, impl="reference"), ref_ps, 5, seed=4)
        ref = torch.cat([p.detach() for p in ref_ps])
        for r in results:
            torch.testing.assert_close(r, ref, rtol=1e-12, atol=1e-14)
    finally:
        monkeypatch.delenv("BERGAB_NATIVE_OPENMP")
        _native.reload()


@NATIVE
def test_which_tensors_the_kernels_take() -> None:
    f32 = [torch.zeros(4), torch.zeros(2, 3)]
    assert _native.supports(f32, [torch.ones(4), torch.ones(2, 3)])
    assert not _native.supports(f32, [torch.ones(4), torch.ones(3, 2).t()])  # not contiguous
    assert not _native.supports([torch.zeros(2), torch.zeros(2, dtype=torch.float64)])
    assert not _native.supports([torch.zeros(2, dtype=torch.bfloat16)])
    assert not _native.supports([])
    bf16 = params(0, (4,), torch.bfloat16)
    opt = optim.LARS(bf16, lr=0.1)
    assert opt._select_impl(bf16) == "foreach"
    bf16[0].grad = torch.ones(4, dtype=torch.bfloat16)
    with pytest.raises(_native.NativeUnavailableError, match="float32 or float64"):
        optim.LARS(bf16, lr=0.1, impl="fused").step()
    assert optim.LARS(f32, lr=0.1)._select_impl(f32) == "fused"


def test_threads_for() -> None:
    assert _native.threads_for(0) == 1
    assert _native.threads_for(10**12) == torch.get_num_threads()


# ---------------------------------------------------------------------------- threads
@NATIVE
@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (optim.LARS, {"lr": 0.5, "momentum": 0.9, "weight_decay": 1e-3, "trust_coefficient": 0.02}),
        (optim.LAMB, {"lr": 0.01, "weight_decay": 0.01}),
        (optim.LDoG, {}),
        # a reduction over the group, then an update of each thread's range in reverse
        (optim.DoG, {"weight_decay": 1e-3}),
        (optim.Prodigy, {"weight_decay": 0.01}),
        (optim.HypergradientSGD, {"lr": 0.01, "momentum": 0.9}),
        (optim.HypergradientAdam, {"lr": 1e-3}),
    ],
)
@pytest.mark.parametrize("threads", [2, 3, 7])
def test_split_over_threads_equals_reference(
    cls: type, kwargs: dict, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # more threads than tensors, fewer, and empty shares: every tensor updated once, and
    # each thread's reversed walk covers the same elements as its forward reduction
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    sizes = (1, 300, 7, 2000, 5, 64)
    ref, fast = params(1, sizes), params(1, sizes)
    run(cls(ref, **kwargs, impl="reference"), ref, 60, seed=2)
    run(cls(fast, **kwargs, impl="fused"), fast, 60, seed=2)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- LARS's kept ‖w‖²
@NATIVE
def test_lars_recomputes_the_kept_norm_when_a_parameter_changes() -> None:
    kw = {"lr": 0.5, "momentum": 0.9, "weight_decay": 1e-3, "trust_coefficient": 0.02}
    ref, fast = params(3, (50, 20)), params(3, (50, 20))
    o_ref, o_fast = optim.LARS(ref, **kw, impl="reference"), optim.LARS(fast, **kw, impl="fused")
    gen = torch.Generator().manual_seed(4)
    for t in range(30):
        grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in ref]
        for a, b, g in zip(ref, fast, grads, strict=True):
            a.grad, b.grad = g, g.clone()
        o_ref.step()
        o_fast.step()
        with torch.no_grad():
            if t == 10:  # the user rescales a parameter in place
                ref[0].mul_(3.0)
                fast[0].mul_(3.0)
            if t == 20:  # or swaps its storage
                ref[1].data = ref[1].data * 0.5
                fast[1].data = fast[1].data * 0.5
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@NATIVE
def test_lars_resume_with_the_fused_path_equals_uninterrupted() -> None:
    kw = {"lr": 0.5, "momentum": 0.9, "weight_decay": 1e-3, "trust_coefficient": 0.02}
    full = params(5, (40, 9))
    run(optim.LARS(full, **kw, impl="fused"), full, 40, seed=6)
    half = params(5, (40, 9))
    opt = optim.LARS(half, **kw, impl="fused")
    run(opt, half, 20, seed=6)
    saved = copy.deepcopy(opt.state_dict())
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in half]
    opt2 = optim.LARS(resumed, **kw, impl="fused")
    opt2.load_state_dict(saved)
    run(opt2, resumed, 20, seed=6, start=20)
    for a, b in zip(resumed, full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@NATIVE
@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (optim.LARS, {"lr": 0.5, "trust_coefficient": 0.02}, "momentum_buffer"),
        (optim.RMSprop, {"lr": 0.01, "momentum": 0.9}, "momentum_buffer"),
        (optim.DoG, {}, "x0"),
    ],
)
def test_auto_falls_back_when_a_state_tensor_does_not_suit(
    cls: type, kwargs: dict, key: str
) -> None:
    # e.g. a state loaded non-contiguous: auto takes foreach instead of raising
    ref = [torch.nn.Parameter(torch.randn(4, 6, generator=torch.Generator().manual_seed(8)))]
    ours = [torch.nn.Parameter(ref[0].detach().clone())]
    o_ref, o_ours = cls(ref, **kwargs, impl="reference"), cls(ours, **kwargs)
    run(o_ref, ref, 1, seed=9)
    run(o_ours, ours, 1, seed=9)
    state = o_ours.state[ours[0]]
    state[key] = torch.zeros(6, 4).t().copy_(state[key])  # same values, transposed layout
    assert o_ours._select_impl(ours) == "foreach"
    run(o_ref, ref, 5, seed=9, start=1)
    run(o_ours, ours, 5, seed=9, start=1)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-6)
