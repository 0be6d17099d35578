"""Built-in tasks: small real problems with data that ships offline.

Each task is a function returning a :class:`Task`: a freshly initialized model, train and
validation data as ``TensorDataset`` (so a training loop can run batch, mini-batch or
stochastic gradient descent over them), a held-out ``test`` split where the task has one,
a loss function, metrics and a description. Every task takes a ``seed`` and is
deterministic given it; building one never touches the global random number generators.

The test splits come from data the train and validation splits do not use, so adding them
changed no existing split: ``linreg`` generates 250 more rows after the ones it always drew,
``charlm`` reads the text that follows the part each file contributes, and ``digits``
(whose every image is already in train or validation) holds one out only when asked,
``test_fraction > 0``.

==========  ==================================================  ============================
name        data, model                                         a typical good result
==========  ==================================================  ============================
``digits``  scikit-learn 8×8 digits (1,438 train / 359 val,     val accuracy 0.98–0.99,
            64 standardized features, 10 classes); MLP           val loss 0.02–0.12
``linreg``  synthetic linear regression, 10 features scaled     reaches ``optimal_val_loss``
            1..1000 (condition number ≈ 10⁶); linear model      ≈ 0.25–0.29 (noise σ = 0.5)
``charlm``  characters of CPython's own standard library;       val ≈ 2.7 bits per char
            embedding + MLP over the previous 32 characters
==========  ==================================================  ============================

The results were measured with AdamW and a cosine schedule (see each task's docstring for
the exact budget). Use :func:`get` to build a task by name, as configs and the CLI do.

Example:
    >>> from bergab import tasks
    >>> task = tasks.get("linreg", seed=0)
    >>> task.name, len(task.train), len(task.val), len(task.test)
    ('linreg', 1000, 250, 250)
    >>> "digits" in tasks.names()
    True
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from bergab._validate import check_float_dtype, check_int, check_real, require

__all__ = [
    "CHARLM_FILES",
    "CHARLM_VOCAB",
    "Task",
    "accuracy",
    "bits_per_char",
    "charlm",
    "digits",
    "get",
    "linreg",
    "names",
]

Metric = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass
class Task:
    """A ready-to-train problem.

    Attributes:
        model: a freshly initialized ``torch.nn.Module``.
        train: training data, a ``TensorDataset`` of ``(inputs, targets)``.
        val: validation data, a ``TensorDataset`` of ``(inputs, targets)``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor`` (mean over the batch).
        metrics: name -> ``fn(outputs, targets) -> float``, evaluated on whole batches.
        name: the name :func:`get` knows the task by.
        description: one paragraph: data, model, size, a typical good result.
        batch_size: a mini-batch size that trains this task well.
        info: task-specific extras (e.g. the exact optimum of ``linreg``).
        test: held-out test data, a ``TensorDataset`` of ``(inputs, targets)`` that
            neither training nor validation (early stopping, lr choice) ever sees, for
            one final evaluation; ``None`` when the task has none. A run evaluates it at
            the end when it is not ``None``.

    Example:
        >>> task = linreg(seed=1)
        >>> x, y = task.train[:4]
        >>> task.loss_fn(task.model(x), y).ndim
        0
    """

    model: nn.Module
    train: TensorDataset
    val: TensorDataset
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metrics: dict[str, Metric]
    name: str
    description: str
    batch_size: int = 64
    info: dict[str, Any] = field(default_factory=dict)
    test: Any = None


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global CPU generator inside the block and restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit equals the target class.

    Args:
        outputs: logits of shape ``(n, classes)``.
        targets: class indices of shape ``(n,)``.

    Returns:
        The accuracy in ``[0, 1]``.

    Example:
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        0.5
    """
    _check_class_targets(outputs, targets)
    return float((outputs.argmax(dim=-1) == targets).double().mean())


def _check_class_targets(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    """``targets`` holds one class index per row of logits: shape ``outputs.shape[:-1]``
    (broadcasting a mismatch would compare the wrong rows, or fail deep inside torch)."""
    if not (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor)):
        raise TypeError(
            f"outputs and targets must be tensors, got {type(outputs).__name__} and "
            f"{type(targets).__name__}"
        )
    if outputs.ndim < 1 or targets.shape != outputs.shape[:-1]:
        raise ValueError(
            f"targets must hold one class index per row of outputs: shape "
            f"{tuple(outputs.shape[:-1])} for outputs of shape {tuple(outputs.shape)}, got "
            f"{tuple(targets.shape)}"
        )


