"""e-prop (Bellec et al. 2020): eligibility traces times a broadcast learning signal.

The network is a stack of hidden blocks and a readout block (the last one, not
recurrent).  For a hidden weight ``W_ji`` of block ``l``::

    dE/dW_ji  ~=  sum_t  L^l_{j,t} * e_{ji,t}

* ``e_{ji,t}``: the per-synapse eligibility trace of :mod:`.eligibility`, driven by
  the cell Jacobians from forward-mode autodiff of the cell's step (LIF, ALIF, the tanh
  RNN cell or any user cell);
* ``L^l_{j,t} = sum_k F^l_{jk} delta_{k,t}``: the learning signal, with
  ``delta_t = dE/dI^out_t`` the error at the readout's input current and ``F^l`` the
  feedback matrix of block ``l``:

  - ``feedback="symmetric"``: ``F^l`` is the readout weight from block ``l`` (the
    chain weight or a skip link);
  - ``"random"``: a fixed random matrix (``N(0, scale^2 / n_l)``), for any block;
  - ``"adaptive"``: starts random and follows the readout weight's updates
    (Kolen-Pollack): ``F <- F - feedback_lr * (dE/dW_out + weight_decay * F)``, while
    ``W_out``'s gradient gets ``+ weight_decay * W_out``, so ``F - W_out`` decays.

The readout weights get their exact gradient ``sum_t p^out_t delta_t^T``.  A rate
regulariser adds ``dR/dz^l_t`` to the learning signal (Bellec et al.'s firing-rate
regularisation).  Hidden cells' own parameters (trainable decays) get no e-prop
gradient (zero).

**Offline** (``gradients``): one forward pass records spikes, states and currents;
``delta`` comes by autodiff of the loss through the readout block alone (any loss); the
cell Jacobians at the recorded states and currents give ``sum_t L_t e_t`` in adjoint form.  **Online** (``online_step``): the loss must decompose over
steps (``ce_per_step``, ``ce_last``, ``mse_membrane``) and the readout cell must be
linear (``cell.linear``: leaky readout or identity); with ``y_t = kappa y_{t-1} + I_t``
(``kappa`` from the readout's ``psp_decays``) the signal is ``L_t = F^T dl_t/dy_t`` and the trace is
low-pass filtered, ``ebar_t = kappa ebar_{t-1} + e_t``, which gives the same gradient
as the offline form.  The learning signal per time step comes from a per-step loss
(``ce_per_step``), a signal only at the end from ``ce_last``.

When no hidden block is recurrent and only the last hidden block feeds the readout
(through its chain weight), symmetric e-prop is exact: it equals BPTT.

Memory per sample, online: ``sum_l k_l * P_l * n_l`` for the eligibility vectors
(``P_l`` presynaptic inputs, ``n_l`` neurons, ``k_l`` state fields) plus
``sum_l P_l * n_l`` for the filtered traces: it does not grow with ``T``.  Offline, the
same sum is evaluated in adjoint form (see ``_block_gradient``): ``T * sum_l (P_l +
n_l (k_l + 1)^2)`` for the recorded activity and Jacobians, and no per-synapse trace.
"""

from __future__ import annotations

from __future__ import annotations

from typing import Any, NamedTuple


from ..losses import Objective
from ..network import Connection, Network
from ..protocols import require_network
from .base import OnlineRule, backend_of, random_block_matrices
from .traces import adjoint_trace_sum, init_eligibility, readout_leak, synapse_sum, trace_step

FEEDBACK = ("symmetric", "random", "adaptive")


def readout_connections(network: Network) -> dict[int, Connection]:
    """Hidden block -> the connection that carries its output into the readout (the last block)."""
    r = len(network.blocks) - 1
    src: dict[int, Connection] = {}
    for c in network.connections_into(r):
        if c.delay and c.from_block:
            raise ValueError(f"network: e-prop needs a feed-forward readout; {c.name} feeds it from a later step")
        if c.from_block:
            src[c.src] = c
    return src


class ReadoutPass(NamedTuple):
    """The first pass of the offline trace rules: the recorded run and the error at the readout."""

    ys: Any  # outputs (T, B, n_out)
    rec: dict  # the run's record (outputs, cell states, currents)
    pres: list  # every connection's presynaptic sequence
    loss: Any  # the objective (regulariser included)
    delta: Any  # dE/dI^out_t (T, B, n_out): the error at the readout's input current
    pieces: dict  # the readout's exact gradient, as connection pieces
    readout_cell: dict  # the gradient of the readout cell's own parameters
    reg: list | None  # dR/dz^l_t of the rate regulariser, per block (None without one)


