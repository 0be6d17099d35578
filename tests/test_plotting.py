"""plotting.trajectories(): a real PNG/GIF with paths, minima and a legend; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bergab import landscapes as ls
from bergab.minimization import MinimizeResult, minimize
from bergab.plotting import trajectories

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")

TAB_BLUE = (31, 119, 180)  # the first path's colour
TAB_ORANGE = (255, 127, 14)  # the second's
CRIMSON = (220, 20, 60)  # minima


def runs(fn: ls.Landscape = ls.himmelblau, steps: int = 60) -> list[MinimizeResult]:
    return [
        minimize(fn, optimizer=o, lr=0.01, max_steps=steps, tol=0.0) for o in ("sgd", "momentum")
    ]


def count_colour(path: Path, rgb: tuple[int, int, int], tol: int = 12) -> int:
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    return int((np.abs(img - np.array(rgb)).max(axis=-1) <= tol).sum())


def test_png_has_paths_minima_and_expected_size(tmp_path: Path) -> None:
    out = trajectories(ls.himmelblau, runs(), tmp_path / "h.png")
    assert out == tmp_path / "h.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == (1100, 460)  # 11 x 4.6 inches at 100 dpi
    # both paths and the four minima are drawn
    assert count_colour(out, TAB_BLUE) > 50
    assert count_colour(out, TAB_ORANGE) > 50
    assert count_colour(out, CRIMSON) > 4 * 20
    assert len(data) < 200_000


def test_single_panel_and_dict_labels(tmp_path: Path) -> None:
    rs = runs()
    out = trajectories(
        ls.himmelblau, {"a": rs[0]}, tmp_path / "one.png", losses=False, dpi=50, title="x"
    )
    with Image.open(out) as im:
        assert im.size == (300, 250)
    assert count_colour(out, TAB_BLUE) > 10
    assert count_colour(out, TAB_ORANGE) == 0  # only the one path
    # a single result is fine too
    trajectories(ls.himmelblau, rs[1], tmp_path / "single.png")


@pytest.mark.parametrize(
    "fn", [ls.saddle, ls.noisy(ls.rosenbrock, 1.0), ls.quadratic(100.0)], ids=lambda f: f.name
)
def test_other_landscapes(fn: ls.Landscape, tmp_path: Path) -> None:
    out = trajectories(fn, runs(fn, steps=30), tmp_path / "f.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_plain_function_needs_a_domain(tmp_path: Path) -> None:
    def bowl(x: torch.Tensor) -> torch.Tensor:
        return (x**2).sum(-1)

    rs = [minimize(bowl, [1.0, -0.5], lr=0.1, max_steps=20)]
    with pytest.raises(ValueError, match="domain is required"):
        trajectories(bowl, rs, tmp_path / "b.png")
    out = trajectories(bowl, rs, tmp_path / "b.png", domain=((-1, 1), (-1, 1)))
    assert out.exists()


def test_gif(tmp_path: Path) -> None:
    out = trajectories(ls.booth, runs(ls.booth, 20), tmp_path / "b.gif", animate=True, frames=4)
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == 4
        assert im.size == (792, 331)  # 11 x 4.6 inches at 72 dpi


def test_bad_arguments(tmp_path: Path) -> None:
    rs = runs(steps=5)
    with pytest.raises(ValueError, match=r"\.gif"):
        trajectories(ls.himmelblau, rs, tmp_path / "x.png", animate=True)
    lean = minimize(ls.himmelblau, lr=0.01, max_steps=5, record=False)
    with pytest.raises(ValueError, match="record=True"):
        trajectories(ls.himmelblau, [lean], tmp_path / "x.png")
    r3 = minimize(ls.rosenbrock.with_dim(3), lr=1e-4, max_steps=5)
    with pytest.raises(ValueError, match="not a 2-D run"):
        trajectories(ls.rosenbrock, [r3], tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        trajectories(ls.himmelblau, [], tmp_path / "x.png")
    with pytest.raises(TypeError, match="MinimizeResult"):
        trajectories(ls.himmelblau, ["sgd"], tmp_path / "x.png")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="results must be"):
        trajectories(ls.himmelblau, 3, tmp_path / "x.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="levels"):
        trajectories(ls.himmelblau, rs, tmp_path / "x.png", levels=1)
    with pytest.raises(ValueError, match="domain must be"):
        trajectories(ls.himmelblau, rs, tmp_path / "x.png", domain=((1, -1), (0, 1)))
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("name", "animate", "match"),
    [
        ("t.xyz", False, "path must end in a file extension matplotlib writes"),
        ("t.png", True, r"path must end in one of \.gif"),
        ("f.txt/t.png", False, "path: cannot create a folder inside the file"),
        ("", False, "path must be a file path, got the folder"),
    ],
)
def test_the_path_is_checked_before_the_contours_are_computed(
    tmp_path: Path, name: str, animate: bool, match: str
) -> None:
    (tmp_path / "f.txt").write_text("x")
    evaluated: list[int] = []

    def bowl(x: torch.Tensor) -> torch.Tensor:
        evaluated.append(x.numel())
        return (x**2).sum(-1)

    rs = [minimize(bowl, [1.0, -0.5], lr=0.1, max_steps=5)]
    evaluated.clear()
    path = tmp_path / name if name else tmp_path
    with pytest.raises(ValueError, match=match):
        trajectories(bowl, rs, path, animate, domain=((-1, 1), (-1, 1)))
    assert evaluated == []  # no grid was evaluated


def test_missing_folders_are_created(tmp_path: Path) -> None:
    out = trajectories(ls.booth, runs(ls.booth, 5), tmp_path / "a" / "b" / "t.svg")
    assert out.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"domain": ((0, 1),)}, ValueError, "domain must be"),
        ({"domain": ((0, 1), (0, "a"))}, ValueError, "domain must be"),
        ({"domain": ((0, 1), (0, float("inf")))}, ValueError, "domain must be"),
        ({"animate": "yes"}, TypeError, "animate must be True or False"),
        ({"losses": 1}, TypeError, "losses must be True or False"),
        ({"log_levels": "no"}, TypeError, "log_levels must be True or False"),
        ({"title": 3}, TypeError, "title must be a str"),
    ],
)
def test_arguments_of_the_wrong_shape_or_kind_are_named(
    tmp_path: Path, kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        trajectories(ls.booth, runs(ls.booth, 5), tmp_path / "t.png", **kwargs)  # type: ignore[arg-type]
