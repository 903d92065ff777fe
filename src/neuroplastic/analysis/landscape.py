"""2-D loss landscapes around a trained point, with training trajectories projected on them.

Two ways to pick the plane ``theta* + a d1 + b d2`` around trained parameters ``theta*``:

* :func:`trajectory_directions` -- the first two principal directions of the training
  trajectory ``theta_0 .. theta_K`` relative to ``theta*`` (Li et al. 2018, Sec. 7; Slax).
  Trajectories move mostly within this plane, so projections of them are faithful.
* :func:`random_directions` -- Gaussian random directions, *filter-normalised* (Li et al.
  2018): each filter of ``d`` is rescaled to the norm of the same filter of ``theta*``,
  which makes surfaces of differently scaled networks comparable.

:func:`loss_surface` evaluates ``L(theta* + a d1 + b d2)`` on a grid, averaged over a
list of batches; on JAX many grid points run at once (``vmap`` over ``(a, b)``, ``jit``,
in chunks that bound memory).  :func:`project_trajectory` gives any trajectory's
coordinates in the plane, and :func:`plot_landscape` draws the contour plot.

Directions and trajectories are pytrees shaped like the parameters.  The linear algebra
(PCA, projection, normalisation) runs in numpy float64; only the surface evaluation runs
on the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..backend import Backend, get_backend, ops_for
from ..progress import compiling_note, progress_bar
from ..tree import tree_leaves, tree_map, tree_paths, tree_unflatten_like

PyTree = Any

VECTOR_MODES = ("zero", "normalize")


# ------------------------------------------------------------------------------- helpers
def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, (np.ndarray, float, int, np.floating, np.integer)):
        return np.asarray(x, dtype=np.float64)
    return np.asarray(ops_for(x).to_numpy(x), dtype=np.float64)


def _flatten(tree: PyTree) -> np.ndarray:
    leaves = tree_leaves(tree)
    if not leaves:
        return np.zeros(0)
    return np.concatenate([_to_numpy(v).ravel() for v in leaves])


def _unflatten(vec: np.ndarray, template: PyTree) -> PyTree:
    """A numpy float64 tree shaped like ``template`` holding the entries of ``vec``."""
    shapes = [np.shape(_to_numpy(v)) for v in tree_leaves(template)]
    out, i = [], 0
    for s in shapes:
        n = int(np.prod(s, dtype=np.int64))
        out.append(vec[i:i + n].reshape(s).copy())
        i += n
    return tree_unflatten_like(template, out)


def _check_like(tree: PyTree, template: PyTree, name: str, template_name: str = "params") -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``tree`` has ``template``'s leaves and shapes."""
    if tree_paths(tree) != tree_paths(template):
        raise ValueError(f"{name}: its parameter paths {tree_paths(tree)} differ from {template_name}'s {tree_paths(template)}")
    for path, a, b in zip(tree_paths(tree), tree_leaves(tree), tree_leaves(template)):
        if tuple(np.shape(a)) != tuple(np.shape(b)):
            raise ValueError(f"{name}: leaf {path!r} has shape {tuple(np.shape(a))}, {template_name} has {tuple(np.shape(b))}")


def _like_input(tree_np: PyTree, template: PyTree) -> PyTree:
    """Convert a numpy tree to the array type (backend, device, dtype) of ``template``'s leaves."""
    def conv(a: np.ndarray, t: Any) -> Any:
        if isinstance(t, (np.ndarray, float, int, np.floating, np.integer)):
            return a.astype(np.asarray(t).dtype) if np.asarray(t).dtype.kind == "f" else a
        return ops_for(t).asarray(a)

    return tree_map(conv, tree_np, template)


