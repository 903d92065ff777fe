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

from typing import Any, Callable

from ..backend import ops_for
from ..losses import Objective
from ..network import Network
from ..protocols import Model
from ..tree import tree_leaves

MODES = ("offline", "online", "deferred")


class Rule:
    """Base class of all learning rules."""

    name = "rule"
    modes: tuple = ("offline",)

    def init(self, network: Model, params: dict, key: Any = None) -> Any:
        """Rule state (nothing by default)."""
        return {}

    def gradients(self, network: Model, params: dict, rule_state: Any, batch: tuple, objective: Objective) -> tuple[dict, Any, dict]:
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


class OnlineRule(Rule):
    """A rule with a per-time-step form.

    ``online_init(network, params, rule_state, batch_size) -> carry``
        the per-sequence state (network state, traces) at ``t = 0``;
    ``online_step(network, params, rule_state, carry, x_t, target_t, t, T, objective)
    -> (grads_t, carry, aux_t)``
        advances the network and the rule's traces by one step and returns this step's
        gradient estimate.  ``target_t`` is the label array ``(B,)`` (or the target at step
        ``t`` for time-major targets); the step's loss is
        ``objective.loss.per_step(y_t, target_t, t, T)``.  ``aux_t`` holds ``loss``,
        ``output`` (``y_t``) and ``spikes`` (each block's output at ``t``).

    ``online_finish(network, params, rule_state, grads_sum) -> rule_state``
        optional: updates the rule state at the end of a sequence.

    The offline :meth:`gradients` sums the per-step gradients at fixed parameters (the
    ``deferred`` mode of one batch); rules may override it with an equivalent but cheaper
    or more general offline form.
    """

    modes = ("offline", "online", "deferred")

    def check_online_objective(self, objective: Objective, mode: str) -> None:
        """Raise a ``ValueError`` naming the loss unless ``objective`` can be applied step by step.

        Called by the trainer for the online and deferred modes.  The default needs a loss
        that is a sum of per-step terms (``loss.per_step``) and no rate regulariser (a rule
        that applies one online overrides this); a rule that builds its own per-step error
        (SuperSpike's van Rossum filter) overrides it too.
        """
        if not objective.loss.decomposes_over_time:
            from ..losses import per_step_losses

            raise ValueError(
                f"loss: {objective.loss.name!r} does not decompose over time steps, so mode={mode!r} cannot "
                f"apply it step by step; use a per-step loss ({', '.join(per_step_losses())}) or mode='offline'"
            )
        no_regularizer(objective, self.name)

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> Any:
        raise NotImplementedError

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: Any, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        raise NotImplementedError

    def online_finish(self, network: Network, params: dict, rule_state: Any, grads: dict) -> Any:
        """Update the rule state once a sequence is done (``grads``: the summed per-step gradients)."""
        return rule_state

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        grads, rule_state, aux = run_online(self, network, params, rule_state, batch, objective, "deferred", None, None)[1:4]
        return grads, rule_state, aux


def online_advance(rule: OnlineRule, network: Network, objective: Objective, params: dict, rule_state: Any, carry: Any,
                   sums: tuple, x_t: Any, target_t: Any, t: Any, T: int) -> tuple:
    """One ``rule.online_step`` and the batch's running sums: ``(grads_t, carry, sums, y_t)``.

    ``sums = (grads_sum, rates, loss)``: the summed per-step gradients, each block's running
    time average of ``|z|`` (``(B, n)``) and the summed per-step loss.  A pure function of its
    arrays, so the trainer can compile it as one piece where it cannot compile the whole batch (torch).
    """
    B = ops_for(x_t)  # not backend_of(params): a tree walk at every eager time step
    g, carry, aux = rule.online_step(network, params, rule_state, carry, x_t, target_t, t, T, objective)
    gsum, rates, loss = sums
    rates = [r + B.abs(z) / T for r, z in zip(rates, aux["spikes"])]
    return g, carry, (B.tree_add(gsum, g), rates, loss + aux["loss"]), aux["output"]


