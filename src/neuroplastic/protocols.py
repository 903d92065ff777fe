"""The model protocol: what the trainer, the architecture-agnostic rules and the analysis need.

Five containers satisfy it: :class:`~neuroplastic.network.Network` (blocks of projections
and cells, with links), :class:`~neuroplastic.models.spikegrad.SpikeGradNet` (SpikeGrad's
integer-threshold network), :class:`~neuroplastic.models.spike_time.SpikeTimeNetwork`
(exact spike times), :class:`~neuroplastic.models.event_lif.EventLIFNetwork` (event-based LIF,
for EventProp) and :class:`~neuroplastic.adapters.ModelAdapter` (a user's torch or JAX
model).  Rules that only need a forward pass (BPTT, Manhattan, MALA/HMC) accept any
:class:`Model`; rules that need the wiring (per-block traces, feedback paths) need a
:class:`~neuroplastic.network.Network` and say so by name when given something else.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Model(Protocol):
    """A trainable model on time-major input ``(T, B, n_in)``; parameters are a pytree."""

    n_in: int

    @property
    def spiking(self) -> list[bool]:
        """For each block (an adapted model is one block), whether its output is spikes."""
        ...

    def init(self, seed: int = 0, backend: Any = "jax", dtype: str = "float32", device: str | None = None) -> Any:
        """Initial parameters on ``backend``."""
        ...

    def check_input(self, xs: Any, name: str = "xs") -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``xs`` is valid input."""
        ...

    def run(self, params: Any, xs: Any, state: Any = None, record: Any = False, truncate: int | None = None) -> tuple[Any, Any, dict]:
        """``(ys, final_state, rec)``: outputs ``(T, B, n_out)``; ``rec["out"]`` lists every block's output."""
        ...


def require_network(model: Any, rule: str) -> Any:
    """``model`` if it is a :class:`~neuroplastic.network.Network`, else a ``ValueError`` naming ``rule``."""
    from .network import Network

    if not isinstance(model, Network):
        raise ValueError(
            f"network: {rule} needs a neuroplastic Network (it follows the network's blocks and connections),"
            f" got {type(model).__name__}"
        )
    return model


__all__ = ["Model", "require_network"]
