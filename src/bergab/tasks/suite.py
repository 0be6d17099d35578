"""The learning-rate suite: 32 small tasks for judging how a learning rate is chosen.

Each :class:`SuiteTask` is a problem (a :class:`~bergab.tasks.Task` built by seed) plus
the training recipe it is scored with: an optimizer (AdamW with weight decay 0.01, or SGD
with momentum 0.9), a number of optimizer steps and a batch size. The suite spans what
makes a learning rate hard to choose: 100 to 50,000 training examples; batches of 8 to
256; classification, regression and language modelling; MLPs, CNNs with BatchNorm,
recurrent networks and small transformers; standardized and unscaled features;
small data that overfits; SGD with momentum as well as AdamW.

The first 16 tasks were split **once, before anything was measured on them**, into a
``"tuning"`` half (rules may be designed on it; it includes the three built-in tasks, on
which earlier rules were designed) and a ``"held-out"`` half (only ever reported). After
the held-out half had been run once (and so had been seen), 8 ``"fresh"`` tasks were
added, committed before anything ran on them, to judge the next design. Once that design
had been judged on them (and so they had been seen), 8 more tasks (``"fresh-2"``) were
added the same way, for the design after it: a benchmark runs them only when asked
(``--half fresh-2``), once a design is frozen. A task never moves between parts.
``benchmarks/lr_find_quality.py`` scores learning-rate choices on it.

Every run takes a second or a few on one CPU thread. Data ships offline: scikit-learn's
bundled datasets, synthetic data, and CPython's own standard library as text.

Example:
    >>> from bergab.tasks import suite
    >>> len(suite.SUITE), len(suite.tasks("tuning")), len(suite.tasks("held-out"))
    (32, 8, 8)
    >>> len(suite.tasks("fresh")), len(suite.tasks("fresh-2"))
    (8, 8)
    >>> t = suite.get("wine-sgd")
    >>> t.optimizer, t.batch_size, len(t.build(seed=0).train)
    ('momentum', 8, 142)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from bergab._validate import check_choice, require
from bergab.tasks import (
    Task,
    _encode,
    _mlp,
    _seeded,
    _stdlib_text,
    accuracy,
    charlm,
    digits,
    linreg,
)

__all__ = ["HALVES", "KEPT_ASIDE", "SUITE", "SuiteTask", "get", "names", "tasks"]

#: The parts of the suite: the tuning half, the held-out half, and ``"fresh"``: tasks
#: added after the held-out half had been seen once, kept aside to judge the next design;
#: ``"fresh-2"``: added after ``"fresh"`` had been seen, for the design after that.
HALVES = ("tuning", "held-out", "fresh", "fresh-2")
#: parts a benchmark leaves out unless asked for by name: run once, on a frozen design
KEPT_ASIDE = ("fresh-2",)

# every data split is drawn with this seed, so a task's seed changes the model's
# initialization (and the run's data order), not which examples it trains on; the three
# built-in tasks (digits-mlp, linreg-unscaled, charlm-mlp) keep their own behaviour, where
# the seed also draws digits' split and linreg's data
_DATA_SEED = 1234


@dataclass(frozen=True)
class SuiteTask:
    """A task of the suite and the recipe it is trained and scored with.

    Attributes:
        name: the task's name in the suite.
        half: ``"tuning"``, ``"held-out"``, ``"fresh"`` or ``"fresh-2"``.
        build: ``build(seed) -> Task``; the seed sets the model's initialization.
        optimizer: ``"adamw"`` (weight decay 0.01) or ``"momentum"`` (SGD, momentum 0.9),
            as :func:`bergab.optim.create` names them.
        steps: optimizer steps of one training run.
        batch_size: mini-batch size.
        tags: the properties the task stands for.

    Example:
        >>> get("moons-sgd").epochs()  # 300 steps of 8 over 100 examples
        24.0
    """

    name: str
    half: str
    build: Callable[[int], Task]
    optimizer: str
    steps: int
    batch_size: int
    tags: tuple[str, ...]

    def epochs(self) -> float:
        """How many passes over the training data one run makes."""
        return self.steps * self.batch_size / len(self.build(0).train)

    def optimizer_kwargs(self) -> dict[str, float]:
        """The optimizer's arguments besides the learning rate."""
        return {"weight_decay": 0.01} if self.optimizer == "adamw" else {"momentum": 0.9}


