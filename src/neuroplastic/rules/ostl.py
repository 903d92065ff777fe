"""Online spatio-temporal learning (Bohnstingl et al. 2022).

OSTL splits the gradient into a *temporal* part, carried forward as per-synapse
eligibility traces inside each block (the same traces as e-prop, from :mod:`.traces`),
and a *spatial* part, the learning signal, obtained by back-propagating the error through
the layers' instantaneous Jacobians *within the same time step*.  For a chain of hidden
blocks ``0 .. r-1`` and a readout block ``r``::

    L^{r-1}_t = delta_t W_r^T                                  (delta_t = dE/dI^r_t)
    L^{l}_t   = (L^{l+1}_t * dz^{l+1}_t/dI^{l+1}_t) W_{l+1}^T    (spatial, same step)
    dE/dW_l  ~= sum_t L^l_t e^l_t                               (e^l: block l's traces)

``W_l`` is the feed weight into block ``l``.  The readout's own leak is treated exactly
(``delta`` is the error at its input current), as in e-prop.

**What is dropped, and when OSTL is exact.**  Bohnstingl et al. write the gradient of a
deep network as the spatial times temporal product above plus a residual ``R`` that holds
the *temporal dependencies across layers*: block ``l``'s output at step ``s`` moves block
``k > l``'s state at a later step ``t > s`` through ``k``'s memory (``dh^k_t/dh^k_{t-1}``,
``dz^k_t/dh^k_{t-1}``) or its recurrent weights; OSTL drops ``R``.  It is therefore
gradient-equivalent to BPTT for one hidden block without recurrent weights (the paper's
shallow case; it then coincides with symmetric e-prop), and for any number of hidden
blocks when the first may have memory but every hidden block above it is memoryless and
not recurrent (e.g. ``LIF(decay=0.0)``, a tanh cell, or no cell): then ``R = 0``.
Otherwise it is an approximation, better than e-prop's broadcast feedback for deep
networks.  ``dz/dI`` comes from autodiff of the cell step.

**Offline** (``gradients``, any chain of blocks, any loss): one recorded forward pass,
``delta`` by autodiff through the readout, then the blocks top-down in adjoint form.

**Online / deferred** (any number of hidden blocks; per-step loss, linear readout cell
``y_t = kappa y_{t-1} + I^r_t``): with ``g_t = dl_t/dy_t`` the error at step ``t`` is
``delta_s = sum_{t>=s} kappa^{t-s} g_t``, which lies in the future.  For the top hidden
block the feedback ``W_r^T`` is fixed over time, so the trace is low-pass filtered once,
``ebar_t = kappa ebar_{t-1} + e_t`` and ``dW_{r-1} += L_t ebar_t`` with
``L_t = g_t W_r^T`` (as online e-prop).  For a lower block ``l`` the spatial map
``M^l_t`` (``n_out -> n_l``: ``W_r^T``, then ``* dz/dI`` and ``W^T`` down the chain at step
``t``) changes with ``t``, so the trace is filtered per output unit (per error path)::

    Ebar^l_t[o, i, j] = kappa Ebar^l_{t-1}[o, i, j] + M^l_t[o, j] e^l_t[i, j]
    dW_l += sum_o g_t[o] Ebar^l_t[o]

which sums to the offline OSTL gradient exactly (deferred mode equals offline to
round-off).  With a memoryless readout (``kappa = 0``) no filtering is needed and each block
gets ``L^l_t e^l_t`` directly.

Memory per sample.  Online: ``sum_l k_l P_l n_l`` for the eligibility vectors (``P_l``
presynaptic inputs, ``n_l`` neurons, ``k_l`` state fields), plus ``P_{r-1} n_{r-1}`` for the
top block's filtered trace and ``n_out * sum_{l < r-1} P_l n_l`` for the lower blocks' per-output
traces (none when ``kappa = 0``); it does not grow with ``T``.  Offline: ``T * sum_l (P_l +
n_l (k_l + 1)^2)`` for the recorded activity and Jacobians, and no per-synapse trace.
"""

from __future__ import annotations

from typing import Any

from ..losses import Objective
from ..network import Network
from ..protocols import require_network
from .base import OnlineRule, backend_of
from .eprop import add_pieces, block_trace_gradient, readout_pass
from .traces import init_eligibility, readout_leak, synapse_sum, trace_step


