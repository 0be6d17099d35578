"""The compiled paths (torch.compile is slow to warm up on CPU: tiny sizes, few tests)."""

from __future__ import annotations

import pytest
import torch

from tests.optim_specs import SPECS, spec_ids
from tests.test_optim_generic import make_params, run

# one spec per optimizer class (its richest configuration: the last row in the table)
COMPILED = list({s.cls: s for s in SPECS if "compiled" in s.cls.impls}.values())


@pytest.mark.slow
@pytest.mark.parametrize("spec", COMPILED, ids=spec_ids(COMPILED))
def test_compiled_equals_reference_without_recompiling(spec) -> None:
    torch._dynamo.reset()
    ref, comp = make_params(20, torch.float32), make_params(20, torch.float32)
    sched = lambda t: spec.kwargs["lr"] * 0.9**t  # noqa: E731 - lr changes every step
    run(spec.cls(ref, **{**spec.kwargs, "lr": sched}, impl="reference"), ref, 6, seed=21)
    opt = spec.cls(comp, **{**spec.kwargs, "lr": sched}, impl="compiled")
    with torch._dynamo.config.patch(error_on_recompile=True):
        run(opt, comp, 6, seed=21)
    for a, b in zip(comp, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
