"""The bad-input suite of issue #17, library side: every public function and class.

Each row of ``tests/bad_input_cases.py`` is one test: the call must raise the expected
exception type with a message that names the argument (or key, or file). A failure says
``SILENT`` (the call returned) or ``UNCLEAR`` (another exception, or a message that does
not name the argument), the two numbers ``docs/bad-input.md`` keeps at 0. The ``silent``
and ``works`` tables check results instead: calls that used to return a wrong result, and
inputs that must be accepted (numpy arrays, ...).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tests import bad_input_cases as cases

pytest.importorskip("pydantic")
pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    # the cases provoke warnings on purpose (broadcasting losses, lr_find's notes)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def template_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """A finished 3-step linreg run, built on first use (only the ``run-`` cases need it)."""
    made: list[Path] = []

    def get() -> Path:
        if not made:
            import bergab.run
            from bergab import config

            out = tmp_path_factory.mktemp("bad-input-run") / "run"
            cfg = config.validate(cases.cfg_dict(output={"dir": str(out), "plots": False}))
            bergab.run.train(cfg, say=lambda s: None)
            made.append(out)
        return made[0]

    return get


def _ctx(tmp_path: Path, template_run: Callable[[], Path]) -> cases.Ctx:
    return cases.Ctx(tmp=tmp_path, template_run=template_run)


@pytest.mark.parametrize("case", cases.LIBRARY_CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_naming_the_argument(
    case: cases.Case, tmp_path: Path, template_run: Callable[[], Path]
) -> None:
    problem = cases.verdict(case, _ctx(tmp_path, template_run))
    assert problem is None, problem


@pytest.mark.parametrize("case", cases.SILENT_RAISES, ids=lambda c: c.id)
def test_silent_wrong_results_now_raise(
    case: cases.Case, tmp_path: Path, template_run: Callable[[], Path]
) -> None:
    problem = cases.verdict(case, _ctx(tmp_path, template_run))
    assert problem is None, problem


@pytest.mark.parametrize("check", cases.SILENT_CHECKS, ids=lambda c: c.id)
def test_silent_wrong_results_are_now_right(
    check: cases.Check, tmp_path: Path, template_run: Callable[[], Path]
) -> None:
    try:
        check.check(_ctx(tmp_path, template_run))
    except AssertionError as exc:
        pytest.fail(f"SILENT: {exc}")


@pytest.mark.parametrize("check", cases.MUST_WORK, ids=lambda c: c.id)
def test_good_input_of_other_kinds_is_accepted(
    check: cases.Check, tmp_path: Path, template_run: Callable[[], Path]
) -> None:
    try:
        check.check(_ctx(tmp_path, template_run))
    except Exception as exc:
        pytest.fail(f"REFUSED: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- the rules


def test_every_case_names_something() -> None:
    for case in [*cases.LIBRARY_CASES, *cases.SILENT_RAISES]:
        names = (case.must_name,) if isinstance(case.must_name, str) else case.must_name
        assert names, case.id
        assert all(n.strip() for n in names), case.id


def test_names_are_matched_as_whole_words() -> None:
    assert cases.names_in("lr must be in (0, inf), got -1", "lr") == []
    assert cases.names_in("lr_find.steps: must be >= 2", "lr") == ["lr"]
    assert cases.names_in("an error happened", "err") == ["err"]
    assert cases.names_in("betas[1] must be in [0, 1)", "betas") == []
    assert cases.names_in("fit.clip_norm: must be > 0", ("fit.clip_norm", "clip")) == ["clip"]
    assert cases.names_in("output.dir: is a file", cases.AnyOf(("--out", "output.dir"))) == []
