"""Matplotlib figures saved as PNG (learning curves, spike rasters).

matplotlib is an optional extra (``neuroplastic[plot]``); :func:`have_matplotlib` tells
whether it is there.  Figures use the non-interactive Agg backend and are closed after
saving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history: Sequence[dict], path: str | Path, title: str = "Learning curves") -> Path:
    """Loss and accuracy per epoch, train and test, in two panels."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["test_loss"] for h in history], label="test")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss")
    ax_loss.legend()
    if history and history[0].get("test_acc") is not None:
        ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], label="train")
        ax_acc.plot(epochs, [100 * h["test_acc"] for h in history], label="test")
        ax_acc.set_ylabel("accuracy (%)")
        ax_acc.legend()
    ax_acc.set_xlabel("epoch")
    ax_acc.set_title("Accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_raster(spikes: Sequence[np.ndarray], path: str | Path, names: Sequence[str] | None = None, dt: float = 1.0, title: str = "Spike raster") -> Path:
    """One raster panel per layer for one example: ``spikes[l]`` is ``(T, n_l)``."""
    plt = _pyplot()
    n = len(spikes)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.2 + 1.8 * n), sharex=True, squeeze=False)
    for l, (ax, z) in enumerate(zip(axes[:, 0], spikes)):
        z = np.asarray(z)
        t_idx, n_idx = np.nonzero(z > 0)
        ax.scatter(t_idx * dt, n_idx, s=2, marker="|", color="k")
        neg_t, neg_n = np.nonzero(z < 0)
        if len(neg_t):
            ax.scatter(neg_t * dt, neg_n, s=2, marker="|", color="tab:red")
        ax.set_ylabel(names[l] if names else f"layer {l}\nneuron")
        ax.set_ylim(-0.5, z.shape[1] - 0.5)
        rate = float(np.mean(np.abs(z)))
        ax.set_title(f"{names[l] if names else f'layer {l}'}: {z.shape[1]} neurons, {rate:.3f} spikes/step", fontsize=9)
    axes[-1, 0].set_xlabel("time (ms)" if dt != 1.0 else "time step")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
