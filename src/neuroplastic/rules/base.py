"""The learning-rule interface.

A rule turns ``(network, params, batch)`` into parameter gradients.  It never sees the
optimizer, and the trainer never looks inside it.  The interface follows optax's
``init``/``update`` split:

``init(network, params, key) -> rule_state``
    anything the rule keeps between batches (feedback matrices, running estimates); a
    pytree of backend arrays (``{}`` when there is nothing).
``gradients(network, params, rule_state, batch, objective) -> (grads, rule_state, aux)``
    ``batch = (xs, targets)`` with ``xs`` of shape ``(T, B, n_in)``; ``grads`` has the
    structure of ``params`` and is a *descent direction estimate*: the optimizer applies
    ``-lr * grads``.  ``aux`` holds at least ``loss`` (the objective at ``params``),
    ``outputs`` (``(T, B, n_out)``) and ``spikes`` (every block's output over time).

Rules that learn online also implement the per-time-step form (see
:class:`OnlineRule`): the trainer can then update at every step (``mode="online"``) or
sum the per-step gradients and update at the end (``mode="deferred"``).  A rule runs in
the modes listed in ``modes``; asking for another raises a clear error.

``gradients`` must be a pure function of its array arguments, so the trainer can
``jit`` it on JAX.
"""

from __future__ import annotations

from typing import Any

from ..backend import ops_for
from ..losses import Objective
from ..network import Network

MODES = ("offline", "online", "deferred")


class Rule:
    """Base class of all learning rules."""

    name = "rule"
    modes: tuple = ("offline",)

    def init(self, network: Network, params: dict, key: Any = None) -> Any:
        """Rule state (nothing by default)."""
        return {}

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective) -> tuple[dict, Any, dict]:
        raise NotImplementedError

    def check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: unknown training mode {mode!r}; choose one of {list(MODES)}")
        if mode not in self.modes:
            raise ValueError(
                f"mode: rule {self.name!r} cannot train in mode {mode!r}; it supports {list(self.modes)}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def forward_loss(network: Network, params: dict, batch: tuple, objective: Objective, truncate: int | None = None):
    """``(loss, (outputs, spikes))`` for one batch: the function BPTT differentiates."""
    xs, targets = batch
    ys, _, rec = network.run(params, xs, truncate=truncate)
    return objective(ys, targets, rec, network.spiking), (ys, rec["out"])


def loss_and_outputs(network: Network, params: dict, batch: tuple, objective: Objective) -> dict:
    """The aux dictionary of a rule that computed no gradient through the forward pass."""
    loss, (ys, spikes) = forward_loss(network, params, batch, objective)
    B = ops_for(ys)
    return {"loss": B.stop_gradient(loss), "outputs": ys, "spikes": spikes}
