"""Spike encoders and decoders, written once with backend ops (numpy, torch and JAX arrays).

Convention: input is a signal ``(T, N, C)`` or static features ``(N, C)``; output is a
time-major spike train ``(T, N, C')``.  Each decoder sits next to its encoder.

=========================  ==================================  =========================
family                     encoders                            decoders
=========================  ==================================  =========================
rate                       :func:`rate_encode`                 :func:`rate_decode`
latency (TTFS)             :func:`latency_encode`              :func:`latency_decode`
delta / threshold          :func:`delta_encode`                —
temporal contrast          :func:`temporal_contrast` (TC),     :func:`contrast_decode`
                           :func:`threshold_based` (TBR),
                           :func:`step_forward` (SF),
                           :func:`moving_window` (MW)
filter-based               :func:`bsa`, :func:`hsa`,           :func:`filter_decode`
                           :func:`modified_hsa`
population / place         :func:`grf_encode`,                 :func:`grf_decode`,
                           :func:`gaussian_receptive_fields`,  :func:`one_hot_decode`
                           :func:`one_hot_place`
=========================  ==================================  =========================

:data:`ENCODERS` maps short names (``"tc"``, ``"sf"``, ...) to signal encoders for
experiments that switch encodings by name.
"""

from __future__ import annotations

from .delta import delta_encode
from .latency import latency_decode, latency_encode, latency_times
from .population import (
    gaussian_receptive_fields,
    grf_centers,
    grf_decode,
    grf_encode,
    one_hot_decode,
    one_hot_place,
)
from .rate import rate_decode, rate_encode
from .temporal import (
    bsa,
    bsa_decode,
    contrast_decode,
    filter_decode,
    hsa,
    hsa_decode,
    make_filter,
    modified_hsa,
    moving_window,
    mw_decode,
    sf_decode,
    step_forward,
    tbr_decode,
    tbr_threshold,
    tc_decode,
    temporal_contrast,
    threshold_based,
)

#: signal encoders by short name: ``(T, N, C) -> (T, N, C')``
ENCODERS = {
    "tc": temporal_contrast,
    "tbr": threshold_based,
    "sf": step_forward,
    "mw": moving_window,
    "bsa": bsa,
    "hsa": hsa,
    "mhsa": modified_hsa,
    "delta": delta_encode,
    "rate": rate_encode,
}

__all__ = [
    "ENCODERS", "bsa", "bsa_decode", "contrast_decode", "delta_encode", "filter_decode", "gaussian_receptive_fields",
    "grf_centers", "grf_decode", "grf_encode", "hsa", "hsa_decode", "latency_decode", "latency_encode", "latency_times",
    "make_filter", "modified_hsa", "moving_window", "mw_decode", "one_hot_decode", "one_hot_place", "rate_decode",
    "rate_encode", "sf_decode", "step_forward", "tbr_decode", "tbr_threshold", "tc_decode", "temporal_contrast",
    "threshold_based",
]