# --------------------------------------------------------------------------- data


def _split(n: int, val: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_DATA_SEED))
    return perm[val:], perm[:val]


def _standardize(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    mean, std = x[train].mean(0), x[train].std(0)
    return (x - mean) / torch.where(std > 0, std, torch.ones_like(std))


def _make(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    val: int,
    classify: bool,
    description: str,
) -> Task:
    tr, va = _split(len(x), val)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
        nn.functional.cross_entropy if classify else nn.functional.mse_loss
    )
    return Task(
        model=model,
        train=TensorDataset(x[tr], y[tr]),
        val=TensorDataset(x[va], y[va]),
        loss_fn=loss,
        metrics={"accuracy": accuracy} if classify else {},
        name=name,
        description=description,
    )


def _sklearn(loader: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = getattr(require("sklearn.datasets", "tasks"), loader)()
    return torch.as_tensor(data.data, dtype=torch.float32), torch.as_tensor(data.target)


def _digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _sklearn("load_digits")
    return (x / 16.0).reshape(-1, 1, 8, 8), y.long()


# --------------------------------------------------------------------------- models


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    """A 3×3 convolution, BatchNorm, ReLU, and 2×2 max pooling (halves the image)."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]


class _DigitCNN(nn.Module):
    """Two 3×3 convolutions with BatchNorm on 8×8 images, then a linear classifier."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_block(1, width),
            *_conv_block(width, 2 * width),
            nn.Flatten(),
            nn.Linear(2 * width * 4, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _RowRNN(nn.Module):
    """A recurrent network (``nn.GRU`` or ``nn.LSTM``) reading an image row by row; its
    last state classifies the image."""

    def __init__(self, cell: type[nn.Module], hidden: int) -> None:
        super().__init__()
        self.rnn = cell(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.reshape(-1, 8, 8))
        return self.head(out[:, -1])


class _CharRNN(nn.Module):
    """A character-level recurrent language model (``nn.GRU`` or ``nn.LSTM``) predicting
    every next character."""

    def __init__(self, vocab: int, cell: type[nn.Module], embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = cell(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out)


class _Transformer(nn.Module):
    """A small pre-norm transformer over a sequence of tokens or feature vectors.

    ``vocab``: token ids in, next-token logits at every position out (causal mask).
    ``features``: feature vectors in, logits of ``classes`` from the mean over positions.
    """

    def __init__(
        self,
        length: int,
        *,
        vocab: int | None = None,
        features: int | None = None,
        classes: int | None = None,
        width: int = 48,
        layers: int = 2,
    ) -> None:
        super().__init__()
        self.causal = vocab is not None
        self.inp = (
            nn.Embedding(vocab, width) if vocab is not None else nn.Linear(features or 1, width)
        )
        self.pos = nn.Parameter(torch.randn(length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab if vocab is not None else classes or 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.pos[: x.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if self.causal else None
        h = self.norm(self.blocks(h, mask=mask, is_causal=self.causal))
        return self.head(h if self.causal else h.mean(1))


def _sequence_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every position of ``(batch, length, vocab)`` logits."""
    return nn.functional.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


# --------------------------------------------------------------------------- tasks


def _digits_mlp(seed: int) -> Task:
    return digits(seed=seed)


def _linreg(seed: int) -> Task:
    return linreg(seed=seed)


def _charlm_mlp(seed: int) -> Task:
    return charlm(seed=seed, hidden=128, max_chars=50_000)


def _moons(seed: int) -> Task:
    from sklearn.datasets import make_moons

    x, y = make_moons(600, noise=0.3, random_state=_DATA_SEED)
    with _seeded(seed):
        model = _mlp([2, 64, 64, 2], 0.0)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    return _make("moons-sgd", model, xt, yt, 500, True, "two noisy moons, 100 training points, MLP")


def _digit_cnn(name: str) -> Callable[[int], Task]:
    def build(seed: int) -> Task:
        x, y = _digit_images()
        with _seeded(seed):
            model = _DigitCNN()
        return _make(name, model, x, y, 360, True, "8×8 digits, CNN with BatchNorm")

    return build


def _char_sequences(chars: int, length: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Non-overlapping windows of stdlib text: inputs, next-character targets, and how
    many windows are validation (taken from the validation text)."""
    train, val, _, _ = _stdlib_text(chars, 0)
    windows = []
    for text in (train, val):
        codes = _encode(text)
        n = (len(codes) - 1) // length
        windows.append(codes[: n * length + 1])
    xs, ys = [], []
    for codes in windows:
        n = (len(codes) - 1) // length
        xs.append(codes[: n * length].reshape(n, length))
        ys.append(codes[1 : n * length + 1].reshape(n, length))
    return torch.cat(xs), torch.cat(ys), len(xs[0]), len(xs[1])


def _char_task(name: str, make_model: Callable[[], nn.Module], seed: int) -> Task:
    x, y, n_train, _n_val = _char_sequences(44_000, 32)
    with _seeded(seed):
        model = make_model()
    return Task(
        model=model,
        train=TensorDataset(x[:n_train], y[:n_train]),
        val=TensorDataset(x[n_train:], y[n_train:]),
        loss_fn=_sequence_ce,
        metrics={},
        name=name,
        description="next character of stdlib source, every position of 32",
    )


def _charlm_gru(seed: int) -> Task:
    return _char_task("charlm-gru", lambda: _CharRNN(97, nn.GRU, 32, 96), seed)


def _charlm_transformer(seed: int) -> Task:
    return _char_task("charlm-transformer", lambda: _Transformer(32, vocab=97), seed)


def _synthetic_classes(seed: int) -> Task:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        55_000, 20, n_informative=10, n_classes=4, class_sep=0.8, random_state=_DATA_SEED
    )
    xt = torch.as_tensor(x, dtype=torch.float32)
    with _seeded(seed):
        model = _mlp([20, 128, 128, 4], 0.0)
    return _make(
        "synth-cls-50k", model, xt, torch.as_tensor(y), 5_000, True,
        "50,000 synthetic examples in 4 classes, MLP",
    )  # fmt: skip


def _digits_transformer(seed: int) -> Task:
    x, y = _digit_images()
    with _seeded(seed):
        model = _Transformer(8, features=8, classes=10, width=32)
    return _make(
        "digits-transformer", model, x.reshape(-1, 8, 8), y, 360, True,
        "8×8 digits as 8 rows of 8 pixels, transformer encoder",
    )  # fmt: skip


def _diabetes(seed: int) -> Task:
    x, y = _sklearn("load_diabetes")
    tr, _ = _split(len(x), 89)
    x = _standardize(x, tr)
    y = ((y - y[tr].mean()) / y[tr].std()).float().unsqueeze(1)
    with _seeded(seed):
        model = _mlp([10, 64, 64, 1], 0.0)
    return _make("diabetes-mlp", model, x, y, 89, False, "diabetes progression, 353 rows, MLP")


def _cancer(seed: int) -> Task:
    x, y = _sklearn("load_breast_cancer")  # raw features: 0.001 to 4,000
    with _seeded(seed):
        model = nn.Linear(30, 2)
    return _make(
        "cancer-logreg", model, x, y.long(), 114, True,
        "breast cancer, 30 unscaled features, logistic regression",
    )  # fmt: skip


def _wine(seed: int) -> Task:
    x, y = _sklearn("load_wine")
    tr, _ = _split(len(x), 36)
    with _seeded(seed):
        model = _mlp([13, 64, 3], 0.0)
    return _make(
        "wine-sgd", model, _standardize(x, tr), y.long(), 36, True,
        "wine, 142 rows, 13 standardized features, MLP",
    )  # fmt: skip


def _friedman(seed: int) -> Task:
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(2_500, noise=1.0, random_state=_DATA_SEED)
    yt = torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32).unsqueeze(1)
    with _seeded(seed):
        model = _mlp([10, 64, 64, 1], 0.0)
    return _make(
        "friedman-sgd", model, torch.as_tensor(x, dtype=torch.float32), yt, 500, False,
        "Friedman #1 regression, 2,000 rows, MLP",
    )  # fmt: skip


def _digits_rnn(name: str, cell: type[nn.Module], hidden: int) -> Callable[[int], Task]:
    def build(seed: int) -> Task:
        x, y = _digit_images()
        with _seeded(seed):
            model = _RowRNN(cell, hidden)
        what = f"8×8 digits read row by row, {cell.__name__} of {hidden} units"
        return _make(name, model, x, y, 360, True, what)

    return build


def _synthetic_regression(seed: int) -> Task:
    from sklearn.datasets import make_regression

    x, y = make_regression(22_000, 20, n_informative=12, noise=10.0, random_state=_DATA_SEED)
    scale = torch.logspace(0, 3, 20)  # features scaled 1 .. 1000
    xt = torch.as_tensor(x, dtype=torch.float32) * scale
    yt = torch.as_tensor(y / y.std(), dtype=torch.float32).unsqueeze(1)
    with _seeded(seed):
        model = _mlp([20, 64, 1], 0.0)
    return _make(
        "synth-reg-unscaled", model, xt, yt, 2_000, False,
        "20,000 synthetic rows, features scaled 1 to 1000, MLP",
    )  # fmt: skip


class _DropoutCNN(nn.Module):
    """A 3×3 convolution with BatchNorm and dropout on 8×8 images, then a classifier."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_block(1, width),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(width * 16, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _iris(seed: int) -> Task:
    x, y = _sklearn("load_iris")
    tr, _ = _split(len(x), 30)
    with _seeded(seed):
        model = _mlp([4, 32, 3], 0.0)
    return _make("iris-mlp", model, _standardize(x, tr), y.long(), 30, True,
                 "iris, 120 rows, MLP")  # fmt: skip


def _circles(seed: int) -> Task:
    from sklearn.datasets import make_circles

    x, y = make_circles(1000, noise=0.15, factor=0.5, random_state=_DATA_SEED)
    with _seeded(seed):
        model = _mlp([2, 32, 32, 2], 0.0)
    return _make(
        "circles-sgd", model, torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y),
        700, True, "two noisy circles, 300 training points, MLP",
    )  # fmt: skip


def _hastie(seed: int) -> Task:
    from sklearn.datasets import make_hastie_10_2

    x, y = make_hastie_10_2(12_000, random_state=_DATA_SEED)
    with _seeded(seed):
        model = _mlp([10, 128, 2], 0.0)
    return _make("hastie-mlp", model, torch.as_tensor(x, dtype=torch.float32),
                 torch.as_tensor((y > 0).astype("int64")), 2_000, True,
                 "Hastie et al. 10.2, 10,000 rows, MLP")  # fmt: skip


def _friedman3(seed: int) -> Task:
    from sklearn.datasets import make_friedman3

    x, y = make_friedman3(3_000, noise=0.1, random_state=_DATA_SEED)  # features up to ~1,800
    yt = torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32).unsqueeze(1)
    with _seeded(seed):
        model = _mlp([4, 64, 1], 0.0)
    return _make("friedman3-unscaled", model, torch.as_tensor(x, dtype=torch.float32), yt, 500,
                 False, "Friedman #3 regression, 2,500 rows, unscaled features, MLP")  # fmt: skip


def _charlm_lstm(seed: int) -> Task:
    return _char_task("charlm-lstm", lambda: _CharRNN(97, nn.LSTM, 24, 64), seed)


def _cancer_sgd(seed: int) -> Task:
    x, y = _sklearn("load_breast_cancer")
    tr, _ = _split(len(x), 114)
    with _seeded(seed):
        model = _mlp([30, 64, 2], 0.0)
    return _make("cancer-mlp-sgd", model, _standardize(x, tr), y.long(), 114, True,
                 "breast cancer, 455 rows, standardized, MLP")  # fmt: skip


def _digits_dropout(seed: int) -> Task:
    x, y = _digit_images()
    with _seeded(seed):
        model = _DropoutCNN()
    return _make("digits-cnn-dropout", model, x, y, 360, True,
                 "8×8 digits, CNN with BatchNorm and dropout")  # fmt: skip


def _digits_transformer_sgd(seed: int) -> Task:
    task = _digits_transformer(seed)
    task.name = "digits-transformer-sgd"
    return task


def _blobs(seed: int) -> Task:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(600, n_features=8, centers=6, cluster_std=3.0, random_state=_DATA_SEED)
    with _seeded(seed):
        model = _mlp([8, 64, 6], 0.0)
    return _make("blobs-sgd", model, torch.as_tensor(x, dtype=torch.float32),
                 torch.as_tensor(y), 200, True,
                 "6 overlapping blobs in 8 dimensions, 400 training points, MLP")  # fmt: skip


def _quantiles(seed: int) -> Task:
    from sklearn.datasets import make_gaussian_quantiles

    x, y = make_gaussian_quantiles(n_samples=5_000, n_features=6, n_classes=3,
                                   random_state=_DATA_SEED)  # fmt: skip
    with _seeded(seed):
        model = _mlp([6, 128, 128, 3], 0.0)
    return _make("quantiles-mlp", model, torch.as_tensor(x, dtype=torch.float32),
                 torch.as_tensor(y), 1_000, True,
                 "3 nested Gaussian shells in 6 dimensions, 4,000 rows, MLP")  # fmt: skip


def _charlm_transformer_sgd(seed: int) -> Task:
    return _char_task("charlm-transformer-sgd", lambda: _Transformer(32, vocab=97, width=32), seed)


def _sparse_regression(seed: int) -> Task:
    from sklearn.datasets import make_sparse_uncorrelated

    x, y = make_sparse_uncorrelated(6_000, 10, random_state=_DATA_SEED)
    scale = torch.logspace(-1, 2, 10)  # features scaled 0.1 .. 100
    xt = torch.as_tensor(x, dtype=torch.float32) * scale
    yt = torch.as_tensor(y / y.std(), dtype=torch.float32).unsqueeze(1)
    with _seeded(seed):
        model = _mlp([10, 64, 1], 0.0)
    return _make("sparse-reg-unscaled", model, xt, yt, 1_000, False,
                 "5,000 rows, 4 of 10 features informative, scaled 0.1 to 100, MLP")  # fmt: skip


def _lowrank_regression(seed: int) -> Task:
    from sklearn.datasets import make_regression

    x, y = make_regression(300, 30, n_informative=10, effective_rank=5, noise=5.0,
                           random_state=_DATA_SEED)  # fmt: skip
    xt = torch.as_tensor(x, dtype=torch.float32)
    tr, _ = _split(len(x), 100)
    yt = torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32).unsqueeze(1)
    with _seeded(seed):
        model = _mlp([30, 64, 64, 1], 0.0)
    return _make("lowrank-reg-small", model, _standardize(xt, tr), yt, 100, False,
                 "200 rows of 30 correlated features (rank about 5), MLP")  # fmt: skip


def _digits_cnn_small(seed: int) -> Task:
    x, y = _digit_images()
    with _seeded(seed):
        model = _DigitCNN(width=12)
    return _make("digits-cnn-small", model, x[:660], y[:660], 360, True,
                 "300 of the 8×8 digits, CNN with BatchNorm")  # fmt: skip


def _scurve(seed: int) -> Task:
    from sklearn.datasets import make_s_curve

    x, t = make_s_curve(3_000, noise=0.1, random_state=_DATA_SEED)
    yt = torch.as_tensor((t - t.mean()) / t.std(), dtype=torch.float32).unsqueeze(1)
    with _seeded(seed):
        model = _mlp([3, 64, 64, 1], 0.0)
    return _make("s-curve-sgd", model, torch.as_tensor(x, dtype=torch.float32), yt, 600, False,
                 "the position along a noisy S-shaped surface, 2,400 rows, MLP")  # fmt: skip


def _t(
    name: str, half: str, build: Callable[[int], Task], opt: str, steps: int, batch: int,
    *tags: str,
) -> SuiteTask:  # fmt: skip
    return SuiteTask(name, half, build, opt, steps, batch, tags)


#: The suite. The halves were fixed before any task was run.
SUITE: tuple[SuiteTask, ...] = (
    # tuning half
    _t("digits-mlp", "tuning", _digits_mlp, "adamw", 500, 64, "classification", "mlp"),
    _t("linreg-unscaled", "tuning", _linreg, "adamw", 500, 100, "regression", "unscaled"),
    _t("charlm-mlp", "tuning", _charlm_mlp, "adamw", 400, 128, "language", "mlp"),
    _t("moons-sgd", "tuning", _moons, "momentum", 300, 8, "classification", "small", "sgd"),
    _t("digits-cnn-sgd", "tuning", _digit_cnn("digits-cnn-sgd"), "momentum", 300, 128,
       "classification", "cnn", "batchnorm", "sgd"),
    _t("charlm-gru", "tuning", _charlm_gru, "adamw", 300, 32, "language", "recurrent"),
    _t("synth-cls-50k", "tuning", _synthetic_classes, "adamw", 400, 256, "classification",
       "large", "mlp"),
    _t("digits-transformer", "tuning", _digits_transformer, "adamw", 300, 64,
       "classification", "transformer"),
    # held-out half
    _t("digits-cnn-bn", "held-out", _digit_cnn("digits-cnn-bn"), "adamw", 300, 32,
       "classification", "cnn", "batchnorm"),
    _t("diabetes-mlp", "held-out", _diabetes, "adamw", 300, 16, "regression", "small", "mlp"),
    _t("cancer-logreg", "held-out", _cancer, "adamw", 300, 32, "classification", "unscaled",
       "linear"),
    _t("wine-sgd", "held-out", _wine, "momentum", 200, 8, "classification", "small", "sgd",
       "mlp"),
    _t("charlm-transformer", "held-out", _charlm_transformer, "adamw", 300, 32, "language",
       "transformer"),
    _t("friedman-sgd", "held-out", _friedman, "momentum", 400, 64, "regression", "sgd",
       "mlp"),
    _t("digits-gru", "held-out", _digits_rnn("digits-gru", nn.GRU, 64), "adamw", 300, 64,
       "classification", "recurrent"),
    _t("synth-reg-unscaled", "held-out", _synthetic_regression, "adamw", 300, 256,
       "regression", "unscaled", "large"),
    # fresh: added after the held-out half was run once (2026-12-07), before the next design
    _t("iris-mlp", "fresh", _iris, "adamw", 200, 16, "classification", "small", "mlp"),
    _t("circles-sgd", "fresh", _circles, "momentum", 300, 16, "classification", "small",
       "sgd"),
    _t("hastie-mlp", "fresh", _hastie, "adamw", 400, 128, "classification", "large", "mlp"),
    _t("friedman3-unscaled", "fresh", _friedman3, "adamw", 400, 32, "regression",
       "unscaled"),
    _t("charlm-lstm", "fresh", _charlm_lstm, "adamw", 300, 16, "language", "recurrent"),
    _t("cancer-mlp-sgd", "fresh", _cancer_sgd, "momentum", 300, 32, "classification",
       "small", "sgd"),
    _t("digits-cnn-dropout", "fresh", _digits_dropout, "adamw", 200, 256, "classification",
       "cnn", "batchnorm"),
    _t("digits-transformer-sgd", "fresh", _digits_transformer_sgd, "momentum", 300, 32,
       "classification", "transformer", "sgd"),
    # fresh-2: added after the fresh part was run once (2026-12-08), before the next design;
    # built and checked here, never trained
    _t("blobs-sgd", "fresh-2", _blobs, "momentum", 250, 16, "classification", "small",
       "sgd", "mlp"),
    _t("quantiles-mlp", "fresh-2", _quantiles, "adamw", 400, 64, "classification", "mlp"),
    _t("digits-lstm", "fresh-2", _digits_rnn("digits-lstm", nn.LSTM, 48), "adamw", 300, 32,
       "classification", "recurrent"),
    _t("charlm-transformer-sgd", "fresh-2", _charlm_transformer_sgd, "momentum", 300, 32,
       "language", "transformer", "sgd"),
    _t("sparse-reg-unscaled", "fresh-2", _sparse_regression, "adamw", 400, 128,
       "regression", "unscaled", "large"),
    _t("lowrank-reg-small", "fresh-2", _lowrank_regression, "adamw", 300, 8, "regression",
       "small", "mlp"),
    _t("digits-cnn-small", "fresh-2", _digits_cnn_small, "adamw", 250, 16, "classification",
       "small", "cnn", "batchnorm"),
    _t("s-curve-sgd", "fresh-2", _scurve, "momentum", 400, 32, "regression", "sgd", "mlp"),
)  # fmt: skip


def names() -> list[str]:
    """The suite's task names, tuning half first.

    Example:
        >>> names()[:2]
        ['digits-mlp', 'linreg-unscaled']
    """
    return [t.name for t in SUITE]


def tasks(half: str | None = None) -> list[SuiteTask]:
    """The suite's tasks, or one part of them (``"tuning"``, ``"held-out"``, ``"fresh"``).

    Example:
        >>> [t.name for t in tasks("held-out")][:2]
        ['digits-cnn-bn', 'diabetes-mlp']
    """
    if half is None:
        return list(SUITE)
    check_choice("half", half, HALVES)
    return [t for t in SUITE if t.half == half]


def get(name: str) -> SuiteTask:
    """The suite task called ``name``.

    Example:
        >>> get("charlm-gru").half
        'tuning'
    """
    for t in SUITE:
        if t.name == name:
            return t
    raise ValueError(f"name must be one of the suite's tasks ({', '.join(names())}), got {name!r}")
