"""The CPU kernels are built with the package, loaded without a compiler, and chosen per
CPU: ``setup.py``, ``optim/_kernel_build.py``, the loader in ``optim/_native.py``,
``bergab info``."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bergab import optim
from bergab.cli import main
from bergab.optim import _kernel_build, _native

ROOT = Path(__file__).resolve().parents[1]
STATUS = _native.native_status()
PACKAGED = pytest.mark.skipif(
    not STATUS.available or STATUS.level == "native",
    reason=f"the package's CPU kernels are not in use: {STATUS.reason}",
)


def _failing_compiler(tmp_path: Path) -> tuple[Path, Path]:
    """A ``cc`` that fails, and the file it leaves behind if anything ever runs it."""
    marker = tmp_path / "compiler-was-run"
    cc = tmp_path / "failing-cc"
    cc.write_text(f"#!/bin/sh\ntouch '{marker}'\necho 'error: no compiler here' >&2\nexit 1\n")
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    return cc, marker


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERGAB_", "XDG_"))}
    env.update(extra)
    return env


def _falls_back_to_foreach(reason: str) -> None:
    """``auto`` steps on foreach, and an explicit ``impl="fused"`` raises with ``reason``."""
    w = [torch.nn.Parameter(torch.ones(4))]
    opt = optim.LARS(w, lr=0.1)
    assert opt._select_impl(w) == "foreach"
    w[0].grad = torch.ones(4)
    opt.step()
    with pytest.raises(_native.NativeUnavailableError, match=reason):
        optim.LARS(w, lr=0.1, impl="fused").step()


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The package's own libraries (whatever ``BERGAB_NATIVE_*`` the caller set), chosen
    again after the test changed the environment or the files."""
    for name in ("BERGAB_NATIVE", "BERGAB_NATIVE_DEV", "BERGAB_NATIVE_ISA", "BERGAB_NATIVE_OPENMP"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    monkeypatch.undo()
    _native.reload()


# ------------------------------------------------------------------ stepping: no compiler
@PACKAGED
def test_a_fresh_process_steps_every_fused_optimizer_without_compiler_or_home(
    tmp_path: Path,
) -> None:
    cc, marker = _failing_compiler(tmp_path)
    home, tmp, cwd = tmp_path / "home", tmp_path / "tmp", tmp_path / "cwd"
    for d in (home, tmp, cwd):
        d.mkdir()
    script = textwrap.dedent(
        """
        import torch
        from bergab import optim
        from tests.optim_specs import SPECS
        seen = set()
        for spec in SPECS:
            ps = [torch.nn.Parameter(torch.randn(n)) for n in (5, 40_000)]
            opt = spec.cls(ps, **spec.kwargs)
            if getattr(opt, "native", None) is None:
                continue
            assert opt._select_impl(ps) == "fused", spec.id
            opt = spec.cls(ps, **spec.kwargs, impl="fused")
            for _ in range(2):
                for p in ps:
                    p.grad = torch.randn_like(p)
                opt.step()
            assert all(torch.isfinite(p).all() for p in ps), spec.id
            seen.add(type(opt).__name__)
        print(sorted(seen))
        print(optim.native_status())
        """
    )
    path = os.pathsep.join([str(Path(optim.__file__).parents[2]), str(ROOT)])
    env = _clean_env(CC=str(cc), HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # torch's own compiler module, imported with an optimizer, makes its cache directory
    # under $TMPDIR: torch's file, not ours, so it goes elsewhere
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert {"LARS", "LAMB", "Prodigy", "DoG", "LDoG", "NAdam", "RAdam", "RMSprop"} <= set(
        eval(out[0])
    )
    assert out[1].startswith(STATUS.level or "?")
    assert not marker.exists()  # no compiler was started
    for d in (home, tmp, cwd):
        assert list(d.iterdir()) == [], d  # nothing written


# ------------------------------------------------------------------ choosing a library
@PACKAGED
def test_every_level_the_cpu_runs_can_be_forced(fresh: pytest.MonkeyPatch) -> None:
    assert STATUS.level == STATUS.cpu[0] or STATUS.reason  # the widest, or says why not
    for level in STATUS.built:
        fresh.setenv("BERGAB_NATIVE_ISA", level)
        status = _native.reload()
        if level in STATUS.cpu:
            assert status.level == level
            assert Path(status.library or "").name == _kernel_build.library_filename(
                status.flavor or "", level
            )
            assert "forced" in (status.reason or "")
        else:
            assert not status.available
            assert "cannot run" in (status.reason or "")


@PACKAGED
def test_a_level_the_cpu_cannot_run_is_refused_by_name(fresh: pytest.MonkeyPatch) -> None:
    baseline = _kernel_build.variants()[-1].level
    fresh.setattr(_native, "_cpu_levels", lambda lib: (baseline,))  # an older CPU
    status = _native.reload()
    assert status.level == baseline
    if len(STATUS.built) > 1:
        assert "not in the package" not in (status.reason or "")
        fresh.setenv("BERGAB_NATIVE_ISA", STATUS.built[0])
        status = _native.reload()
        assert not status.available
        assert f"BERGAB_NATIVE_ISA={STATUS.built[0]}, but this CPU cannot run it" in (
            status.reason or ""
        )
    fresh.setenv("BERGAB_NATIVE_ISA", "x86-64-v9")
    assert "is not a level here" in (_native.reload().reason or "")


def _package_copy(tmp_path: Path, keep: list[str], failed: dict[str, str]) -> Path:
    """A package directory holding only the libraries named ``flavor/level`` in ``keep``."""
    d = tmp_path / "pkg"
    d.mkdir()
    for key in keep:
        flavor, level = key.split("/")
        name = _kernel_build.library_filename(flavor, level)
        shutil.copy(Path(_native.__file__).with_name(name), d / name)
    record = {"built": keep, "failed": failed, "digest": _kernel_build.sources_digest()}
    (d / "_kernels_build.json").write_text(json.dumps(record))
    return d


@PACKAGED
def test_a_missing_level_is_reported_with_the_builds_reason(
    tmp_path: Path, fresh: pytest.MonkeyPatch
) -> None:
    if len(STATUS.cpu) < 2 or len(STATUS.built) < 2:
        pytest.skip("this CPU runs one level only")
    widest, baseline = STATUS.cpu[0], _kernel_build.variants()[-1].level
    d = _package_copy(
        tmp_path,
        [f"pthread/{baseline}"],
        {f"pthread/{widest}": "cc exited 1: error: unknown target", f"omp/{baseline}": "no omp"},
    )
    fresh.setattr(_native, "_HERE", d)
    fresh.setattr(_native, "_RECORD", d / "_kernels_build.json")
    status = _native.reload()
    assert (status.level, status.flavor) == (baseline, "pthread")  # omp missing: pthreads
    assert status.built == (baseline,)
    assert f"{widest} not in the package (cc exited 1: error: unknown target)" in (
        status.reason or ""
    )


def test_kernels_built_from_other_sources_are_not_used(
    tmp_path: Path, fresh: pytest.MonkeyPatch
) -> None:
    fresh.setattr(_kernel_build, "sources_digest", lambda: "edited since the build")
    status = _native.reload()
    assert not status.available
    assert "other sources than csrc/ holds now" in (status.reason or "")
    _falls_back_to_foreach("other sources")


def test_a_package_without_kernels_says_so(tmp_path: Path, fresh: pytest.MonkeyPatch) -> None:
    fresh.setattr(_native, "_RECORD", tmp_path / "absent.json")
    status = _native.reload()
    assert not status.available
    assert "holds no CPU kernels" in (status.reason or "")
    assert str(status).endswith("fused optimizers use foreach")
    _falls_back_to_foreach("holds no CPU kernels")


@PACKAGED
def test_a_cpu_that_runs_none_of_the_built_levels_falls_back(fresh: pytest.MonkeyPatch) -> None:
    fresh.setattr(_native, "_cpu_levels", lambda lib: ())  # e.g. a 32-bit build
    status = _native.reload()
    assert not status.available
    assert "runs none of the levels built" in (status.reason or "")
    _falls_back_to_foreach("runs none of the levels built")


def test_the_build_record_goes_stale_with_the_flags_too(fresh: pytest.MonkeyPatch) -> None:
    before = _kernel_build.sources_digest()
    fresh.setattr(_kernel_build, "BASE_FLAGS", (*_kernel_build.BASE_FLAGS, "-ffast-math"))
    assert _kernel_build.sources_digest() != before


# ------------------------------------------------------------------ the developer rebuild
def test_developer_rebuild_compiles_into_the_cache_once(
    tmp_path: Path, fresh: pytest.MonkeyPatch
) -> None:
    if shutil.which(_kernel_build.compiler_command()[0]) is None:
        pytest.skip("no C compiler")
    fresh.setenv("BERGAB_NATIVE_DEV", "1")
    fresh.setenv("BERGAB_CACHE_DIR", str(tmp_path))
    status = _native.reload()
    assert status.available, status.reason
    assert status.level == "native"
    built = list((tmp_path / "native").iterdir())
    assert [p.suffix for p in built] == [".so"]  # one library, no temporary files left
    stamp = built[0].stat().st_mtime_ns
    _native.reload()
    assert built[0].stat().st_mtime_ns == stamp  # loaded from the cache, not rebuilt
    w = [torch.nn.Parameter(torch.ones(3))]
    w[0].grad = torch.ones(3)
    optim.LAMB(w, lr=0.1, impl="fused").step()


def test_a_failed_developer_rebuild_gives_the_reason_and_auto_falls_back(
    tmp_path: Path, fresh: pytest.MonkeyPatch
) -> None:
    cc, _ = _failing_compiler(tmp_path)
    fresh.setenv("BERGAB_NATIVE_DEV", "1")
    fresh.setenv("BERGAB_CACHE_DIR", str(tmp_path / "cache"))
    fresh.setenv("CC", str(cc))
    status = _native.reload()
    assert not status.available
    assert "did not build" in (status.reason or "")
    assert "no compiler here" in (status.reason or "")
    _falls_back_to_foreach("did not build")


# ------------------------------------------------------------------ the package build
def test_every_source_is_compiled_into_one_library_per_variant() -> None:
    levels = [v.level for v in _kernel_build.variants("x86_64")]
    assert levels == ["x86-64-v4", "x86-64-v3", "x86-64"]
    assert [v.level for v in _kernel_build.variants("aarch64")] == ["generic"]
    assert {p.name for p in _kernel_build.sources()} >= {"prodigy.c", "dog.c", "cpu.c"}
    assert "-ffp-contract=off" in _kernel_build.BASE_FLAGS  # same bits on every level
    assert not any("native" in f or "fast-math" in f for f in _kernel_build.BASE_FLAGS)


def test_a_compiler_without_level_names_builds_the_level_feature_by_feature(
    tmp_path: Path,
) -> None:
    cc = shutil.which(_kernel_build.compiler_command()[0])
    if cc is None or not _kernel_build.variants()[0].fallback:
        pytest.skip("needs a C compiler on x86-64")
    old = tmp_path / "old-cc"  # a compiler from before the level names (GCC < 11)
    old.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in -march=x86-64-v*) echo "error: bad value" >&2; '
        f'exit 1;; esac; done\nexec {cc} "$@"\n'
    )
    old.chmod(old.stat().st_mode | stat.S_IXUSR)
    variant = _kernel_build.variants()[1]  # x86-64-v3
    with pytest.raises(_kernel_build.BuildError, match="bad value"):
        _kernel_build.build_library(tmp_path / "a.so", variant.flags, compiler=[str(old)])
    built = _kernel_build.build_variant(tmp_path / "v3.so", variant, "pthread", compiler=[str(old)])
    lib = ctypes.CDLL(str(built))
    assert hasattr(lib, "lamb_f32")
    assert "-mavx2" in variant.fallback
    assert "-mfma" in variant.fallback


