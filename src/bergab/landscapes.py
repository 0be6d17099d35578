"""Classic test functions for watching gradient descent: each knows its minima, a plot
domain and a start point.

Every landscape is a :class:`Landscape`: call it on a tensor of shape ``(d,)`` for one
point or ``(..., d)`` for many at once (a contour grid), and it returns a tensor of shape
``()`` or ``(...)``. Gradients come from autograd. Rosenbrock, Rastrigin, Styblinski–Tang
and the quadratic are defined in any dimension; the attributes (``minima``, ``start``,
``min_value``) describe the 2-D version, and :meth:`Landscape.with_dim` gives the n-D one.

==================  ==========================================  ======================
name                formula (2-D)                               global minima
==================  ==========================================  ======================
``rosenbrock``      (1 − x)² + 100 (y − x²)²                    (1, 1), f = 0
``beale``           (1.5 − x + xy)² + (2.25 − x + xy²)²         (3, 0.5), f = 0
                    + (2.625 − x + xy³)²
``booth``           (x + 2y − 7)² + (2x + y − 5)²               (1, 3), f = 0
``himmelblau``      (x² + y − 11)² + (x + y² − 7)²              four points, f = 0
``rastrigin``       20 + Σ (xᵢ² − 10 cos 2πxᵢ)                  (0, 0), f = 0
``styblinski_tang`` ½ Σ (xᵢ⁴ − 16xᵢ² + 5xᵢ)                     xᵢ = −2.9035…, f = −78.33…
``saddle``          x² − y²                                     none (unbounded below)
``quadratic(κ)``    ½ Σ λᵢ xᵢ², λ log-spaced in [1, κ]          0, f = 0
==================  ==========================================  ======================

:func:`noisy` wraps any of them so that the gradient carries reproducible Gaussian noise
(a stand-in for mini-batch gradients) while the value stays exact.

Example:
    >>> import torch
    >>> from bergab import landscapes
    >>> landscapes.rosenbrock(torch.tensor([1.0, 1.0])).item()
    0.0
    >>> landscapes.himmelblau.minima[0]
    (3.0, 2.0)
    >>> grid = torch.zeros(4, 5, 2)
    >>> landscapes.booth(grid).shape
    torch.Size([4, 5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bergab._validate import check_choice, check_int, check_real

__all__ = [
    "Landscape",
    "Noisy",
    "Quadratic",
    "beale",
    "booth",
    "get",
    "himmelblau",
    "names",
    "noisy",
    "quadratic",
    "rastrigin",
    "rosenbrock",
    "saddle",
    "styblinski_tang",
]

Point = tuple[float, ...]
Domain = tuple[tuple[float, float], tuple[float, float]]
# Given a dimension n: (minima, min_value, start) of the n-D version.
NDInfo = Callable[[int], tuple[list[Point], float, Point]]


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(x, dtype=torch.float64)


class Landscape:
    """A test function of a point ``x`` (last axis of size ``d``), with what is known about it.

    Args:
        name: short name (``"rosenbrock"``).
        func: the function on a tensor of shape ``(..., d)``, returning shape ``(...)``.
        minima: the global minimizers (of the ``dim``-dimensional version).
        min_value: the global minimum value (``-inf`` when unbounded below).
        domain: ``((xmin, xmax), (ymin, ymax))``, the usual plot window.
        start: the classic start point.
        any_dim: whether ``func`` is defined for every ``d >= min_dim``.
        min_dim: the smallest dimension ``func`` accepts when ``any_dim``.
        nd_info: for ``any_dim`` landscapes, ``n -> (minima, min_value, start)``.

    Attributes:
        dim: the dimension the attributes describe (``len(start)``).

    Example:
        >>> import torch
        >>> f = Landscape("bowl", lambda x: (x**2).sum(-1), minima=[(0.0, 0.0)],
        ...               min_value=0.0, domain=((-1, 1), (-1, 1)), start=(0.5, 0.5))
        >>> f(torch.tensor([1.0, 2.0])).item()
        5.0
        >>> f.grad(torch.tensor([1.0, 2.0])).tolist()
        [2.0, 4.0]
    """

    def __init__(
        self,
        name: str,
        func: Callable[[torch.Tensor], torch.Tensor],
        *,
        minima: Sequence[Sequence[float]],
        min_value: float,
        domain: tuple[tuple[float, float], tuple[float, float]],
        start: Sequence[float],
        any_dim: bool = False,
        min_dim: int = 2,
        nd_info: NDInfo | None = None,
    ) -> None:
        self.name = name
        self._func = func
        self.minima: list[Point] = [tuple(float(v) for v in m) for m in minima]
        self.min_value = float(min_value)
        (x0, x1), (y0, y1) = domain
        self.domain: Domain = ((float(x0), float(x1)), (float(y0), float(y1)))
        self.start: Point = tuple(float(v) for v in start)
        self.dim = len(self.start)
        self.any_dim = any_dim
        self.min_dim = min_dim
        self._nd_info = nd_info

    def _check_shape(self, x: torch.Tensor) -> None:
        if x.ndim == 0:
            raise ValueError(f"{self.name}: x must have shape (d,) or (..., d), got a scalar")
        d = x.shape[-1]
        if self.any_dim:
            if d < self.min_dim:
                raise ValueError(
                    f"{self.name}: the last axis of x must have size >= {self.min_dim}, got {d}"
                )
        elif d != self.dim:
            raise ValueError(f"{self.name}: the last axis of x must have size {self.dim}, got {d}")

    def __call__(self, x: Any) -> torch.Tensor:
        """Evaluate at ``x`` (shape ``(d,)`` or ``(..., d)``); returns shape ``()`` or ``(...)``.

        Non-tensor input (lists, NumPy arrays) is converted to a float64 tensor.
        """
        x = _as_tensor(x)
        self._check_shape(x)
        return self._func(x)

    def grad(self, x: Any) -> torch.Tensor:
        """The gradient at ``x`` by autograd, same shape as ``x`` (batched: one per point).

        Example:
            >>> saddle.grad([1.0, 2.0]).tolist()
            [2.0, -4.0]
        """
        x = _as_tensor(x).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self(x).sum(), x)
        return g

    def with_dim(self, n: int) -> Landscape:
        """The ``n``-dimensional version (same function; minima and start for ``n``).

        Example:
            >>> r5 = rosenbrock.with_dim(5)
            >>> r5.minima, r5.min_value
            ([(1.0, 1.0, 1.0, 1.0, 1.0)], 0.0)
        """
        n = check_int("n", n, low=self.min_dim)
        if n == self.dim:
            return self
        if not self.any_dim or self._nd_info is None:
            raise ValueError(f"{self.name} is defined only in {self.dim} dimensions, got n={n}")
        minima, min_value, start = self._nd_info(n)
        return Landscape(
            self.name,
            self._func,
            minima=minima,
            min_value=min_value,
            domain=self.domain,
            start=start,
            any_dim=True,
            min_dim=self.min_dim,
            nd_info=self._nd_info,
        )

    def reset(self) -> None:
        """Restart any random stream (a no-op here; :class:`Noisy` reseeds its noise)."""

    def __repr__(self) -> str:
        return f"<Landscape {self.name} dim={self.dim} min={self.min_value:g}>"


# ---------------------------------------------------------------------------- functions
def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    a, b = x[..., :-1], x[..., 1:]
    return (100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2).sum(-1)


def _beale(x: torch.Tensor) -> torch.Tensor:
    u, v = x[..., 0], x[..., 1]
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


def _booth(x: torch.Tensor) -> torch.Tensor:
    u, v = x[..., 0], x[..., 1]
    return (u + 2.0 * v - 7.0) ** 2 + (2.0 * u + v - 5.0) ** 2


def _himmelblau(x: torch.Tensor) -> torch.Tensor:
    u, v = x[..., 0], x[..., 1]
    return (u**2 + v - 11.0) ** 2 + (u + v**2 - 7.0) ** 2


def _rastrigin(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    return 10.0 * n + (x**2 - 10.0 * torch.cos(2.0 * math.pi * x)).sum(-1)


def _styblinski_tang(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x**4 - 16.0 * x**2 + 5.0 * x).sum(-1)


def _saddle(x: torch.Tensor) -> torch.Tensor:
    return x[..., 0] ** 2 - x[..., 1] ** 2


# Minimizer of ½(t⁴ − 16t² + 5t), the root of 4t³ − 32t + 5 near −2.9, and the value there.
_ST_ARGMIN = -2.9035340277711770951
_ST_MIN = -39.166165703771415464


def _alternating_start(pattern: Point) -> Callable[[int], Point]:
    return lambda n: tuple(pattern[i % len(pattern)] for i in range(n))


rosenbrock = Landscape(
    "rosenbrock",
    _rosenbrock,
    minima=[(1.0, 1.0)],
    min_value=0.0,
    domain=((-2.0, 2.0), (-1.0, 3.0)),
    start=(-1.2, 1.0),
    any_dim=True,
    min_dim=2,
    nd_info=lambda n: ([(1.0,) * n], 0.0, _alternating_start((-1.2, 1.0))(n)),
)
"""Rosenbrock's banana valley, Σ 100 (x_{i+1} − x_i²)² + (1 − x_i)²; minimum 0 at all ones."""