def bits_per_char(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Cross-entropy in bits per character: ``CE(outputs, targets) / ln 2``.

    Args:
        outputs: logits of shape ``(..., vocab)``.
        targets: character indices of shape ``(...)``.

    Returns:
        The mean number of bits per predicted character.

    Example:
        >>> bits_per_char(torch.zeros(3, 4), torch.tensor([0, 1, 2]))  # uniform over 4: 2 bits
        2.0
    """
    _check_class_targets(outputs, targets)
    ce = nn.functional.cross_entropy(
        outputs.reshape(-1, outputs.shape[-1]).double(), targets.reshape(-1)
    )
    return float(ce) / math.log(2.0)


def _check_seed(seed: Any) -> int:
    return check_int("seed", seed, low=0)


# --------------------------------------------------------------------------- digits


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


#: Every split of ``digits`` keeps at least this many images of each class: fewer leaves a
#: split that measures (or learns) almost nothing, e.g. ``val_fraction=0.999`` once left 10
#: training images.
MIN_PER_CLASS = 5


def _check_digits_fractions(val_fraction: Any, test_fraction: Any, counts: list[int]) -> None:
    """``val_fraction`` in (0, 1), ``test_fraction`` in [0, 1), and every split (train,
    validation, and test when asked for) with at least :data:`MIN_PER_CLASS` images of
    each class, given the images per class ``counts``; the error names the fraction."""
    smallest = min(counts)
    for c, n in enumerate(counts):
        n_val, n_test = round(val_fraction * n), round(test_fraction * n)
        splits = [("validation", n_val, "val_fraction"), ("training", n - n_val - n_test, "")]
        if test_fraction > 0:
            splits.append(("test", n_test, "test_fraction"))
        for split, size, arg in splits:
            if size >= MIN_PER_CLASS:
                continue
            share = MIN_PER_CLASS / smallest
            got = f"got val_fraction={val_fraction:g}, test_fraction={test_fraction:g}"
            if not arg:  # the training split: what is left by both fractions
                argument = "val_fraction + test_fraction" if test_fraction else "val_fraction"
                raise ValueError(
                    f"{argument} must leave at least {MIN_PER_CLASS} training images of each "
                    f"digit, so at most about {1.0 - share:.3f} here; it leaves {max(size, 0)} "
                    f"of digit {c} (of {n}); {got}"
                )
            other = test_fraction if arg == "val_fraction" else val_fraction
            high = max(1.0 - other - share, share)
            raise ValueError(
                f"{arg} leaves {size} {split} images of digit {c} (of {n}); every split needs "
                f"at least {MIN_PER_CLASS} per class, so {arg} must be in about "
                f"[{share:.3f}, {high:.3f}] here; {got}"
            )


def _stratified_split(
    y_all: torch.Tensor, val_fraction: float, test_fraction: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Indices of the training, validation and (``test_fraction > 0``) test images: the same
    fraction of every class goes to each. The random draws do not depend on
    ``test_fraction``: the test images are the last of each class's shuffled training
    images, taken out of the shuffled training order afterwards, so validation is the same
    images in the same order with or without a test split, and ``test_fraction=0`` is the
    split digits always had."""
    val_idx: list[torch.Tensor] = []
    train_idx: list[torch.Tensor] = []
    test_idx: list[torch.Tensor] = []
    for c in range(10):
        idx = torch.nonzero(y_all == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val, n_test = round(val_fraction * len(idx)), round(test_fraction * len(idx))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
        test_idx.append(idx[len(idx) - n_test :])
    tr = torch.cat(train_idx)
    va = torch.cat(val_idx)
    tr = tr[torch.randperm(len(tr), generator=gen)]
    va = va[torch.randperm(len(va), generator=gen)]
    if test_fraction == 0:
        return tr, va, None
    held = torch.isin(tr, torch.cat(test_idx))
    return tr[~held], va, tr[held]


def _digits_args(
    seed: Any,
    hidden: Any,
    depth: Any,
    dropout: Any,
    val_fraction: Any,
    test_fraction: Any,
    dtype: Any,
) -> tuple[int, int, int, float, float, float, torch.dtype]:
    """:func:`digits`' argument checks that need no data."""
    return (
        _check_seed(seed),
        check_int("hidden", hidden, low=1),
        check_int("depth", depth, low=1),
        check_real("dropout", dropout, low=0.0, high=1.0, high_open=True),
        check_real("val_fraction", val_fraction, low=0.0, high=1.0, low_open=True, high_open=True),
        check_real("test_fraction", test_fraction, low=0.0, high=1.0, high_open=True),
        check_float_dtype("dtype", dtype),
    )


def digits(
    seed: int = 0,
    hidden: int = 64,
    *,
    depth: int = 1,
    dropout: float = 0.0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    dtype: torch.dtype | str = torch.float32,
) -> Task:
    """scikit-learn's 8×8 handwritten digits with an MLP classifier.

    1,797 images of 64 pixels, 10 classes; a stratified split by ``seed`` gives 1,438
    training and 359 validation images (with the default ``val_fraction``). Features are
    standardized with the training set's mean and standard deviation. The model is an MLP
    ``64 → hidden (× depth) → 10`` with ReLU; the loss is cross-entropy on the logits and
    the metric is accuracy.

    Every image is in the training or the validation split, so there is no test split
    unless ``test_fraction > 0`` holds one out (taken from the training images of each
    class: the validation images stay the same, the training set shrinks).

    Typical good result (measured, seeds 0–2): AdamW at lr 1e-2 with a cosine schedule,
    batch 64, 1,000 steps (45 epochs, about 1 s on one CPU core) reaches val accuracy
    0.98–0.99 and val loss 0.02–0.12 (the spread comes from the split).

    Needs scikit-learn (``pip install 'bergab[tasks]'``).

    Args:
        seed: seeds the split and the model's initialization.
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        dropout: dropout probability after each hidden layer (0 disables it).
        val_fraction: fraction of the images held out for validation, in (0, 1), leaving
            at least :data:`MIN_PER_CLASS` images of every class in each split (about
            0.03 to 0.97).
        test_fraction: fraction of the images held out as the test split, in [0, 1);
            0 (the default): no test split.
        dtype: floating dtype of the model and the inputs: a ``torch.dtype`` or its name
            (``"float32"``, ``"float64"``, ``"bfloat16"``, ``"float16"``).

    Returns:
        The :class:`Task` (``info`` holds ``mean`` and ``std`` of the features).

    Example:
        >>> task = digits(seed=0)
        >>> len(task.train), len(task.val), task.train.tensors[0].shape[1], task.test
        (1438, 359, 64, None)
        >>> task = digits(seed=0, test_fraction=0.1, dtype="float64")
        >>> len(task.train), len(task.val), len(task.test), task.val.tensors[0].dtype
        (1259, 359, 179, torch.float64)
    """
    seed, hidden, depth, dropout, val_fraction, test_fraction, dtype = _digits_args(
        seed, hidden, depth, dropout, val_fraction, test_fraction, dtype
    )
    datasets = require("sklearn.datasets", "tasks")
    data = datasets.load_digits()
    x_all = torch.as_tensor(data.data, dtype=torch.float64)
    y_all = torch.as_tensor(data.target, dtype=torch.long)
    counts = torch.bincount(y_all, minlength=10).tolist()
    _check_digits_fractions(val_fraction, test_fraction, counts)
    tr, va, te = _stratified_split(
        y_all, val_fraction, test_fraction, torch.Generator().manual_seed(seed)
    )

    mean = x_all[tr].mean(dim=0)
    std = x_all[tr].std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant border pixels
    x_std = ((x_all - mean) / std).to(dtype)

    with _seeded(seed):
        model = _mlp([64] + [hidden] * depth + [10], dropout).to(dtype)
    test_note = "" if te is None else f" / {len(te)} test"
    return Task(
        model=model,
        train=TensorDataset(x_std[tr], y_all[tr]),
        val=TensorDataset(x_std[va], y_all[va]),
        test=None if te is None else TensorDataset(x_std[te], y_all[te]),
        loss_fn=nn.functional.cross_entropy,
        metrics={"accuracy": accuracy},
        name="digits",
        description=(
            f"scikit-learn 8x8 digits: {len(tr)} train / {len(va)} val{test_note} images, 64 "
            f"standardized features, 10 classes; MLP 64-{'-'.join([str(hidden)] * depth)}-10 "
            "with cross-entropy. Typical good result: val accuracy 0.98-0.99, val loss "
            "0.02-0.12 (AdamW lr 1e-2, cosine, batch 64, 1000 steps)."
        ),
        batch_size=64,
        info={"mean": mean, "std": std},
    )


# --------------------------------------------------------------------------- linreg


def _linreg_args(
    seed: Any,
    standardize: Any,
    n_train: Any,
    n_val: Any,
    n_test: Any,
    features: Any,
    max_scale: Any,
    noise: Any,
    dtype: Any,
) -> tuple[int, bool, int, int, int, int, float, float, torch.dtype]:
    """:func:`linreg`'s argument checks (they need no data)."""
    seed = _check_seed(seed)
    features = check_int("features", features, low=1)
    # more rows than unknowns (features + bias), so the optimum in info is the unique one
    n_train = check_int("n_train", n_train, low=features + 1)
    n_val = check_int("n_val", n_val, low=1)
    n_test = check_int("n_test", n_test, low=0)
    dtype = check_float_dtype("dtype", dtype)
    max_scale = check_real("max_scale", max_scale, low=1.0)
    noise = check_real("noise", noise, low=0.0)
    if not isinstance(standardize, bool):
        raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
    return seed, standardize, n_train, n_val, n_test, features, max_scale, noise, dtype


def linreg(
    seed: int = 0,
    standardize: bool = False,
    *,
    n_train: int = 1000,
    n_val: int = 250,
    n_test: int = 250,
    features: int = 10,
    max_scale: float = 1000.0,
    noise: float = 0.5,
    dtype: torch.dtype | str = torch.float32,
) -> Task:
    """A convex least-squares regression with deliberately ill-scaled features.

    Feature ``j`` is standard normal times ``s_j``, with ``s_j`` log-spaced from 1 to
    ``max_scale``; targets are ``y = X w* + 3 + ε`` with ``w*_j ~ N(0, 1) / s_j`` (every
    feature contributes about equally) and ``ε ~ N(0, noise²)``. The model is
    ``nn.Linear(features, 1)`` and the loss is the mean squared error

    .. math:: L(w, b) = \\frac{1}{n} \\lVert X w + b - y \\rVert^2,

    whose Hessian ``2 XᵀX / n`` has a condition number of about ``max_scale²`` (≈ 10⁶ by
    default): no single learning rate suits every direction, so plain gradient descent
    crawls. With ``standardize=True`` the features are centred and scaled by the training
    set's statistics and the condition number drops to about 1: that is why feature
    scaling matters. The problem stays convex, so its exact optimum is known.

    ``info`` holds the exact least-squares solution on the training set computed in float64
    (``optimum_weight``, ``optimum_bias``), the losses there (``optimal_train_loss``,
    ``optimal_val_loss``, ``optimal_test_loss`` with a test split), and
    ``condition_number`` of the Hessian.

    The test rows are drawn from the same distribution after every draw of the training
    and validation rows, so they leave those (and the model) exactly as they were without
    a test split.

    Typical good result (measured): with ``standardize=True``, full-batch gradient descent
    at lr 0.5 reaches the optimal train loss to 1e-6 relative in 30 steps. Without
    scaling, plain gradient descent diverges above lr ≈ 2e-6 and is still ~1000× above the
    optimum after 100 steps at 1e-6, while AdamW (per-coordinate step sizes) with a cosine
    schedule peaking anywhere in 0.05–0.4 reaches the optimal val loss within 1% in 500
    steps of batch 100 (seeds 0–1).

    Args:
        seed: seeds the data and the model's initialization.
        standardize: centre and scale the features with the training statistics.
        n_train: training examples, more than ``features`` (else the least-squares optimum
            is not unique and the Hessian is singular).
        n_val: validation examples.
        n_test: test examples (``Task.test``); 0: no test split.
        features: number of features.
        max_scale: scale of the largest feature (the smallest has scale 1).
        noise: standard deviation of the target noise.
        dtype: floating dtype of the model and data (float64 for exact tests): a
            ``torch.dtype`` or its name (``"float32"``, ``"float64"``...).

    Returns:
        The :class:`Task`.

    Example:
        >>> task = linreg(seed=0, dtype=torch.float64)
        >>> f"{task.info['condition_number']:.1e}"
        '1.0e+06'
        >>> x, y = task.train.tensors
        >>> w, b = task.info["optimum_weight"], task.info["optimum_bias"]
        >>> loss = torch.mean((x @ w + b - y.squeeze(1)) ** 2).item()
        >>> abs(loss - task.info["optimal_train_loss"]) < 1e-12
        True
    """
    seed, standardize, n_train, n_val, n_test, features, max_scale, noise, dtype = _linreg_args(
        seed, standardize, n_train, n_val, n_test, features, max_scale, noise, dtype
    )

    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    scales = torch.logspace(0.0, math.log10(max_scale), features, dtype=torch.float64)
    x = torch.randn(n, features, generator=gen, dtype=torch.float64) * scales
    w_true = torch.randn(features, generator=gen, dtype=torch.float64) / scales
    y = x @ w_true + 3.0 + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    x_tr, x_va, y_tr, y_va = x[:n_train], x[n_train:], y[:n_train], y[n_train:]
    # the test rows: drawn after everything above, so train, val and w* do not change
    x_te = torch.randn(n_test, features, generator=gen, dtype=torch.float64) * scales
    y_te = x_te @ w_true + 3.0 + noise * torch.randn(n_test, generator=gen, dtype=torch.float64)
    if standardize:
        mean = x_tr.mean(dim=0)
        std = x_tr.std(dim=0)
        x_tr = (x_tr - mean) / std
        x_va = (x_va - mean) / std
        x_te = (x_te - mean) / std

    # the exact optimum of the (convex) training loss, in float64
    design = torch.cat([x_tr, torch.ones(n_train, 1, dtype=torch.float64)], dim=1)
    sol = torch.linalg.lstsq(design, y_tr.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    w_opt, b_opt = sol[:-1], float(sol[-1])
    opt_train = float(torch.mean((x_tr @ w_opt + b_opt - y_tr) ** 2))
    opt_val = float(torch.mean((x_va @ w_opt + b_opt - y_va) ** 2))
    opt_test = float(torch.mean((x_te @ w_opt + b_opt - y_te) ** 2)) if n_test else math.nan
    eig = torch.linalg.eigvalsh(2.0 * design.T @ design / n_train)
    cond = float(eig[-1] / eig[0])

    with _seeded(seed):
        model = nn.Linear(features, 1).to(dtype)
    scaled = "standardized" if standardize else f"scaled 1..{max_scale:g} (unscaled)"
    return Task(
        model=model,
        train=TensorDataset(x_tr.to(dtype), y_tr.unsqueeze(1).to(dtype)),
        val=TensorDataset(x_va.to(dtype), y_va.unsqueeze(1).to(dtype)),
        test=TensorDataset(x_te.to(dtype), y_te.unsqueeze(1).to(dtype)) if n_test else None,
        loss_fn=nn.functional.mse_loss,
        metrics={"mse": _mse},
        name="linreg",
        description=(
            f"convex linear regression: {n_train} train / {n_val} val rows, {features} "
            f"features {scaled}, Hessian condition number {cond:.1e}; nn.Linear with MSE. "
            f"Optimal val loss {opt_val:.4f} (train {opt_train:.4f})."
        ),
        batch_size=n_train if standardize else 100,
        info={
            "optimum_weight": w_opt,
            "optimum_bias": b_opt,
            "optimal_train_loss": opt_train,
            "optimal_val_loss": opt_val,
            **({"optimal_test_loss": opt_test} if n_test else {}),
            "condition_number": cond,
            "scales": scales,
        },
    )


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(torch.mean((outputs.double() - targets.double()) ** 2))


# --------------------------------------------------------------------------- charlm

#: The standard-library modules ``charlm`` reads, in this order (those that exist).
CHARLM_FILES: tuple[str, ...] = (
    "argparse.py",
    "calendar.py",
    "configparser.py",
    "contextlib.py",
    "dataclasses.py",
    "difflib.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "pprint.py",
    "random.py",
    "shutil.py",
    "string.py",
    "textwrap.py",
)

#: The characters ``charlm`` models: newline and printable ASCII; index ``len`` is "other".
CHARLM_VOCAB: str = "\n" + "".join(chr(c) for c in range(32, 127))


class _CharMLP(nn.Module):
    """Embedding of each context character, concatenated, then an MLP to next-char logits."""

    def __init__(self, vocab: int, context: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.mlp = nn.Sequential(
            nn.Linear(context * embed, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, vocab),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(x).flatten(1))


def _stdlib_text(max_chars: int, test_chars: int | None) -> tuple[str, str, str, list[str]]:
    """The train, val and test text. Each file contributes an equal share of what is left of
    ``max_chars``: its first 90% to train, the last 10% to val. The test text is read from
    what follows each file's share (text train and val never use), again in equal shares,
    up to ``test_chars`` characters (``None``: as many as val has, or what is left)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    present = [name for name in CHARLM_FILES if (root / name).is_file()]
    train_parts: list[str] = []
    val_parts: list[str] = []
    unread: list[str] = []
    total = 0
    for i, name in enumerate(present):
        # an equal share of what is left for each remaining file, so every file is seen
        share = -(-(max_chars - total) // (len(present) - i))
        full = (root / name).read_text(encoding="utf-8", errors="replace")
        text = full[:share]
        cut = int(0.9 * len(text))
        train_parts.append(text[:cut])
        val_parts.append(text[cut:])
        unread.append(full[len(text) :])
        total += len(text)
    if total < min(max_chars, 20_000):
        raise FileNotFoundError(
            f"charlm needs the Python standard library's .py sources in {root}; found only "
            f"{total} characters"
        )
    val = "".join(val_parts)
    want = len(val) if test_chars is None else test_chars
    test_parts: list[str] = []
    taken = 0
    for i, rest in enumerate(unread):
        share = -(-(want - taken) // (len(unread) - i))
        test_parts.append(rest[:share])
        taken += len(test_parts[-1])
    test = "".join(test_parts)
    if test_chars is not None and len(test) < test_chars:
        raise ValueError(
            f"test_chars={test_chars} is more than the {len(test)} characters the standard "
            f"library files have left after max_chars={max_chars}; lower test_chars or "
            "max_chars, or set test_chars=0 for no test split"
        )
    return "".join(train_parts), val, test, present


def _encode(text: str) -> torch.Tensor:
    table = {ch: i for i, ch in enumerate(CHARLM_VOCAB)}
    other = len(CHARLM_VOCAB)
    return torch.tensor([table.get(ch, other) for ch in text], dtype=torch.long)


def _windows(codes: torch.Tensor, context: int) -> TensorDataset:
    # inputs are overlapping windows (a strided view, no copy); target = the next char
    x = codes[:-1].unfold(0, context, 1)
    y = codes[context:]
    return TensorDataset(x, y)


def _charlm_args(
    seed: Any, context: Any, embed: Any, hidden: Any, max_chars: Any, test_chars: Any
) -> tuple[int, int, int, int, int, int | None]:
    """:func:`charlm`'s argument checks that need no text."""
    return (
        _check_seed(seed),
        check_int("context", context, low=1),
        check_int("embed", embed, low=1),
        check_int("hidden", hidden, low=1),
        check_int("max_chars", max_chars, low=1000),
        None if test_chars is None else check_int("test_chars", test_chars, low=0),
    )


def charlm(
    seed: int = 0,
    context: int = 32,
    *,
    embed: int = 16,
    hidden: int = 256,
    max_chars: int = 200_000,
    test_chars: int | None = None,
) -> Task:
    """A small character-level language model on the Python standard library's own source.

    The text is the first ``max_chars`` characters (200 KB by default) of the stdlib
    modules in :data:`CHARLM_FILES` (those present, read in that order from
    ``sysconfig.get_paths()["stdlib"]``); the first 90% of each file goes to training and
    the last 10% to validation. Characters outside :data:`CHARLM_VOCAB` map to one "other"
    symbol (97 symbols in all). Each example is ``context`` characters and the target is
    the next one: ~180,000 training and ~20,000 validation examples (the inputs are
    overlapping windows that share memory). The test split is the text that follows each
    file's share (never read for train or val), as long as the validation text by
    default: ~20,000 more examples. The model embeds each context character
    (``embed`` dims), concatenates them and applies ``Linear → LayerNorm → GELU → Linear``
    to next-character logits (~150k parameters by default); the loss is cross-entropy
    and the metric bits per character. The text depends on the Python version.

    Typical good result (measured on Python 3.11, seeds 0–1): AdamW at lr 1e-2 with a
    cosine schedule, batch 128, 2,000 steps (1.4 epochs, about 12 s on an idle CPU core)
    reaches 2.68 bits per character on validation (lr 3e-3: 2.77; uniform guessing: 6.6;
    ``gzip -9`` of the whole text: 2.2).

    Builds in well under 2 seconds.

    Args:
        seed: seeds the model's initialization (the text itself is fixed).
        context: number of previous characters the model sees.
        embed: embedding size per character.
        hidden: width of the hidden layer.
        max_chars: characters of source read in all for train and val.
        test_chars: characters of the test split, read after each file's share; ``None``
            (the default): as many as the validation text, fewer if the files have less
            left (none when nothing is left: from about 1.4 million ``max_chars``, when
            every file is read whole); 0: no test split.

    Returns:
        The :class:`Task` (``info`` holds ``vocab``, ``files``, ``train_chars``,
        ``val_chars``, ``test_chars``).

    Example:
        >>> task = charlm(seed=0, max_chars=50_000)
        >>> x, y = task.train[:2]
        >>> x.shape, task.model(x).shape
        (torch.Size([2, 32]), torch.Size([2, 97]))
    """
    seed, context, embed, hidden, max_chars, test_chars = _charlm_args(
        seed, context, embed, hidden, max_chars, test_chars
    )
    train_text, val_text, test_text, files = _stdlib_text(max_chars, test_chars)
    if len(val_text) <= context:
        raise ValueError(f"context must be shorter than the validation text; got {context}")
    if test_chars and len(test_text) <= context:
        raise ValueError(
            f"test_chars must be more than context = {context} (one example needs "
            f"context + 1 characters); got {test_chars}"
        )
    test = _windows(_encode(test_text), context) if len(test_text) > context else None
    vocab = len(CHARLM_VOCAB) + 1
    with _seeded(seed):
        model = _CharMLP(vocab, context, embed, hidden)
    train = _windows(_encode(train_text), context)
    val = _windows(_encode(val_text), context)
    return Task(
        model=model,
        train=train,
        val=val,
        test=test,
        loss_fn=nn.functional.cross_entropy,
        metrics={"bits_per_char": bits_per_char},
        name="charlm",
        description=(
            f"character-level LM on {len(files)} Python stdlib modules: {len(train)} train / "
            f"{len(val)} val windows of {context} chars, vocab {vocab}; embedding {embed} + "
            f"MLP {hidden}. Typical good result: ~2.7 val bits/char (AdamW lr 1e-2, cosine, "
            "batch 128, 2000 steps)."
        ),
        batch_size=128,
        info={
            "vocab": CHARLM_VOCAB,
            "files": files,
            "train_chars": len(train_text),
            "val_chars": len(val_text),
            "test_chars": len(test_text) if test is not None else 0,
        },
    )


# --------------------------------------------------------------------------- lookup

_TASKS: dict[str, Callable[..., Task]] = {
    "charlm": charlm,
    "digits": digits,
    "linreg": linreg,
}


_ARG_CHECKS: dict[str, Callable[..., Any]] = {
    "charlm": _charlm_args,
    "digits": _digits_args,
    "linreg": _linreg_args,
}


def _check_arguments(name: str, **kwargs: Any) -> None:
    """Check a built-in task's arguments as :func:`get` would, without loading its data.

    The checks that need the data (``digits``' split sizes, ``charlm``'s ``context``
    against the text) still run when the task is built.

    Example:
        >>> _check_arguments("linreg", n_train=0)
        Traceback (most recent call last):
        ...
        ValueError: n_train must be an integer in [11, inf), got 0
    """
    key = _task_key(name)
    bound = inspect.signature(_TASKS[key]).bind(**kwargs)
    bound.apply_defaults()
    _ARG_CHECKS[key](**bound.arguments)


def names() -> list[str]:
    """The task names :func:`get` knows, sorted.

    Example:
        >>> names()
        ['charlm', 'digits', 'linreg']
    """
    return sorted(_TASKS)


def get(name: str, **kwargs: Any) -> Task:
    """Build the task called ``name`` with keyword arguments for its function.

    Args:
        name: one of :func:`names` (case-insensitive).
        **kwargs: passed to the task function (``seed``, ``standardize``, ...).

    Returns:
        The :class:`Task`.

    Example:
        >>> get("linreg", seed=3, standardize=True).info["condition_number"] < 2
        True
    """
    return _TASKS[_task_key(name)](**kwargs)


def _task_key(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, names()))}; got {name!r}")
    return key
