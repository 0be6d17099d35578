"""The C boundary of bergab's CPU kernels in ctypes: the mirror of ``csrc/hp.h``.

Every hyperparameter struct of ``hp.h`` is a :class:`ctypes.Structure` here with the same
name, fields, order and types (``double`` → ``c_double``, ``int64_t`` → ``c_int64``: all
8 bytes, no padding), and :data:`PROTOTYPES` gives every entry point's arguments, from
which :func:`bergab.optim._native.call` sets each function's ``argtypes`` once.
``tests/test_native_abi.py`` checks the mirror against the library: sizes and offsets
(``bergab_hp_size``, ``bergab_hp_offset``), field names and types, the argument list of
every kernel (``bergab_kernel_args``) and that the library exports no kernel this table
lacks. Change a struct or a prototype in ``hp.h`` and here together.

Every entry point is ``void NAME_f32(...)`` / ``NAME_f64(...)`` (float32 / float64
tensors) taking ``(int64_t n, const int64_t *numel, void *const *ptrs, <args>, int
nthreads)``: n tensors per list, their element counts, ``ptrs[k * n + i]`` the data of
tensor i of list k (:attr:`Prototype.lists`, in order), the kernel's own arguments
(:attr:`Prototype.args`) and the thread count. Per-tensor inputs (``pt``) and outputs
(``out``) are double arrays; their layout is in each argument's ``doc``.

Example:
    >>> hp = LarsHp(lr=0.1, momentum=0.9, nesterov=1)
    >>> hp.lr, hp.nesterov, ctypes.sizeof(hp)
    (0.1, 1, 48)
    >>> [a.name for a in PROTOTYPES["lars"].args]
    ['hp', 'pt', 'out']
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

__all__ = [
    "HEAD",
    "HP_STRUCTS",
    "PROTOTYPES",
    "TAIL",
    "AdamHdReduceHp",
    "AdamHp",
    "Arg",
    "DogHp",
    "LambHp",
    "LarsHp",
    "LdogHp",
    "ProdigyStepHp",
    "ProdigySumsHp",
    "Prototype",
    "RmspropHp",
    "SfAdamwHp",
    "SfSgdHp",
    "SgdHdReduceHp",
    "SgdHdUpdateHp",
    "argtypes",
]

_D = ctypes.c_double
_I = ctypes.c_int64


# ---------------------------------------------------------------------------- structs
class RmspropHp(ctypes.Structure):
    """RMSprop (``rmsprop``). ``count``: 1 to have the kernel increment the float32 step
    counters passed as the last tensor list."""

    _fields_ = [
        ("lr", _D),
        ("alpha", _D),
        ("one_minus_alpha", _D),
        ("eps", _D),
        ("weight_decay", _D),
        ("momentum", _D),
        ("maximize", _I),
        ("centered", _I),
        ("eps_inside_sqrt", _I),
        ("count", _I),
    ]


class AdamHp(ctypes.Structure):
    """NAdam and RAdam (``nadam``, ``radam``). ``decay``: 1 − lr·weight_decay (the
    decoupled shrink factor); ``count``: 1 to have the kernel store the float32 counters
    given in ``pt`` into the tensor lists after the state."""

    _fields_ = [
        ("one_minus_beta1", _D),
        ("beta2", _D),
        ("one_minus_beta2", _D),
        ("eps", _D),
        ("weight_decay", _D),
        ("decay", _D),
        ("maximize", _I),
        ("decoupled_weight_decay", _I),
        ("amsgrad", _I),
        ("count", _I),
    ]


class SfSgdHp(ctypes.Structure):
    """Schedule-free SGD (``sf_sgd``). ``ckp1``: the averaging weight c_{k+1}."""

    _fields_ = [("lr", _D), ("ckp1", _D), ("beta1", _D), ("weight_decay", _D)]


class SfAdamwHp(ctypes.Structure):
    """Schedule-free AdamW (``sf_adamw``): :class:`SfSgdHp`'s fields, then Adam's.
    ``bias_correction2``: 1 − β2^(t+1)."""

    _fields_ = [
        *SfSgdHp._fields_,
        ("beta2", _D),
        ("eps", _D),
        ("bias_correction2", _D),
    ]


class ProdigySumsHp(ctypes.Structure):
    """Prodigy's pass 1 (``prodigy_sums``). ``c3``: the weight of g in s;
    ``coupled_weight_decay``: g ← g + wd·x in both passes (0 when decay is decoupled)."""

    _fields_ = [("beta3", _D), ("c3", _D), ("coupled_weight_decay", _D)]


class ProdigyStepHp(ctypes.Structure):
    """Prodigy's pass 2 (``prodigy_step``). ``c1`` = d_k (1 − β1), ``c2`` = d_k² (1 − β2),
    ``dlr`` = d_k·lr (bias correction included), ``d_eps`` = d_{k+1}·eps, ``d_new`` =
    d_{k+1}; ``has_m``: β1 > 0; ``move``: 0 to update the moments only."""

    _fields_ = [
        ("beta1", _D),
        ("beta2", _D),
        ("c1", _D),
        ("c2", _D),
        ("weight_decay", _D),
        ("dlr", _D),
        ("d_eps", _D),
        ("d_new", _D),
        ("decouple", _I),
        ("has_m", _I),
        ("move", _I),
    ]


class DogHp(ctypes.Structure):
    """DoG (``dog_reduce``, ``dog_update``)."""

    _fields_ = [("weight_decay", _D)]


class LdogHp(ctypes.Structure):
    """LDoG (``ldog``). ``scale``: lr·lr_scale; ``init_eta``: NaN for none."""

    _fields_ = [("weight_decay", _D), ("scale", _D), ("init_eta", _D)]


class LarsHp(ctypes.Structure):
    """LARS (``lars``)."""

    _fields_ = [
        ("lr", _D),
        ("momentum", _D),
        ("weight_decay", _D),
        ("trust_coefficient", _D),
        ("eps", _D),
        ("nesterov", _I),
    ]


class LambHp(ctypes.Structure):
    """LAMB (``lamb``). ``clamp``: the bound on ‖w‖ (inf: none); ``adam``: 1 for a trust
    ratio of 1 (a plain Adam step)."""

    _fields_ = [
        ("lr", _D),
        ("beta1", _D),
        ("beta2", _D),
        ("eps", _D),
        ("weight_decay", _D),
        ("clamp", _D),
        ("adam", _I),
    ]


class SgdHdReduceHp(ctypes.Structure):
    """SGD-HD's reduction (``sgd_hd_reduce``). ``mode``: 0 plain, 1 heavy ball,
    2 Nesterov; ``norms``: 1 to also sum |g|² and |u|² (the multiplicative rule)."""

    _fields_ = [("mode", _I), ("weight_decay", _D), ("norms", _I), ("momentum", _D)]


class AdamHdReduceHp(ctypes.Structure):
    """Adam-HD's reduction (``adam_hd_reduce``). ``norms``: as :class:`SgdHdReduceHp`."""

    _fields_ = [("beta1", _D), ("beta2", _D), ("weight_decay", _D), ("norms", _I)]


