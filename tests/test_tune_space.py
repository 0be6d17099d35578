"""``bergab.tuning.space``: parsing ``[tune.space]``, suggesting, grids, ``apply``, key checks."""

from __future__ import annotations

import itertools
import math
import tomllib
from typing import Any

import pytest

from bergab._toml import dumps_toml
from bergab.tuning.space import DISTRIBUTIONS, Param, SearchSpace, apply

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)

FULL: dict[str, Any] = {
    "schedule.lr": {"loguniform": [1e-5, 1.0]},
    "optimizer.weight_decay": {"uniform": [0.0, 0.1]},
    "optimizer.eps": {"uniform": [0.0, 0.5], "step": 0.1},
    "schedule.warmup_steps": {"int": [0, 500], "step": 50},
    "fit.batch_size": {"int": [8, 256], "log": True},
    "optimizer.name": {"choice": ["adamw", "sgd"]},
    "optimizer.momentum": {"uniform": [0.0, 0.99], "when": {"optimizer.name": "sgd"}},
    "optimizer.nesterov": {"choice": [True, False], "when": {"optimizer.name": ["sgd"]}},
}


def random_trials(space: SearchSpace, n: int, base: dict[str, Any] | None = None) -> list[Any]:
    """``n`` trials of a seeded random search: ``(trial, suggested params)``."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        params = space.suggest(trial, base=base)
        study.tell(trial, 0.0)
        out.append((trial, params))
    return out


# --------------------------------------------------------------------------- parsing


def test_each_form_parses() -> None:
    space = SearchSpace.from_mapping(FULL)
    assert len(space) == len(FULL)
    assert space.paths == tuple(FULL)
    assert space["schedule.lr"] == Param("schedule.lr", "loguniform", 1e-5, 1.0, log=True)
    assert space["optimizer.weight_decay"] == Param("optimizer.weight_decay", "uniform", 0.0, 0.1)
    assert space["optimizer.eps"].step == 0.1
    warm = space["schedule.warmup_steps"]
    assert (warm.kind, warm.low, warm.high, warm.step, warm.log) == ("int", 0, 500, 50, False)
    batch = space["fit.batch_size"]
    assert (batch.kind, batch.log, batch.step) == ("int", True, None)
    assert space["optimizer.name"].choices == ("adamw", "sgd")
    assert space["optimizer.momentum"].when == (("optimizer.name", ("sgd",)),)
    assert space["optimizer.nesterov"].when == (("optimizer.name", ("sgd",)),)
    assert "schedule.lr" in space
    assert "fit.epochs" not in space
    assert [p.path for p in space] == list(FULL)
    assert [p.path for p in space.params] == list(FULL)


def test_forms_keep_their_types() -> None:
    space = SearchSpace.from_mapping(
        {
            "a": {"uniform": [0, 1]},  # integers given: still a float range
            "b": {"choice": [1, 2.5]},  # ints and floats mix
            "c": {"int": [1, 8], "log": False, "step": 1},
            "d": {"choice": ["x"], "when": {"b": [1, 2.5], "fit.seed": 0}},
        }
    )
    assert isinstance(space["a"].low, float)
    assert isinstance(space["a"].high, float)
    assert space["b"].choices == (1, 2.5)
    assert space["c"].step == 1
    assert space["c"].log is False
    # conditions are kept sorted by path, lists as tuples
    assert space["d"].when == (("b", (1, 2.5)), ("fit.seed", (0,)))


def test_a_plain_name_is_a_path_for_a_function_objective() -> None:
    assert SearchSpace.from_mapping({"x": {"uniform": [-3, 3]}}).paths == ("x",)


BAD: list[tuple[Any, type[Exception], list[str]]] = [
    # ranges
    (
        {"schedule.lr": {"loguniform": [0.0, 1.0]}},
        ValueError,
        ['tune.space."schedule.lr": loguniform needs 0 < low < high, got [0.0, 1.0]'],
    ),
    (
        {"schedule.lr": {"loguniform": [-1.0, 1.0]}},
        ValueError,
        ['"schedule.lr"', "0 < low < high"],
    ),
    (
        {"schedule.lr": {"loguniform": [1.0, 1e-3]}},
        ValueError,
        ['"schedule.lr"', "0 < low < high, got [1.0, 0.001]"],
    ),
    (
        {"optimizer.weight_decay": {"uniform": [0.1, 0.1]}},
        ValueError,
        ['tune.space."optimizer.weight_decay": uniform needs low < high, got [0.1, 0.1]'],
    ),
    (
        {"optimizer.weight_decay": {"uniform": [0.2, 0.1]}},
        ValueError,
        ['"optimizer.weight_decay"', "low < high"],
    ),
    ({"a": {"uniform": [0.0, math.inf]}}, ValueError, ['"a"', "finite"]),
    ({"a": {"uniform": [0.0, math.nan]}}, ValueError, ['"a"', "finite"]),
    (
        {"schedule.warmup_steps": {"int": [5, 5]}},
        ValueError,
        ['tune.space."schedule.warmup_steps": int needs low < high, got [5, 5]'],
    ),
    ({"a": {"int": [9, 1]}}, ValueError, ['"a"', "low < high"]),
    ({"a": {"uniform": [0.0]}}, ValueError, ['"a"', "[low, high]"]),
    ({"a": {"uniform": [0.0, 1.0, 2.0]}}, ValueError, ['"a"', "[low, high]"]),
    ({"a": {"uniform": 0.5}}, TypeError, ['"a"', "[low, high]"]),
    ({"a": {"uniform": ["0", 1]}}, TypeError, ['"a"', "numbers"]),
    ({"a": {"loguniform": [True, 2.0]}}, TypeError, ['"a"', "numbers"]),
    ({"a": {"int": [0, 10.5]}}, TypeError, ['"a"', "integers"]),
    ({"a": {"int": [0.0, 10]}}, TypeError, ['"a"', "integers"]),
    # steps
    ({"a": {"int": [0, 500], "step": 0}}, ValueError, ['"a"', "step must be an integer >= 1"]),
    ({"a": {"int": [0, 500], "step": 2.5}}, TypeError, ['"a"', "step must be an integer"]),
    (
        {"a": {"int": [0, 500], "step": 30}},
        ValueError,
        ['"a"', "step must divide high - low = 500"],
    ),
    ({"a": {"uniform": [0.0, 1.0], "step": 0.0}}, ValueError, ['"a"', "step must be", "> 0"]),
    ({"a": {"uniform": [0.0, 1.0], "step": -0.1}}, ValueError, ['"a"', "> 0"]),
    ({"a": {"uniform": [0.0, 1.0], "step": "0.1"}}, TypeError, ['"a"', "step must be a number"]),
    ({"a": {"uniform": [0.0, 1.0], "step": 0.3}}, ValueError, ['"a"', "step must divide"]),
    # log ints
    (
        {"fit.batch_size": {"int": [0, 256], "log": True}},
        ValueError,
        ['tune.space."fit.batch_size": int with log = true needs 1 <= low < high, got [0, 256]'],
    ),
    (
        {"a": {"int": [1, 256], "log": True, "step": 5}},
        ValueError,
        ['"a"', "log = true takes no step", "step = 5"],
    ),
    ({"a": {"int": [1, 256], "log": "yes"}}, TypeError, ['"a"', "log must be true or false"]),
    # keywords
    (
        {"schedule.lr": {"normal": [0.0, 1.0]}},
        ValueError,
        ['"schedule.lr"', 'unknown key "normal"', "loguniform, uniform, int, choice"],
    ),
    (
        {"schedule.lr": {"loguniform": [1e-5, 1.0], "uniform": [0.0, 1.0]}},
        ValueError,
        ['"schedule.lr"', "one distribution", "loguniform and uniform"],
    ),
    (
        {"schedule.lr": {"loguniform": [1e-5, 1.0], "step": 0.1}},
        ValueError,
        ['"schedule.lr"', "step is not allowed with loguniform", "allowed with loguniform: when"],
    ),
    (
        {"a": {"uniform": [0.0, 1.0], "log": True}},
        ValueError,
        ['"a"', "log is not allowed with uniform", "step, when"],
    ),
    (
        {"a": {"choice": [1, 2], "step": 1}},
        ValueError,
        ['"a"', "step is not allowed with choice"],
    ),
    (
        {"a": {"uniform": [0.0, 1.0], "extra": 1}},
        ValueError,
        ['"a"', 'unknown key "extra"', "step, log, when"],
    ),
    ({"a": {"step": 1}}, ValueError, ['"a"', "needs a distribution", "loguniform, uniform"]),
    ({"a": {}}, ValueError, ['"a"', "needs a distribution", "empty table"]),
    ({"a": 0.5}, TypeError, ['tune.space."a": must be a table']),
    ({"a": {1: [0, 1]}}, TypeError, ['"a"', "keys must be strings"]),
    # choices
    ({"optimizer.name": {"choice": []}}, ValueError, ['"optimizer.name"', "at least one value"]),
    ({"a": {"choice": "adamw"}}, TypeError, ['"a"', "choice must be a list"]),
    ({"a": {"choice": ["sgd", "sgd"]}}, ValueError, ['"a"', "distinct"]),
    ({"a": {"choice": [1, 1.0]}}, ValueError, ['"a"', "distinct"]),
    ({"a": {"choice": [1, "1"]}}, ValueError, ['"a"', "one kind"]),
    ({"a": {"choice": [True, 1]}}, ValueError, ['"a"', "one kind"]),
    ({"a": {"choice": [[1, 2]]}}, TypeError, ['"a"', "true/false, numbers or strings"]),
    ({"a": {"choice": [None]}}, TypeError, ['"a"', "true/false, numbers or strings"]),
    ({"a": {"choice": [math.nan]}}, ValueError, ['"a"', "finite"]),
    # conditions
    (
        {"a": {"choice": [1, 2], "when": {"a": 1}}},
        ValueError,
        ['tune.space."a": when refers to the parameter itself'],
    ),
    (
        {"a": {"choice": [1, 2], "when": {"b": 1}}, "b": {"choice": [1, 2], "when": {"a": 1}}},
        ValueError,
        ["when makes a cycle", '"a" -> "b" -> "a"'],
    ),
    (
        {
            "a": {"choice": [1, 2], "when": {"c": 1}},
            "b": {"choice": [1, 2], "when": {"a": 1}},
            "c": {"choice": [1, 2], "when": {"b": 1}},
        },
        ValueError,
        ["when makes a cycle", '"a" -> "c" -> "b" -> "a"'],
    ),
    (
        {"a": {"uniform": [0.0, 1.0], "when": {"optimizer..name": "sgd"}}},
        ValueError,
        ['"a": when key must be a dotted key path', '"optimizer..name"'],
    ),
    (
        {"a": {"uniform": [0.0, 1.0], "when": {".name": "sgd"}}},
        ValueError,
        ['"a": when key must be a dotted key path'],
    ),
    ({"a": {"uniform": [0.0, 1.0], "when": {1: "sgd"}}}, TypeError, ['"a"', "when keys"]),
    ({"a": {"uniform": [0.0, 1.0], "when": "sgd"}}, TypeError, ['"a"', "when must be a table"]),
    ({"a": {"uniform": [0.0, 1.0], "when": {}}}, ValueError, ['"a"', "when is empty"]),
    (
        {"a": {"uniform": [0.0, 1.0], "when": {"b.c": []}}},
        ValueError,
        ['"a"', 'when "b.c" needs a value or a non-empty list'],
    ),
    (
        {"a": {"uniform": [0.0, 1.0], "when": {"b.c": {"x": 1}}}},
        TypeError,
        ['"a"', 'when "b.c" must be a value'],
    ),
    (
        {
            "optimizer.name": {"choice": ["adamw", "sgd"]},
            "optimizer.momentum": {"uniform": [0.0, 0.9], "when": {"optimizer.name": "sdg"}},
        },
        ValueError,
        [
            'tune.space."optimizer.momentum": when "optimizer.name" = "sdg" never holds',
            '["adamw", "sgd"]',
        ],
    ),
    (
        {"n": {"int": [0, 10], "step": 5}, "m": {"uniform": [0.0, 1.0], "when": {"n": 3}}},
        ValueError,
        ['"m": when "n" = 3 never holds', "[0, 10] in steps of 5"],
    ),
    (
        {"n": {"int": [0, 10]}, "m": {"uniform": [0.0, 1.0], "when": {"n": True}}},
        ValueError,
        ['"m": when "n" = true never holds'],
    ),
    (
        {"x": {"uniform": [0.0, 1.0]}, "m": {"uniform": [0.0, 1.0], "when": {"x": 0.5}}},
        ValueError,
        ['"m": when "x" names a uniform parameter', "choice or an int"],
    ),
    # keys and the space itself
    ({}, ValueError, ["tune.space: is empty", "schedule.lr"]),
    ([("a", {"uniform": [0, 1]})], TypeError, ["tune.space must be a table"]),
    ({3: {"uniform": [0, 1]}}, TypeError, ["tune.space: keys must be key paths", "int 3"]),
    (
        {"schedule..lr": {"uniform": [0, 1]}},
        ValueError,
        ['tune.space."schedule..lr": the key must be a dotted key path'],
    ),
    ({"": {"uniform": [0, 1]}}, ValueError, ['tune.space."": the key must be']),
    ({"fit. seed": {"int": [0, 3]}}, ValueError, ["the key must be a dotted key path"]),
]


@pytest.mark.parametrize(("mapping", "error", "parts"), BAD)
def test_bad_input_names_the_key_and_what_is_allowed(
    mapping: Any, error: type[Exception], parts: list[str]
) -> None:
    with pytest.raises(error) as info:
        SearchSpace.from_mapping(mapping)
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


def test_params_are_checked_when_built_directly() -> None:
    with pytest.raises(ValueError, match=r'"lr": inconsistent'):
        SearchSpace([Param("lr", "loguniform", 1e-3, 1.0, log=False)])
    with pytest.raises(ValueError, match=r'"lr": loguniform needs 0 < low < high'):
        SearchSpace([Param("lr", "loguniform", 0.0, 1.0, log=True)])
    with pytest.raises(ValueError, match=r'"a": given twice'):
        SearchSpace([Param("a", "choice", choices=(1,)), Param("a", "choice", choices=(2,))])
    with pytest.raises(TypeError, match="Param objects"):
        SearchSpace([{"a": {"choice": [1]}}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="is empty"):
        SearchSpace([])


def test_distributions_are_named() -> None:
    assert DISTRIBUTIONS == ("loguniform", "uniform", "int", "choice")


# --------------------------------------------------------------------------- suggest


def test_suggest_stays_in_bounds_with_the_right_types() -> None:
    space = SearchSpace.from_mapping(FULL)
    trials = random_trials(space, 40)
    names = set()
    for trial, p in trials:
        assert 1e-5 <= p["schedule.lr"] <= 1.0
        assert isinstance(p["schedule.lr"], float)
        assert 0.0 <= p["optimizer.weight_decay"] <= 0.1
        assert isinstance(p["optimizer.weight_decay"], float)
        eps = p["optimizer.eps"]
        assert any(eps == pytest.approx(v) for v in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5))
        warm = p["schedule.warmup_steps"]
        assert type(warm) is int
        assert 0 <= warm <= 500
        assert warm % 50 == 0
        batch = p["fit.batch_size"]
        assert type(batch) is int
        assert 8 <= batch <= 256
        assert p["optimizer.name"] in ("adamw", "sgd")
        names.add(p["optimizer.name"])
        # the trial asked Optuna with the param's path as its name and its scale
        assert trial.distributions["schedule.lr"].log is True
        assert trial.distributions["fit.batch_size"].log is True
        assert trial.distributions["optimizer.weight_decay"].log is False
        assert trial.distributions["schedule.warmup_steps"].step == 50
        assert set(trial.params) == set(p)
    assert names == {"adamw", "sgd"}
    # a log scale: about half the learning rates are below the range's geometric middle
    low = sum(p["schedule.lr"] < 1e-2 for _, p in trials)
    assert 8 <= low <= 32


def test_a_conditional_param_is_suggested_only_when_its_condition_holds() -> None:
    space = SearchSpace.from_mapping(FULL)
    seen = {True: 0, False: 0}
    for _, p in random_trials(space, 40):
        sgd = p["optimizer.name"] == "sgd"
        seen[sgd] += 1
        assert ("optimizer.momentum" in p) is sgd
        assert ("optimizer.nesterov" in p) is sgd
        if sgd:
            assert 0.0 <= p["optimizer.momentum"] <= 0.99
            assert isinstance(p["optimizer.nesterov"], bool)
        # results come in the space's order
        assert list(p) == [path for path in FULL if path in p]
    assert seen[True] > 0
    assert seen[False] > 0


def test_conditions_are_suggested_first_whatever_the_declared_order() -> None:
    space = SearchSpace.from_mapping(
        {
            "c": {"int": [0, 3], "when": {"b": 2}},
            "b": {"choice": [1, 2], "when": {"a": ["x", "y"]}},
            "a": {"choice": ["x", "y", "z"]},
        }
    )
    for trial, p in random_trials(space, 30):
        assert next(iter(trial.params)) == "a"
        assert ("b" in p) is (p["a"] in ("x", "y"))
        assert ("c" in p) is (p.get("b") == 2)


def test_a_condition_on_the_base_config() -> None:
    space = SearchSpace.from_mapping(
        {
            "schedule.lr": {"loguniform": [1e-4, 1.0]},
            "optimizer.momentum": {"uniform": [0.0, 0.9], "when": {"optimizer.name": "sgd"}},
            "optimizer.betas": {"choice": ["a", "b"], "when": {"optimizer.name": ["adam", "x"]}},
        }
    )
    sgd = {"task": {"name": "linreg"}, "optimizer": {"name": "sgd"}}
    adam = {"task": {"name": "linreg"}, "optimizer": {"name": "adam"}}
    for _, p in random_trials(space, 5, base=sgd):
        assert set(p) == {"schedule.lr", "optimizer.momentum"}
    for _, p in random_trials(space, 5, base=adam):
        assert set(p) == {"schedule.lr", "optimizer.betas"}
    # a path the base does not set (or no base at all) never holds
    for base in ({"task": {"name": "linreg"}}, None):
        for _, p in random_trials(space, 5, base=base):
            assert set(p) == {"schedule.lr"}


def test_a_condition_on_an_inactive_param_reads_the_base() -> None:
    space = SearchSpace.from_mapping(
        {
            "gate": {"choice": [True]},
            # a base condition never met (x.y is not set): optimizer.name is never suggested
            "optimizer.name": {"choice": ["sgd", "adamw"], "when": {"x.y": 1}},
            "optimizer.momentum": {"uniform": [0.0, 0.9], "when": {"optimizer.name": "sgd"}},
        }
    )
    base = {"optimizer": {"name": "sgd"}}
    for _, p in random_trials(space, 3, base=base):
        # optimizer.name is never suggested; the run keeps the base's "sgd"
        assert set(p) == {"gate", "optimizer.momentum"}
    assert space.active(space["optimizer.momentum"], {"optimizer.name": "adamw"}, base) is False


def test_a_condition_on_a_conditional_param_may_hold_through_the_base() -> None:
    # "gate" = false is not a value gate takes, but when gate is left out the base's holds
    space = SearchSpace.from_mapping(
        {
            "gate": {"choice": [True], "when": {"x.y": 1}},
            "m": {"uniform": [0.0, 1.0], "when": {"gate": False}},
        }
    )
    for _, p in random_trials(space, 3, base={"gate": False}):
        assert set(p) == {"m"}
    for _, p in random_trials(space, 3, base={"gate": False, "x": {"y": 1}}):
        assert set(p) == {"gate"}


def test_condition_values_match_by_kind() -> None:
    space = SearchSpace.from_mapping({"m": {"uniform": [0.0, 1.0], "when": {"t.flag": 1}}})
    m = space["m"]
    assert space.active(m, {}, {"t": {"flag": 1}})
    assert space.active(m, {}, {"t": {"flag": 1.0}})
    assert not space.active(m, {}, {"t": {"flag": True}})
    assert not space.active(m, {}, {"t": {"flag": "1"}})
    assert not space.active(m, {}, {"t": 1})


def test_suggest_refuses_a_base_that_is_not_a_mapping() -> None:
    space = SearchSpace.from_mapping({"a": {"choice": [1]}})
    with pytest.raises(TypeError, match="base must be a run config"):
        space.suggest(optuna.trial.FixedTrial({"a": 1}), base=[1])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- grid


def test_grid_expands_listed_values() -> None:
    space = SearchSpace.from_mapping(
        {
            "optimizer.name": {"choice": ["adamw", "sgd"]},
            "schedule.warmup_steps": {"int": [0, 100], "step": 50},
            "optimizer.weight_decay": {"uniform": [0.0, 0.3], "step": 0.1},
        }
    )
    grid = space.grid()
    assert grid == {
        "optimizer.name": ["adamw", "sgd"],
        "schedule.warmup_steps": [0, 50, 100],
        "optimizer.weight_decay": [0.0, 0.1, 0.2, 0.3],
    }
    assert grid["optimizer.weight_decay"][1] == 0.1  # exact, not 0.1 + 0.0 rounding noise
    # Optuna's grid sampler walks every point, without warnings (they are errors here)
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    seen = set()
    study.optimize(lambda t: seen.add(tuple(space.suggest(t).values())) or 0.0)
    assert seen == set(itertools.product(*grid.values()))


@pytest.mark.parametrize(
    ("entry", "got"),
    [
        ({"loguniform": [1e-5, 1.0]}, "loguniform"),
        ({"uniform": [0.0, 1.0]}, "uniform without step"),
        ({"int": [0, 10]}, "int without step"),
        ({"int": [1, 64], "log": True}, "int without step"),
    ],
)
def test_grid_refuses_unlisted_values(entry: dict[str, Any], got: str) -> None:
    space = SearchSpace.from_mapping({"optimizer.name": {"choice": ["sgd"]}, "schedule.lr": entry})
    with pytest.raises(ValueError, match=r"grid search needs listed values") as info:
        space.grid()
    message = str(info.value)
    assert message.startswith('tune.space."schedule.lr": ')
    assert "give choice, or int/uniform with step" in message
    assert got in message


def test_grid_refuses_a_conditional_param() -> None:
    space = SearchSpace.from_mapping(
        {
            "optimizer.name": {"choice": ["adamw", "sgd"]},
            "optimizer.momentum": {"choice": [0.0, 0.9], "when": {"optimizer.name": "sgd"}},
        }
    )
    with pytest.raises(ValueError, match=r'^tune\.space\."optimizer\.momentum": grid search'):
        space.grid()


# --------------------------------------------------------------------------- to_dict


def test_to_dict_round_trips() -> None:
    space = SearchSpace.from_mapping(FULL)
    data = space.to_dict()
    assert SearchSpace.from_mapping(data) == space
    assert data["schedule.lr"] == {"loguniform": [1e-5, 1.0]}
    assert data["schedule.warmup_steps"] == {"int": [0, 500], "step": 50}
    assert data["fit.batch_size"] == {"int": [8, 256], "log": True}
    assert data["optimizer.momentum"]["when"] == {"optimizer.name": "sgd"}
    # through a TOML file too
    text = dumps_toml({"tune": {"space": data}})
    assert SearchSpace.from_mapping(tomllib.loads(text)["tune"]["space"]) == space
    # a list condition stays a list
    multi = SearchSpace.from_mapping({"a": {"choice": [1], "when": {"b.c": ["x", "y"]}}})
    assert multi.to_dict()["a"]["when"] == {"b.c": ["x", "y"]}
    assert SearchSpace.from_mapping(multi.to_dict()) == multi


def test_equality_ignores_order_and_sees_changes() -> None:
    space = SearchSpace.from_mapping(FULL)
    reordered = SearchSpace.from_mapping(dict(reversed(FULL.items())))
    assert space == reordered
    assert hash(space) == hash(reordered)
    changed = SearchSpace.from_mapping({**FULL, "schedule.lr": {"loguniform": [1e-4, 1.0]}})
    assert space != changed
    assert space != FULL
    assert "SearchSpace.from_mapping(" in repr(space)


# --------------------------------------------------------------------------- apply


def test_apply_sets_nested_paths_on_a_copy() -> None:
    base = {"task": {"name": "linreg"}, "schedule": {"lr": "auto"}, "optimizer": {"betas": [0.9]}}
    out = apply(
        base,
        {"schedule.lr": 0.1, "fit.early_stopping.patience": 3, "optimizer.name": "sgd"},
    )
    assert out == {
        "task": {"name": "linreg"},
        "schedule": {"lr": 0.1},
        "optimizer": {"betas": [0.9], "name": "sgd"},
        "fit": {"early_stopping": {"patience": 3}},
    }
    assert base == {
        "task": {"name": "linreg"},
        "schedule": {"lr": "auto"},
        "optimizer": {"betas": [0.9]},
    }
    out["optimizer"]["betas"].append(0.99)
    assert base["optimizer"]["betas"] == [0.9]
    assert apply(base, {}) == base


def test_apply_refuses_a_path_through_a_value() -> None:
    with pytest.raises(
        ValueError, match=r'cannot set "schedule\.lr\.peak": "schedule\.lr" is 0\.1'
    ):
        apply({"schedule": {"lr": 0.1}}, {"schedule.lr.peak": 1.0})
    with pytest.raises(ValueError, match=r'"task" is "linreg", not a table'):
        apply({"task": "linreg"}, {"task.name": "x"})
    with pytest.raises(ValueError, match="dotted key path"):
        apply({}, {"a..b": 1})
    with pytest.raises(TypeError, match="keys must be key paths"):
        apply({}, {1: 1})
    with pytest.raises(TypeError, match="config must be a mapping"):
        apply([], {})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- check_paths

BASE: dict[str, Any] = {"task": {"name": "linreg"}}


@pytest.fixture(scope="module")
def validate() -> Any:
    pytest.importorskip("pydantic")
    from bergab.config import validate

    return validate


def test_check_paths_passes_keys_of_the_run_config(validate: Any) -> None:
    space = SearchSpace.from_mapping(
        {
            "schedule.lr": {"loguniform": [1e-5, 1.0]},
            "optimizer.weight_decay": {"uniform": [0.0, 0.1]},
            "fit.batch_size": {"choice": [16, 32]},
            "fit.epochs": {"int": [0, 5]},  # low = 0 is a bad value, not a bad key: left to trials
            "optimizer.name": {"choice": ["adamw", "sgd"]},
            # a key only sgd takes: checked with its condition holding
            "optimizer.momentum": {"uniform": [0.0, 0.9], "when": {"optimizer.name": "sgd"}},
        }
    )
    space.check_paths(BASE, validate)


@pytest.mark.parametrize(
    ("space", "base", "parts"),
    [
        (
            {"fit.epoch": {"int": [1, 5]}},
            BASE,
            ['tune.space."fit.epoch": not a key of the run config: fit.epoch: unknown key'],
        ),
        (
            {"bogus.x": {"int": [1, 5]}},
            BASE,
            ['tune.space."bogus.x": not a key of the run config: bogus: unknown table'],
        ),
        (
            {"optimizer.momentum": {"uniform": [0.0, 0.9]}},  # adamw takes no momentum
            BASE,
            ['tune.space."optimizer.momentum": not a key', "optimizer.momentum: unknown key"],
        ),
        (
            {"schedule.lr.peak": {"uniform": [0.1, 0.9]}},
            {**BASE, "schedule": {"lr": 0.1}},
            ['tune.space."schedule.lr.peak": not a key', '"schedule.lr" is 0.1, not a table'],
        ),
        (
            {"schedule.warmup": {"int": [0, 10]}},
            {**BASE, "schedule": {"type": "cosine", "peak": 0.1, "total_steps": 100}},
            ['tune.space."schedule.warmup": not a key', "unknown argument 'warmup'"],
        ),
        (
            {"optimizer.momentum": {"uniform": [0.0, 0.9], "when": {"optimzer.name": "sgd"}}},
            BASE,
            [
                'tune.space."optimizer.momentum": when "optimzer.name" is not a key',
                "optimzer: unknown table",
            ],
        ),
        (
            {"optimizer.momentum": {"uniform": [0.0, 0.9], "when": {"optimizer.name": "sgd"}}},
            BASE,
            ['"optimizer.momentum": when "optimizer.name" reads the run config, which does not'],
        ),
    ],
)
def test_check_paths_names_a_key_the_run_config_lacks(
    validate: Any, space: dict[str, Any], base: dict[str, Any], parts: list[str]
) -> None:
    with pytest.raises(ValueError) as info:  # noqa: PT011 (the message is checked below)
        SearchSpace.from_mapping(space).check_paths(base, validate)
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


def test_check_paths_leaves_errors_elsewhere_alone() -> None:
    def validate(data: dict[str, Any]) -> None:
        raise ValueError("fit.device: unknown key (allowed: ...)")

    SearchSpace.from_mapping({"schedule.lr": {"loguniform": [1e-5, 1.0]}}).check_paths(
        BASE, validate
    )
    with pytest.raises(TypeError, match="base must be a run config"):
        SearchSpace.from_mapping({"a.b": {"choice": [1]}}).check_paths([], validate)  # type: ignore[arg-type]


def test_importing_the_space_does_not_import_optuna() -> None:
    import subprocess
    import sys

    code = "import sys, bergab.tuning.space; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