# ------------------------------------------------------------------------------- directions
def trajectory_directions(trajectory: Sequence[PyTree], final: PyTree) -> tuple[PyTree, PyTree, np.ndarray]:
    """The first two principal directions of a training trajectory around ``final``.

    Stacks the flattened differences ``theta_k - final`` as the rows of ``M`` (``K x P``,
    not mean-centred, as in Li et al. 2018) and takes its SVD ``M = U S V^T``.  The
    directions are the first two right singular vectors (unit length over all parameters
    together), signed so that the first trajectory point has a negative coordinate (the
    trajectory then runs left to right and bottom to top towards ``final``).

    Returns ``(d1, d2, explained)``: two numpy float64 trees shaped like ``final`` and the
    fractions of ``sum_k ||theta_k - final||^2`` that each direction explains
    (``S_i^2 / sum_j S_j^2``), shape ``(2,)``.
    """
    trajectory = list(trajectory)
    if len(trajectory) < 2:
        raise ValueError(f"trajectory: need at least 2 parameter sets, got {len(trajectory)}")
    for k, theta in enumerate(trajectory):
        _check_like(theta, final, f"trajectory[{k}]", "final")
    centre = _flatten(final)
    M = np.stack([_flatten(theta) - centre for theta in trajectory])
    if not np.all(np.isfinite(M)):
        raise ValueError("trajectory: contains NaN or infinite parameters")
    _, s, vt = np.linalg.svd(M, full_matrices=False)
    total = float(np.sum(s**2))
    if len(s) < 2 or total == 0.0 or s[1] <= 1e-12 * s[0]:
        raise ValueError(
            "trajectory: its points around final span fewer than 2 directions (all equal, or on one line);"
            " use random_directions instead"
        )
    dirs = []
    for i in range(2):
        v = vt[i]
        c0 = float(M[0] @ v)
        flip = c0 > 0 if abs(c0) > 1e-12 * s[i] else v[np.argmax(np.abs(v))] < 0
        dirs.append(-v if flip else v)
    explained = s[:2] ** 2 / total
    return _unflatten(dirs[0], final), _unflatten(dirs[1], final), explained


def _filter_axis(ndim: int, filter_axis: int | None) -> int:
    if filter_axis is not None:
        return filter_axis % ndim
    return ndim - 1 if ndim == 2 else 0


def normalize_filters(direction: PyTree, params: PyTree, vectors: str = "zero", filter_axis: int | None = None) -> PyTree:
    """Rescale each filter of ``direction`` to the norm of the same filter of ``params``.

    A *filter* of a weight array is the slice belonging to one output unit:

    * 2-D weights (``Dense``/``RecurrentDense``/link ``w`` of shape ``(n_in, n_out)``, used
      as ``x @ w``): each column ``w[:, j]``, the weights into neuron ``j``;
    * weights with 3 or more axes (``Conv2d`` ``(C_out, C_in, k, k)``): each ``w[c]``;
    * ``filter_axis`` overrides the output axis for every array with 2 or more axes.

    1-D and scalar leaves (biases, trainable decays) are set to zero with
    ``vectors="zero"`` (Li et al.'s choice for biases: the plane then leaves them at their
    trained values), or with ``vectors="normalize"`` rescaled as a whole to the leaf's norm.
    A filter of ``direction`` that is all zeros stays zero.  Returns a numpy float64 tree.
    """
    if vectors not in VECTOR_MODES:
        raise ValueError(f"vectors: expected one of {list(VECTOR_MODES)}, got {vectors!r}")
    _check_like(direction, params, "direction")

    def norm_leaf(d: Any, p: Any) -> np.ndarray:
        d, p = _to_numpy(d), _to_numpy(p)
        if d.ndim < 2:
            if vectors == "zero":
                return np.zeros_like(d)
            nd = np.linalg.norm(d)
            return d * (np.linalg.norm(p) / nd) if nd > 0 else np.zeros_like(d)
        ax = _filter_axis(d.ndim, filter_axis)
        other = tuple(i for i in range(d.ndim) if i != ax)
        nd = np.sqrt(np.sum(d**2, axis=other, keepdims=True))
        npar = np.sqrt(np.sum(p**2, axis=other, keepdims=True))
        scale = np.divide(npar, nd, out=np.zeros_like(nd), where=nd > 0)
        return d * scale

    return tree_map(norm_leaf, direction, params)


