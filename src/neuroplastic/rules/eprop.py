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

**Offline** (``gradients``): one forward pass records spikes and states; ``delta`` comes
by autodiff of the loss through the readout alone (any loss); a second scan builds the
traces and sums ``L * e``.  **Online** (``online_step``): the loss must decompose over
steps (``ce_per_step``, ``ce_last``, ``mse_membrane``); with a leaky readout
``y_t = kappa y_{t-1} + I_t`` the signal is ``L_t = F^T dl_t/dy_t`` and the trace is
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

import math
from typing import Any

import numpy as np

from ..backend import ops_for
from ..cells import Identity, LeakyReadout
from ..losses import Objective
from ..network import Network
from ..tree import get_at, set_at
from .base import OnlineRule
from .cell_jacobians import step_with_jacobians
from .eligibility import (
    block_segments,
    init_eligibility,
    presynaptic_sequence,
    presynaptic_step,
    previous_states,
    split_gradient,
    stacked_weight,
    trace_step,
)

FEEDBACK = ("symmetric", "random", "adaptive")


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
    @staticmethod
    def readout_sources(network: Network) -> dict[int, tuple]:
        """Hidden block -> path of the weight that connects it to the readout."""
        r = len(network.blocks) - 1
        src = {r - 1: ("layers", r, "w")} if r >= 1 else {}
        for i, link in network.links_into(r):
            if link.backward:
                raise ValueError(f"network: e-prop needs a feed-forward readout; links[{i}] feeds it from a later step")
            if link.src >= 0:
                src[link.src] = ("links", i, "w")
        return src

    def _check(self, network: Network) -> None:
        if len(network.blocks) < 2:
            raise ValueError("network: e-prop needs at least one hidden block before the readout block")
        if network.blocks[-1].recurrent:
            raise ValueError("network: e-prop's readout block (the last) must not be recurrent")

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        sources = self.readout_sources(network)
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
        B = ops_for(params["layers"][0]["w"])
        rng = np.random.default_rng(B.seed_from_key(key) if key is not None else 0)
        n_out = network.n_out
        fb = [
            B.asarray(rng.normal(0.0, self.feedback_scale / math.sqrt(blk.size), (blk.size, n_out)))
            for blk in network.blocks[:-1]
        ]
        return {"feedback": fb}

    def feedback_matrices(self, network: Network, params: dict, rule_state: dict) -> list:
        """``F^l`` of shape ``(n_l, n_out)`` for every hidden block."""
        if self.feedback == "symmetric":
            sources = self.readout_sources(network)
            return [get_at(params, sources[l]) for l in range(len(network.blocks) - 1)]
        return list(rule_state["feedback"])

    # ------------------------------------------------------------------ offline
    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        xs, targets = batch
        B = ops_for(xs)
        r = len(network.blocks) - 1
        ys, _, rec = network.run(params, xs, record=True)
        outs = [B.stop_gradient(o) for o in rec["out"]]
        grads = B.tree_zeros_like(params)

        # readout: exact gradient, and the error delta_t at its input current
        readout = network.blocks[r]
        segs_r = block_segments(network, r, params)
        pre_r = presynaptic_sequence(network, r, xs, outs, segs_r)
        current_r = B.matmul(pre_r, stacked_weight(network, r, params, segs_r))
        init_r = readout.cell.initial_state(B, xs.shape[1], readout.size)

        def readout_loss(q: dict) -> Any:
            _, y = B.scan(lambda s, i: readout.cell.step(q["cell"], s, i), init_r, q["I"])
            return objective.loss(y, targets, None)

        loss, g = B.value_and_grad(readout_loss)({"I": current_r, "cell": params["layers"][r]["cell"]})
        delta = g["I"]
        grads["layers"][r]["cell"] = g["cell"]
        split_gradient(network, r, B.einsum("tbp,tbo->po", pre_r, delta), segs_r, grads)

        # the regulariser's direct effect on each block's spikes joins the learning signal
        reg_grads = None
        if objective.regularizer is not None:
            reg_value, reg_grads = B.value_and_grad(lambda z: objective.regularizer(z, network.spiking))(outs)
            loss = loss + reg_value
        self._hidden_gradients(network, params, rule_state, xs, outs, rec["state"], delta, reg_grads, grads)
        rule_state = self._adapt_feedback(network, rule_state, grads)
        self._decay_readout(network, params, grads, 1.0)
        return grads, rule_state, {"loss": loss, "outputs": ys, "spikes": rec["out"]}

    def _hidden_gradients(self, network: Network, params: dict, rule_state: Any, xs: Any, outs: list, states: list, delta: Any, reg_grads: list | None, grads: dict) -> None:
        """Learning signals ``L^l_t = delta_t F^{lT}`` (+ regulariser) times each block's traces."""
        B = ops_for(xs)
        for l, F in enumerate(self.feedback_matrices(network, params, rule_state)):
            signal = B.matmul(delta, B.transpose(F, (1, 0)))
            if reg_grads is not None:
                signal = signal + reg_grads[l]
            self._block_gradient(network, l, params, xs, outs, states[l], signal, grads)

    def _block_gradient(self, network: Network, l: int, params: dict, xs: Any, outs: list, states: dict, signal: Any, grads: dict) -> Any:
        """``sum_t L_t e_t`` for block ``l`` written into ``grads``; returns ``dz_t/dI_t`` over time.

        Offline, the per-synapse sum is computed in adjoint form, which is the same linear
        algebra in the other order: with ``lambda_T = 0`` and, per neuron,
        ``lambda_t = (dh_{t+1}/dh_t)^T lambda_{t+1} + (dz_{t+1}/dh_t) L_{t+1}``,

            sum_t L_t e_t = sum_t p_t^T (L_t dz_t/dI_t + lambda_t . dh_t/dI_t),

        one matmul over all steps, and ``O(T B n k^2)`` memory instead of ``O(B P n k)``.
        The online form runs the per-synapse traces forward and gives the same result.
        """
        B = ops_for(xs)
        blk = network.blocks[l]
        T, batch = xs.shape[0], xs.shape[1]
        segs = block_segments(network, l, params)
        W = stacked_weight(network, l, params, segs)
        pre = presynaptic_sequence(network, l, xs, outs, segs)
        h_prev = previous_states(blk.cell.initial_state(B, batch, blk.size), states)
        # the cell is neuron-wise: Jacobians for all steps at once, on (T*B, n)
        flat = lambda x: B.reshape(x, (T * batch, blk.size))  # noqa: E731
        unflat = lambda x: B.reshape(x, (T, batch, blk.size))  # noqa: E731
        current = B.matmul(pre, W)
        _, _, J = step_with_jacobians(blk.cell, params["layers"][l]["cell"], {k: flat(v) for k, v in h_prev.items()}, flat(current))
        names = tuple(blk.cell.state_names)
        h_h = {a: {b: unflat(J.h_h[a][b]) for b in names} for a in names}
        h_I = {a: unflat(J.h_I[a]) for a in names}
        z_h = {b: unflat(J.z_h[b]) for b in names}
        z_I = unflat(J.z_I)
        if names:
            def back(lam, inp):  # lambda_t from lambda_{t+1} and the Jacobians of step t+1
                hh, zh, L_next = inp
                new = {a: zh[a] * L_next + sum(hh[b][a] * lam[b] for b in names) for a in names}
                return new, new

            nxt = lambda x: B.flip(B.concatenate([x[1:], B.zeros_like(x[:1])], axis=0), 0)  # noqa: E731
            inputs = ({a: {b: nxt(h_h[a][b]) for b in names} for a in names}, {b: nxt(z_h[b]) for b in names}, nxt(signal))
            _, lam_rev = B.scan(back, {a: B.zeros((batch, blk.size)) for a in names}, inputs)
            lam = {a: B.flip(lam_rev[a], 0) for a in names}
            delta = signal * z_I + sum(lam[a] * h_I[a] for a in names)
        else:
            delta = signal * z_I
        split_gradient(network, l, B.einsum("tbp,tbn->pn", pre, delta), segs, grads)
        return z_I

    def _decay_readout(self, network: Network, params: dict, grads: dict, share: Any) -> None:
        """Adaptive feedback: add ``share * weight_decay * W_out`` to the readout weights' gradient."""
        if self.feedback != "adaptive" or self.weight_decay == 0:
            return
        for path in self.readout_sources(network).values():
            set_at(grads, path, get_at(grads, path) + share * self.weight_decay * get_at(params, path))

    def _adapt_feedback(self, network: Network, rule_state: Any, grads: dict) -> Any:
        """Kolen-Pollack step: ``F <- F - feedback_lr * (dE/dW_out + weight_decay * F)``."""
        if self.feedback != "adaptive":
            return rule_state
        fb = list(rule_state["feedback"])
        for l, path in self.readout_sources(network).items():
            fb[l] = fb[l] - self.feedback_lr * (get_at(grads, path) + self.weight_decay * fb[l])
        return {"feedback": fb}

    # ------------------------------------------------------------------ online
    def _kappa(self, network: Network) -> float:
        cell = network.blocks[-1].cell
        if isinstance(cell, Identity):
            return 0.0
        if isinstance(cell, LeakyReadout) and not cell.train_decay:
            return cell.kappa
        raise ValueError(
            f"network: online e-prop needs a LeakyReadout (fixed decay) or Identity readout, got {type(cell).__name__}; use mode='offline'"
        )

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        self._check(network)
        self._kappa(network)
        B = ops_for(params["layers"][0]["w"])
        eps, ebar = [], []
        for l, blk in enumerate(network.blocks[:-1]):
            P = sum(s.stop - s.start for s in block_segments(network, l, params))
            eps.append(init_eligibility(B, tuple(blk.cell.state_names), batch_size, P, blk.size))
            ebar.append(B.zeros((batch_size, P, blk.size)))
        P_r = sum(s.stop - s.start for s in block_segments(network, len(network.blocks) - 1, params))
        return {"net": network.initial_state(B, batch_size), "eps": eps, "ebar": ebar, "pbar": B.zeros((batch_size, P_r))}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        if objective.regularizer is not None:
            raise ValueError("regularizer: e-prop applies the rate regulariser in offline mode only")
        B = ops_for(x_t)
        kappa = self._kappa(network)
        r = len(network.blocks) - 1
        prev_outs = [s["out"] for s in carry["net"]["layers"]]
        outs, layers, eps_all, ebar_all, pres = [], [], [], [], []
        for l, blk in enumerate(network.blocks[:-1]):
            segs = block_segments(network, l, params)
            pre = presynaptic_step(network, l, x_t, outs, prev_outs, segs)
            current = B.matmul(pre, stacked_weight(network, l, params, segs))
            h_prev = carry["net"]["layers"][l]["cell"]
            new_h, z, J = step_with_jacobians(blk.cell, params["layers"][l]["cell"], h_prev, current)
            eps, e = trace_step(J, carry["eps"][l], pre)
            eps_all.append(eps)
            ebar_all.append(kappa * carry["ebar"][l] + e)
            outs.append(z)
            layers.append({"cell": new_h, "out": z})
            pres.append(segs)
        segs_r = block_segments(network, r, params)
        pre_r = presynaptic_step(network, r, x_t, outs, prev_outs, segs_r)
        readout = network.blocks[r]
        state_r, y = readout.cell.step(params["layers"][r]["cell"], carry["net"]["layers"][r]["cell"], B.matmul(pre_r, stacked_weight(network, r, params, segs_r)))
        layers.append({"cell": state_r, "out": y})
        pbar = kappa * carry["pbar"] + pre_r

        loss_t, dy = B.value_and_grad(lambda yy: objective.loss.per_step(yy, target_t, t, T))(y)
        grads = B.tree_zeros_like(params)
        split_gradient(network, r, B.einsum("bp,bo->po", pbar, dy), segs_r, grads)
        for l, F in enumerate(self.feedback_matrices(network, params, rule_state)):
            L_t = B.matmul(dy, B.transpose(F, (1, 0)))
            split_gradient(network, l, B.einsum("bpn,bn->pn", ebar_all[l], L_t), pres[l], grads)
        self._decay_readout(network, params, grads, 1.0 / T)
        new_carry = {"net": {"layers": layers}, "eps": eps_all, "ebar": ebar_all, "pbar": pbar}
        return grads, new_carry, {"loss": loss_t, "output": y, "spikes": outs + [y]}

    def online_finish(self, network: Network, params: dict, rule_state: Any, grads: dict) -> Any:
        if self.feedback == "adaptive" and self.weight_decay:
            grads = {"layers": list(grads["layers"]), "links": list(grads["links"])}
            grads["layers"] = [dict(g) for g in grads["layers"]]
            grads["links"] = [dict(g) for g in grads["links"]]
            for path in self.readout_sources(network).values():  # the raw gradient, without W_out's decay
                set_at(grads, path, get_at(grads, path) - self.weight_decay * get_at(params, path))
        return self._adapt_feedback(network, rule_state, grads)

