"""Surrogate derivatives for the spike function.

The spike function is ``z = H(x)`` with ``x = v - threshold``: a Heaviside step in the
forward pass.  Its derivative is replaced by a *surrogate* ``sigma'(x)``.  Each surrogate
below is a frozen (hashable) dataclass, so it can be a static argument of a JAX
``custom_jvp`` and of a ``torch.autograd.Function``.  ``derivative(x)`` is written with
the backend's array operations, so the same formula serves torch, JAX and numpy.

===================  ===============================================  ====================
name                 derivative ``sigma'(x)``                          reference
===================  ===============================================  ====================
``fast_sigmoid``     ``1 / (1 + beta |x|)^2``                          Zenke & Ganguli 2018
``triangle``         ``gamma * max(0, 1 - beta |x|)``                  Bellec et al. 2018
``exponential``      ``alpha * exp(-beta |x|)``                        Shrestha & Orchard 2018
``arctan``           ``alpha/2 / (1 + (pi/2 * alpha * x)^2)``          Fang et al. 2021
``sigmoid``          ``beta * s(beta x) * (1 - s(beta x))``            Neftci et al. 2019
``gaussian``         ``exp(-x^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)``  Yin et al. 2021
``boxcar``           ``1/width`` if ``|x| <= width/2`` else ``0``      Wu et al. 2018
``straight_through`` ``1``                                            Bengio et al. 2013
===================  ===============================================  ====================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from .backend import ops_for


@dataclass(frozen=True)
class Surrogate:
    """Base class: a surrogate derivative ``sigma'(x)`` of the Heaviside step."""

    name = "surrogate"

    def derivative(self, x: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """SuperSpike's fast sigmoid: ``1 / (1 + beta |x|)^2``."""

    beta: float = 10.0
    name = "fast_sigmoid"

    def derivative(self, x: Any) -> Any:
        B = ops_for(x)
        return 1.0 / (1.0 + self.beta * B.abs(x)) ** 2


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Bellec's piecewise-linear pseudo-derivative ``gamma max(0, 1 - beta |x|)``."""

    beta: float = 1.0
    gamma: float = 0.3
    name = "triangle"

    def derivative(self, x: Any) -> Any:
        B = ops_for(x)
        return self.gamma * B.relu(1.0 - self.beta * B.abs(x))


@dataclass(frozen=True)
class Exponential(Surrogate):
    """SLAYER's exponential ``alpha exp(-beta |x|)``."""

    beta: float = 5.0
    alpha: float = 1.0
    name = "exponential"

    def derivative(self, x: Any) -> Any:
        B = ops_for(x)
        return self.alpha * B.exp(-self.beta * B.abs(x))


@dataclass(frozen=True)
class Arctan(Surrogate):
    """Derivative of ``arctan(pi/2 alpha x)/pi + 1/2``."""

    alpha: float = 2.0
    name = "arctan"

    def derivative(self, x: Any) -> Any:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * x) ** 2)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Derivative of the logistic ``s(beta x)``."""

    beta: float = 5.0
    name = "sigmoid"

    def derivative(self, x: Any) -> Any:
        B = ops_for(x)
        s = B.sigmoid(self.beta * x)
        return self.beta * s * (1.0 - s)


@dataclass(frozen=True)
class Gaussian(Surrogate):
    """Normal density with standard deviation ``sigma``."""

    sigma: float = 0.5
    name = "gaussian"

    def derivative(self, x: Any) -> Any:
        B = ops_for(x)
        return B.exp(-(x**2) / (2.0 * self.sigma**2)) / (math.sqrt(2.0 * math.pi) * self.sigma)


@dataclass(frozen=True)
class Boxcar(Surrogate):
    """Rectangle of unit area: ``1/width`` on ``|x| <= width/2``."""

    width: float = 1.0
    name = "boxcar"

    def derivative(self, x: Any) -> Any:
        B = ops_for(x)
        return B.where(B.abs(x) <= self.width / 2.0, 1.0 / self.width, 0.0 * x)


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """Straight-through estimator: derivative 1 everywhere."""

    name = "straight_through"

    def derivative(self, x: Any) -> Any:
        return 0.0 * x + 1.0


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls
    for cls in (FastSigmoid, Triangle, Exponential, Arctan, Sigmoid, Gaussian, Boxcar, StraightThrough)
}
# the scale argument of each surrogate, for ``make_surrogate(name, scale)``
_SCALE_FIELD = {
    "fast_sigmoid": "beta", "triangle": "beta", "exponential": "beta", "arctan": "alpha",
    "sigmoid": "beta", "gaussian": "sigma", "boxcar": "width", "straight_through": None,
}

SurrogateLike = Union[Surrogate, str]


def make_surrogate(spec: SurrogateLike, scale: float | None = None) -> Surrogate:
    """A surrogate from an instance or a name (``"fast_sigmoid"``, ...) and optional scale."""
    if isinstance(spec, Surrogate):
        if scale is not None:
            raise ValueError("surrogate: give `scale` only together with a surrogate name")
        return spec
    if not isinstance(spec, str) or spec not in SURROGATES:
        raise ValueError(f"surrogate: unknown surrogate {spec!r}; choose one of {sorted(SURROGATES)}")
    cls = SURROGATES[spec]
    field = _SCALE_FIELD[spec]
    if scale is None or field is None:
        return cls()
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"surrogate: scale must be a positive number, got {scale!r}")
    return cls(**{field: float(scale)})