def random_directions(
    params: PyTree,
    seed: int = 0,
    filter_normalize: bool = True,
    vectors: str = "zero",
    filter_axis: int | None = None,
) -> tuple[PyTree, PyTree]:
    """Two Gaussian random directions shaped like ``params`` (Li et al. 2018).

    Entries are drawn i.i.d. ``N(0, 1)`` from a numpy generator seeded with ``seed``, so
    every backend gets the same directions.  With ``filter_normalize`` (the default) each
    direction goes through :func:`normalize_filters` (``vectors`` and ``filter_axis`` are
    passed on); without it, each direction is scaled to unit length over all parameters.
    Returns ``(d1, d2)`` in the array type of ``params`` (numpy float64 for numpy input).
    """
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    if vectors not in VECTOR_MODES:
        raise ValueError(f"vectors: expected one of {list(VECTOR_MODES)}, got {vectors!r}")
    if not tree_leaves(params):
        raise ValueError("params: has no arrays")
    rng = np.random.default_rng(int(seed))
    out = []
    for _ in range(2):
        d = tree_map(lambda p: rng.standard_normal(np.shape(_to_numpy(p))), params)
        if filter_normalize:
            d = normalize_filters(d, params, vectors=vectors, filter_axis=filter_axis)
        else:
            n = np.linalg.norm(_flatten(d))
            d = tree_map(lambda a: a / n, d) if n > 0 else d
        out.append(_like_input(d, params))
    return out[0], out[1]


def project_trajectory(trajectory: Sequence[PyTree], final: PyTree, d1: PyTree, d2: PyTree) -> np.ndarray:
    """Coordinates ``(a_k, b_k)`` of each ``theta_k`` in the plane, shape ``(K, 2)``.

    The least-squares solution of ``theta_k - final ~ a_k d1 + b_k d2``; for orthonormal
    directions (PCA) this is ``(d1 . (theta_k - final), d2 . (theta_k - final))``.
    """
    trajectory = list(trajectory)
    if not trajectory:
        raise ValueError("trajectory: is empty")
    _check_like(d1, final, "d1", "final")
    _check_like(d2, final, "d2", "final")
    A = np.stack([_flatten(d1), _flatten(d2)], axis=1)
    if np.linalg.matrix_rank(A) < 2:
        raise ValueError("d1, d2: the directions are zero or parallel, so they do not span a plane")
    centre = _flatten(final)
    for k, theta in enumerate(trajectory):
        _check_like(theta, final, f"trajectory[{k}]", "final")
    D = np.stack([_flatten(theta) - centre for theta in trajectory], axis=1)  # (P, K)
    coords, *_ = np.linalg.lstsq(A, D, rcond=None)
    return coords.T


# ------------------------------------------------------------------------------- surface
def _grid(grid: Any) -> tuple[int, int]:
    g = (grid, grid) if isinstance(grid, (int, np.integer)) else tuple(grid)
    if len(g) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in g):
        raise ValueError(f"grid: expected a positive integer or a pair of them, got {grid!r}")
    return int(g[0]), int(g[1])


