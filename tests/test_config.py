"""``bergab.config``: schema, one-line key-path errors, overrides, TOML writing, building."""

from __future__ import annotations

import inspect
import math
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pydantic")

from bergab import config as conf
from bergab import optim, schedules, tasks

BASE: dict[str, Any] = {"task": {"name": "linreg"}}


def with_(**sections: Any) -> dict[str, Any]:
    return {**BASE, **sections}


# --------------------------------------------------------------------------- errors

ERRORS = [
    (with_(fit={"epochs": 0}), "fit.epochs: must be >= 1, got 0"),
    (with_(fit={"max_steps": -3}), "fit.max_steps: must be >= 1, got -3"),
    (with_(fit={"epochs": 1.5}), "fit.epochs: must be an integer, got 1.5"),
    (with_(fit={"max_steps": "5"}), 'fit.max_steps: must be an integer, got "5"'),
    (with_(fit={"shuffle": 1}), "fit.shuffle: must be true or false, got 1"),
    (with_(fit={"clip_norm": 0.0}), "fit.clip_norm: must be > 0, got 0.0"),
    (with_(fit={"seed": -1}), "fit.seed: must be >= 0, got -1"),
    (
        with_(fit={"precision": "16"}),
        'fit.precision: must be one of "32", "bf16" or "fp16", got "16"',
    ),
    (
        with_(fit={"nan_policy": "ignore"}),
        'fit.nan_policy: must be one of "stop", "skip" or "rollback", got "ignore"',
    ),
    (with_(fit={"batch_size": 0}), 'fit.batch_size: must be an integer >= 1 or "full", got 0'),
    (
        with_(fit={"batch_size": "half"}),
        'fit.batch_size: must be an integer >= 1 or "full", got "half"',
    ),
    (
        with_(fit={"early_stopping": {"patience": -1}}),
        "fit.early_stopping.patience: must be >= 0, got -1",
    ),
    (with_(fit={"early_stopping": 3}), "fit.early_stopping: must be a table, got 3"),
    (with_(fit=3), "fit: must be a table, got 3"),
    (
        with_(fit={"clip_norm": 1.0, "clip_value": 1.0}),
        "fit.clip_value: set fit.clip_norm or fit.clip_value, not both",
    ),
    (
        with_(fit={"device": "gpu"}),
        'fit.device: must be "auto" or a torch device ("cpu", "cuda:1", ...), got "gpu"',
    ),
    (with_(lr_find={"steps": 1}), "lr_find.steps: must be >= 3, got 1"),
    (with_(lr_find={"smoothing": 1.0}), "lr_find.smoothing: must be < 1, got 1.0"),
    (with_(lr_find={"mode": "log"}), 'lr_find.mode: must be one of "exp" or "linear", got "log"'),
    (with_(output={"plots": "yes"}), 'output.plots: must be true or false, got "yes"'),
    ({}, "task: required table is missing"),
    ({"task": {}}, "task.name: required key is missing"),
    ({"task": {"name": 3}}, "task.name: must be a string, got 3"),
    (
        {"task": {"name": "digitz"}},
        'task.name: must be a built-in task ("charlm", "digits", "linreg") or '
        '"package.module:function", got "digitz"',
    ),
    (
        {"task": {"name": "linreg", "standardise": True}},
        # the allowed keys are linreg's parameters, whatever they are today
        "task.standardise: unknown key for task 'linreg' (allowed: name, "
        + ", ".join(inspect.signature(tasks.linreg).parameters)
        + ")",
    ),
    (
        {"task": {"name": "linreg", "dtype": "float65"}},
        'task.dtype: must name a torch dtype ("float64", ...), got "float65"',
    ),
    (with_(optimizer={"name": "adam", "lr": 0.1}), None),  # checked below
    (
        with_(optimizer={"name": "sgd", "weight_decay": -0.5}),
        "optimizer.weight_decay: must be in [0, inf), got -0.5",
    ),
    (with_(schedule={"lr": -1}), 'schedule.lr: must be a finite number > 0 or "auto", got -1'),
    (
        with_(schedule={"lr": "fast"}),
        'schedule.lr: must be a finite number > 0 or "auto", got "fast"',
    ),
    (
        with_(schedule={"lr": math.inf}),
        'schedule.lr: must be a finite number > 0 or "auto", got inf',
    ),
    (
        with_(schedule={"policy": "linear"}),
        'schedule.policy: must be one of "cosine", "one_cycle", got "linear"',
    ),
    (
        with_(schedule={"lr": 0.1, "warmup_steps": 5}),
        'schedule.warmup_steps: is only allowed with lr = "auto"',
    ),
    (
        with_(schedule={"policy": "one_cycle", "warmup_steps": 5}),
        'schedule.warmup_steps: must be 0 with policy = "one_cycle" (it warms up itself)',
    ),
    (
        with_(schedule={"type": "cosine", "peak": 0.1}),
        "schedule.total_steps: missing argument 'total_steps' for schedule type 'cosine'",
    ),
    (
        with_(schedule={"type": "cosine", "peak": 0.1, "total_steps": 0}),
        "schedule.total_steps: must be an integer in [1, inf), got 0",
    ),
]