@pytest.mark.slow
@pytest.mark.parametrize("how", ["wheel", "editable-strict"])
def test_installing_without_a_compiler_gives_a_working_package_on_foreach(
    how: str, tmp_path: Path
) -> None:
    cc, marker = _failing_compiler(tmp_path)
    project = tmp_path / "project"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "runs", "*.so", "_kernels_build.json", "__pycache__",
            "*.egg-info", ".*_cache",
        ),
    )  # fmt: skip
    target = tmp_path / "site"
    env = _clean_env(CC=str(cc), PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation"]
    if how == "wheel":
        pip += ["--no-index", "--target", str(target), str(project)]
    else:  # strict mode copies every output the build names: none may be missing
        pip += ["--no-index", "--ignore-installed", "--prefix", str(target), "-e", str(project),
                "--config-settings", "editable_mode=strict"]  # fmt: skip
    done = subprocess.run(pip, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.exists()  # the build did try the compiler
    assert "no CPU kernels were built" in done.stderr + done.stdout
    if how == "wheel":
        import_dir = target
    else:  # the .pth names the link tree the strict install made in the project
        site = next(target.glob("lib/python*/site-packages"))
        pth = next(site.glob("__editable__*bergab*.pth")).read_text().split()
        import_dir = Path(pth[0])
        assert import_dir.is_relative_to(project)
    package = import_dir / "bergab" / "optim"
    assert not list(package.glob("*.so"))
    record = json.loads((package / "_kernels_build.json").read_text())
    assert record["built"] == []
    assert all("no compiler here" in why for why in record["failed"].values())

    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(import_dir)!r})  # before the editable bergab of the tests
        import torch, bergab
        from bergab import optim
        print(bergab.__file__)
        print(optim.native_status())
        w = [torch.nn.Parameter(torch.ones(4))]
        opt = optim.Prodigy(w)
        assert opt._select_impl(w) == "foreach"
        w[0].grad = torch.ones(4)
        opt.step()
        from bergab.cli import main
        main(["info"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_clean_env(),
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(str(import_dir))
    assert lines[1].startswith("unavailable (the package was built without its CPU kernels")
    assert "no compiler here" in lines[1]
    assert any(ln.startswith("kernels: unavailable") for ln in lines)


# ------------------------------------------------------------------ bergab info
def test_info_prints_versions_threads_and_the_kernel_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bergab ")
    assert f"torch: {torch.__version__}" in out
    assert f"threads: torch {torch.get_num_threads()}" in out
    assert f"kernels: {_native.native_status()}" in out