beale = Landscape(
    "beale",
    _beale,
    minima=[(3.0, 0.5)],
    min_value=0.0,
    domain=((-4.5, 4.5), (-4.5, 4.5)),
    start=(1.0, 1.5),
    any_dim=False,
)
"""Beale's function: flat plateaus and sharp ridges; minimum 0 at (3, 0.5)."""

booth = Landscape(
    "booth",
    _booth,
    minima=[(1.0, 3.0)],
    min_value=0.0,
    domain=((-10.0, 10.0), (-10.0, 10.0)),
    start=(-8.0, 7.0),
    any_dim=False,
)
"""Booth's function, a convex quadratic (Hessian eigenvalues 2 and 18); minimum 0 at (1, 3)."""

himmelblau = Landscape(
    "himmelblau",
    _himmelblau,
    minima=[
        (3.0, 2.0),
        (-2.8051180869527448531, 3.1313125182505729658),
        (-3.7793102533777468919, -3.2831859912861694123),
        (3.5844283403304917449, -1.8481265269644035535),
    ],
    min_value=0.0,
    domain=((-5.0, 5.0), (-5.0, 5.0)),
    start=(-0.27, -0.9),
    any_dim=False,
)
"""Himmelblau's function: four global minima (value 0) and a local maximum near (−0.27, −0.92),
the classic start, from which each optimizer picks a basin."""

