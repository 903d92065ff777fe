"""Check that training runs on a given device with both backends and matches the CPU.

    python bench/device_check.py --device cuda

For each backend: BPTT and e-prop gradients of a small recurrent ALIF network on the
device and on the CPU (float32, same numpy initial parameters), their relative
difference, and a few training steps on the device.  Exits non-zero on a mismatch.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backends", default="torch,jax")
    args = ap.parse_args()
    from neuroplastic.backend import get_backend
    from neuroplastic.cells import ALIF, LeakyReadout
    from neuroplastic.data import from_arrays
    from neuroplastic.layers import Dense, RecurrentDense
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.network import Network
    from neuroplastic.rules import make_rule
    from neuroplastic.train import Trainer
    from neuroplastic.tree import tree_flatten_dict

    net = Network(8, [RecurrentDense(64), ALIF(surrogate="triangle"), Dense(5), LeakyReadout()])
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(0.5, 1.0, (50, 32, 8)), rng.integers(0, 5, 32)
    p0 = net.init_numpy(0)
    obj = Objective(make_loss("ce_mean"))
    ok = True
    for name in args.backends.split(","):
        for rule in ("bptt", "eprop-symmetric"):
            out = {}
            for dev in ("cpu", args.device):
                B = get_backend(name, device=dev)
                p = B.tree_asarray(p0)
                leaf = p["layers"][0]["w"]
                where = str(getattr(leaf, "device", None) or list(leaf.devices())[0])
                g, _, aux = make_rule(rule).gradients(net, p, {}, (B.asarray(xs), B.asarray(ys)), obj)
                out[dev] = (float(B.to_numpy(aux["loss"])), np.concatenate([B.to_numpy(v).ravel() for v in tree_flatten_dict(g).values()]), where)
            (lc, gc, _), (ld, gd, wd) = out["cpu"], out[args.device]
            rel = float(np.linalg.norm(gc - gd) / np.linalg.norm(gc))
            good = abs(lc - ld) <= 1e-4 * abs(lc) and rel <= 1e-3
            ok &= good
            print(f"{name:5s} {rule:16s} params on {wd}: loss cpu {lc:.6f} device {ld:.6f}; gradient rel. diff {rel:.2e} {'ok' if good else 'MISMATCH'}")
        B = get_backend(name, device=args.device)
        data = from_arrays(xs, ys, xs[:, :8], ys[:8])
        t0 = time.perf_counter()
        _, hist = Trainer(net, "bptt", "ce_mean", "adam", lr=1e-2, backend=B, progress=False).fit(B.tree_asarray(p0), data, epochs=3, batch_size=16)
        print(f"{name:5s} 3 epochs on {args.device}: loss {hist[0]['train_loss']:.4f} -> {hist[-1]['train_loss']:.4f} in {time.perf_counter() - t0:.1f} s")
        ok &= hist[-1]["train_loss"] < hist[0]["train_loss"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
