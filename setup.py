"""Build step of bergab: compile the CPU kernels in ``src/bergab/optim/csrc`` into shared
libraries inside the package (loaded with ctypes by ``bergab/optim/_native.py``).

Everything else about the package lives in ``pyproject.toml``. The kernels are optional:
where no C compiler works, the build prints a warning and the package installs without
them (the optimizers then use their ``foreach`` paths, and ``bergab info`` says why).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "_bergab_kernel_build", HERE / "src" / "bergab" / "optim" / "_kernel_build.py"
)
if _spec is None or _spec.loader is None:
    raise RuntimeError("src/bergab/optim/_kernel_build.py is missing")
kb = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = kb  # dataclasses look their module up while the class is made
_spec.loader.exec_module(kb)

#: Written beside the libraries: what was built, and why anything was not.
RECORD = "_kernels_build.json"


def _extensions() -> list[Extension]:
    """One entry per library, so setuptools knows the outputs (wheel, editable install)."""
    exts = []
    for variant in kb.variants():
        for flavor in kb.FLAVORS:
            name = kb.library_filename(flavor, variant.level).removesuffix(".so")
            ext = Extension(
                f"bergab.optim.{name}",
                sources=[str(p.relative_to(HERE)) for p in kb.sources()],
                depends=[str(p.relative_to(HERE)) for p in kb.CSRC.glob("*.h")],
                optional=True,  # no compiler: install without kernels
            )
            ext.bergab_variant = variant  # type: ignore[attr-defined]
            ext.bergab_flavor = flavor  # type: ignore[attr-defined]
            exts.append(ext)
    return exts


class BuildKernels(build_ext):
    """Compile each library with ``_kernel_build.build_library``; a failure is a warning."""

    def get_ext_filename(self, fullname: str) -> str:
        # plain ``.so`` names: these are ctypes libraries, not Python extension modules
        return os.path.join(*fullname.split(".")[:-1], fullname.rsplit(".", maxsplit=1)[-1] + ".so")

    def build_extensions(self) -> None:
        record: dict[str, object] = {"built": [], "failed": {}}
        out_dir = None
        if kb.switched_off("BERGAB_BUILD_NATIVE"):
            record["failed"] = {"all": "skipped: BERGAB_BUILD_NATIVE=0 at build time"}
        for ext in self.extensions:
            target = Path(self.get_ext_fullpath(ext.name))
            out_dir = target.parent
            if record["failed"].get("all"):  # type: ignore[attr-defined]
                target.unlink(missing_ok=True)
                continue
            key = f"{ext.bergab_flavor}/{ext.bergab_variant.level}"
            try:
                kb.build_variant(target, ext.bergab_variant, ext.bergab_flavor)
            except kb.BuildError as e:
                target.unlink(missing_ok=True)  # never leave a stale library behind
                record["failed"][key] = str(e)  # type: ignore[index]
                print(f"warning: bergab: CPU kernels {key} not built: {e}", file=sys.stderr)
            else:
                record["built"].append(key)  # type: ignore[attr-defined]
        if out_dir is not None:
            record["digest"] = kb.sources_digest()
            (out_dir / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        if not record["built"]:
            print(
                "warning: bergab: no CPU kernels were built; the optimizers will use their "
                "foreach paths (see 'bergab info')",
                file=sys.stderr,
            )

    def _record_paths(self) -> tuple[str, str]:
        """(in the build directory, in the source tree) of the build record."""
        build_py = self.get_finalized_command("build_py")
        inplace, regular = self._get_inplace_equivalent(build_py, self.extensions[0])
        return (
            os.path.join(os.path.dirname(regular), RECORD),
            os.path.join(os.path.dirname(inplace), RECORD),
        )

    def copy_extensions_to_source(self) -> None:
        # editable install: a library this build could not make must not survive from an
        # earlier build, and the record goes with the libraries
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace, regular = self._get_inplace_equivalent(build_py, ext)
            if not os.path.exists(regular) and os.path.exists(inplace):
                os.unlink(inplace)
        super().copy_extensions_to_source()
        if self.extensions:
            regular, inplace = self._record_paths()
            if os.path.exists(regular):
                self.copy_file(regular, inplace, level=self.verbose)

    # Only what was built: a library the compiler could not make is not an output (an
    # editable install in strict mode copies every output and fails on a missing one).
    def _get_output_mapping(self):  # type: ignore[no-untyped-def]
        for regular, inplace in super()._get_output_mapping():
            if os.path.exists(regular):
                yield regular, inplace
        if self.inplace and self.extensions:
            yield self._record_paths()

    def get_outputs(self) -> list[str]:
        outputs = [p for p in super().get_outputs() if os.path.exists(p)]
        if not self.inplace and self.extensions:
            outputs.append(self._record_paths()[0])
        return outputs


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildKernels})