@pytest.mark.parametrize(("data", "expected"), [e for e in ERRORS if e[1] is not None])
def test_each_mistake_is_one_line_naming_the_key_path(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(conf.ConfigError) as info:
        conf.validate(data)
    assert str(info.value) == expected
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(info.value.path + ": ")


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        (with_(fit={"epochz": 1}), "fit.epochz", ["unknown key", "epochs", "max_steps", "seed"]),
        (
            with_(fitt={}),
            "fitt",
            ["unknown table", "task", "optimizer", "schedule", "fit", "output"],
        ),
        (
            with_(fit={"early_stopping": {"pateince": 3}}),
            "fit.early_stopping.pateince",
            ["unknown key", "patience", "min_delta"],
        ),
        (with_(lr_find={"stpes": 3}), "lr_find.stpes", ["unknown key", "steps", "start_lr"]),
        (
            with_(optimizer={"name": "adamw", "wd": 0.1}),
            "optimizer.wd",
            ["unknown key", "weight_decay"],
        ),
        (with_(optimizer={"name": "adamw", "lr": 0.1}), "optimizer.lr", ["[schedule]", "auto"]),
        (
            with_(optimizer={"name": "adamx"}),
            "optimizer.name",
            ["unknown optimizer", "adamw", "sgd"],
        ),
        (with_(optimizer={"name": "adamw", "betas": [0.9, 1.5]}), "optimizer.betas", ["[0, 1)"]),
        (with_(schedule={"lrr": 0.1}), "schedule.lrr", ["unknown key", "auto", "type"]),
        (with_(schedule={"type": "cosinus"}), "schedule.type", ["cosine", "wsd", "'cosinus'"]),
        (
            with_(schedule={"type": "cosine", "peak": 0.1, "total_steps": 9, "floor": 0.0}),
            "schedule.floor",
            ["unknown argument", "final"],
        ),
        ({"task": {"name": "no_such_pkg.mod:fn"}}, "task.name", ["cannot import", "no_such_pkg"]),
        ({"task": {"name": "bergab.tasks:nope"}}, "task.name", ["has no function", "'nope'"]),
    ],
)
def test_unknown_keys_name_the_path_and_the_allowed_ones(
    data: dict[str, Any], path: str, words: list[str]
) -> None:
    with pytest.raises(conf.ConfigError) as info:
        conf.validate(data)
    err = info.value
    assert err.path == path
    assert "\n" not in str(err)
    for w in words:
        assert w in err.message


def test_several_problems_are_still_one_line() -> None:
    with pytest.raises(conf.ConfigError) as info:
        conf.validate(with_(fit={"epochs": 0, "max_steps": 0, "seed": -1}))
    assert str(info.value) == "fit.epochs: must be >= 1, got 0 (and 2 more problems)"


def test_task_errors_from_the_task_function_get_the_key_path() -> None:
    # argument checks that need no data run in validate already
    with pytest.raises(conf.ConfigError) as info:
        conf.validate({"task": {"name": "digits", "hidden": 0}})
    assert str(info.value) == "task.hidden: must be an integer in [1, inf), got 0"
    # those that need the data run when the task is built
    cfg = conf.validate({"task": {"name": "digits", "val_fraction": 0.999}})
    with pytest.raises(conf.ConfigError) as info:
        conf.build_task(cfg)
    assert str(info.value).startswith("task.val_fraction: must leave at least 5 training")


# --------------------------------------------------------------------------- defaults


def test_defaults_and_to_dict() -> None:
    cfg = conf.validate(BASE)
    assert cfg.auto
    assert cfg.optimizer.name == "adamw"
    assert cfg.fit.seed == 0
    assert cfg.fit.precision == "32"
    assert cfg.fit.progress
    assert cfg.lr_find.steps == 100
    assert cfg.lr_find.start_lr == 1e-7
    assert cfg.run_dir() == Path("runs/linreg")
    d = cfg.to_dict()
    assert d["schedule"] == {"lr": "auto"}
    assert d["task"] == {"name": "linreg"}
    assert "epochs" not in d["fit"]  # None is left out (TOML has no null)
    custom = conf.validate({"task": {"name": "bergab.tasks:linreg"}, "output": {"dir": "x/y"}})
    assert custom.run_dir() == Path("x/y")
    assert conf.validate({"task": {"name": "bergab.tasks:linreg"}}).run_dir() == Path("runs/linreg")


