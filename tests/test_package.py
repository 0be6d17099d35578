"""The package surface: a literal __all__, dir() equal to it, light imports, the CLI shell."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bergab
from bergab import cli
from bergab._validate import MissingDependencyError, check_choice, check_int, check_real, require

SRC = Path(bergab.__file__).parent


def test_dir_equals_all() -> None:
    assert sorted(dir(bergab)) == sorted(bergab.__all__)
    for name in bergab.__all__:
        assert getattr(bergab, name) is not None


def test_all_is_a_literal_list() -> None:
    tree = ast.parse((SRC / "__init__.py").read_text())
    assigns = [n for n in tree.body if isinstance(n, ast.Assign)]
    (node,) = [n for n in assigns if any(getattr(t, "id", "") == "__all__" for t in n.targets)]
    assert isinstance(node.value, ast.List)
    assert all(isinstance(e, ast.Constant) for e in node.value.elts)


def test_every_module_uses_future_annotations() -> None:
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if path.name == "__main__.py" or len(ast.parse(text).body) <= 1:  # docstring only
            continue
        assert "from __future__ import annotations" in text, path


def test_py_typed_ships() -> None:
    assert (SRC / "py.typed").exists()


def test_import_needs_only_torch_and_numpy() -> None:
    # measured against what `import torch, numpy` alone loads (torch itself imports tqdm)
    code = (
        "import sys, torch, numpy\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import bergab\n"
        "heavy = {'matplotlib', 'optuna', 'tensorboard', 'tqdm', 'pydantic', 'typer', 'pandas',"
        " 'sklearn', 'scipy', 'PIL'}\n"
        "print(sorted(heavy & ({m.split('.')[0] for m in sys.modules} - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_cli_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert bergab.__version__ in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert "usage: bergab" in capsys.readouterr().out


def test_cli_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_installed_executable_runs() -> None:
    exe = Path(sys.executable).parent / "bergab"
    if not exe.exists():
        pytest.skip("bergab console script not installed in this environment")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("bergab ")


def test_missing_dependency_is_one_line() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'bergab\[plot\]'") as exc:
        require("no_such_module_xyz", "plot")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (lambda: check_real("lr", -1.0, low=0.0), ValueError, r"lr must be in \[0, inf\)"),
        (lambda: check_real("lr", float("nan")), ValueError, "lr must be in"),
        (lambda: check_real("lr", "0.1"), TypeError, "lr must be a real number"),
        (lambda: check_real("lr", True), TypeError, "lr must be a real number"),
        (lambda: check_int("steps", 2.5), TypeError, "steps must be an integer"),
        (lambda: check_int("steps", 0, low=1), ValueError, r"steps must be an integer in \[1"),
        (lambda: check_choice("mode", "x", ("a", "b")), ValueError, "mode must be one of"),
    ],
)
def test_validation_messages_name_the_argument(call, exc, pattern) -> None:
    with pytest.raises(exc, match=pattern):
        call()