class SgdHdUpdateHp(ctypes.Structure):
    """SGD-HD's update (``sgd_hd_update``)."""

    _fields_ = [("alpha", _D)]


#: Every struct, in the order of ``BERGAB_HP_STRUCTS`` in ``hp.h``.
HP_STRUCTS: tuple[type[ctypes.Structure], ...] = (
    RmspropHp,
    AdamHp,
    SfSgdHp,
    SfAdamwHp,
    ProdigySumsHp,
    ProdigyStepHp,
    DogHp,
    LdogHp,
    LarsHp,
    LambHp,
    SgdHdReduceHp,
    AdamHdReduceHp,
    SgdHdUpdateHp,
)


# ---------------------------------------------------------------------------- prototypes
class Arg(NamedTuple):
    """One argument of an entry point between ``ptrs`` and ``nthreads``."""

    name: str  # as declared in hp.h
    ctype: Any  # its ctypes type, for argtypes
    doc: str  # what the caller passes


class Prototype(NamedTuple):
    """An entry point: the tensor lists of ``ptrs``, in order, and its own arguments."""

    lists: tuple[str, ...]
    args: tuple[Arg, ...]


_DOUBLES = ctypes.POINTER(ctypes.c_double)


def _hp(struct: type[ctypes.Structure]) -> Arg:
    return Arg("hp", ctypes.POINTER(struct), struct.__name__)


def _pt(doc: str) -> Arg:
    return Arg("pt", _DOUBLES, doc)


def _out(doc: str) -> Arg:
    return Arg("out", _DOUBLES, doc)


_ADAM_LISTS = (
    "param",
    "grad",
    "exp_avg",
    "exp_avg_sq",
    "max_exp_avg_sq (amsgrad only)",
    "the float32 counters (count only): step, then for nadam the product of mu",
)

