"""Learning rules: one rule per module, found by name with :func:`make_rule`."""

from __future__ import annotations

import importlib
from typing import Any

from .base import MODES, OnlineRule, Rule, online_advance, run_online

# rule name -> (module, class, default options); a new rule adds its file and one line here
RULES: dict[str, tuple[str, str, dict]] = {
    "bptt": ("bptt", "BPTT", {}),
    "tbptt": ("bptt", "TruncatedBPTT", {}),
    "rtrl": ("rtrl", "RTRL", {}),
    "ostl": ("ostl", "OSTL", {}),
    "eprop": ("eprop", "EProp", {"feedback": "symmetric"}),
    "eprop-symmetric": ("eprop", "EProp", {"feedback": "symmetric"}),
    "eprop-random": ("eprop", "EProp", {"feedback": "random"}),
    "eprop-adaptive": ("eprop", "EProp", {"feedback": "adaptive"}),
    "ottt": ("ottt", "OTTT", {}),
    "otpe": ("otpe", "OTPE", {}),
    "fptt": ("fptt", "FPTT", {}),
    "superspike": ("superspike", "SuperSpike", {}),
    "dcll": ("dcll", "DCLL", {}),
    "fa": ("feedback_alignment", "FeedbackAlignment", {}),
    "dfa": ("feedback_alignment", "DirectFeedbackAlignment", {}),
    "trace-feedback": ("trace_feedback", "TraceFeedback", {}),
    "manhattan": ("manhattan", "Manhattan", {}),
    "manhattan-conductance": ("manhattan", "ManhattanConductance", {}),
    "spikegrad": ("spikegrad", "SpikeGrad", {}),
    "mala": ("langevin", "MALA", {}),
    "hmc": ("langevin", "HMC", {}),
    "spike_time": ("spike_time", "SpikeTime", {}),
    "eventprop": ("eventprop", "EventProp", {}),
}


def make_rule(spec: str | Rule, **options: Any) -> Rule:
    """A rule from an instance or a name in ``RULES`` with options (``make_rule("tbptt", k=10)``)."""
    if isinstance(spec, Rule):
        return spec
    if spec not in RULES:
        raise ValueError(f"rule: unknown rule {spec!r}; choose one of {sorted(RULES)}")
    module, cls, defaults = RULES[spec]
    rule_cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return rule_cls(**{**defaults, **options})


__all__ = ["MODES", "OnlineRule", "RULES", "Rule", "make_rule", "online_advance", "run_online"]
