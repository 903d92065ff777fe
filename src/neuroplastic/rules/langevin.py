"""Posterior sampling: Metropolis-adjusted Langevin (MALA) and Hamiltonian Monte Carlo (HMC).

**Target.**  The posterior over all parameters ``w`` with a Gaussian prior
``N(0, prior_std^2 I)``, through the potential energy (tempered by ``temperature``)::

    U(w) = [ N/|b| * sum_{i in b} -log p(y_i | x_i, w)  +  |w|^2 / (2 prior_std^2) ] / temperature
         = [ N * objective(w; b)  +  |w|^2 / (2 prior_std^2) ] / temperature

``objective`` is read as the mean negative log-likelihood per example of the mini-batch
``b`` (the cross-entropy losses: ``p(y|x,w) = softmax(scores)``), so ``N/|b|`` rescales a
mini-batch sum to the full data set of ``N = n_data`` examples.  ``n_data=None`` takes the
batch as the whole data set (``N = |b|``).

**MALA** (:class:`MALA`, ``"mala"``; Roberts & Tweedie 1996), step size ``eps``::

    w' = w - (eps^2/2) grad U(w) + eps xi,          xi ~ N(0, I)
    log q(w' | w) = -|w' - w + (eps^2/2) grad U(w)|^2 / (2 eps^2)     (+ const)
    log alpha = U(w) - U(w') + log q(w | w') - log q(w' | w)
    accept w' with probability min(1, alpha), else stay at w.

The proposal-density ratio ``q(w|w')/q(w'|w)`` is what makes the chain exact for a
drift that is not symmetric; Neko's sampler lacked it.  ``grad U`` in the proposal may be
any direction (the spike function's surrogate gradient for spiking networks): the
Metropolis-Hastings test uses the exact ``U`` and the proposal actually made, so the
chain still targets the posterior (tested with a deliberately wrong drift).
``metropolis=False`` skips the test (the unadjusted Langevin algorithm, biased).

**HMC** (:class:`HMC`, ``"hmc"``; Duane et al. 1987, Neal 2011) with ``L`` leapfrog steps of
size ``eps`` and unit mass::

    p ~ N(0, I);  repeat L times:  p -= (eps/2) grad U(w);  w += eps p;  p -= (eps/2) grad U(w)
    log alpha = H(w, p) - H(w', p'),   H = U + |p|^2 / 2

HMC with ``L = 1`` is MALA with ``eps``: same proposal, same acceptance (tested).

**Preconditioning** (``scale``: a tree of positive per-parameter scales ``s`` shaped like
the parameters, or ``None``): both samplers then run in the coordinates ``z = w / s``,
i.e. with the diagonal mass matrix ``M = diag(1/s^2)``::

    MALA:  w' = w - (eps^2/2) s^2 grad U(w) + eps s xi
           log q(w' | w) = -|(w' - w + (eps^2/2) s^2 grad U(w)) / s|^2 / (2 eps^2)
    HMC:   p -= (eps/2) s grad U(w);  w += eps s p;  p -= (eps/2) s grad U(w)   (H = U + |p|^2/2)

so a coordinate with posterior standard deviation about ``s_i`` moves by about ``eps s_i``
per step.  :func:`~neuroplastic.train.sampling.fisher_scale` estimates ``s`` from the
squared gradients at a warm start (a diagonal Laplace approximation).

**Both** evaluate ``U`` at the current and the proposed point on the *same* mini-batch.
With ``n_data > |b|`` that is a noisy estimate of the full-data ``U``, and the test
then targets the posterior only approximately (mini-batch Metropolis-Hastings is biased;
Bardenet, Doucet & Holmes 2017); use full batches (``batch_size=None`` in :func:`sample`)
for an exact chain, as the MNIST-1D example does.

**Adapted scales** (``adapt_scale=True``: a diagonal mass matrix adapted during burn-in, as
Stan's warm-up does): the burn-in is cut into a fast phase (``init_buffer`` transitions, step
size only), slow windows of ``base_window, 2 base_window, 4 base_window, ...`` transitions (the
last one stretched to end ``term_buffer`` transitions before the end of burn-in; Stan's
defaults 75 / 25 / 50, or 15% / 75% / 10% of a burn-in shorter than 150) and a final fast
phase.  Each slow window accumulates the mean and variance of the chain's states
(Welford); at its end the scales become

    s_i^2 <- (n var_i + 5 s_i^2) / (n + 5)        (n states in the window; shrunk towards the old s_i^2)

the step size is multiplied by ``exp(mean_i log s_i - mean_i log s_i')`` (the typical move
``eps s_i`` stays the same) and its Robbins-Monro gain restarts.  A chain that starts far from
its typical set (a warm start at a mode) thus learns the scale of each weight from where it
actually goes, instead of from a curvature estimate at the start.  The scales and the step
are frozen after burn-in, so the kept chain is a fixed Markov kernel; the adaptation adds
``3 |w|`` numbers to the state (scales, window mean and sum of squares).

**Blocks** (``blocks``: groups of parameters by path prefix, e.g. ``[["layers.1"], ["layers.0"]]``
for a readout and a hidden block; Metropolis-within-Gibbs): transition ``n`` moves only the
parameters of block ``b = n mod n_blocks`` (a MALA or HMC proposal with the other
parameters held fixed, their noise, drift and momentum masked out, the proposal densities
and kinetic energy summed over the block), with that block's own step size ``eps_b``
(adapted on the block's own transitions).  Each transition leaves the posterior invariant
(it is a Metropolis-Hastings kernel on the block's conditional distribution), so a sweep
through all blocks does too.  It helps when one block limits the step of all: a smooth
readout can take steps that a block with energy jumps (spiking neurons whose spikes flip)
would reject.

**Reused energy** (``run_chain`` and full-batch :func:`sample`): the target is the same at
every transition, so ``U`` and its proposal direction at the current state are kept in the
sampler state (``state["u"], state["g"]``: those of the accepted point, or the old ones after
a rejection) instead of being recomputed: MALA then costs one gradient evaluation per
transition instead of two, HMC ``L`` instead of ``L + 1``; same chain.  A mini-batch chain
recomputes them (the batch changes), so the rule interface does not reuse them.

**Step size** adapts during the first ``burnin`` steps only, by Robbins-Monro on its log
(Andrieu & Thoms 2008, Sec. 5): ``log eps += gamma_n (alpha_n - target_accept)`` with
``gamma_n = adapt_rate / (n + 1)^adapt_decay`` and ``alpha_n`` the acceptance probability;
afterwards it is frozen, so the chain is a fixed Markov kernel.  Targets: 0.574 for MALA,
0.65 for HMC (Roberts & Rosenthal 1998; Beskos et al. 2013).

**As a rule.**  ``gradients`` makes one transition and returns ``grads = w - w_new``, so
the ``naive`` optimizer at ``lr = 1`` moves the params to the new state of the chain;
``rule_state`` holds the random key, ``log_step``, the step counter and the acceptance
statistics.  ``aux`` adds ``accept_prob``, ``accepted``, ``step_size`` and ``potential``.
:meth:`MALA.step` returns the new params directly; :func:`sample` runs burn-in and
sampling and keeps *predictions* on an evaluation set (running sums of class
probabilities and their entropies, see :mod:`neuroplastic.analysis.uncertainty`), not
weights, unless ``keep_params=True``.

Memory: MALA keeps ``w``, ``w'``, ``xi`` and two gradients, ``5 |w|``, and one BPTT graph at a
time (``O(T sum_l n_l)`` per example, over the batch); two gradient evaluations per step.
HMC keeps ``w``, ``p``, their initial values and one gradient, ``5 |w|``, and one graph at a
time; ``L + 1`` gradient evaluations per step.  Predictions: ``N_eval (C + 1)`` numbers
(``S N_eval C`` with ``keep_predictions``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..backend import Backend, get_backend, ops_for
from ..losses import Objective
from ..tree import tree_leaves, tree_map, tree_paths, tree_unflatten_like
from .base import Rule

#: ``potential(params) -> (U, proposal_direction, aux)``: the energy and the gradient (or
#: surrogate) that drives the proposal; ``aux`` holds anything to pass on (loss, outputs).
Potential = Callable[[Any], tuple[Any, Any, Any]]


def _number(value: Any, name: str, low: float = 0.0, strict: bool = True, high: float | None = None) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}{'' if high is None else f' and <= {high}'}, got {value!r}")
    return float(value)


def make_potential(energy: Callable[[Any], Any], proposal_grad: Callable[[Any], Any] | None = None) -> Potential:
    """A :data:`Potential` from ``energy(params) -> scalar`` (differentiated by the backend).

    ``proposal_grad(params) -> tree`` replaces ``grad energy`` in the proposal only (a
    surrogate, or a deliberately wrong direction in tests); the acceptance test always uses
    ``energy``.
    """

    def potential(params: Any) -> tuple[Any, Any, Any]:
        B = ops_for(tree_leaves(params)[0])
        if proposal_grad is None:
            value, grad = B.value_and_grad(energy)(params)
        else:
            value, grad = energy(params), proposal_grad(params)
        return value, grad, {}

    return potential


def align_to_params(scale: Any, params: Any) -> Any:
    """``scale``'s arrays in ``params``' structure, matched by path (dict key order may differ)."""
    by_path = dict(zip(tree_paths(scale), tree_leaves(scale)))
    paths = tree_paths(params)
    if sorted(by_path) != sorted(paths):
        raise ValueError(f"scale: its parameter paths {sorted(by_path)} differ from the parameters' {sorted(paths)}")
    for path, w in zip(paths, tree_leaves(params)):
        if tuple(np.shape(by_path[path])) != tuple(w.shape):
            raise ValueError(f"scale: {path!r} has shape {tuple(np.shape(by_path[path]))}, the parameter has {tuple(w.shape)}")
    return tree_unflatten_like(params, [by_path[p] for p in paths])


def _sq_norm(B: Backend, tree: Any) -> Any:
    return sum(B.sum(x * x) for x in tree_leaves(tree))


def _check_scale(scale: Any) -> Any:
    """``scale`` as a tree of float64 numpy arrays, every entry finite and positive."""
    leaves = tree_leaves(scale)
    if not leaves:
        raise ValueError("scale: expected a tree of positive arrays shaped like the parameters, got no arrays")
    out = []
    for a in leaves:
        a = np.asarray(a, dtype=np.float64)
        if not (np.all(np.isfinite(a)) and np.all(a > 0)):
            raise ValueError("scale: every entry must be a finite positive number")
        out.append(a)
    return tree_unflatten_like(scale, out)


def scale_adaptation_windows(
    burnin: int, init_buffer: int = 75, base_window: int = 25, term_buffer: int = 50
) -> list[tuple[int, int]]:
    """The slow windows ``[(start, end), ...]`` (transition indices, end excluded) of Stan's warm-up.

    Windows follow a fast phase of ``init_buffer`` transitions; the first lasts ``base_window``,
    each next one twice as long as the one before, and a window whose successor would end
    within ``term_buffer`` transitions of the end of burn-in is stretched to end there.  A
    burn-in shorter than ``init_buffer + base_window + term_buffer`` uses 15% / 75% / 10% of
    it.  ``burnin = 1000``: ``[(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]``.
    """
    for value, name in ((burnin, "burnin"), (init_buffer, "init_buffer"), (base_window, "base_window"), (term_buffer, "term_buffer")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if burnin < 20:
        raise ValueError(f"burnin: adapting the scales needs at least 20 burn-in transitions, got {burnin}")
    if base_window < 1:
        raise ValueError(f"base_window must be a positive integer, got {base_window!r}")
    if init_buffer + base_window + term_buffer > burnin:
        init_buffer, term_buffer = int(0.15 * burnin), int(0.1 * burnin)
        base_window = burnin - init_buffer - term_buffer
    slow_end = burnin - term_buffer
    windows = [(init_buffer, init_buffer + base_window)]
    size = base_window
    while windows[-1][1] < slow_end:
        size *= 2
        start = windows[-1][1]
        end = start + size
        if end + 2 * size > slow_end:
            end = slow_end
        windows.append((start, end))
    return windows


def _scalars(aux: dict) -> dict:
    """The scalar entries of a potential's ``aux`` (the loss): what a reused energy keeps."""
    return {k: v for k, v in aux.items() if hasattr(v, "shape") and len(v.shape) == 0}


def _normal_like(B: Backend, key: Any, tree: Any) -> Any:
    leaves = tree_leaves(tree)
    keys = B.split(key, len(leaves)) if len(leaves) > 1 else [key]
    return tree_unflatten_like(tree, [B.normal(k, x.shape) for k, x in zip(keys, leaves)])


class MALA(Rule):
    """Metropolis-adjusted Langevin sampler; see the module docstring.

    ``step_size``: initial ``eps``; ``n_data``: examples in the full data set (``None``: the
    batch is all of it); ``prior_std``: Gaussian prior scale; ``temperature``: divides ``U``;
    ``target_accept``, ``burnin``, ``adapt_rate``, ``adapt_decay``: step-size adaptation;
    ``metropolis=False``: no accept/reject (unadjusted Langevin); ``truncate``: truncated
    BPTT for the proposal gradient; ``scale``: per-parameter proposal scales (a tree shaped
    like the parameters, positive; ``None``: 1 everywhere), see the module docstring;
    ``adapt_scale``: adapt the scales during burn-in (starting from ``scale``) in the windows of
    :func:`scale_adaptation_windows` with ``scale_buffers = (init_buffer, base_window,
    term_buffer)``; ``blocks``: lists of parameter path prefixes (``"layers.0"``, ``"layers.1.w"``)
    updated in turn, each with its own step size (every parameter in exactly one block).
    """

    name = "mala"
    modes = ("offline",)
    default_target = 0.574

    def __init__(
        self,
        step_size: float = 1e-3,
        n_data: int | None = None,
        prior_std: float = 1.0,
        temperature: float = 1.0,
        target_accept: float | None = None,
        burnin: int = 100,
        adapt_rate: float = 1.0,
        adapt_decay: float = 0.6,
        metropolis: bool = True,
        truncate: int | None = None,
        scale: Any = None,
        adapt_scale: bool = False,
        scale_buffers: tuple[int, int, int] = (75, 25, 50),
        blocks: list[list[str]] | None = None,
    ) -> None:
        self.step_size = _number(step_size, "step_size")
        if n_data is not None and not (isinstance(n_data, (int, np.integer)) and not isinstance(n_data, bool) and n_data > 0):
            raise ValueError(f"n_data must be a positive integer (examples in the data set) or None, got {n_data!r}")
        self.n_data = None if n_data is None else int(n_data)
        self.prior_std = _number(prior_std, "prior_std")
        self.temperature = _number(temperature, "temperature")
        target = self.default_target if target_accept is None else target_accept
        self.target_accept = _number(target, "target_accept", 0.0, True, 1.0)
        if not (isinstance(burnin, (int, np.integer)) and not isinstance(burnin, bool) and burnin >= 0):
            raise ValueError(f"burnin must be a non-negative integer, got {burnin!r}")
        self.burnin = int(burnin)
        self.adapt_rate = _number(adapt_rate, "adapt_rate", 0.0, False)
        self.adapt_decay = _number(adapt_decay, "adapt_decay", 0.5, True, 1.0)
        self.metropolis = bool(metropolis)
        if truncate is not None and not (isinstance(truncate, (int, np.integer)) and truncate > 0):
            raise ValueError(f"truncate must be a positive integer, got {truncate!r}")
        self.truncate = truncate
        self.scale = None if scale is None else _check_scale(scale)
        if not isinstance(adapt_scale, (bool, np.bool_)):
            raise ValueError(f"adapt_scale must be True or False, got {adapt_scale!r}")
        self.adapt_scale = bool(adapt_scale)
        if not (isinstance(scale_buffers, (tuple, list)) and len(scale_buffers) == 3):
            raise ValueError(f"scale_buffers must be (init_buffer, base_window, term_buffer), got {scale_buffers!r}")
        self.scale_buffers = tuple(scale_buffers)
        self.scale_windows = scale_adaptation_windows(self.burnin, *self.scale_buffers) if self.adapt_scale else []
        if blocks is not None:
            ok = isinstance(blocks, (list, tuple)) and len(blocks) > 0 and all(
                isinstance(b, (list, tuple)) and len(b) > 0 and all(isinstance(q, str) for q in b) for b in blocks
            )
            if not ok:
                raise ValueError(f"blocks must be a non-empty list of non-empty lists of parameter path prefixes, got {blocks!r}")
        self.blocks = None if blocks is None else [list(b) for b in blocks]

    def block_of_leaves(self, params: Any) -> list[int]:
        """The block of each parameter array of ``params`` (in :func:`tree_leaves` order)."""
        if self.blocks is None:
            return [0] * len(tree_leaves(params))
        out = []
        for path in tree_paths(params):
            hits = [i for i, b in enumerate(self.blocks) for q in b if path == q or path.startswith(q + ".")]
            if len(hits) != 1:
                where = "no block" if not hits else f"blocks {sorted(set(hits))}"
                raise ValueError(f"blocks: parameter {path!r} is in {where}; every parameter must be in exactly one")
            out.append(hits[0])
        return out

    @property
    def n_blocks(self) -> int:
        """Blocks updated in turn (1 without ``blocks``)."""
        return 1 if self.blocks is None else len(self.blocks)

    # ------------------------------------------------------------------ the target
    def potential(self, network: Any, batch: tuple, objective: Objective) -> Potential:
        """The tempered posterior energy ``U`` of ``network`` on ``batch`` (see the module docstring)."""
        from .base import forward_loss

        xs = batch[0]
        B = ops_for(xs)
        n = self.n_data if self.n_data is not None else int(xs.shape[1])
        var = self.prior_std**2

        def energy(params: Any) -> tuple[Any, tuple]:
            loss, (ys, spikes) = forward_loss(network, params, batch, objective, self.truncate)
            u = (n * loss + 0.5 * _sq_norm(B, params) / var) / self.temperature
            return u, (loss, ys, spikes)

        def potential(params: Any) -> tuple[Any, Any, Any]:
            (u, (loss, ys, spikes)), grad = B.value_and_grad(energy, has_aux=True)(params)
            return u, grad, {"loss": loss, "outputs": ys, "spikes": spikes}

        return potential

    # ------------------------------------------------------------------ the kernel
    def init_state(self, B: Backend, key: Any = None, params: Any = None) -> dict:
        """The sampler state: random key, ``log_step``, step counter and acceptance statistics.

        With ``adapt_scale`` also the scales (``scale``, from ``self.scale`` or 1), the window's
        running mean and sum of squares and the step-size gain's counter; these need ``params``.
        """
        if self.blocks is not None and params is not None:
            self.block_of_leaves(params)  # every parameter in exactly one block
        log_step = math.log(self.step_size)
        state = {
            "key": B.key(0) if key is None else key,
            "log_step": B.asarray(log_step if self.blocks is None else np.full(self.n_blocks, log_step)),
            "step": B.asarray(0.0),
            "accept_sum": B.asarray(0.0),
            "accepted": B.asarray(0.0),
        }
        if self.adapt_scale:
            if params is None:
                raise ValueError("params: adapt_scale=True needs the parameters to shape the scales (init_state(B, key, params))")
            scale = self.scale_for(B, params)
            state["scale"] = scale if scale is not None else tree_map(lambda w: B.ones_like(w), params)
            state["scale_mean"] = tree_map(lambda w: B.zeros_like(w), params)
            state["scale_m2"] = tree_map(lambda w: B.zeros_like(w), params)
            state["scale_count"] = B.asarray(0.0)
            state["adapt_step"] = B.asarray(0.0)
        return state

    def init(self, network: Any, params: dict, key: Any = None) -> dict:
        return self.init_state(ops_for(tree_leaves(params)[0]), key, params)

    def with_potential(self, B: Backend, potential: Potential, params: Any, state: dict) -> dict:
        """``state`` plus ``U``, its proposal direction and the scalar ``aux`` at ``params``.

        Transitions then reuse them (see "Reused energy" in the module docstring): valid only
        while ``potential`` stays the same function (full batches), as in :func:`run_chain`
        and full-batch :func:`~neuroplastic.train.sampling.sample`.
        """
        u, g, aux = potential(params)
        return {**state, "u": u, "g": g, "aux": _scalars(aux)}

    def potential_evals(self, reused: bool) -> int:
        """Gradient evaluations per transition: 2 for MALA (1 when the current ``U`` is reused)."""
        return 1 if reused else 2

    @staticmethod
    def log_accept_ratio(
        B: Backend, w: Any, u0: Any, g0: Any, w1: Any, u1: Any, g1: Any, eps: Any, scale: Any = None, mask: Any = None
    ) -> Any:
        """``log alpha = U(w) - U(w') + log q(w|w') - log q(w'|w)`` for the Langevin proposal (``scale``: ``s``, or ``None``;
        ``mask``: per-array 0/1 of the block that moved, or ``None``: all)."""
        h = 0.5 * eps * eps
        if scale is None:
            scale = tree_map(lambda a: 1.0, w)
        if mask is None:
            mask = tree_map(lambda a: 1.0, w)
        fwd = _sq_norm(B, tree_map(lambda a, b, g, s, m: m * (a - b + h * s * s * g) / s, w1, w, g0, scale, mask))
        bwd = _sq_norm(B, tree_map(lambda a, b, g, s, m: m * (a - b + h * s * s * g) / s, w, w1, g1, scale, mask))
        return u0 - u1 + (fwd - bwd) / (2 * eps * eps)

    def scale_for(self, B: Backend, params: Any) -> Any:
        """The proposal scales ``s`` as arrays of ``params``' backend, or ``None`` without preconditioning."""
        if self.scale is None:
            return None
        return tree_map(lambda s, w: B.astype(B.asarray(s), w.dtype), align_to_params(self.scale, params), params)

    def propose(
        self, B: Backend, potential: Potential, params: Any, u0: Any, g0: Any, aux0: dict, eps: Any, key: Any, scale: Any,
        mask: Any = None,
    ) -> tuple[Any, Any, tuple]:
        """``(w', log alpha, (U(w'), direction at w', scalar aux at w'))`` from ``w = params``, its
        energy ``u0``, proposal direction ``g0`` and scalar aux ``aux0``; ``scale``: ``s`` or ``None``;
        ``mask``: per-array 0/1 of the block to move, or ``None`` (all)."""
        xi = _normal_like(B, key, params)
        s = scale if scale is not None else tree_map(lambda w: 1.0, params)
        m = mask if mask is not None else tree_map(lambda w: 1.0, params)
        # w' = w - (eps^2/2) s^2 grad U + eps s xi, on the moving block only (m = 1: exactly the unmasked form)
        w1 = tree_map(lambda w, g, z, s_, m_: w - m_ * (0.5 * eps * eps * s_ * s_ * g) + m_ * (eps * s_ * z), params, g0, xi, s, m)
        u1, g1, aux1 = potential(w1)
        return w1, self.log_accept_ratio(B, params, u0, g0, w1, u1, g1, eps, scale, mask), (u1, g1, _scalars(aux1))

    def transition(self, B: Backend, potential: Potential, params: Any, state: dict) -> tuple[Any, dict, dict]:
        """One Metropolis-Hastings transition: ``(new_params, state, info)``.

        ``info``: ``accept_prob``, ``accepted`` (0/1), ``step_size`` (the one used),
        ``potential`` (``U`` at ``params``) and the potential's ``aux`` at ``params``.
        """
        k_prop, k_acc, k_next = B.split(state["key"], 3)
        n = state["step"]
        if self.blocks is None:
            mask, onehot, eps = None, None, B.exp(state["log_step"])
        else:  # this transition moves block n mod n_blocks, with its own step size
            current = n - self.n_blocks * B.floor(n / self.n_blocks)
            onehot = B.astype(B.asarray(np.arange(self.n_blocks, dtype=np.float64)) == current, n.dtype)
            mask = tree_unflatten_like(params, [B.astype(current == float(b), n.dtype) for b in self.block_of_leaves(params)])
            eps = B.exp(B.sum(onehot * state["log_step"]))
        reused = "u" in state
        if reused:  # U and its direction at params, kept from the previous transition (same target)
            u0, g0, aux = state["u"], state["g"], state["aux"]
        else:
            u0, g0, aux = potential(params)
        scale = state["scale"] if self.adapt_scale else self.scale_for(B, params)
        w1, log_alpha, (u1, g1, aux1) = self.propose(B, potential, params, u0, g0, _scalars(aux), eps, k_prop, scale, mask)
        log_alpha = B.where(B.isfinite(log_alpha), log_alpha, -math.inf)  # a diverged proposal is rejected
        accept_prob = B.exp(B.minimum(log_alpha, 0.0))
        if self.metropolis:
            accept = B.log(B.uniform(k_acc, ())) < log_alpha
        else:
            accept = B.asarray(True)  # always move (unadjusted Langevin)
        new = tree_map(lambda a, b: B.where(accept, a, b), w1, params)
        acc = B.astype(accept, eps.dtype)
        gain_n = state["adapt_step"] if self.adapt_scale else n
        if self.blocks is not None:
            gain_n = B.floor(gain_n / self.n_blocks)  # the block's own transitions
        gamma = self.adapt_rate / (gain_n + 1.0) ** self.adapt_decay
        move = gamma * (accept_prob - self.target_accept)
        adapted = state["log_step"] + (move if onehot is None else onehot * move)
        in_burnin = n < self.burnin
        new_state = {
            "key": k_next,
            "log_step": B.where(in_burnin, adapted, state["log_step"]),
            "step": n + 1.0,
            "accept_sum": state["accept_sum"] + B.where(in_burnin, 0.0 * acc, acc),
            "accepted": acc,
        }
        if self.adapt_scale:
            new_state.update(self._adapt_scale(B, state, new, n, new_state["log_step"]))
        if reused:
            new_state["u"] = B.where(accept, u1, u0)
            new_state["g"] = tree_map(lambda a, b: B.where(accept, a, b), g1, g0)
            new_state["aux"] = {k: B.where(accept, aux1[k], v) for k, v in state["aux"].items()}
        info = {"accept_prob": accept_prob, "accepted": acc, "step_size": eps, "potential": u0, **aux}
        return new, new_state, info

    def _adapt_scale(self, B: Backend, state: dict, new: Any, n: Any, log_step: Any) -> dict:
        """One transition of the windowed scale adaptation (see the module docstring): the state's
        ``scale``, ``scale_mean``, ``scale_m2``, ``scale_count``, ``adapt_step`` and ``log_step``."""
        dtype = state["scale_count"].dtype
        start, stop = self.scale_windows[0][0], self.scale_windows[-1][1]
        inside = B.astype((n >= float(start)) & (n < float(stop)), dtype)  # n < stop <= burnin
        count = state["scale_count"] + inside
        delta = tree_map(lambda w, m: w - m, new, state["scale_mean"])
        mean = tree_map(lambda m, d: m + inside * d / B.maximum(count, 1.0), state["scale_mean"], delta)
        m2 = tree_map(lambda q, d, w, m: q + inside * d * (w - m), state["scale_m2"], delta, new, mean)
        end = sum(B.astype(n + 1.0 == float(e), dtype) for _, e in self.scale_windows) > 0
        old = state["scale"]
        regularised = tree_map(
            lambda q, s: B.sqrt((q + 5.0 * s * s) / (count + 5.0)), m2, old  # (n var + 5 s^2) / (n + 5), var = m2 / n
        )
        scale = tree_map(lambda a, b: B.where(end, a, b), regularised, old)
        block = self.block_of_leaves(old)  # by path: the state's dict order may differ from params'

        def mean_log(t: Any, b: int) -> Any:  # mean of log s over block b
            leaves = [s for s, k in zip(tree_leaves(t), block) if k == b]
            return sum(B.sum(B.log(s)) for s in leaves) / sum(int(np.prod(s.shape)) for s in leaves)

        shift = [mean_log(old, b) - mean_log(scale, b) for b in range(self.n_blocks)]
        shift = shift[0] if self.blocks is None else B.stack(shift)
        zero = 0.0 * count
        return {
            "scale": scale,
            "scale_mean": tree_map(lambda m: B.where(end, 0.0 * m, m), mean),
            "scale_m2": tree_map(lambda q: B.where(end, 0.0 * q, q), m2),
            "scale_count": B.where(end, zero, count),
            "adapt_step": B.where(end, zero, state["adapt_step"] + 1.0),
            "log_step": B.where(end, log_step + shift, log_step),
        }

    # ------------------------------------------------------------------ rule interface
    def step(self, network: Any, params: dict, state: dict, batch: tuple, objective: Objective) -> tuple[dict, dict, dict]:
        """One transition of the chain on ``batch``: ``(new_params, state, info)``."""
        B = ops_for(batch[0])
        return self.transition(B, self.potential(network, batch, objective), params, state)

    def gradients(self, network: Any, params: dict, rule_state: dict, batch: tuple, objective: Objective):
        new, rule_state, info = self.step(network, params, rule_state, batch, objective)
        grads = tree_map(lambda w, wn: w - wn, params, new)
        return grads, rule_state, info

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(step_size={self.step_size}, n_data={self.n_data}, prior_std={self.prior_std},"
            f" temperature={self.temperature}, target_accept={self.target_accept}, burnin={self.burnin},"
            f" preconditioned={self.scale is not None}, adapt_scale={self.adapt_scale}, blocks={self.blocks})"
        )


class HMC(MALA):
    """Hamiltonian Monte Carlo with ``n_leapfrog`` leapfrog steps; see the module docstring.

    Options as :class:`MALA`; ``step_size`` is the leapfrog step.
    """

    name = "hmc"
    default_target = 0.65

    def __init__(self, step_size: float = 1e-3, n_leapfrog: int = 10, **options: Any) -> None:
        if not (isinstance(n_leapfrog, (int, np.integer)) and not isinstance(n_leapfrog, bool) and n_leapfrog > 0):
            raise ValueError(f"n_leapfrog must be a positive integer, got {n_leapfrog!r}")
        self.n_leapfrog = int(n_leapfrog)
        super().__init__(step_size=step_size, **options)

    def propose(
        self, B: Backend, potential: Potential, params: Any, u0: Any, g0: Any, aux0: dict, eps: Any, key: Any, scale: Any,
        mask: Any = None,
    ) -> tuple[Any, Any, tuple]:
        p0 = _normal_like(B, key, params)
        ones = scale if scale is not None else tree_map(lambda w: 1.0, params)
        if mask is not None:  # a block: the other parameters get no momentum and no kick
            p0 = tree_map(lambda p, m: m * p, p0, mask)
            ones = tree_map(lambda s, m: m * s, ones, mask)

        def leapfrog(carry: tuple, _: Any) -> tuple[tuple, None]:
            w, p, u, g, aux = carry
            p = tree_map(lambda a, b, s: a - 0.5 * eps * s * b, p, g, ones)
            w = tree_map(lambda a, b, s: a + eps * s * b, w, p, ones)
            u, g, aux = potential(w)
            p = tree_map(lambda a, b, s: a - 0.5 * eps * s * b, p, g, ones)
            return (w, p, u, g, _scalars(aux)), None

        (w1, p1, u1, g1, aux1), _ = B.scan(leapfrog, (params, p0, u0, g0, aux0), None, length=self.n_leapfrog)
        log_alpha = (u0 + 0.5 * _sq_norm(B, p0)) - (u1 + 0.5 * _sq_norm(B, p1))
        return w1, log_alpha, (u1, g1, aux1)

    def potential_evals(self, reused: bool) -> int:
        """Gradient evaluations per transition: ``L + 1`` (``L`` when the current ``U`` is reused)."""
        return self.n_leapfrog if reused else self.n_leapfrog + 1

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", n_leapfrog={self.n_leapfrog})"


# ---------------------------------------------------------------------- the drivers
def run_chain(
    rule: MALA,
    potential: Potential,
    params: Any,
    n_steps: int,
    key: Any = None,
    backend: str | Backend | None = None,
    jit: bool = True,
    reuse_potential: bool = True,
) -> tuple[Any, dict, dict]:
    """``n_steps`` transitions on any :data:`Potential` (e.g. from :func:`make_potential`).

    Returns ``(samples, state, infos)``: ``samples`` is ``params`` with a leading axis of
    ``n_steps`` (every state of the chain, burn-in included: meant for small targets),
    ``infos`` the per-step ``accept_prob``, ``accepted`` and ``step_size``.  On JAX the whole
    chain is one compiled ``scan``.  ``reuse_potential``: keep ``U`` and its direction at the
    current state between transitions (one gradient evaluation fewer per transition, same
    chain; see the module docstring).
    """
    if not (isinstance(n_steps, (int, np.integer)) and n_steps > 0):
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    B = get_backend(backend) if backend is not None else ops_for(tree_leaves(params)[0])
    state = rule.init_state(B, key, params)
    if reuse_potential:
        state = rule.with_potential(B, potential, params, state)

    def body(carry: tuple, _: Any) -> tuple[tuple, tuple]:
        p, s = carry
        p, s, info = rule.transition(B, potential, p, s)
        return (p, s), (p, {k: info[k] for k in ("accept_prob", "accepted", "step_size")})

    def chain(p: Any, s: dict) -> tuple:
        return B.scan(body, (p, s), None, length=int(n_steps))

    (_, state), (samples, infos) = (B.jit(chain) if jit else chain)(params, state)
    return samples, state, infos


def __getattr__(name: str) -> Any:
    # the sampling driver lives with the training loop it runs in; importable from here too
    if name in ("sample", "SampleResult", "predict_probs"):
        from ..train import sampling

        return getattr(sampling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HMC", "MALA", "Potential", "align_to_params", "make_potential", "run_chain", "scale_adaptation_windows"]
