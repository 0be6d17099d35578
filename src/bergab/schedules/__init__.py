"""Learning-rate schedules: closed-form ``step -> value`` functions and combinators.

A schedule is a small object you call with ``t``, the number of optimizer steps already
taken (0 for the first step), and that returns the value to use for the next step::

    sched = warmup(cosine(peak=3e-3, total_steps=9_500, final=3e-5), steps=500)
    sched(0), sched(500), sched(10_000)

Every schedule is written in closed form in ``t`` (no recursion over past steps, unlike
torch's "chainable" schedulers), validates its arguments, round-trips through
:func:`to_config` / :func:`from_config` and prints as the call that builds it. The one
stateful kind is :class:`ReduceOnPlateau`, driven by a metric through ``update()``.

Conventions shared by every schedule here:

- A schedule over ``total_steps`` reaches its end value *at* ``t = total_steps`` and
  keeps it afterwards ("past the end" is well defined, never an error).
- Warmup ramps never give 0 at step 0: a ramp of ``w`` steps to a target ``v`` gives
  ``v * (t + 1) / (w + 1)`` (with ``start_factor = 0``) and hands over to the target at
  ``t = w``, so no step is wasted at lr 0 and the peak is not repeated.
- Combinators give the wrapped schedule its *own local* step: in
  ``warmup(s, steps=w)``, ``s`` sees ``t - w``; in ``join``, each piece sees the steps
  since its boundary (``shift(s, b)`` puts a piece back on the run's clock).

bergab optimizers accept a schedule wherever they accept ``lr`` (they call
``float(schedule(step))``); any torch optimizer can be driven through :func:`attach`.

Adding a schedule: write one class in the module of its kind (``closed_form``,
``cyclic``, ``combinators``), and its public function on the line after it::

    class _Cosine(Schedule, name="cosine"):   # registers "cosine" for from_config
        \"\"\"The docstring of cosine(), with its Args and a doctest Example.\"\"\"

        peak: float = real(low=0.0)                  # the arguments, in call order,
        total_steps: int = integer(low=1)            # each with its check
        final: float = real(low=0.0, default=0.0)    # and its default

        def _value(self, t: int) -> float:           # t: an int >= 0, already checked
            ...

        def key_steps(self, until: int) -> list[int]:  # optional: phase boundaries
            return _in_range([self.total_steps], until)

    cosine = factory(_Cosine)   # cosine(peak, total_steps, final=0.0) -> Schedule

Everything else derives from the declaration: the constructor checks the arguments in
call order (``real``, ``integer``, ``choice``, ``flag``, ``schedule_arg``,
``schedule_list`` or ``arg(check)``; a bound given as a string names an earlier
argument, e.g. ``real(low=0.0, high="peak")``), then calls ``_post_init()`` for checks
across arguments and precomputed values; ``to_config``, ``from_config`` (through the
registry), ``repr`` (the call, defaults left out) and ``children()`` (the arguments
holding schedules) read the declared arguments. ``factory`` writes the public function
with the same signature and the class docstring. To make the function public, import it
here and list it in ``__all__``.

Example:
    >>> sched = warmup(cosine(peak=1.0, total_steps=100), steps=9)
    >>> [round(sched(t), 3) for t in (0, 4, 9, 59, 109, 500)]
    [0.1, 0.5, 1.0, 0.5, 0.0, 0.0]
"""

from __future__ import annotations

from bergab._validate import is_schedule
from bergab.schedules._base import _REGISTRY as _REGISTRY  # name -> class, for tests and tools
from bergab.schedules._base import Schedule, ScheduleLike, from_config, to_config
from bergab.schedules.closed_form import (
    constant,
    cosine,
    exponential,
    inverse_sqrt,
    linear,
    multistep,
    polynomial,
    step_decay,
    wsd,
)
from bergab.schedules.combinators import clamp, join, scale, shift, warmup
from bergab.schedules.cyclic import cosine_restarts, cyclic, one_cycle, one_cycle_momentum
from bergab.schedules.plateau import ReduceOnPlateau
from bergab.schedules.plotting import plot
from bergab.schedules.torch_bridge import ScheduleLR, attach

__all__ = [
    "ReduceOnPlateau",
    "Schedule",
    "ScheduleLR",
    "ScheduleLike",
    "attach",
    "clamp",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "from_config",
    "inverse_sqrt",
    "is_schedule",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "one_cycle_momentum",
    "plot",
    "polynomial",
    "scale",
    "shift",
    "step_decay",
    "to_config",
    "warmup",
    "wsd",
]
