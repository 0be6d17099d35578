"""``bergab landscape``: the figure, the table, tuning, and exit 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from bergab import landscapes as ls
from bergab.cli import main
from bergab.minimization import minimize

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")


def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("optimizer"))
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith("wrote"):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_writes_a_valid_png_and_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "booth.png"
    argv = ["landscape", "booth", "--optimizers", "sgd,momentum", "--steps", "250"]
    rc = main([*argv, "--lr", "0.01", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        im.verify()
    rows = table_rows(captured.out)
    assert set(rows) == {"sgd", "momentum"}
    # the table agrees with the library: final f, steps to f − f* <= 1e-8, status
    for name, (lr, final, hit, status) in rows.items():
        res = minimize(ls.booth, optimizer=name, lr=0.01, max_steps=250, tol=0.0, target=1e-8)
        assert float(lr) == 0.01
        assert float(final) == pytest.approx(res.fun, rel=5e-3)
        assert hit == (str(res.steps) if res.converged else "-")
        assert status == res.status
    assert rows["momentum"][2] != "-"
    assert f"wrote {out}" in captured.out


def test_lr_tune_prints_the_chosen_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.png"
    argv = ["landscape", "quadratic", "--condition-number", "10", "--optimizers", "sgd,nesterov"]
    rc = main([*argv, "--steps", "60", "--lr", "tune", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # GD on κ = 10 (L = 10): of the half-decade grid, 0.1 = 1/L is the fastest stable lr
    assert "tuned lr for sgd: 0.1\n" in captured.out
    assert "tuned lr for nesterov: " in captured.out
    rows = table_rows(captured.out)
    assert rows["sgd"][0] == "0.1"
    assert out.exists()


def test_custom_grid_start_and_per_optimizer_lr(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "landscape",
            "himmelblau",
            "--optimizers",
            "sgd,momentum",
            "--steps",
            "50",
            "--start=-0.27,-0.9",
            "--lr",
            "sgd=0.01,momentum=0.002",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = table_rows(captured.out)
    assert rows["sgd"][0] == "0.01"
    assert rows["momentum"][0] == "0.002"
    assert "wrote" not in captured.out  # no --out: only the table
    rc = main(
        ["landscape", "booth", "--optimizers", "sgd", "--steps", "20", "--grid", "1e-3,1e-2,2"]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tuned lr for sgd: 0.01\n" in captured.out


def test_several_lrs_show_the_effect_of_the_learning_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lr.png"
    argv = ["landscape", "quadratic", "--optimizers", "sgd", "--steps", "100"]
    assert main([*argv, "--lr", "0.001,0.1,0.19,0.25", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.startswith("sgd")]
    # κ = 10, L = 10: too small crawls, 1/L converges, 1.9/L oscillates slowly, 2.5/L diverges
    assert [(r[1], r[4]) for r in rows] == [
        ("0.001", "max_steps"),
        ("0.1", "converged"),
        ("0.19", "max_steps"),
        ("0.25", "diverged"),
    ]
    assert out.exists()


def test_the_readme_saddle_command_draws_an_escape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # README: bergab landscape saddle --optimizers sgd,momentum --out saddle.png
    out = tmp_path / "saddle.png"
    assert main(["landscape", "saddle", "--optimizers", "sgd,momentum", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # lr 1 (sgd) and 0.0316 (momentum) left the window within a few steps
    assert "tuned lr for sgd: 0.01\n" in text
    assert "tuned lr for momentum: 0.001\n" in text
    assert out.stat().st_size > 10_000


@pytest.mark.slow
def test_gif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "saddle.png"
    argv = ["landscape", "saddle", "--optimizers", "sgd,momentum", "--steps", "40"]
    rc = main([*argv, "--lr", "0.05", "--out", str(out), "--gif", "--frames", "3"])
    assert rc == 0, capsys.readouterr().err
    with Image.open(out.with_suffix(".gif")) as im:
        assert (im.format, im.n_frames) == ("GIF", 3)


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["landscape", "--help"]) == 0
    text = capsys.readouterr().out
    assert "bergab landscape rosenbrock" in text
    assert "styblinski_tang" in text


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["banana"], "name must be one of"),
        (["booth", "--lr", "-1"], "--lr must be in"),
        (["booth", "--lr", "fast"], "--lr must be a number"),
        (["booth", "--optimizers", "sgd,adam", "--lr", "sgd=0.1"], "no value for adam"),
        (["booth", "--optimizers", "sgd", "--lr", "sgd=0.1,adam=1"], "not in --optimizers"),
        (["booth", "--optimizers", "sgd", "--lr", "=0.1"], "NAME=VALUE"),
        (["booth", "--optimizers", "nosuch", "--lr", "0.1"], "unknown optimizer"),
        (["booth", "--optimizers", "sgd,sgd", "--lr", "0.1"], "twice"),
        (["booth", "--optimizers", ",", "--lr", "0.1"], "at least one"),
        (["booth", "--steps", "0", "--lr", "0.1"], "--steps must be"),
        (["booth", "--tol", "-1", "--lr", "0.1"], "--tol must be"),
        (["booth", "--start", "1,2,3", "--lr", "0.1"], "--start must be 2"),
        (["booth", "--gif", "--lr", "0.1"], "--gif needs --out"),
        (["booth", "--grid", "1,2", "--optimizers", "sgd"], "LOW,HIGH,NUM"),
        (["booth", "--grid", "1,0.1,3", "--optimizers", "sgd"], "--grid HIGH"),
        (["quadratic", "--condition-number", "0.5", "--lr", "0.1"], "--condition-number must be"),
        (["booth", "--noise", "-1", "--lr", "0.1"], "--noise must be"),
        (["booth", "--noise", "nan", "--lr", "0.1"], "--noise must be"),
        (["booth", "--out", "/no/such/dir/x.png", "--lr", "0.1"], "does not exist"),
        (["booth", "--out", "x.xyz", "--lr", "0.1"], "--out must end in a file extension"),
        (["booth", "--out", "/", "--lr", "0.1"], "--out must be a file path"),
        (["booth", "--out", f"{__file__}/x.png", "--lr", "0.1"], "--out: cannot create"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["landscape", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("bergab landscape: error:")
    assert match in err
