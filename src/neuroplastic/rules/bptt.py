"""Backpropagation through time, full and truncated."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import ops_for
from ..losses import Objective
from ..network import Network
from .base import Rule, forward_loss


class BPTT(Rule):
    """Exact gradient of the objective by reverse-mode autodiff through the unrolled network.

    With ``L = L(y_1..y_T)`` and state ``h_t = f(h_{t-1}, x_t; W)``::

        dL/dW = sum_t (dL/dh_t) (partial h_t / partial W),
        dL/dh_t = partial L/partial h_t + (dL/dh_{t+1}) (partial h_{t+1} / partial h_t)

    (surrogate derivatives stand in for the spike function's).  ``truncate=k`` gives
    truncated BPTT: the state is cut from the graph every ``k`` steps
    (``h_{t} <- stop_gradient(h_t)`` when ``t mod k = 0``), so credit flows back at most
    to the start of the current window of ``k`` steps, while the loss still sees all
    outputs.  ``k >= T`` is exactly full BPTT.

    Memory per sample: the graph of the whole sequence, ``O(T * sum_l n_l)`` activations
    (truncation does not reduce it in this form: it limits credit assignment, not storage).
    """

    name = "bptt"
    modes = ("offline",)

    def __init__(self, truncate: int | None = None) -> None:
        if truncate is not None and not (isinstance(truncate, (int, np.integer)) and truncate > 0):
            raise ValueError(f"truncate must be a positive integer, got {truncate!r}")
        self.truncate = truncate

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        B = ops_for(batch[0])
        fn = lambda p: forward_loss(network, p, batch, objective, self.truncate)  # noqa: E731
        (loss, (ys, spikes)), grads = B.value_and_grad(fn, has_aux=True)(params)
        return grads, rule_state, {"loss": loss, "outputs": ys, "spikes": spikes}

    def __repr__(self) -> str:
        return f"BPTT(truncate={self.truncate})"


class TruncatedBPTT(BPTT):
    """:class:`BPTT` with a window of ``k`` steps (see there)."""

    name = "tbptt"

    def __init__(self, k: int = 20) -> None:
        super().__init__(truncate=k)