def readout_pass(network: Network, params: dict, batch: tuple, objective: Objective) -> ReadoutPass:
    """Run the network recording states and currents; ``delta_t = dE/dI^out_t`` by autodiff through the
    readout block alone (any loss), the readout's exact gradient ``sum_t p^out_t delta_t^T`` (and its
    cell's), and the regulariser's direct term on each block's output."""
    xs, targets = batch
    B = backend_of(params)
    ys, _, rec = network.run(params, xs, record=("state", "current"))
    outs = [B.stop_gradient(o) for o in rec["out"]]
    pres = network.presynaptic_sequences(xs, outs)
    r = len(network.blocks) - 1
    current_r = B.stop_gradient(rec["current"][r])

    def readout_loss(q: dict) -> Any:
        _, (y, _, _) = network.run_block(params, r, q["I"], cell_params=q["cell"])
        return objective.loss(y, targets, None)

    loss, g = B.value_and_grad(readout_loss)({"I": current_r, "cell": network.cell_params(params, r)})
    pieces = network.split_stacked(r, B.outer_sum(network.stacked_presynaptic(r, pres, like=xs), g["I"]))
    reg = None
    if objective.regularizer is not None:
        reg_value, reg = B.value_and_grad(lambda z: objective.regularizer(z, network.spiking))(outs)
        loss = loss + reg_value
    return ReadoutPass(ys, rec, pres, loss, g["I"], pieces, g["cell"], reg)


def block_trace_gradient(network: Network, params: dict, l: int, rec: dict, pres: list, xs: Any, signal: Any) -> tuple[dict, Any]:
    """``sum_t L_t e_t`` for block ``l`` as connection gradient pieces, and ``dz_t/dI_t`` over time."""
    J = network.jacobians(params, l, rec)
    pre = network.stacked_presynaptic(l, pres, like=xs)
    return network.split_stacked(l, adjoint_trace_sum(J, pre, signal)), J.z_I


def add_pieces(total: dict, new: dict) -> dict:
    """Connection gradient pieces of ``total`` and ``new`` summed (a fresh dict)."""
    out = dict(total)
    for k, g in new.items():
        out[k] = {n: out[k][n] + v for n, v in g.items()} if k in out else g
    return out


