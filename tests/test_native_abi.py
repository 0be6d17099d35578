"""The C boundary of bergab's CPU kernels: ``optim/_abi.py`` (the ctypes mirror) against
``csrc/hp.h`` as the compiler laid it out (the layout functions of ``csrc/abi.c``), and
the library's exported entry points against the prototype table.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest
import torch

from bergab.optim import _abi, _native

LIB = _native.library("layerwise")  # one library holds every family

pytestmark = pytest.mark.skipif(LIB is None, reason="bergab's CPU kernels cannot be built here")

#: hp.h's field types and their ctypes mirrors
C_TYPES = {"double": ctypes.c_double, "int64_t": ctypes.c_int64}


def _fn(name: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
    assert LIB is not None
    fn = LIB[name]
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn


def c_structs() -> list[str]:
    nth = _fn("bergab_hp_struct", ctypes.c_char_p, ctypes.c_int64)
    names = []
    while (name := nth(len(names))) is not None:
        names.append(name.decode())
    return names


def c_fields(struct: str) -> list[str]:
    nth = _fn("bergab_hp_field", ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64)
    names = []
    while (name := nth(struct.encode(), len(names))) is not None:
        names.append(name.decode())
    return names


def c_size(struct: str) -> int:
    return int(_fn("bergab_hp_size", ctypes.c_int64, ctypes.c_char_p)(struct.encode()))


def c_offset(struct: str, field: str) -> int:
    offset = _fn("bergab_hp_offset", ctypes.c_int64, ctypes.c_char_p, ctypes.c_char_p)
    return int(offset(struct.encode(), field.encode()))


def c_field_type(struct: str, field: str) -> str | None:
    kind = _fn("bergab_hp_field_type", ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p)
    value = kind(struct.encode(), field.encode())
    return None if value is None else value.decode()


def c_kernels() -> list[str]:
    nth = _fn("bergab_kernel", ctypes.c_char_p, ctypes.c_int64)
    names = []
    while (name := nth(len(names))) is not None:
        names.append(name.decode())
    return names


def c_kernel_args(kernel: str) -> list[tuple[str, str]]:
    """(type, name) of each argument hp.h declares between ptrs and nthreads."""
    text = _fn("bergab_kernel_args", ctypes.c_char_p, ctypes.c_char_p)(kernel.encode())
    assert text is not None, kernel
    out = []
    for decl in text.decode().split(","):
        m = re.fullmatch(r"\s*(.*?)\s*(\w+)\s*", decl)
        assert m is not None, decl
        out.append((" ".join(m.group(1).replace("*", " * ").split()), m.group(2)))
    return out


def ctype_of(c_type: str) -> object:
    """The ctypes type a C argument type of hp.h maps to."""
    scalar = {"int64_t": ctypes.c_int64, "int": ctypes.c_int, "void *": ctypes.c_void_p}
    if c_type in scalar:
        return scalar[c_type]
    m = re.fullmatch(r"(?:const )?(\w+) \*", c_type)
    assert m is not None, c_type
    pointee = m.group(1)
    if pointee == "double":
        return ctypes.POINTER(ctypes.c_double)
    struct = getattr(_abi, pointee)  # a hyperparameter struct: its mirror
    assert struct in _abi.HP_STRUCTS
    return ctypes.POINTER(struct)


# ---------------------------------------------------------------------------- the structs
def test_the_same_structs_in_c_and_python() -> None:
    assert c_structs() == [s.__name__ for s in _abi.HP_STRUCTS]


@pytest.mark.parametrize("struct", _abi.HP_STRUCTS, ids=lambda s: s.__name__)
def test_each_struct_has_the_c_layout(struct: type[ctypes.Structure]) -> None:
    name = struct.__name__
    fields = [(f[0], f[1]) for f in struct._fields_]
    assert c_fields(name) == [f for f, _ in fields]  # same names, same order
    assert c_size(name) == ctypes.sizeof(struct)
    for field, ctype in fields:
        assert c_offset(name, field) == getattr(struct, field).offset, field
        c_type = c_field_type(name, field)
        assert c_type in C_TYPES, (field, c_type)
        assert ctype is C_TYPES[c_type], field
    # 8-byte fields only: no padding, so the layout is the same for every compiler
    assert ctypes.sizeof(struct) == 8 * len(fields)


def test_the_layout_functions_reject_unknown_names() -> None:
    assert c_size("NoSuchHp") == -1
    assert c_offset("LarsHp", "no_such_field") == -1
    assert c_offset("NoSuchHp", "lr") == -1
    assert c_field_type("LarsHp", "no_such_field") is None
    assert c_fields("NoSuchHp") == []


# ---------------------------------------------------------------------------- the kernels
def test_the_same_kernels_in_c_and_python() -> None:
    assert c_kernels() == list(_abi.PROTOTYPES)


@pytest.mark.parametrize("kernel", list(_abi.PROTOTYPES))
def test_each_prototype_matches_its_c_declaration(kernel: str) -> None:
    declared = c_kernel_args(kernel)
    proto = _abi.PROTOTYPES[kernel]
    assert [name for _, name in declared] == [a.name for a in proto.args]
    for (c_type, name), arg in zip(declared, proto.args, strict=True):
        assert arg.ctype is ctype_of(c_type), (name, c_type)
    types = _abi.argtypes(kernel)
    assert types[:3] == (
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_void_p),
    )
    assert types[-1] is ctypes.c_int


@pytest.mark.parametrize("kernel", list(_abi.PROTOTYPES))
def test_each_kernel_exists_for_both_dtypes(kernel: str) -> None:
    assert LIB is not None
    for suffix in ("f32", "f64"):
        assert hasattr(LIB, f"{kernel}_{suffix}")


def test_the_library_exports_no_kernel_without_a_prototype() -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm here to list the library's symbols")
    assert LIB is not None
    done = subprocess.run(
        [nm, "-D", "--defined-only", LIB._name], capture_output=True, text=True, check=True
    )
    functions = {
        parts[2].split("@")[0]
        for parts in (line.split() for line in done.stdout.splitlines())
        if len(parts) == 3 and parts[1] in ("T", "t", "W")
    }
    functions -= {"_init", "_fini"}
    kernels = {f"{k}_{s}" for k in _abi.PROTOTYPES for s in ("f32", "f64")}
    assert kernels <= functions
    # everything else is bergab's own plumbing (the layout tables, the CPU check), never a
    # helper that escaped `static` (the families are linked into one library)
    assert {f for f in functions - kernels if not f.startswith("bergab_")} == set()


# ---------------------------------------------------------------------------- calling
def test_call_checks_the_arguments_against_the_prototype() -> None:
    assert LIB is not None
    w, g = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])
    lists = [[w], [g], [g]]
    with pytest.raises(ctypes.ArgumentError):  # an array of doubles where LarsHp goes
        _native.call(
            LIB, "lars", lists, _native.doubles([1.0] * 6), _native.doubles([1.0, -1.0]),
            _native.zeros(2),
        )  # fmt: skip
    with pytest.raises(ctypes.ArgumentError):  # another kernel's struct
        _native.call(
            LIB, "lars", lists, _abi.LambHp(), _native.doubles([1.0, -1.0]), _native.zeros(2)
        )
    with pytest.raises(TypeError, match="takes 3 arguments"):
        _native.call(LIB, "lars", lists, _abi.LarsHp(), _native.doubles([1.0, -1.0]))
    with pytest.raises(ValueError, match="no prototype"):
        _native.call(LIB, "no_such_kernel", lists)
    assert w.tolist() == [3.0, 4.0]  # nothing ran


def test_flags_are_integers() -> None:
    hp = _abi.LarsHp(nesterov=True)
    assert hp.nesterov == 1
    with pytest.raises(TypeError):
        _abi.LarsHp(nesterov=0.5)