rastrigin = Landscape(
    "rastrigin",
    _rastrigin,
    minima=[(0.0, 0.0)],
    min_value=0.0,
    domain=((-5.12, 5.12), (-5.12, 5.12)),
    start=(-4.2, 3.8),
    any_dim=True,
    min_dim=1,
    nd_info=lambda n: ([(0.0,) * n], 0.0, _alternating_start((-4.2, 3.8))(n)),
)
"""Rastrigin's function, 10 n + Σ (x_i² − 10 cos 2π x_i): a bowl covered in local minima."""

styblinski_tang = Landscape(
    "styblinski_tang",
    _styblinski_tang,
    minima=[(_ST_ARGMIN, _ST_ARGMIN)],
    min_value=2 * _ST_MIN,
    domain=((-5.0, 5.0), (-5.0, 5.0)),
    start=(0.0, 4.0),
    any_dim=True,
    min_dim=1,
    nd_info=lambda n: ([(_ST_ARGMIN,) * n], n * _ST_MIN, _alternating_start((0.0, 4.0))(n)),
)
"""Styblinski–Tang, ½ Σ (x_i⁴ − 16 x_i² + 5 x_i): one global and 2ⁿ − 1 local minima."""

saddle = Landscape(
    "saddle",
    _saddle,
    minima=[],
    min_value=-math.inf,
    domain=((-1.5, 1.5), (-1.5, 1.5)),
    start=(1.0, 1e-3),
    any_dim=False,
)
"""The saddle x² − y²: a stationary point at the origin, unbounded below along y. The start
lies almost on the attracting x axis, so gradient descent first slows down near the saddle
point and then has to escape it."""