def _span(span: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """``s``, ``(low, high)`` or ``((a_low, a_high), (b_low, b_high))`` as two ``(low, high)`` pairs."""
    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    def pair(s: Any) -> tuple[float, float]:
        if is_num(s):
            if not (np.isfinite(s) and s > 0):
                raise ValueError(f"span: a single number must be positive and finite, got {s!r}")
            return (-float(s), float(s))
        if isinstance(s, (tuple, list)) and len(s) == 2 and all(is_num(v) for v in s):
            lo, hi = float(s[0]), float(s[1])
            if np.isfinite(lo) and np.isfinite(hi) and lo <= hi:
                return lo, hi
        raise ValueError(f"span: expected s, (low, high) with low <= high, or ((a_low, a_high), (b_low, b_high)); got {span!r}")

    if is_num(span) or (isinstance(span, (tuple, list)) and len(span) == 2 and all(is_num(v) for v in span)):
        p = pair(span)
        return p, p
    if isinstance(span, (tuple, list)) and len(span) == 2:
        return pair(span[0]), pair(span[1])
    return pair(span)


def auto_span(coords: Sequence[np.ndarray] | np.ndarray, margin: float = 0.2) -> tuple[tuple[float, float], tuple[float, float]]:
    """A ``span`` for :func:`loss_surface` that covers the given ``(K, 2)`` coordinates.

    Each axis covers the coordinates and the centre ``0``, widened by ``margin`` times its
    width on both sides.
    """
    if not (isinstance(margin, (int, float)) and margin >= 0):
        raise ValueError(f"margin: expected a non-negative number, got {margin!r}")
    pts = np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in (coords if isinstance(coords, (list, tuple)) else [coords])])
    if pts.size == 0 or not np.all(np.isfinite(pts)):
        raise ValueError("coords: need finite (K, 2) coordinates")
    out = []
    for i in range(2):
        lo, hi = min(0.0, pts[:, i].min()), max(0.0, pts[:, i].max())
        w = hi - lo if hi > lo else 1.0
        out.append((lo - margin * w, hi + margin * w))
    return out[0], out[1]


def _check_batches(batches: Any) -> list:
    if isinstance(batches, tuple) and len(batches) == 2 and hasattr(batches[0], "shape"):
        batches = [batches]
    batches = list(batches)
    if not batches:
        raise ValueError("batches: need at least one (xs, ys) batch")
    for i, b in enumerate(batches):
        if not (isinstance(b, (tuple, list)) and len(b) == 2):
            raise ValueError(f"batches[{i}]: expected an (xs, ys) pair, got {type(b).__name__}")
    return batches