#: Every entry point (without its ``_f32``/``_f64`` suffix), in the order of
#: ``BERGAB_KERNELS`` in ``hp.h``.
PROTOTYPES: dict[str, Prototype] = {
    "rmsprop": Prototype(
        (
            "param",
            "grad",
            "square_avg",
            "grad_avg (centered only)",
            "momentum_buffer (momentum > 0 only)",
            "step, float32 0-d (count only)",
        ),
        (_hp(RmspropHp),),
    ),
    "nadam": Prototype(
        _ADAM_LISTS,
        (
            _hp(AdamHp),
            _pt(
                "5 per tensor: -lr (1 - mu_t) / (1 - Pi_t), -lr mu_{t+1} / (1 - Pi_{t+1}), "
                "sqrt(1 - beta2^t), t, Pi_t (the new counters)"
            ),
        ),
    ),
    "radam": Prototype(
        (*_ADAM_LISTS[:5], "step, float32 0-d (count only)"),
        (
            _hp(AdamHp),
            _pt(
                "3 per tensor: rectified (0/1), scale (-lr r_t sqrt(1 - beta2^t) / "
                "(1 - beta1^t) if rectified, else -lr / (1 - beta1^t)), t (the new counter)"
            ),
        ),
    ),
    "sf_sgd": Prototype(("y (the parameter)", "grad", "z"), (_hp(SfSgdHp),)),
    "sf_adamw": Prototype(("y (the parameter)", "grad", "z", "exp_avg_sq"), (_hp(SfAdamwHp),)),
    "prodigy_sums": Prototype(
        ("x (the parameter)", "grad", "x0", "s"),
        (
            _hp(ProdigySumsHp),
            _out(
                "2 n nthreads (room for every thread's partial sums); on return 2 per "
                "tensor first: <g, x0 - x>, ||s||_1"
            ),
        ),
    ),
    "prodigy_step": Prototype(
        ("x (the parameter)", "grad", "exp_avg_sq", "exp_avg (any list when has_m == 0)"),
        (_hp(ProdigyStepHp),),
    ),
    "dog_reduce": Prototype(
        ("param", "grad", "x0"),
        (
            _hp(DogHp),
            _pt("1 per tensor: 1 to compute ||x - x0||^2 (the kept one is stale), else 0"),
            _out("2 per tensor: ||g + wd x||^2, ||x - x0||^2 (0 where not computed)"),
        ),
    ),
    "dog_update": Prototype(
        ("param", "grad", "x0"),
        (
            _hp(DogHp),
            _pt("1 per tensor: its step size eta"),
            _out("1 per tensor: ||x_new - x0||^2"),
        ),
    ),
    "ldog": Prototype(
        ("param", "grad", "x0"),
        (
            _hp(LdogHp),
            _pt(
                "4 per tensor: rbar, G (> 0), ||x - x0||^2 or -1 when stale, 1 on the "
                "tensor's first step"
            ),
            _out("4 per tensor: new rbar, new G, eta, ||x_new - x0||^2"),
        ),
    ),
    "lars": Prototype(
        ("param", "grad", "momentum_buffer (any list when momentum == 0)"),
        (
            _hp(LarsHp),
            _pt(
                "2 per tensor: adapt (1: apply the trust ratio), ||w||^2 if known (kept "
                "from the last step), else -1"
            ),
            _out("2 per tensor: the trust ratio used, ||w||^2 after the update"),
        ),
    ),
    "lamb": Prototype(
        ("param", "grad", "exp_avg", "exp_avg_sq"),
        (
            _hp(LambHp),
            _pt("2 per tensor: 1 - beta1^t, 1 - beta2^t (1, 1 without bias correction)"),
            _out("1 per tensor: the trust ratio used"),
            Arg("scratch", ctypes.c_void_p, "nthreads * scratch_numel elements of the dtype"),
            Arg("scratch_numel", ctypes.c_int64, "elements per thread: the largest tensor"),
        ),
    ),
    "sgd_hd_reduce": Prototype(
        ("param", "grad", "momentum_buffer", "direction (unused lists: any of the sizes)"),
        (
            _hp(SgdHdReduceHp),
            _pt(
                "2 per tensor: 1 if it took the previous step (adds to the sums), 1 if its "
                "momentum buffer is new"
            ),
            _out("3: sum g.u, sum |g|^2, sum |u|^2"),
        ),
    ),
    "adam_hd_reduce": Prototype(
        ("param", "grad", "exp_avg", "exp_avg_sq"),
        (
            _hp(AdamHdReduceHp),
            _pt(
                "3 per tensor: 1 if it took the previous step, cprev = sqrt(b2')/b1', "
                "eprev = eps sqrt(b2') (b1', b2': the previous step's bias corrections)"
            ),
            _out("3: sum g.u, sum |g|^2, sum |u|^2"),
        ),
    ),
    "sgd_hd_update": Prototype(
        ("param", "direction u (d, or the momentum buffer for heavy ball)"),
        (_hp(SgdHdUpdateHp),),
    ),
    "adam_hd_update": Prototype(
        ("param", "exp_avg", "exp_avg_sq"),
        (_pt("2 per tensor: coef = -alpha sqrt(b2) / b1, e = eps sqrt(b2)"),),
    ),
}

#: The arguments every entry point starts with (n, numel, ptrs) and ends with (nthreads).
HEAD: tuple[Any, ...] = (
    ctypes.c_int64,
    ctypes.POINTER(ctypes.c_int64),
    ctypes.POINTER(ctypes.c_void_p),
)
TAIL: tuple[Any, ...] = (ctypes.c_int,)


def argtypes(kernel: str) -> tuple[Any, ...]:
    """The ctypes ``argtypes`` of entry point ``kernel`` (either dtype).

    Example:
        >>> types = argtypes("sgd_hd_update")
        >>> len(types), types[3] is ctypes.POINTER(SgdHdUpdateHp), types[-1] is ctypes.c_int
        (5, True, True)
    """
    return (*HEAD, *(a.ctype for a in PROTOTYPES[kernel].args), *TAIL)
