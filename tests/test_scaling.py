"""Scaling rules against their published formulas, round trips, and argument checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bergab.scaling import adam_warmup_steps, scale_adam, scale_lr, warmup_steps_for

batch = st.integers(min_value=1, max_value=1 << 16)
lrs = st.floats(min_value=1e-8, max_value=10.0)


@pytest.mark.parametrize(
    ("lr", "base", "new", "rule", "want"),
    [
        (0.1, 256, 8192, "linear", 3.2),  # Goyal et al.: 0.1 per 256 images -> 3.2 at 8k
        (0.1, 256, 256, "linear", 0.1),
        (0.1, 256, 64, "linear", 0.025),
        (1e-3, 128, 512, "sqrt", 2e-3),
        (1e-3, 512, 128, "sqrt", 5e-4),
    ],
)
def test_scale_lr_formula(lr: float, base: int, new: int, rule: str, want: float) -> None:
    assert scale_lr(lr, base, new, rule=rule) == pytest.approx(want, rel=1e-12)


@given(lrs, batch, batch)
def test_scale_lr_round_trip_and_sqrt_squared_is_linear(lr: float, a: int, b: int) -> None:
    back = scale_lr(scale_lr(lr, a, b), b, a)
    assert back == pytest.approx(lr, rel=1e-12)
    twice_sqrt = scale_lr(scale_lr(lr, a, b, "sqrt"), a, b, "sqrt")
    assert twice_sqrt == pytest.approx(scale_lr(lr, a, b), rel=1e-12)
    assert scale_lr(lr, a, b, "sqrt") == pytest.approx(lr * math.sqrt(b / a), rel=1e-12)


def test_warmup_steps_for_goyal() -> None:
    # ImageNet, 8k batch, 5 epochs: ceil(5 * 1281167 / 8192) = ceil(781.96)
    assert warmup_steps_for(256, 8192, dataset_size=1_281_167) == 782
    assert warmup_steps_for(256, 512, dataset_size=1000, epochs=2) == 4  # ceil(3.9)
    assert warmup_steps_for(256, 512, dataset_size=1024, epochs=1) == 2  # exact, no +1
    assert warmup_steps_for(256, 256, dataset_size=10**6) == 0
    assert warmup_steps_for(256, 128, dataset_size=10**6) == 0
    assert warmup_steps_for(256, 512, dataset_size=1000, epochs=0) == 0


def test_adam_warmup_steps() -> None:
    assert adam_warmup_steps() == 2000
    assert adam_warmup_steps(0.99) == 200
    assert adam_warmup_steps(0.98) == 100
    assert adam_warmup_steps(0.95) == 40


def test_scale_adam_formula_and_round_trip() -> None:
    h = scale_adam(3e-4, (0.9, 0.999), 1e-8, base_batch_size=32, batch_size=128)
    k = 4.0
    assert h["lr"] == pytest.approx(3e-4 * math.sqrt(k), rel=1e-12)
    assert h["betas"][0] == pytest.approx(1 - k * 0.1, rel=1e-12)
    assert h["betas"][1] == pytest.approx(1 - k * 0.001, rel=1e-12)
    assert h["eps"] == pytest.approx(1e-8 / math.sqrt(k), rel=1e-12)
    back = scale_adam(h["lr"], h["betas"], h["eps"], base_batch_size=128, batch_size=32)
    assert back["lr"] == pytest.approx(3e-4, rel=1e-12)
    assert back["betas"] == pytest.approx((0.9, 0.999), rel=1e-12)
    assert back["eps"] == pytest.approx(1e-8, rel=1e-12)
    same = scale_adam(1e-3, (0.9, 0.99), 1e-6, 64, 64)
    assert same == {"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-6}


def test_scale_adam_refuses_a_beta_that_would_leave_zero_one() -> None:
    with pytest.raises(ValueError, match=r"betas\[0\]=0.9 cannot be scaled by batch ratio 16"):
        scale_adam(1e-3, (0.9, 0.999), 1e-8, 32, 512)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="lr must be in"):
        scale_lr(0.0, 32, 64)
    with pytest.raises(ValueError, match="base_batch_size"):
        scale_lr(0.1, 0, 64)
    with pytest.raises(TypeError, match="batch_size"):
        scale_lr(0.1, 32, 64.5)
    with pytest.raises(ValueError, match="rule must be one of 'linear', 'sqrt'"):
        scale_lr(0.1, 32, 64, rule="log")
    with pytest.raises(ValueError, match="dataset_size"):
        warmup_steps_for(32, 64, dataset_size=0)
    with pytest.raises(ValueError, match="epochs"):
        warmup_steps_for(32, 64, dataset_size=10, epochs=-1)
    with pytest.raises(ValueError, match="beta2"):
        adam_warmup_steps(1.0)
    with pytest.raises(ValueError, match="betas must be a pair"):
        scale_adam(1e-3, (0.9,), 1e-8, 32, 64)
    with pytest.raises(ValueError, match="eps"):
        scale_adam(1e-3, (0.9, 0.999), -1.0, 32, 64)