class OSTL(OnlineRule):
    """OSTL: per-block eligibility traces with same-step backpropagated learning signals."""

    name = "ostl"

    def __repr__(self) -> str:
        return "OSTL()"

    def _check(self, network: Any) -> Network:
        network = require_network(network, "OSTL")
        if len(network.blocks) < 2:
            raise ValueError("network: OSTL needs at least one hidden block before the readout block")
        if network.links:
            raise ValueError("network: OSTL supports a chain of blocks without extra links")
        if network.blocks[-1].recurrent:
            raise ValueError("network: OSTL's readout block (the last) must not be recurrent")
        return network

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        return {}

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        network = self._check(network)
        first = readout_pass(network, params, batch, objective)
        pieces = first.pieces
        r = len(network.blocks) - 1
        # L^{r-1}_t = delta_t W_out^T, then down through the chain within each step
        up = network.feed_connection(r)
        signal = up.synapse.transpose(network.connection_params(params, up), first.delta)
        for l in range(r - 1, -1, -1):
            if first.reg is not None:
                signal = signal + first.reg[l]
            block, z_I = block_trace_gradient(network, params, l, first.rec, first.pres, batch[0], signal)
            pieces = add_pieces(pieces, block)
            if l > 0:
                c = network.feed_connection(l)
                signal = c.synapse.transpose(network.connection_params(params, c), signal * z_I)
        grads = network.gradient_tree(params, pieces, {r: first.readout_cell})
        return grads, rule_state, {"loss": first.loss, "outputs": first.ys, "spikes": first.rec["out"]}

    # ------------------------------------------------------------------ online
    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        network = self._check(network)
        kappa = readout_leak(network, "online OSTL")
        B = backend_of(params)
        r = len(network.blocks) - 1
        eps, ebar = [], []
        for l, blk in enumerate(network.blocks[:-1]):
            P = network.presynaptic_size(l)
            eps.append(init_eligibility(B, tuple(blk.cell.state_names), batch_size, P, blk.size))
            if kappa == 0:
                ebar.append(None)
            elif l == r - 1:  # fixed feedback W_r^T: one filtered trace
                ebar.append(B.zeros((batch_size, P, blk.size)))
            else:  # time-varying spatial map: one filtered trace per output unit
                ebar.append(B.zeros((batch_size, network.n_out, P, blk.size)))
        P_r = network.presynaptic_size(r)
        return {"net": network.initial_state(B, batch_size), "eps": eps, "ebar": ebar, "pbar": B.zeros((batch_size, P_r))}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        network = self._check(network)
        if objective.regularizer is not None:
            raise ValueError("regularizer: OSTL applies the rate regulariser in offline mode only")
        B = backend_of(params)
        kappa = readout_leak(network, "online OSTL")
        r = len(network.blocks) - 1
        step = network.step_record(params, carry["net"], x_t, jacobians=range(r))
        y = step.outs[r]
        pbar = kappa * carry["pbar"] + network.stacked_presynaptic(r, step.pres, like=x_t)
        loss_t, dy = B.value_and_grad(lambda yy: objective.loss.per_step(yy, target_t, t, T))(y)
        pieces = network.split_stacked(r, B.outer_sum(pbar, dy))
        eps_all, ebar_all = [], []
        up = network.feed_connection(r)
        w_up = network.connection_params(params, up)
        signal = up.synapse.transpose(w_up, dy)  # L^{r-1}_t = g_t W_r^T (kappa = 0: the full signal)
        # M^{r-1}_t = W_r^T as a map from the n_out errors, one row per output unit: (B, n_out, n_{r-1})
        path = None
        if kappa != 0 and r > 1:
            eye = B.eye(network.n_out, dtype=y.dtype)
            path = up.synapse.transpose(w_up, eye)[None]  # (1, n_out, n_{r-1}): broadcast over the batch
        for l in range(r - 1, -1, -1):
            eps, e = trace_step(step.jacobians[l], carry["eps"][l], network.stacked_presynaptic(l, step.pres, like=x_t))
            eps_all.insert(0, eps)
            if kappa == 0:
                ebar_all.insert(0, None)
                g_l = synapse_sum(e, signal)
            elif l == r - 1:
                ebar = kappa * carry["ebar"][l] + e
                ebar_all.insert(0, ebar)
                g_l = synapse_sum(ebar, signal)
            else:
                ebar = kappa * carry["ebar"][l] + path[:, :, None, :] * e[:, None, :, :]
                ebar_all.insert(0, ebar)
                g_l = B.einsum("bopn,bo->pn", ebar, dy)
            pieces = add_pieces(pieces, network.split_stacked(l, g_l))
            if l > 0:  # down one block within the step: * dz^l/dI^l, then W_l^T
                c = network.feed_connection(l)
                w_c = network.connection_params(params, c)
                z_I = step.jacobians[l].z_I
                if kappa == 0:
                    signal = c.synapse.transpose(w_c, signal * z_I)
                else:
                    n_b, n_o = y.shape[0], network.n_out
                    flat = B.reshape(path * z_I[:, None, :], (n_b * n_o, network.blocks[l].size))
                    path = B.reshape(c.synapse.transpose(w_c, flat), (n_b, n_o, network.blocks[l - 1].size))
        new_carry = {"net": step.state, "eps": eps_all, "ebar": ebar_all, "pbar": pbar}
        return network.gradient_tree(params, pieces), new_carry, {"loss": loss_t, "output": y, "spikes": step.outs}