def loss_surface(
    network: Any,
    objective: Any,
    params: PyTree,
    d1: PyTree,
    d2: PyTree,
    batches: Sequence[tuple[Any, Any]],
    grid: int | tuple[int, int] = (21, 21),
    span: Any = ((-1.0, 1.0), (-1.0, 1.0)),
    chunk: int = 64,
    vectorize: bool | None = None,
    backend: str | Backend | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss on the plane ``params + a d1 + b d2``.

    ``batches`` is a list of ``(xs, ys)`` pairs (``xs`` of shape ``(T, B, n_in)``); the
    loss at a point is the plain mean over batches of
    ``objective(ys_hat, ys, rec, network.spiking)``, so the batch count is simply
    ``len(batches)``.  ``grid`` is the number of points per axis (one number or
    ``(n_a, n_b)``); ``span`` is ``s`` (``[-s, s]`` on both axes), ``(low, high)`` or
    ``((a_low, a_high), (b_low, b_high))``; points are evenly spaced from low to high,
    both included (an axis of one point sits at the middle of its span).

    The computation runs on ``backend`` (default: that of ``params``, or of the data when
    ``params`` are numpy); ``params``, directions and data are converted to it.
    With ``vectorize`` (default: on where the backend compiles, i.e. JAX) the grid points are evaluated ``chunk`` at a
    time by one ``jit``-compiled ``vmap`` over ``(a, b)`` (on torch, ``vectorize=True``
    uses ``torch.func.vmap``); otherwise one point at a time (still ``jit``-compiled on JAX).
    ``progress`` (default: the session's setting, :mod:`neuroplastic.progress`) shows a bar
    over the grid points on stderr, after a "compiling" line on JAX.

    Returns ``(alphas (n_a,), betas (n_b,), losses (n_a, n_b))`` as numpy float64, with
    ``losses[i, j]`` the loss at ``(alphas[i], betas[j])``.
    """
    n_a, n_b = _grid(grid)
    (a_lo, a_hi), (b_lo, b_hi) = _span(span)
    if not (isinstance(chunk, (int, np.integer)) and chunk > 0):
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    batches = _check_batches(batches)
    if not tree_leaves(params):
        raise ValueError("params: has no arrays")
    _check_like(d1, params, "d1")
    _check_like(d2, params, "d2")
    if backend is not None:
        B = get_backend(backend)
    else:
        B = ops_for(tree_leaves(params)[0])
        if not B.differentiable:  # numpy parameters: run on the data's framework
            B = ops_for(batches[0][0])
    if vectorize is None:
        vectorize = B.compiles

    conv = lambda t: tree_map(lambda a: B.stop_gradient(B.asarray(a)), t)  # noqa: E731
    p0, u, v = conv(params), conv(d1), conv(d2)
    data = [(B.asarray(xs), B.asarray(ys)) for xs, ys in batches]
    for i, (xs, _) in enumerate(data):
        network.check_input(xs, name=f"batches[{i}][0]")
    spiking = network.spiking

    def point_loss(a: Any, b: Any, p0: Any, u: Any, v: Any, data: Any) -> Any:
        p = tree_map(lambda t, x, y: t + a * x + b * y, p0, u, v)
        total = 0.0
        for xs, ys in data:
            out, _, rec = network.run(p, xs)
            total = total + objective(out, ys, rec, spiking)
        return total / len(data)

    alphas = np.linspace(a_lo, a_hi, n_a) if n_a > 1 else np.array([(a_lo + a_hi) / 2])
    betas = np.linspace(b_lo, b_hi, n_b) if n_b > 1 else np.array([(b_lo + b_hi) / 2])
    A, Bt = np.meshgrid(alphas, betas, indexing="ij")
    a_flat, b_flat = A.ravel(), Bt.ravel()
    n = a_flat.size
    compiling_note(B, "the loss of the landscape grid", progress)
    bar = progress_bar(n, f"loss landscape ({n_a} x {n_b} points)", progress)
    if vectorize:
        size = min(int(chunk), n)
        fn = B.jit(B.vmap(point_loss, in_axes=(0, 0, None, None, None, None)))
        pad = (-n) % size  # pad the last chunk so every call has one shape (one compilation)
        a_pad = np.concatenate([a_flat, np.zeros(pad)])
        b_pad = np.concatenate([b_flat, np.zeros(pad)])
        parts = []
        for s in range(0, n + pad, size):
            vals = fn(B.asarray(a_pad[s:s + size]), B.asarray(b_pad[s:s + size]), p0, u, v, data)
            parts.append(np.asarray(B.to_numpy(vals), dtype=np.float64).reshape(-1))
            if bar is not None:
                bar.update(min(size, n - s))
        values = np.concatenate(parts)[:n]
    else:
        fn = B.jit(point_loss)
        values = np.empty(n)
        for k in range(n):
            # compiled functions take arrays (one compilation for every point); eager ones plain numbers
            a = B.asarray(np.asarray(a_flat[k])) if B.compiles else float(a_flat[k])
            b = B.asarray(np.asarray(b_flat[k])) if B.compiles else float(b_flat[k])
            values[k] = float(np.asarray(B.to_numpy(fn(a, b, p0, u, v, data))))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return alphas, betas, values.reshape(n_a, n_b)


# ------------------------------------------------------------------------------- plot
def plot_landscape(
    alphas: np.ndarray,
    betas: np.ndarray,
    losses: np.ndarray,
    trajectories: Mapping[str, np.ndarray] | None,
    path: str | Path,
    title: str = "Loss landscape",
    explained_variance: Sequence[float] | None = None,
    axis_labels: tuple[str, str] | None = None,
    log_scale: bool | None = None,
    levels: int = 20,
) -> Path:
    """Contour plot of ``losses[i, j]`` at ``(alphas[i], betas[j])``, trajectories drawn on top.

    ``trajectories`` maps a name (e.g. a rule) to ``(K, 2)`` plane coordinates from
    :func:`project_trajectory`; each is drawn as a line from a circle (start) to a square
    (end).  The star is the centre ``(0, 0)``.  Axis labels are ``axis_labels`` if given,
    else ``"PC1 (63% of variance)"`` style labels when ``explained_variance`` is given,
    else ``"direction 1"``/``"direction 2"``.  ``log_scale`` (default: when all losses are
    positive and span more than a factor 10) spaces the contour levels logarithmically.
    Saves a PNG and returns its path.
    """
    from .plots import _pyplot, _save, rule_color

    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    betas = np.asarray(betas, dtype=np.float64).ravel()
    Z = np.asarray(losses, dtype=np.float64)
    if Z.shape != (alphas.size, betas.size):
        raise ValueError(f"losses: expected shape (len(alphas), len(betas)) = {(alphas.size, betas.size)}, got {Z.shape}")
    if alphas.size < 2 or betas.size < 2:
        raise ValueError(f"losses: a contour plot needs at least a 2 x 2 grid, got {Z.shape}")
    finite = Z[np.isfinite(Z)]
    if finite.size == 0:
        raise ValueError("losses: no finite values to draw")
    trajectories = dict(trajectories or {})
    for name, c in trajectories.items():
        if np.asarray(c).ndim != 2 or np.asarray(c).shape[1] != 2:
            raise ValueError(f"trajectories[{name!r}]: expected (K, 2) coordinates, got shape {np.asarray(c).shape}")
    if explained_variance is not None and len(np.ravel(explained_variance)) < 2:
        raise ValueError(f"explained_variance: expected 2 fractions, got {explained_variance!r}")

    lo, hi = float(finite.min()), float(finite.max())
    if log_scale is None:
        log_scale = lo > 0 and hi > 10 * lo
    if log_scale and lo <= 0:
        raise ValueError("log_scale: needs positive losses")
    if hi == lo:
        lv = np.linspace(lo - 0.5, hi + 0.5, 3)
    elif log_scale:
        lv = np.geomspace(lo, hi, levels)
    else:
        lv = np.linspace(lo, hi, levels)
    plt = _pyplot()
    from matplotlib import colors

    fig, ax = plt.subplots(figsize=(7, 5.6))
    Zm = np.ma.masked_invalid(Z).T  # contour wants Z[y, x]
    norm = colors.BoundaryNorm(lv, ncolors=256)  # one colour step per level, linear or log-spaced
    cf = ax.contourf(alphas, betas, Zm, levels=lv, cmap="viridis", norm=norm)
    ax.contour(alphas, betas, Zm, levels=lv, colors="k", linewidths=0.4, alpha=0.5)
    cb = fig.colorbar(cf, ax=ax, ticks=lv[:: max(1, len(lv) // 8)])
    cb.ax.set_yticklabels([f"{v:.3g}" for v in lv[:: max(1, len(lv) // 8)]])
    cb.set_label("loss (log-spaced levels)" if log_scale else "loss")
    for name, c in trajectories.items():
        c = np.asarray(c, dtype=np.float64)
        col = rule_color(str(name))  # the rule's colour in every plot
        ax.plot(c[:, 0], c[:, 1], "-", color=col, lw=1.6, label=name)
        ax.plot(c[:, 0], c[:, 1], ".", color=col, ms=4)
        ax.plot(c[0, 0], c[0, 1], "o", color=col, ms=7, mec="k")
        ax.plot(c[-1, 0], c[-1, 1], "s", color=col, ms=7, mec="k")
    ax.plot([0], [0], "*", color="w", mec="k", ms=14, label="centre (trained parameters)")
    if axis_labels is not None:
        xl, yl = axis_labels
    elif explained_variance is not None:
        ev = np.ravel(explained_variance)
        xl, yl = (f"PC{i + 1} ({100 * float(ev[i]):.0f}% of variance)" for i in range(2))
    else:
        xl, yl = "direction 1", "direction 2"
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_xlim(alphas[0], alphas[-1])
    ax.set_ylim(betas[0], betas[-1])
    ax.set_title(title)
    if trajectories:
        ax.legend(fontsize=8, loc="best", title="trajectory: o start, \u25a0 end", title_fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


__all__ = [
    "auto_span",
    "loss_surface",
    "normalize_filters",
    "plot_landscape",
    "project_trajectory",
    "random_directions",
    "trajectory_directions",
]