class EProp(OnlineRule):
    """e-prop with symmetric, random or adaptive feedback (see the module docstring)."""

    name = "eprop"

    def __init__(self, feedback: str = "symmetric", feedback_scale: float = 1.0, feedback_lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        if feedback not in FEEDBACK:
            raise ValueError(f"feedback: unknown e-prop variant {feedback!r}; choose one of {list(FEEDBACK)}")
        if not feedback_scale > 0:
            raise ValueError(f"feedback_scale must be positive, got {feedback_scale!r}")
        if feedback_lr < 0 or weight_decay < 0:
            raise ValueError("feedback_lr and weight_decay must be >= 0")
        self.feedback = feedback
        self.feedback_scale = feedback_scale
        self.feedback_lr = feedback_lr
        self.weight_decay = weight_decay

    def __repr__(self) -> str:
        return f"EProp(feedback={self.feedback!r})"

    # ------------------------------------------------------------------ structure
    def _check(self, network: Any) -> Network:
        network = require_network(network, "e-prop")
        if len(network.blocks) < 2:
            raise ValueError("network: e-prop needs at least one hidden block before the readout block")
        if network.blocks[-1].recurrent:
            raise ValueError("network: e-prop's readout block (the last) must not be recurrent")
        return network

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        network = self._check(network)
        sources = readout_connections(network)
        n_hidden = len(network.blocks) - 1
        if self.feedback != "random":
            missing = [l for l in range(n_hidden) if l not in sources]
            if missing:
                raise ValueError(
                    f"feedback: {self.feedback} e-prop needs every hidden block to feed the readout; blocks {missing} do not."
                    " Use feedback='random' or add Link(block, readout)"
                )
        if self.feedback == "symmetric":
            return {}
        return {"feedback": random_block_matrices(network, params, key, self.feedback_scale)}

    def feedback_matrices(self, network: Network, params: dict, rule_state: dict) -> list:
        """``F^l`` of shape ``(n_l, n_out)`` for every hidden block."""
        if self.feedback == "symmetric":
            sources = readout_connections(network)
            return [network.dense_weight(params, sources[l]) for l in range(len(network.blocks) - 1)]
        return list(rule_state["feedback"])

    # ------------------------------------------------------------------ offline
    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        network = self._check(network)
        B = backend_of(params)
        first = readout_pass(network, params, batch, objective)
        pieces = first.pieces
        for l, F in enumerate(self.feedback_matrices(network, params, rule_state)):
            signal = B.matmul(first.delta, B.transpose(F, (1, 0)))
            if first.reg is not None:  # the regulariser's direct effect on the block's spikes joins the signal
                signal = signal + first.reg[l]
            pieces = add_pieces(pieces, block_trace_gradient(network, params, l, first.rec, first.pres, batch[0], signal)[0])
        rule_state = self._adapt_feedback(network, rule_state, pieces)
        pieces = self._decay_readout(network, params, pieces, 1.0)
        grads = network.gradient_tree(params, pieces, {len(network.blocks) - 1: first.readout_cell})
        return grads, rule_state, {"loss": first.loss, "outputs": first.ys, "spikes": first.rec["out"]}

    def _decay_readout(self, network: Network, params: dict, pieces: dict, share: Any) -> dict:
        """Adaptive feedback: add ``share * weight_decay * W_out`` to the readout weights' gradient."""
        if self.feedback != "adaptive" or self.weight_decay == 0:
            return pieces
        extra = {c.index: {"w": share * self.weight_decay * network.connection_params(params, c)["w"]}
                 for c in readout_connections(network).values()}
        return add_pieces(pieces, extra)

    def _adapt_feedback(self, network: Network, rule_state: Any, pieces: dict) -> Any:
        """Kolen-Pollack step: ``F <- F - feedback_lr * (dE/dW_out + weight_decay * F)``."""
        if self.feedback != "adaptive":
            return rule_state
        fb = list(rule_state["feedback"])
        for l, c in readout_connections(network).items():
            fb[l] = fb[l] - self.feedback_lr * (pieces[c.index]["w"] + self.weight_decay * fb[l])
        return {"feedback": fb}

    # ------------------------------------------------------------------ online
    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        network = self._check(network)
        readout_leak(network, "online e-prop")
        B = backend_of(params)
        eps, ebar = [], []
        for l, blk in enumerate(network.blocks[:-1]):
            P = network.presynaptic_size(l)
            eps.append(init_eligibility(B, tuple(blk.cell.state_names), batch_size, P, blk.size))
            ebar.append(B.zeros((batch_size, P, blk.size)))
        P_r = network.presynaptic_size(len(network.blocks) - 1)
        return {"net": network.initial_state(B, batch_size), "eps": eps, "ebar": ebar, "pbar": B.zeros((batch_size, P_r))}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        if objective.regularizer is not None:
            raise ValueError("regularizer: e-prop applies the rate regulariser in offline mode only")
        B = backend_of(params)
        kappa = readout_leak(network, "online e-prop")
        r = len(network.blocks) - 1
        step = network.step_record(params, carry["net"], x_t, jacobians=range(r))
        eps_all, ebar_all = [], []
        for l in range(r):
            eps, e = trace_step(step.jacobians[l], carry["eps"][l], network.stacked_presynaptic(l, step.pres, like=x_t))
            eps_all.append(eps)
            ebar_all.append(kappa * carry["ebar"][l] + e)
        y = step.outs[r]
        pbar = kappa * carry["pbar"] + network.stacked_presynaptic(r, step.pres, like=x_t)
        loss_t, dy = B.value_and_grad(lambda yy: objective.loss.per_step(yy, target_t, t, T))(y)
        pieces = network.split_stacked(r, B.outer_sum(pbar, dy))
        for l, F in enumerate(self.feedback_matrices(network, params, rule_state)):
            L_t = B.matmul(dy, B.transpose(F, (1, 0)))
            pieces = add_pieces(pieces, network.split_stacked(l, synapse_sum(ebar_all[l], L_t)))
        pieces = self._decay_readout(network, params, pieces, 1.0 / T)
        new_carry = {"net": step.state, "eps": eps_all, "ebar": ebar_all, "pbar": pbar}
        return network.gradient_tree(params, pieces), new_carry, {"loss": loss_t, "output": y, "spikes": step.outs}

    def online_finish(self, network: Network, params: dict, rule_state: Any, grads: dict) -> Any:
        if self.feedback != "adaptive":
            return rule_state
        # the raw readout gradient, without W_out's decay
        pieces = {}
        for c in readout_connections(network).values():
            g = network.connection_params(grads, c)["w"]
            pieces[c.index] = {"w": g - self.weight_decay * network.connection_params(params, c)["w"] if self.weight_decay else g}
        return self._adapt_feedback(network, rule_state, pieces)
