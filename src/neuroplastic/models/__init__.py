"""Named network architectures for the command line and examples.

``build_model(name, n_in, n_out, hidden=..., ...)`` returns a :class:`Network`:

=============  ==============================================================
``rsnn``       recurrent LIF layer(s) + leaky readout (the default)
``rsnn-alif``  recurrent ALIF layer(s) + leaky readout (an LSNN-style network)
``snn``        feed-forward LIF layer(s) + leaky readout
``rnn``        recurrent tanh layer(s) + leaky readout (non-spiking reference)
=============  ==============================================================

The other model containers (see :class:`~neuroplastic.protocols.Model`) live here too:
:class:`SpikeGradNet` (SpikeGrad's static integrate-and-fire layers),
:class:`SpikeTimeNetwork` (exact spike times) and :class:`EventLIFNetwork` (event-based
current LIF layers, for EventProp).
"""

from __future__ import annotations

from typing import Sequence

from ..cells import ALIF, LIF, LeakyReadout, TanhRNN
from ..layers import Dense, RecurrentDense
from ..network import Network
from .event_lif import EventLIFNetwork
from .spike_time import SpikeTimeNetwork
from .spikegrad import SpikeGradNet

MODELS = ("rsnn", "rsnn-alif", "snn", "rnn")


def build_model(
    name: str,
    n_in: int,
    n_out: int,
    hidden: int | Sequence[int] = 256,
    tau_mem: float = 20.0,
    tau_out: float = 20.0,
    tau_adapt: float = 200.0,
    surrogate: str = "fast_sigmoid",
    dt: float = 1.0,
) -> Network:
    """A network by name (see ``MODELS``); ``hidden`` is one size or one size per layer."""
    if name not in MODELS:
        raise ValueError(f"model: unknown model {name!r}; choose one of {list(MODELS)}")
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    if not sizes or any(not (isinstance(h, int) and h > 0) for h in sizes):
        raise ValueError(f"hidden: expected positive layer sizes, got {hidden!r}")
    layers: list = []
    for h in sizes:
        if name == "rsnn":
            layers += [RecurrentDense(h), LIF(tau_mem=tau_mem, dt=dt, surrogate=surrogate)]
        elif name == "rsnn-alif":
            layers += [RecurrentDense(h), ALIF(tau_mem=tau_mem, tau_adapt=tau_adapt, beta_adapt=0.5, dt=dt, surrogate=surrogate)]
        elif name == "snn":
            layers += [Dense(h), LIF(tau_mem=tau_mem, dt=dt, surrogate=surrogate)]
        else:
            layers += [RecurrentDense(h, rec_gain=0.9), TanhRNN()]
    layers += [Dense(n_out), LeakyReadout(tau_out=tau_out, dt=dt)]
    return Network(n_in, layers)


__all__ = ["EventLIFNetwork", "MODELS", "SpikeGradNet", "SpikeTimeNetwork", "build_model"]