def run_online(rule: OnlineRule, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective, mode: str,
               optimizer: Any, opt_state: Any, advance: Callable | None = None):
    """Scan ``rule.online_step`` over a batch.

    ``mode="online"`` applies ``optimizer`` after every step; ``"deferred"`` sums the
    per-step gradients (applied by the caller, or here when an optimizer is given).
    Returns ``(params, grads_sum, rule_state, aux, opt_state)``; ``aux["spikes"]`` holds
    each block's time-averaged ``|z|`` as ``(1, B, n)`` (rates, not the full trains).
    ``advance(params, rule_state, carry, sums, x_t, target_t, t, T)``, when given, stands for
    :func:`online_advance` with ``rule``, ``network`` and ``objective`` bound (the trainer passes a
    compiled one).
    """
    if advance is None:
        def advance(p, rs, carry, sums, x_t, target_t, t, T):
            return online_advance(rule, network, objective, p, rs, carry, sums, x_t, target_t, t, T)

    xs, targets = batch
    B = ops_for(xs)
    T, batch_size = xs.shape[0], xs.shape[1]
    time_major = getattr(targets, "ndim", 1) == 3
    carry0 = rule.online_init(network, params, rule_state, batch_size)
    sums0 = (B.tree_zeros_like(params), [B.zeros((batch_size, blk.size)) for blk in network.blocks], B.zeros(()))

    def body(c, inp):
        p, o, carry, sums = c
        x_t, t, tgt = inp
        g, carry, sums, y_t = advance(p, rule_state, carry, sums, x_t, tgt if time_major else targets, t, T)
        if mode == "online":
            p, o = optimizer.update(g, o, p)
        return (p, o, carry, sums), y_t

    # only the readout is kept per step (for the loss's scores); spikes are averaged and the
    # loss summed on the fly, so memory does not grow with T beyond the (T, B, n_out) outputs
    (params, opt_state, _, (gsum, rates, loss)), outs = B.scan(
        body, (params, opt_state, carry0, sums0), (xs, B.arange(T), targets if time_major else None)
    )
    rule_state = rule.online_finish(network, params, rule_state, gsum)
    if mode == "deferred" and optimizer is not None:
        params, opt_state = optimizer.update(gsum, opt_state, params)
    aux = {"loss": loss, "outputs": outs, "spikes": [r[None] for r in rates]}
    return params, gsum, rule_state, aux, opt_state


def forward_loss(network: Network, params: dict, batch: tuple, objective: Objective, truncate: int | None = None):
    """``(loss, (outputs, spikes))`` for one batch: the function BPTT differentiates."""
    xs, targets = batch
    ys, _, rec = network.run(params, xs, truncate=truncate)
    return objective(ys, targets, rec, network.spiking), (ys, rec["out"])



def key_rng(B: Any, key: Any) -> Any:
    """A numpy generator seeded from the backend key ``key`` (``0`` without one): rule states drawn
    in numpy are then the same on every backend for the same seed."""
    import numpy as np

    return np.random.default_rng(B.seed_from_key(key) if key is not None else 0)


def random_block_matrices(network: Network, params: Any, key: Any, scale: float) -> list:
    """One fixed random matrix ``(n_l, n_out)`` per hidden block, ``N(0, scale^2 / n_l)``: the feedback
    (e-prop, DFA, SuperSpike) or local readout (DCLL) weights of the rules that broadcast the output error."""
    import math

    B = backend_of(params)
    rng = key_rng(B, key)
    return [B.asarray(rng.normal(0.0, scale / math.sqrt(blk.size), (blk.size, network.n_out))) for blk in network.blocks[:-1]]


def backend_of(params: Any) -> Any:
    """The backend that owns ``params`` (from its first array leaf)."""
    return ops_for(tree_leaves(params)[0])


# ---------------------------------------------------------------------------------------------
# per-step losses of the online rules

#: ``outs -> (value to differentiate, value to report)`` for one step; ``outs[-1]`` is ``y_t``
StepLoss = Callable[[list], tuple]


def per_step_loss(objective: Objective, target_t: Any, t: Any, T: int) -> StepLoss:
    """The loss's own per-step form ``l_t(y_t)``."""

    def loss(outs: list) -> tuple:
        value = objective.loss.per_step(outs[-1], target_t, t, T)
        return value, value

    return loss


def injected_loss(errors: Any, reg: list | None) -> StepLoss:
    """``outs -> <errors, y_t> + sum_l <reg[l], z^l_t>``: a step's share of any loss, linearised."""

    def loss(outs: list) -> tuple:
        B = ops_for(outs[-1])
        value = B.sum(errors * outs[-1])
        if reg is not None:
            for r_l, z_l in zip(reg, outs):
                value = value + B.sum(r_l * z_l)
        return value, value

    return loss


def recorded_errors(network: Network, params: dict, batch: tuple, objective: Objective):
    """First pass of a two-pass offline form: ``(loss, ys, outs, dL/dy_t, [dR/dz^l_t] or None)``."""
    xs, targets = batch
    B = ops_for(xs)
    ys, _, rec = network.run(params, xs)
    outs = [B.stop_gradient(o) for o in rec["out"]]
    loss, err = B.value_and_grad(lambda y: objective.loss(y, targets, None))(B.stop_gradient(ys))
    reg = None
    if objective.regularizer is not None:
        reg_value, reg = B.value_and_grad(lambda z: objective.regularizer(z, network.spiking))(outs)
        loss = loss + reg_value
    return loss, ys, rec["out"], err, reg


def no_regularizer(objective: Objective, rule: str) -> None:
    """A ``ValueError`` naming ``rule`` when ``objective`` has a rate regulariser (online modes)."""
    if objective.regularizer is not None:
        raise ValueError(f"regularizer: {rule} applies the rate regulariser in offline mode only")
