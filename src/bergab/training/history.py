"""``History``: what :func:`bergab.fit` records, step by step and evaluation by evaluation.

Two kinds of records:

- **step records** (:attr:`History.steps`, stored as columns): one per optimizer step,
  ``step`` (1-based), ``epoch`` (0-based), ``loss``, ``grad_norm``, the learning rate of
  every param group (``lr`` with one group, ``lr_0``, ``lr_1``, ... with several), the
  optimizer's ``effective_lr`` where it has one, ``loss_scale`` under fp16, ``skipped``
  and ``time`` (seconds of training so far);
- **evaluation records** (:attr:`History.records`): one at each epoch end and each
  validation, with ``step``, ``epoch``, the mean training ``loss`` since the previous
  record, ``val_loss`` and ``val_<metric>`` when validation ran, and the lr.

Example:
    >>> h = History()
    >>> for step, loss in enumerate([1.0, 0.5, 0.25], start=1):
    ...     h.add_step({"step": step, "epoch": 0, "loss": loss, "lr": 0.1})
    >>> h.add_record({"step": 3, "epoch": 0, "loss": 0.58, "val_loss": 0.3})
    >>> h.steps["loss"], h.best["val_loss"], len(h)
    ([1.0, 0.5, 0.25], 0.3, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bergab._validate import check_bool, check_choice, check_output_path, require

__all__ = ["History"]

_KINDS = ("int", "bool", "float")


def _kind(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    return "float"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class History:
    """The records of one training run (see the module docstring for the fields).

    Attributes:
        steps: the step records as columns, ``{name: [value per step]}``.
        records: the evaluation records (epoch ends and validations), a list of dicts.
        events: notable events (``skip``, ``rollback``, ``stop``), a list of dicts.
        info: run facts (e.g. ``auto_lr`` when ``lr="auto"`` chose the learning rate).
        stop_reason: why training ended (``"epochs"``, ``"max_steps"``, ``"tol: ..."``,
            ``"early stopping: ..."``, ``"nan: ..."``, ...), ``None`` while running.

    Example:
        >>> h = History(); h.add_record({"step": 10, "epoch": 0, "val_loss": 0.5})
        >>> h.add_record({"step": 20, "epoch": 1, "val_loss": 0.7}); h.best["step"]
        10
    """

    def __init__(self) -> None:
        self.steps: dict[str, list[Any]] = {}
        self.records: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self._n = 0

    # ------------------------------------------------------------------ recording
    def add_step(self, record: Mapping[str, Any]) -> None:
        """Append one step record (missing keys are filled with ``None``).

        Example:
            >>> h = History(); h.add_step({"loss": 1.0}); h.add_step({"loss": 0.5, "lr": 0.1})
            >>> h.steps
            {'loss': [1.0, 0.5], 'lr': [None, 0.1]}
        """
        cols = self.steps
        n = self._n
        for key, value in record.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [None] * n
            col.append(value)
        self._n = n = n + 1
        if len(record) != len(cols):
            for col in cols.values():
                if len(col) < n:
                    col.append(None)

    def add_record(self, record: Mapping[str, Any]) -> None:
        """Append one evaluation record (epoch end or validation).

        Example:
            >>> h = History(); h.add_record({"step": 5, "loss": 0.1}); h.records
            [{'step': 5, 'loss': 0.1}]
        """
        self.records.append(dict(record))

    def add_event(self, event: Mapping[str, Any]) -> None:
        """Append an event (a skipped step, a rollback, the stop)."""
        self.events.append(dict(event))

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """The number of step records."""
        return self._n

    def step_records(self) -> list[dict[str, Any]]:
        """The step records as a list of dicts (rows rather than columns).

        Example:
            >>> h = History(); h.add_step({"step": 1, "loss": 2.0}); h.step_records()
            [{'step': 1, 'loss': 2.0}]
        """
        keys = list(self.steps)
        return [dict(zip(keys, row, strict=True)) for row in zip(*self.steps.values(), strict=True)]

    @property
    def last(self) -> dict[str, Any] | None:
        """The last evaluation record, or ``None``."""
        return self.records[-1] if self.records else None

    def best_by(self, key: str, mode: str = "min") -> dict[str, Any] | None:
        """The evaluation record with the lowest (``mode="min"``) or highest ``key``.

        Records where ``key`` is missing or not finite are ignored; ties go to the first.

        Returns:
            The record, or ``None`` when no record has a finite ``key`` (or there is no
            record yet).

        Raises:
            ValueError: when records exist and none has ``key`` at all (a misspelt key
                such as ``"val_acc"`` would otherwise give ``None`` as if nothing were
                measured); the message lists the keys there are.

        Example:
            >>> h = History()
            >>> for s, acc in [(1, 0.5), (2, 0.9), (3, 0.8)]:
            ...     h.add_record({"step": s, "val_accuracy": acc})
            >>> h.best_by("val_accuracy", mode="max")["step"]
            2
        """
        check_choice("mode", mode, ("min", "max"))
        if self.records and not any(key in r for r in self.records):
            known = sorted({k for r in self.records for k in r})
            raise ValueError(f"key {key!r} is in no record; the records hold {', '.join(known)}")
        candidates = [r for r in self.records if _finite(r.get(key))]
        if not candidates:
            return None
        sign = 1.0 if mode == "min" else -1.0
        return min(candidates, key=lambda r: sign * float(r[key]))

    @property
    def best(self) -> dict[str, Any] | None:
        """The evaluation record with the lowest ``val_loss`` (``loss`` without validation).

        Example:
            >>> h = History(); h.add_record({"step": 1, "loss": 0.2}); h.best["loss"]
            0.2
        """
        if any(_finite(r.get("val_loss")) for r in self.records):
            return self.best_by("val_loss")
        if not any("loss" in r for r in self.records):  # nothing to rank by (no error)
            return None
        return self.best_by("loss")

    def __repr__(self) -> str:
        best = self.best
        parts = [f"steps={self._n}", f"records={len(self.records)}"]
        if best is not None:
            key = "val_loss" if "val_loss" in best else "loss"
            parts.append(f"best {key}={best[key]:.4g} at step {best.get('step')}")
        if self.stop_reason:
            parts.append(f"stop_reason={self.stop_reason!r}")
        return f"History({', '.join(parts)})"

    # ------------------------------------------------------------------ export
    def to_dataframe(self, kind: str = "records") -> Any:
        """The records as a ``pandas.DataFrame`` (needs pandas: ``bergab[data]``).

        Args:
            kind: ``"records"`` (evaluation records) or ``"steps"`` (one row per step).

        Example:
            >>> h = History(); h.add_step({"step": 1, "loss": 1.0})
            >>> h.to_dataframe("steps").shape  # doctest: +SKIP
            (1, 2)
        """
        check_choice("kind", kind, ("records", "steps"))
        pd = require("pandas", "data")
        if kind == "steps":
            return pd.DataFrame(self.steps)
        return pd.DataFrame(self.records)

    def plot(
        self,
        path: str | Path | None = None,
        *,
        log_loss: bool | None = None,
        title: str | None = None,
    ) -> Any:
        """Loss, metric and learning-rate curves (needs matplotlib: ``bergab[plot]``).

        Top: the training loss of every step (thin), the per-record training loss and the
        validation loss on the same axes. Middle, when the records hold metrics: each
        validation metric (``val_accuracy``...; solid) and training metric
        (``train_accuracy``...; dashed) per record. Bottom: the lr of every param group
        (dashed: the optimizer's effective lr). Rollbacks are marked with vertical lines.
        The title sums the run up: steps, the best validation loss and where, the metrics
        there, and why training stopped.

        Args:
            path: save the figure there (any format matplotlib writes, by extension;
                parent folders created; checked before anything is drawn) and close it;
                ``None`` leaves it open.
            log_loss: logarithmic loss axis; ``None`` chooses it when the positive losses
                span more than two decades.
            title: the figure title; ``None``: the summary above.

        Returns:
            The matplotlib ``Figure``.

        Example:
            >>> h = History()
            >>> for s in range(1, 5):
            ...     h.add_step({"step": s, "loss": 1.0 / s, "lr": 0.1})
            >>> h.add_record({"step": 4, "loss": 0.5, "val_loss": 0.6})
            >>> fig = h.plot(); len(fig.axes)
            2
            >>> h.add_record({"step": 8, "loss": 0.4, "val_loss": 0.5, "val_accuracy": 0.9})
            >>> fig2 = h.plot(); [ax.get_ylabel() for ax in fig2.axes]
            ['loss', 'metric', 'learning rate']
            >>> import matplotlib.pyplot as plt; plt.close(fig); plt.close(fig2)
        """
        from bergab.plotting import pyplot

        out = None if path is None else check_output_path("path", path)
        if log_loss is not None:
            check_bool("log_loss", log_loss)
        if title is not None and not isinstance(title, str):
            raise TypeError(f"title must be a str or None, got {type(title).__name__}")
        if not self._n and not self.records:
            raise ValueError("the history is empty: nothing to plot")
        plt = pyplot()
        metrics = self._metric_keys()
        rows = 3 if metrics else 2
        fig, axes = plt.subplots(
            rows,
            1,
            sharex=True,
            figsize=(7.0, 7.5 if metrics else 5.5),
            layout="constrained",
            height_ratios=[2, 1.3, 1] if metrics else [2, 1],
        )
        ax_loss, ax_lr = axes[0], axes[-1]
        steps = self.steps.get("step") or list(range(1, self._n + 1))
        self._plot_losses(ax_loss, steps, log_loss)
        if metrics:
            self._plot_metrics(axes[1], metrics)
        self._plot_lrs(ax_lr, steps)
        for event in self.events:
            if event.get("event") == "rollback":
                for ax in axes:
                    ax.axvline(event["step"], color="red", lw=0.8, alpha=0.5)
        fig.suptitle(self._title() if title is None else title, fontsize=10)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=100)
            plt.close(fig)
        return fig

    def _metric_keys(self) -> list[str]:
        """The metric names in the records (``accuracy`` for ``val_accuracy`` or
        ``train_accuracy``), in the order they first appear."""
        names: dict[str, None] = {}
        for record in self.records:
            for key in record:
                for prefix in ("val_", "train_"):
                    if key.startswith(prefix) and key != "val_loss":
                        names[key[len(prefix) :]] = None
        return list(names)

    def _title(self) -> str:
        """One line: steps, the best record's loss and metrics, and why training stopped."""
        parts = [f"{self._n} steps"]
        best = self.best
        if best is not None:
            key = "val_loss" if _finite(best.get("val_loss")) else "loss"
            shown = [f"best {key} {best[key]:.4g} at step {best.get('step')}"]
            shown += [
                f"{k} {best[k]:.4g}"
                for k in best
                if k.startswith("val_") and k != "val_loss" and _finite(best[k])
            ]
            parts.append(", ".join(shown))
        if self.stop_reason:
            parts.append(f"stopped: {self.stop_reason}")
        return "training history: " + "; ".join(parts)

    def _plot_losses(self, ax: Any, steps: list[Any], log_loss: bool | None) -> None:
        """The step losses (thin) and the per-record training and validation losses."""
        positive: list[float] = []
        if "loss" in self.steps:
            losses = [math.nan if v is None else float(v) for v in self.steps["loss"]]
            ax.plot(steps, losses, lw=0.7, alpha=0.45, color="C0", label="train loss (step)")
            positive += [v for v in losses if math.isfinite(v) and v > 0]
        for key, style, color, label in (
            ("loss", "o-", "C0", "train loss"),
            ("val_loss", "s-", "C1", "val loss"),
        ):
            pts = [(r["step"], float(r[key])) for r in self.records if _finite(r.get(key))]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, ms=3, color=color, label=label)
                positive += [v for v in ys if v > 0]
        if log_loss is None:
            log_loss = bool(positive) and max(positive) / min(positive) > 100
        if log_loss:
            ax.set_yscale("log")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    def _plot_metrics(self, ax: Any, metrics: list[str]) -> None:
        """Each metric per record: validation solid, training dashed, one colour each."""
        for i, name in enumerate(metrics):
            for prefix, style in (("val_", "s-"), ("train_", "o--")):
                key = prefix + name
                pts = [(r["step"], float(r[key])) for r in self.records if _finite(r.get(key))]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, style, ms=3, color=f"C{(i + 2) % 10}", label=key)
        ax.set_ylabel("metric")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    def _plot_lrs(self, ax: Any, steps: list[Any]) -> None:
        """The lr of every param group (dashed: the optimizer's effective lr)."""
        lr_keys = [k for k in self.steps if k == "lr" or k.startswith("lr_")]
        eff_keys = [k for k in self.steps if k.startswith("effective_lr")]
        lr_values: list[float] = []
        for style, keys in (("-", lr_keys), ("--", eff_keys)):
            for i, key in enumerate(keys):
                ys = [math.nan if v is None else float(v) for v in self.steps[key]]
                width = 1.2 if style == "-" else 1.0
                ax.plot(steps, ys, style, color=f"C{i % 10}", lw=width, label=key)
                lr_values += [v for v in ys if math.isfinite(v) and v > 0]
        if lr_values and max(lr_values) / min(lr_values) > 10:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        if lr_keys or eff_keys:
            ax.legend(fontsize=8)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything recorded, as tensors and plain containers (for checkpoints).

        Step columns become float64 tensors with their kind (int, bool, float) and a mask of
        the ``None`` entries, so :meth:`load_state_dict` gives back the same Python values.

        Example:
            >>> h = History(); h.add_step({"step": 1, "loss": 0.5, "skipped": False})
            >>> g = History(); g.load_state_dict(h.state_dict()); g.steps == h.steps
            True
        """
        columns = {}
        for key, col in self.steps.items():
            kind = _kind(col)
            values = [math.nan if v is None else float(v) for v in col]
            entry: dict[str, Any] = {
                "kind": kind,
                "values": torch.tensor(values, dtype=torch.float64),
            }
            if any(v is None for v in col):
                entry["none"] = torch.tensor([v is None for v in col], dtype=torch.bool)
            columns[key] = entry
        return {
            "steps": columns,
            "num_steps": self._n,
            "records": [dict(r) for r in self.records],
            "events": [dict(e) for e in self.events],
            "info": dict(self.info),
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (replacing the current records)."""
        steps: dict[str, list[Any]] = {}
        for key, col in state["steps"].items():
            kind = check_choice(f"kind of column {key!r}", col["kind"], _KINDS)
            values = col["values"].tolist()
            if kind == "int":
                steps[key] = [int(v) for v in values]
            elif kind == "bool":
                steps[key] = [bool(v) for v in values]
            else:
                steps[key] = values
            if "none" in col:
                for i in col["none"].nonzero().flatten().tolist():
                    steps[key][i] = None
        self.steps = steps
        self._n = int(state["num_steps"])
        self.records = [dict(r) for r in state["records"]]
        self.events = [dict(e) for e in state["events"]]
        self.info = dict(state["info"])
        self.stop_reason = state["stop_reason"]
