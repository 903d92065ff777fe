"""Online training through time (OTTT; Xiao, Meng, Zhang, Wang & Lin, NeurIPS 2022).

OTTT keeps one *presynaptic* trace per input of each block and combines it, at every
step, with the error back-propagated through the layers *within that step*.  For block
``l`` with presynaptic vector ``p^l_t`` (input or lower block's spikes, the block's own
previous spikes if recurrent, ``1`` for a bias, link sources; see
:mod:`.eligibility`) and membrane decay ``lambda_l``::

    a^l_t      = lambda_l a^l_{t-1} + p^l_t                   presynaptic trace
    delta^l_t  = d l_t / d I^l_t   (same-step path only)      instantaneous error
    dW^l_t     = (a^l_t)^T delta^l_t                           gradient at step t
    dE/dW^l   ~= sum_t dW^l_t

``delta^l_t`` is computed by reverse-mode autodiff of one network step with the previous
state held constant, so it is ``(delta^{l+1}_t W^{l+1 T}) * dz^l_t/dI^l_t`` with the
surrogate derivative of block ``l`` (and skip links are followed too).  For a
current-based LIF the trace is the cell's double-exponential PSP
(``b_t = beta b_{t-1} + p_t``, ``a_t = alpha a_{t-1} + b_t``); for the leaky readout
``lambda = kappa``; for ``Identity`` there is no filter (``a_t = p_t``).  The reset is
not differentiated (OTTT's "no leak through reset": the trace decays with ``lambda``
whatever the spikes), adaptation (ALIF) is ignored, recurrent weights get the trace of
``z_{t-1}`` but no credit through the recurrence.

When it is exact: with a detached reset and a voltage-based LIF, ``dz_t/dW = sigma'_t
a_t`` holds exactly, so OTTT equals BPTT for a single spiking layer, and for one hidden
LIF layer under a memoryless readout (``Identity``), with a loss that decomposes over
steps.  Through a leaky readout it drops the readout's memory of earlier hidden spikes
(OTPE adds it back, see :mod:`.otpe`).

Modes: ``online`` and ``deferred`` need a loss with a per-step form (``ce_per_step``,
``ce_last``, ``mse_membrane``).  ``offline`` accepts any loss and the rate regulariser:
a first pass records the outputs and takes ``e_t = dL/dy_t`` (and ``dR/dz^l_t``) by
autodiff; a second pass runs the online step with ``l_t = <e_t, y_t> (+ <dR/dz_t, z_t>)``.
For a per-step loss, offline equals deferred.

Memory per sample (online): the traces, ``sum_l d_l P_l`` numbers (``d_l`` = 1 for a
voltage-based LIF, 2 current-based, 0 for Identity; ``P_l`` presynaptic inputs), plus
the network state ``sum_l k_l n_l``: independent of ``T``.  Offline adds ``T * n_out``
for the recorded errors (``T * sum_l n_l`` with the rate regulariser).
"""

from __future__ import annotations

from typing import Any, Callable

from ..backend import ops_for
from ..cells import ALIF, LIF, Identity, LeakyReadout, SignedIF, TanhRNN
from ..losses import Objective
from ..network import Network
from .base import OnlineRule
from .eligibility import block_segments, presynaptic_step, split_gradient, stacked_weight

#: ``outs -> (value to differentiate, value to report)`` for one step; ``outs[-1]`` is ``y_t``
StepLoss = Callable[[list], tuple]


# ---------------------------------------------------------------------------------------------
# helpers shared by the trace-based rules (OTTT, OTPE, DCLL, SuperSpike)
def psp_decays(cell: Any) -> tuple:
    """Decays of the linear filter from a block's input current to its membrane (the PSP kernel).

    ``()`` for a memoryless cell, ``(alpha,)`` for a voltage-based LIF, ``(beta, alpha)``
    (synaptic, then membrane) for a current-based one.  Spike resets and adaptation are
    left out, as OTTT, SuperSpike and DCLL do.  A user cell can declare ``psp_decays``.
    """
    if getattr(cell, "train_decay", False):
        raise ValueError(
            f"network: {type(cell).__name__}(train_decay=True) has per-neuron decays, so its presynaptic trace is not"
            " shared across neurons; trace-based rules need fixed decays"
        )
    if isinstance(cell, LIF):
        return (cell.beta, cell.alpha) if cell.current_based else (cell.alpha,)
    if isinstance(cell, ALIF):
        return (cell.alpha,)
    if isinstance(cell, LeakyReadout):
        return (cell.kappa,)
    if isinstance(cell, Identity):
        return ()
    if isinstance(cell, TanhRNN):
        return (cell.leak,)
    if isinstance(cell, SignedIF):
        return (1.0,)
    if hasattr(cell, "psp_decays"):
        return tuple(float(d) for d in cell.psp_decays)
    raise ValueError(
        f"network: no membrane decay known for cell {type(cell).__name__}; give the cell a `psp_decays` tuple"
        " (LIF, ALIF, LeakyReadout, Identity, TanhRNN and SignedIF are known)"
    )


def single_decay(cell: Any, role: str) -> float:
    """The one decay of ``cell`` (0 for a memoryless cell); a ``ValueError`` for a double-exponential cell."""
    d = psp_decays(cell)
    if len(d) > 1:
        raise ValueError(f"network: {role} needs a cell with a single decay, got {type(cell).__name__} with decays {d}")
    return d[0] if d else 0.0