# ---------------------------------------------------------------------------- quadratic
class Quadratic(Landscape):
    """The ill-conditioned quadratic ``f(x) = ½ Σ λᵢ xᵢ²`` with ``λ`` log-spaced in ``[1, κ]``.

    Smoothness ``L = κ``, strong convexity ``μ = 1``. Gradient descent with lr ``1/L``
    shrinks the error ``‖x − x*‖`` by at least ``1 − 1/κ`` per step, and exactly that in the
    direction of the smallest eigenvalue.

    Args:
        condition_number: κ = L / μ, at least 1.
        dim: the dimension, at least 1 (``dim = 1`` needs ``κ = 1``).

    Attributes:
        eigenvalues: the Hessian's diagonal ``λ`` (ascending).
        L: the largest eigenvalue (the gradient's Lipschitz constant).
        mu: the smallest eigenvalue (the strong-convexity constant).
        condition_number: κ.

    Example:
        >>> q = Quadratic(100.0)
        >>> q.eigenvalues.tolist(), q.L, q.mu
        ([1.0, 100.0], 100.0, 1.0)
        >>> q([1.0, 1.0]).item()
        50.5
    """

    def __init__(self, condition_number: float = 10.0, dim: int = 2) -> None:
        kappa = check_real("condition_number", condition_number, low=1.0)
        dim = check_int("dim", dim, low=1)
        if dim == 1 and kappa != 1.0:
            raise ValueError(f"condition_number must be 1 when dim=1, got {condition_number!r}")
        if dim == 1:
            lam = torch.ones(1, dtype=torch.float64)
        else:
            lam = torch.logspace(0.0, math.log10(kappa), dim, dtype=torch.float64)
            lam[0], lam[-1] = 1.0, kappa  # exact ends
        self.eigenvalues = lam
        self.condition_number = kappa
        self.L = kappa
        self.mu = 1.0
        start = (-4.0,) + (2.0,) * (dim - 1)
        super().__init__(
            f"quadratic(κ={kappa:g})" if dim == 2 else f"quadratic(κ={kappa:g}, dim={dim})",
            self._quadratic,
            minima=[(0.0,) * dim],
            min_value=0.0,
            domain=((-5.0, 5.0), (-3.0, 3.0)),
            start=start,
            any_dim=False,
        )

    def _quadratic(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.eigenvalues.to(dtype=x.dtype, device=x.device)
        return 0.5 * (lam * x**2).sum(-1)

    def with_dim(self, n: int) -> Landscape:
        """The same condition number in ``n`` dimensions.

        Example:
            >>> quadratic(10.0).with_dim(3).eigenvalues.tolist()[1]  # doctest: +ELLIPSIS
            3.16227766...
        """
        n = check_int("n", n, low=1)
        return self if n == self.dim else Quadratic(self.condition_number, n)


def quadratic(condition_number: float = 10.0, dim: int = 2) -> Quadratic:
    """An ill-conditioned quadratic bowl ``½ Σ λᵢ xᵢ²`` with ``λ`` log-spaced in ``[1, κ]``.

    Args:
        condition_number: κ = L / μ, at least 1.
        dim: the dimension.

    Returns:
        A :class:`Quadratic` landscape (minimum 0 at the origin, start ``(-4, 2, 2, ...)``).

    Example:
        >>> q = quadratic(10.0)
        >>> q.start, q.L
        ((-4.0, 2.0), 10.0)
    """
    return Quadratic(condition_number, dim)


# ---------------------------------------------------------------------------- noise
class _GradNoise(torch.autograd.Function):
    """Zero in the forward pass; adds ``noise`` to the gradient of ``x`` in the backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(noise)
        return x.new_zeros(x.shape[:-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (noise,) = ctx.saved_tensors
        return grad_out.unsqueeze(-1) * noise, None


class Noisy(Landscape):
    """A landscape whose gradient carries Gaussian noise: ``∇f(x) + σ ξ``, ``ξ ~ N(0, I)``.

    The value is exactly ``base(x)``; the noise enters only through autograd, once per
    differentiable evaluation, drawn from a generator seeded with ``seed``. So the same seed
    gives the same sequence of gradients, and :meth:`reset` (which
    :func:`bergab.minimize` calls at the start of every run) restarts the sequence.
    Evaluations without gradient (contour grids, ``torch.no_grad()``) draw nothing.

    Args:
        base: the clean landscape.
        sigma: noise standard deviation per coordinate, ``>= 0``.
        seed: seed of the noise stream.

    Example:
        >>> f = Noisy(booth, sigma=1.0, seed=0)
        >>> a = f.grad([0.0, 0.0]); f.reset(); b = f.grad([0.0, 0.0])
        >>> bool(torch.equal(a, b)), bool(torch.equal(a, booth.grad([0.0, 0.0])))
        (True, False)
    """

    def __init__(self, base: Landscape, sigma: float, seed: int = 0) -> None:
        self._check_base("base", base)
        self.sigma = check_real("sigma", sigma, low=0.0)
        self.seed = check_int("seed", seed, low=0)
        self.base = base
        super().__init__(
            f"noisy-{base.name}",
            base._func,
            minima=base.minima,
            min_value=base.min_value,
            domain=base.domain,
            start=base.start,
            any_dim=base.any_dim,
            min_dim=base.min_dim,
        )
        self._gen = torch.Generator()
        self.reset()

    @staticmethod
    def _check_base(name: str, base: Any) -> None:
        """``base`` is a landscape (its domain, minima and start are copied); the error
        names the argument as the caller called it (``noisy``'s ``fn``)."""
        if not isinstance(base, Landscape):
            raise TypeError(
                f"{name} must be a Landscape (see bergab.landscapes.names()), got "
                f"{type(base).__name__}"
            )

    def reset(self) -> None:
        """Restart the noise stream from ``seed``."""
        self._gen.manual_seed(self.seed)

    def __call__(self, x: Any) -> torch.Tensor:
        """``base(x)``, with the gradient noise attached when ``x`` requires grad."""
        x = _as_tensor(x)
        value = self.base(x)
        if self.sigma > 0 and x.requires_grad and torch.is_grad_enabled():
            noise = torch.randn(x.shape, generator=self._gen, dtype=torch.float64)
            noise = (self.sigma * noise).to(dtype=x.dtype, device=x.device)
            value = value + _GradNoise.apply(x, noise)
        return value

    def with_dim(self, n: int) -> Landscape:
        """The noisy ``n``-dimensional version (same sigma and seed)."""
        return Noisy(self.base.with_dim(n), self.sigma, self.seed)

    def __repr__(self) -> str:
        return f"<Noisy {self.base.name} sigma={self.sigma:g} seed={self.seed}>"


def noisy(fn: Landscape, sigma: float, seed: int = 0) -> Noisy:
    """Wrap ``fn`` so its gradients are noisy: ``∇f(x) + σ ξ`` with reproducible ``ξ``.

    Args:
        fn: the landscape.
        sigma: noise standard deviation per coordinate, ``>= 0``.
        seed: seed of the noise stream (same seed, same gradients).

    Returns:
        A :class:`Noisy` landscape with the same minima, domain and start.

    Example:
        >>> f = noisy(rosenbrock, sigma=0.5, seed=1)
        >>> f.name, f.minima
        ('noisy-rosenbrock', [(1.0, 1.0)])
    """
    Noisy._check_base("fn", fn)
    return Noisy(fn, sigma, seed)


# ---------------------------------------------------------------------------- lookup
_NAMED: dict[str, Landscape] = {
    f.name: f for f in (rosenbrock, beale, booth, himmelblau, rastrigin, styblinski_tang, saddle)
}


def names() -> list[str]:
    """The names :func:`get` accepts.

    Example:
        >>> names()[:3]
        ['beale', 'booth', 'himmelblau']
    """
    return sorted([*_NAMED, "quadratic"])


def get(
    name: str,
    *,
    condition_number: float = 10.0,
    dim: int | None = None,
    noise: float = 0.0,
    seed: int = 0,
) -> Landscape:
    """Look a landscape up by name (case-insensitive; ``-`` and ``_`` alike).

    Args:
        name: one of :func:`names`.
        condition_number: κ for ``"quadratic"``.
        dim: the dimension for landscapes defined in n-D (default 2).
        noise: gradient noise σ; ``> 0`` wraps the landscape with :func:`noisy`.
        seed: seed of the noise.

    Returns:
        The landscape.

    Example:
        >>> get("Styblinski-Tang").name
        'styblinski_tang'
        >>> get("quadratic", condition_number=50).L
        50.0
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = check_choice("name", name.lower().replace("-", "_"), names())
    if key == "quadratic":  # any dimension; quadratic() checks dim by that name
        fn: Landscape = quadratic(condition_number, 2 if dim is None else dim)
    else:
        fn = _NAMED[key]
        if dim is not None:
            # checked here so that the error names get's argument (with_dim calls it n)
            low, high = (fn.min_dim, None) if fn.any_dim else (fn.dim, fn.dim)
            fn = fn.with_dim(check_int("dim", dim, low=low, high=high))
    noise = check_real("noise", noise, low=0.0)
    return noisy(fn, noise, seed) if noise > 0 else fn