def test_full_config_round_trips_through_toml() -> None:
    data = {
        "task": {"name": "digits", "hidden": 32, "seed": 3},
        "optimizer": {"name": "adamw", "weight_decay": 0.01, "betas": [0.9, 0.98]},
        "schedule": {
            "type": "warmup",
            "steps": 10,
            "schedule": {"type": "cosine", "peak": 3e-3, "total_steps": 90, "final": 1e-5},
        },
        "lr_find": {"steps": 50, "end_lr": 1.0},
        "fit": {
            "max_steps": 100,
            "batch_size": "full",
            "clip_norm": 1.0,
            "early_stopping": {"patience": 3, "mode": "max", "monitor": "val_accuracy"},
            "seed": 7,
            "progress": False,
        },
        "output": {"dir": "runs/here", "overwrite": True},
    }
    cfg = conf.validate(data)
    assert not cfg.auto
    text = conf.dumps_toml(cfg.to_dict(), header="resolved\nconfig")
    assert text.startswith("# resolved\n# config\n")
    again = conf.validate(tomllib.loads(text))
    assert again.to_dict() == cfg.to_dict()
    assert again.to_dict()["optimizer"]["betas"] == [0.9, 0.98]


# --------------------------------------------------------------------------- TOML writer

_keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_keys, st.dictionaries(_keys, _values, max_size=4), max_size=4))
def test_dumps_toml_is_read_back_equal_by_tomllib(doc: dict[str, Any]) -> None:
    assert tomllib.loads(conf.dumps_toml(doc)) == doc


def test_dumps_toml_special_floats_and_none() -> None:
    text = conf.dumps_toml({"a": {"x": math.inf, "y": -math.inf, "z": math.nan, "n": None}})
    back = tomllib.loads(text)["a"]
    assert back["x"] == math.inf
    assert back["y"] == -math.inf
    assert math.isnan(back["z"])
    assert "n" not in back


# --------------------------------------------------------------------------- overrides


def test_overrides_parse_toml_values_or_plain_strings() -> None:
    assert conf.parse_override("fit.max_steps=5") == (["fit", "max_steps"], 5)
    assert conf.parse_override("fit.clip_norm = 0.5") == (["fit", "clip_norm"], 0.5)
    assert conf.parse_override("fit.progress=false") == (["fit", "progress"], False)
    assert conf.parse_override("optimizer.betas=[0.9, 0.95]") == (
        ["optimizer", "betas"],
        [0.9, 0.95],
    )
    assert conf.parse_override('task.name="digits"') == (["task", "name"], "digits")
    assert conf.parse_override("output.dir=runs/a b") == (["output", "dir"], "runs/a b")
    for bad in ("fit.max_steps", "=5", "fit..x=1"):
        with pytest.raises(conf.ConfigError, match=r"KEY\.PATH=VALUE"):
            conf.parse_override(bad)


def test_overrides_go_through_the_same_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[task]\nname = "linreg"\n[fit]\nmax_steps = 100\n', encoding="utf-8")
    cfg = conf.load(path, ["fit.max_steps=5", "fit.early_stopping.patience=2"])
    assert cfg.fit.max_steps == 5
    assert cfg.fit.early_stopping is not None
    assert cfg.fit.early_stopping.patience == 2
    with pytest.raises(conf.ConfigError, match=r"^fit.max_steps: must be >= 1, got 0$"):
        conf.load(path, ["fit.max_steps=0"])
    with pytest.raises(conf.ConfigError, match=r"^fit.max_stesp: unknown key"):
        conf.load(path, ["fit.max_stesp=3"])
    with pytest.raises(conf.ConfigError, match=r"fit\.max_steps is not a table"):
        conf.load(path, ["fit.max_steps.x=3"])
    original = {"fit": {"epochs": 1}}
    conf.apply_overrides(original, ["fit.epochs=2"])
    assert original == {"fit": {"epochs": 1}}  # the input is not modified


def test_load_reports_missing_files_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        conf.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\nname = 1\n", encoding="utf-8")
    with pytest.raises(conf.ConfigError, match="is not valid TOML") as info:
        conf.load(bad)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- building


