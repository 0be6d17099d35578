"""Built-in tasks: shapes, determinism, untouched global RNG, the linreg optimum, metrics."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from bergab import tasks


def _state(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


@pytest.mark.parametrize("name", ["digits", "linreg", "charlm"])
def test_deterministic_given_seed_and_rng_untouched(name: str) -> None:
    kw = {"max_chars": 20_000} if name == "charlm" else {}
    before = torch.get_rng_state()
    a = tasks.get(name, seed=3, **kw)
    b = tasks.get(name, seed=3, **kw)
    c = tasks.get(name, seed=4, **kw)
    assert torch.equal(torch.get_rng_state(), before)
    for ta, tb in zip(_state(a.model), _state(b.model), strict=True):
        assert torch.equal(ta, tb)
    assert any(not torch.equal(x, y) for x, y in zip(_state(a.model), _state(c.model), strict=True))
    for da, db in ((a.train, b.train), (a.val, b.val)):
        for xa, xb in zip(da.tensors, db.tensors, strict=True):
            assert torch.equal(xa, xb)
    assert a.name == name
    assert a.description
    assert a.metrics


@pytest.mark.parametrize("name", ["digits", "linreg", "charlm"])
def test_forward_loss_and_metrics(name: str) -> None:
    kw = {"max_chars": 20_000} if name == "charlm" else {}
    task = tasks.get(name, seed=0, **kw)
    x, y = task.val[:16]
    out = task.model(x)
    loss = task.loss_fn(out, y)
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in task.model.parameters())
    for fn in task.metrics.values():
        assert math.isfinite(fn(out.detach(), y))


def test_digits_split_is_stratified_and_standardized() -> None:
    task = tasks.digits(seed=1)
    xtr, ytr = task.train.tensors
    _, yva = task.val.tensors
    assert len(xtr) + len(yva) == 1797
    # every class keeps the same share in validation (within rounding of one image)
    counts_tr = torch.bincount(ytr, minlength=10).double()
    counts_va = torch.bincount(yva, minlength=10).double()
    share = counts_va / (counts_tr + counts_va)
    assert torch.all((share - 0.2).abs() < 1 / 170)
    mean, std = xtr.double().mean(0), xtr.double().std(0)
    varying = task.info["std"] != 1.0
    assert torch.allclose(mean, torch.zeros(64, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std[varying], torch.ones_like(std[varying]), atol=1e-5)
    # the split differs by seed, the model shape follows hidden/depth
    other = tasks.digits(seed=2, hidden=8, depth=2, dropout=0.1)
    assert not torch.equal(other.val.tensors[1], yva)
    assert sum(isinstance(m, torch.nn.Linear) for m in other.model.modules()) == 3
    assert any(isinstance(m, torch.nn.Dropout) for m in other.model.modules())


def test_linreg_optimum_matches_numpy_normal_equations() -> None:
    task = tasks.linreg(seed=5, dtype=torch.float64)
    x, y = (t.numpy() for t in task.train.tensors)
    a = np.hstack([x, np.ones((len(x), 1))])
    # an independent solve: QR of the design matrix
    q, r = np.linalg.qr(a)
    sol = np.linalg.solve(r, q.T @ y[:, 0])
    np.testing.assert_allclose(task.info["optimum_weight"].numpy(), sol[:-1], rtol=1e-8)
    assert task.info["optimum_bias"] == pytest.approx(sol[-1], rel=1e-9)
    opt = np.mean((a @ sol - y[:, 0]) ** 2)
    assert task.info["optimal_train_loss"] == pytest.approx(opt, rel=1e-10)
    xv, yv = (t.numpy() for t in task.val.tensors)
    opt_val = np.mean((np.hstack([xv, np.ones((len(xv), 1))]) @ sol - yv[:, 0]) ** 2)
    assert task.info["optimal_val_loss"] == pytest.approx(opt_val, rel=1e-8)
    h = 2 * a.T @ a / len(a)
    assert task.info["condition_number"] == pytest.approx(np.linalg.cond(h), rel=1e-6)
    # the gradient of the train loss vanishes at the optimum
    with torch.no_grad():
        task.model.weight.copy_(task.info["optimum_weight"].unsqueeze(0))
        task.model.bias.fill_(task.info["optimum_bias"])
    xt, yt = task.train.tensors
    task.loss_fn(task.model(xt), yt).backward()
    assert task.model.weight.grad.abs().max() < 1e-9


def test_linreg_scaling_matters_for_gradient_descent() -> None:
    """Full-batch GD: unscaled features force a tiny lr and crawl; standardized converge."""
    results = {}
    for standardize, lr in ((False, 1e-6), (True, 0.5)):
        task = tasks.linreg(seed=0, standardize=standardize, dtype=torch.float64)
        assert (task.info["condition_number"] > 1e5) is not standardize
        x, y = task.train.tensors
        opt = torch.optim.SGD(task.model.parameters(), lr=lr)
        for _ in range(30):
            opt.zero_grad()
            task.loss_fn(task.model(x), y).backward()
            opt.step()
        with torch.no_grad():
            results[standardize] = task.loss_fn(task.model(x), y).item()
        best = task.info["optimal_train_loss"]
    assert results[True] == pytest.approx(best, rel=1e-6)
    assert results[False] > 100 * best
    # and the unscaled problem diverges at twice the lr that merely crawls
    task = tasks.linreg(seed=0, dtype=torch.float64)
    x, y = task.train.tensors
    opt = torch.optim.SGD(task.model.parameters(), lr=4e-6)
    for _ in range(30):
        opt.zero_grad()
        task.loss_fn(task.model(x), y).backward()
        opt.step()
    with torch.no_grad():
        assert task.loss_fn(task.model(x), y).item() > 1e6


def test_charlm_text_encoding_and_windows() -> None:
    task = tasks.charlm(seed=0, context=8, max_chars=30_000)
    x, y = task.train.tensors
    assert x.shape[1] == 8
    assert len(x) == len(y)
    # the target of window i is the first character of window i + 1's last position
    assert torch.equal(x[1:, -1], y[:-1])
    assert torch.equal(x[1:, :-1], x[:-1, 1:])
    vocab = task.info["vocab"]
    assert len(vocab) + 1 == task.model.embed.num_embeddings == 97
    decoded = "".join(vocab[i] if i < len(vocab) else "\0" for i in x[:500, 0].tolist())
    first = Path(sysconfig.get_paths()["stdlib"], task.info["files"][0]).read_text()[:500]
    assert decoded == "".join(c if c in vocab else "\0" for c in first)
    assert task.info["train_chars"] + task.info["val_chars"] == 30_000
    assert len(task.info["files"]) >= 5


def test_charlm_builds_the_default_corpus() -> None:
    # how fast it builds is a benchmark's business, not a test's (no timed assertions)
    task = tasks.charlm(seed=1)
    assert len(task.train) > 150_000


def test_metrics_match_formulas() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 7, (50,), generator=gen)
    logp = logits - logits.exp().sum(1, keepdim=True).log()
    ce = -logp[torch.arange(50), targets].mean().item()
    assert tasks.bits_per_char(logits, targets) == pytest.approx(ce / math.log(2), rel=1e-12)
    manual = sum(int(logits[i].argmax() == targets[i]) for i in range(50)) / 50
    assert tasks.accuracy(logits, targets) == manual


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.get("mnist")
    with pytest.raises(TypeError, match="task name"):
        tasks.get(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        tasks.linreg(seed=-1)
    with pytest.raises(TypeError, match="standardize"):
        tasks.linreg(standardize="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden"):
        tasks.digits(hidden=0)
    with pytest.raises(ValueError, match="context"):
        tasks.charlm(context=0)
    assert tasks.names() == ["charlm", "digits", "linreg"]


# ---------------------------------------------------------------------------- fractions, dtypes
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"val_fraction": 0.999},
            r"val_fraction must leave at least 5 training images.* leaves 0 of digit 0",
        ),
        ({"val_fraction": 0.01}, r"val_fraction leaves 2 validation images"),
        ({"test_fraction": 0.01}, r"test_fraction leaves 2 test images"),
        (
            {"val_fraction": 0.5, "test_fraction": 0.49},
            r"val_fraction \+ test_fraction must leave at least 5 training",
        ),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\)"),
    ],
)
def test_digits_fractions_that_leave_a_split_almost_empty_are_refused(
    kwargs: dict[str, float], match: str
) -> None:
    # val_fraction=0.999 once left 10 training images (one per class) without a word
    with pytest.raises(ValueError, match=match):
        tasks.digits(**kwargs)


def test_digits_fractions_at_the_edge_of_the_minimum_are_accepted() -> None:
    smallest = 174  # images of the rarest digit
    low = tasks.MIN_PER_CLASS / smallest + 1e-3
    task = tasks.digits(val_fraction=low)
    assert torch.bincount(task.val.tensors[1], minlength=10).min() >= tasks.MIN_PER_CLASS
    task = tasks.digits(val_fraction=1 - low)
    assert torch.bincount(task.train.tensors[1], minlength=10).min() >= tasks.MIN_PER_CLASS


@pytest.mark.parametrize("name", ["digits", "linreg"])
@pytest.mark.parametrize(
    ("given", "dtype"),
    [("float64", torch.float64), ("torch.float64", torch.float64), ("bfloat16", torch.bfloat16)],
)
def test_dtype_may_be_given_by_name(name: str, given: str, dtype: torch.dtype) -> None:
    # digits(dtype="float64") used to fail with "Invalid device string"
    task = tasks.get(name, dtype=given)
    assert task.train.tensors[0].dtype == dtype
    assert next(task.model.parameters()).dtype == dtype


@pytest.mark.parametrize("name", ["digits", "linreg"])
def test_a_dtype_that_is_not_floating_point_is_refused_naming_dtype(name: str) -> None:
    with pytest.raises(ValueError, match=r"dtype must be a floating-point dtype .*'int64'"):
        tasks.get(name, dtype="int64")
    with pytest.raises(ValueError, match=r"dtype must be a floating-point dtype .*'cuda'"):
        tasks.get(name, dtype="cuda")
    with pytest.raises(ValueError, match="dtype must be a floating-point dtype"):
        tasks.get(name, dtype=torch.int32)
    with pytest.raises(TypeError, match=r"dtype must be a torch\.dtype or its name"):
        tasks.get(name, dtype=64)


def test_linreg_needs_more_rows_than_unknowns() -> None:
    # with n_train <= features the optimum in info is not unique and the Hessian singular
    with pytest.raises(ValueError, match=r"n_train must be an integer in \[11, inf\)"):
        tasks.linreg(n_train=10)
    assert tasks.linreg(n_train=11, features=10).info["condition_number"] > 0


# ---------------------------------------------------------------------------- test splits
def _same(a: torch.utils.data.TensorDataset, b: torch.utils.data.TensorDataset) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors, strict=True))


def test_linreg_test_split_is_extra_rows_that_change_nothing_else() -> None:
    task = tasks.linreg(seed=2, dtype=torch.float64)
    none = tasks.linreg(seed=2, dtype=torch.float64, n_test=0)
    assert none.test is None
    assert "optimal_test_loss" not in none.info
    assert _same(task.train, none.train)
    assert _same(task.val, none.val)
    assert task.info["optimum_bias"] == none.info["optimum_bias"]
    xt, yt = task.test.tensors
    assert xt.shape == (250, 10)
    assert yt.shape == (250, 1)
    # the same distribution: the optimum does about as well there as on validation
    w, b = task.info["optimum_weight"], task.info["optimum_bias"]
    mse = torch.mean((xt @ w + b - yt[:, 0]) ** 2).item()
    assert mse == pytest.approx(task.info["optimal_test_loss"], rel=1e-12)
    assert 0.15 < mse < 0.4  # noise sigma 0.5: 0.25 plus the estimation error
    # standardized with the training statistics, like validation
    std = tasks.linreg(seed=2, standardize=True, dtype=torch.float64)
    assert std.test.tensors[0].std(0).max() < 1.3


def test_digits_test_split_is_opt_in_and_keeps_validation() -> None:
    plain = tasks.digits(seed=1)
    assert plain.test is None
    held = tasks.digits(seed=1, test_fraction=0.1)
    # validation is the same images (standardized with the smaller training set's statistics)
    assert torch.equal(held.val.tensors[1], plain.val.tensors[1])
    raw_held = held.val.tensors[0] * held.info["std"] + held.info["mean"]
    raw_plain = plain.val.tensors[0] * plain.info["std"] + plain.info["mean"]
    assert torch.allclose(raw_held, raw_plain, atol=1e-4)
    n = len(held.train) + len(held.val) + len(held.test)
    assert n == 1797
    assert len(held.test) == 179
    counts = torch.bincount(held.test.tensors[1], minlength=10)
    assert counts.min() >= 17  # stratified: about 10% of every class

    # no image is in two splits: compare the (unstandardized) rows as sets
    def rows(ds: torch.utils.data.TensorDataset) -> set[tuple[float, ...]]:
        x = ds.tensors[0] * held.info["std"] + held.info["mean"]
        return {tuple(r) for r in x.round().tolist()}

    assert not rows(held.test) & rows(held.train)


def test_charlm_test_split_is_the_text_after_each_files_share() -> None:
    task = tasks.charlm(seed=0, context=8, max_chars=30_000)
    none = tasks.charlm(seed=0, context=8, max_chars=30_000, test_chars=0)
    assert none.test is None
    assert none.info["test_chars"] == 0
    assert _same(task.train, none.train)
    assert _same(task.val, none.val)
    assert task.info["test_chars"] == task.info["val_chars"]
    # the test text starts where the first file's share ends
    files = task.info["files"]
    share = -(-30_000 // len(files))
    text = Path(sysconfig.get_paths()["stdlib"], files[0]).read_text()[share : share + 100]
    vocab = task.info["vocab"]
    x = task.test.tensors[0]
    decoded = "".join(vocab[i] if i < len(vocab) else "\0" for i in x[:100, 0].tolist())
    assert decoded == "".join(c if c in vocab else "\0" for c in text)
    exact = tasks.charlm(seed=0, context=8, max_chars=30_000, test_chars=5_000)
    assert exact.info["test_chars"] == 5_000
    assert len(exact.test) == 5_000 - 8
    with pytest.raises(ValueError, match="test_chars=10000000 is more than"):
        tasks.charlm(max_chars=30_000, test_chars=10_000_000)


def test_digits_fractions_leaving_too_few_training_images_name_both_fractions() -> None:
    with pytest.raises(ValueError, match="val_fraction") as info:
        tasks.digits(val_fraction=0.6, test_fraction=0.5)
    msg = str(info.value)
    assert msg.startswith(
        f"val_fraction + test_fraction must leave at least {tasks.MIN_PER_CLASS} training"
    )
    assert "-" not in msg.split(";", maxsplit=1)[0], msg  # no negative image count


def test_check_arguments_checks_a_built_in_task_without_building_it() -> None:
    tasks._check_arguments("digits", hidden=8, val_fraction=0.3)
    with pytest.raises(ValueError, match="n_train must be an integer"):
        tasks._check_arguments("linreg", n_train=0)
    with pytest.raises(ValueError, match="max_chars"):
        tasks._check_arguments("charlm", max_chars=10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_trian'"):
        tasks._check_arguments("linreg", n_trian=5)