def psp_init(B: Any, decays: tuple, batch: int, n: int) -> list:
    return [B.zeros((batch, n)) for _ in decays]


def psp_step(decays: tuple, stages: list, p: Any) -> tuple[list, Any]:
    """Advance a cascade of exponential filters once: ``(new_stages, filtered p)``."""
    new, x = [], p
    for d, s in zip(decays, stages):
        x = d * s + x
        new.append(x)
    return new, x


def n_presynaptic(network: Network, l: int, params: dict) -> int:
    return sum(s.stop - s.start for s in block_segments(network, l, params))


def advance(network: Network, params: dict, state: dict, x_t: Any, perturb: list | None = None, cut: bool = False):
    """One network step from presynaptic vectors: ``(new_state, outs, pres)``.

    Block ``l``'s current is ``p^l_t @ W^l (+ perturb[l])``, the same number
    :meth:`Network.block_current` gives.  ``cut=True`` stops gradients on every input
    that comes from another block of the same step (DCLL's layer-local learning).
    """
    B = ops_for(x_t)
    prev_outs = [s["out"] for s in state["layers"]]
    outs: list = []
    layers, pres = [], []
    for l, blk in enumerate(network.blocks):
        segs = block_segments(network, l, params)
        seen = [B.stop_gradient(o) for o in outs] if cut else outs
        pre = presynaptic_step(network, l, x_t, seen, prev_outs, segs)
        current = B.matmul(pre, stacked_weight(network, l, params, segs))
        if perturb is not None:
            current = current + perturb[l]
        cell_state, out = blk.cell.step(params["layers"][l]["cell"], state["layers"][l]["cell"], current)
        outs.append(out)
        layers.append({"cell": cell_state, "out": out})
        pres.append(pre)
    return {"layers": layers}, outs, pres


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
    """First pass of the two-pass offline form: ``(loss, ys, outs, dL/dy_t, [dR/dz^l_t] or None)``."""
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
    if objective.regularizer is not None:
        raise ValueError(f"regularizer: {rule} applies the rate regulariser in offline mode only")


def per_step_loss(objective: Objective, target_t: Any, t: Any, T: int) -> StepLoss:
    """The loss's own per-step form ``l_t(y_t)``."""

    def loss(outs: list) -> tuple:
        value = objective.loss.per_step(outs[-1], target_t, t, T)
        return value, value

    return loss


# ---------------------------------------------------------------------------------------------
class OTTT(OnlineRule):
    """OTTT: presynaptic traces times the same-step back-propagated error (module docstring)."""

    name = "ottt"
    #: stop gradients between blocks within a step (DCLL sets this)
    cut = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _check(self, network: Network) -> list:
        return [psp_decays(blk.cell) for blk in network.blocks]

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        return {}

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        decays = self._check(network)
        B = ops_for(params["layers"][0]["w"])
        traces = [psp_init(B, d, batch_size, n_presynaptic(network, l, params)) for l, d in enumerate(decays)]
        return {"net": network.initial_state(B, batch_size), "traces": traces}

    def _step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, step_loss: StepLoss):
        B = ops_for(x_t)
        decays = self._check(network)
        batch = x_t.shape[0]
        zeros = [B.zeros((batch, blk.size)) for blk in network.blocks]

        def f(perturb: list):
            state, outs, pres = advance(network, params, carry["net"], x_t, perturb, cut=self.cut)
            total, reported = step_loss(outs)
            return total, (reported, state, outs, pres)

        (_, (loss_t, state, outs, pres)), deltas = B.value_and_grad(f, has_aux=True)(zeros)
        grads = B.tree_zeros_like(params)
        traces = []
        for l in range(len(network.blocks)):
            stages, a = psp_step(decays[l], carry["traces"][l], pres[l])
            traces.append(stages)
            segs = block_segments(network, l, params)
            split_gradient(network, l, B.einsum("bp,bn->pn", a, deltas[l]), segs, grads)
        return grads, {"net": state, "traces": traces}, {"loss": loss_t, "output": outs[-1], "spikes": outs}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        no_regularizer(objective, self.name)
        return self._step(network, params, rule_state, carry, x_t, per_step_loss(objective, target_t, t, T))

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        """Two-pass offline form (any loss, rate regulariser included); see the module docstring."""
        loss, ys, spikes, err, reg = recorded_errors(network, params, batch, objective)
        grads = self._replay(network, params, rule_state, batch[0], err, reg, [])
        return grads, rule_state, {"loss": loss, "outputs": ys, "spikes": spikes}

    def _replay(self, network: Network, params: dict, rule_state: Any, xs: Any, err: Any, reg: list | None, local_errs: list) -> dict:
        """Second pass: scan the step with the recorded errors injected; the summed gradients."""
        B = ops_for(xs)
        carry0 = self.online_init(network, params, rule_state, xs.shape[1])

        def body(c, inp):
            carry, gsum = c
            x_t, e_t, r_t, le_t = inp
            g, carry, _ = self._step_injected(network, params, rule_state, carry, x_t, e_t, r_t, le_t)
            return (carry, B.tree_add(gsum, g)), None

        (_, gsum), _ = B.scan(body, (carry0, B.tree_zeros_like(params)), (xs, err, reg, local_errs))
        return gsum

    def _step_injected(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, e_t: Any, r_t: Any, le_t: list):
        """One replayed step with errors ``e_t`` (output), ``r_t`` (regulariser), ``le_t`` (local; unused here)."""
        return self._step(network, params, rule_state, carry, x_t, injected_loss(e_t, r_t))