def test_build_task_passes_kwargs_and_the_fit_seed() -> None:
    cfg = conf.validate(
        {"task": {"name": "linreg", "standardize": True, "n_train": 50}, "fit": {"seed": 4}}
    )
    task = conf.build_task(cfg)
    ref = tasks.linreg(seed=4, standardize=True, n_train=50)
    assert len(task.train) == 50
    assert torch.equal(task.train.tensors[0], ref.train.tensors[0])
    for a, b in zip(task.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # an explicit task seed wins over fit.seed
    own = conf.build_task(
        conf.validate({"task": {"name": "linreg", "seed": 1}, "fit": {"seed": 4}})
    )
    assert torch.equal(own.train.tensors[0], tasks.linreg(seed=1).train.tensors[0])
    f64 = conf.build_task(conf.validate({"task": {"name": "linreg", "dtype": "float64"}}))
    assert f64.train.tensors[0].dtype == torch.float64


def test_custom_task_from_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_tasks_cfgtest.py").write_text(
        textwrap.dedent(
            """
            from bergab import tasks

            def small(seed=0, n=20):
                return tasks.linreg(seed=seed, n_train=n, n_val=5)

            def wrong():
                return (1, 2, 3)
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    cfg = conf.validate({"task": {"name": "my_tasks_cfgtest:small", "n": 12}})
    assert len(conf.build_task(cfg).train) == 12
    with pytest.raises(conf.ConfigError, match=r"^task.m: unknown key for task"):
        conf.validate({"task": {"name": "my_tasks_cfgtest:small", "m": 12}})
    with pytest.raises(conf.ConfigError, match=r"must return a bergab\.tasks\.Task, got tuple"):
        conf.build_task(conf.validate({"task": {"name": "my_tasks_cfgtest:wrong"}}))


def test_optimizer_factory_builds_the_named_optimizer_with_its_arguments() -> None:
    cfg = conf.validate(
        with_(optimizer={"name": "adamw", "weight_decay": 0.05, "betas": [0.8, 0.9]})
    )
    p = torch.nn.Parameter(torch.zeros(3))
    opt = conf.optimizer_factory(cfg)([p])
    ref = optim.create(
        "adamw", [torch.nn.Parameter(torch.zeros(3))], lr=1e-3, weight_decay=0.05, betas=(0.8, 0.9)
    )
    assert type(opt) is type(ref)
    assert opt.defaults["weight_decay"] == 0.05
    assert tuple(opt.defaults["betas"]) == (0.8, 0.9)


def test_build_schedule_equals_from_config() -> None:
    table = {
        "type": "warmup",
        "steps": 5,
        "schedule": {"type": "cosine", "peak": 0.1, "total_steps": 50},
    }
    s = conf.build_schedule(table)
    ref = schedules.warmup(schedules.cosine(peak=0.1, total_steps=50), steps=5)
    assert [s(t) for t in range(60)] == [ref(t) for t in range(60)]
    assert conf.build_schedule({"lr": 0.25})(1000) == 0.25
    with pytest.raises(conf.ConfigError, match="auto"):
        conf.build_schedule({"lr": "auto"})


# --------------------------------------------------------------------------- bad input


def test_validate_refuses_a_non_mapping_naming_the_config() -> None:
    with pytest.raises(TypeError, match="config must be a mapping"):
        conf.validate("task")  # type: ignore[arg-type]


def test_validate_checks_built_in_task_values_with_the_key_path() -> None:
    with pytest.raises(conf.ConfigError, match=r"^task\.n_train: must be an integer"):
        conf.validate({"task": {"name": "linreg", "n_train": 0}})
    with pytest.raises(conf.ConfigError, match=r"^task\.hidden: "):
        conf.validate({"task": {"name": "digits", "hidden": 0}})
    with pytest.raises(conf.ConfigError, match=r"^task\.context: "):
        conf.validate({"task": {"name": "charlm", "context": 0}})


def test_lr_find_steps_must_be_at_least_three() -> None:
    with pytest.raises(conf.ConfigError, match=r"^lr_find\.steps: "):
        conf.validate({"task": {"name": "linreg"}, "lr_find": {"steps": 2}})
    assert conf.validate({"task": {"name": "linreg"}, "lr_find": {"steps": 3}}).lr_find.steps == 3


def test_dumps_toml_names_the_key_of_a_value_it_cannot_write() -> None:
    with pytest.raises(TypeError, match=r"^weird_key: cannot write a object"):
        conf.dumps_toml({"weird_key": object()})
    with pytest.raises(TypeError, match=r"^fit\.cbs\[1\]: cannot write a set"):
        conf.dumps_toml({"fit": {"cbs": [1, set()]}})


def test_load_of_a_directory_says_it_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a directory, not a config file"):
        conf.load(tmp_path)


def test_overrides_must_be_a_list_of_strings(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[task]\nname = 'linreg'\n")
    for bad in ("fit.max_steps=5", b"fit.max_steps=5", [5], 5):
        with pytest.raises(TypeError, match="overrides must be a list"):
            conf.load(path, bad)  # type: ignore[arg-type]
