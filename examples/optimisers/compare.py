#!/usr/bin/env python
"""SGD, heavy ball, Adam and AdamW on an ill-conditioned linear regression: stationary
excess loss, and what weight decay does. Draws optimisers.png.

    python examples/optimisers/compare.py [--outdir DIR] [--png PATH] [--quick]

One model (linear_regression: 10 features, covariance eigenvalues 10 .. 0.1, 64 samples,
label noise 0.5), minibatches of one sample, the same seed and starting points theta_0 ~
N(0, 1); six optimisers, each its own run of 4000 steps. The excess loss L(theta) - L_min
is measured per trajectory at the last step (mean and 95 % interval over the independent
trajectories; by then the slowest direction, relaxing in about 1 / (lr 0.1) = 500 steps,
is stationary) and as the ensemble mean over time (the figure). Momentum's lr is scaled by
1 - momentum so that its effective step lr / (1 - momentum) is plain SGD's. The Hessian
of a linear regression is constant, so every optimiser sees the same sharpness (the top
eigenvalue of A^T A / n, printed); weight decay changes the minimiser instead, which the
excess loss measures. ``--quick`` runs 128 trajectories and 1000 steps (the test).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import sgdsim  # noqa: E402
from sgdsim import kernels  # noqa: E402

MODEL = {"name": "linear_regression", "samples": 64, "features": 10,
         "eigenvalues": list(np.geomspace(10.0, 0.1, 10)), "label_noise": 0.5, "data_seed": 3}
OPTIMISERS = {
    "sgd": {"name": "sgd", "lr": 0.02},
    "sgd, momentum 0.9": {"name": "sgd", "lr": 0.002, "momentum": 0.9},
    "sgd, nesterov 0.9": {"name": "sgd", "lr": 0.002, "momentum": 0.9, "nesterov": True},
    "sgd, weight decay 0.05": {"name": "sgd", "lr": 0.02, "weight_decay": 0.05},
    "adam": {"name": "adam", "lr": 0.01},
    "adamw, weight decay 0.05": {"name": "adamw", "lr": 0.01, "weight_decay": 0.05},
}


def experiment(dynamics: dict, trajectories: int, steps: int) -> dict:
    return {"run": {"seed": 11, "trajectories": trajectories, "steps": steps},
            "model": MODEL, "dynamics": dynamics,
            "init": {"normal": {"mean": 0.0, "std": 1.0}},
            "observables": {"timeseries": {"points": 200, "spacing": "log"},
                            "divergence": {"threshold": 1e6}}}


def excess(theta: np.ndarray) -> np.ndarray:
    """L(theta) - L_min per trajectory (theta [N, d]), from the model's own data."""
    a, b, _, loss_min = kernels.linear_regression_data(
        MODEL["samples"], MODEL["features"], MODEL["eigenvalues"], MODEL["label_noise"],
        MODEL["data_seed"])
    residual = theta @ a.T - b
    return 0.5 * (residual ** 2).mean(axis=1) - loss_min


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--png", default=os.path.join(HERE, "optimisers.png"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    trajectories, steps = (128, 1000) if args.quick else (1024, 4000)
    a, _, _, loss_min = kernels.linear_regression_data(
        MODEL["samples"], MODEL["features"], MODEL["eigenvalues"], MODEL["label_noise"],
        MODEL["data_seed"])
    sharpness = float(np.linalg.eigvalsh(a.T @ a / MODEL["samples"])[-1])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    rows = []
    for k, (label, dynamics) in enumerate(OPTIMISERS.items()):
        path = os.path.join(args.outdir, f"optimiser_{k}.h5")
        ds = sgdsim.run(experiment(dynamics, trajectories, steps), path, overwrite=True)
        values = excess(ds["final_theta"].values[0])
        values = values[np.isfinite(values)]
        half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
        rows.append((label, values.mean(), half, values.size))
        t = ds["timeseries_steps"].values
        left.plot(t[1:], ds["timeseries_loss_mean"].values[0][1:] - loss_min, lw=1.3,
                  label=label)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("ensemble-mean excess loss L - L_min")
    left.set_title(f"linear regression, eigenvalues 10 .. 0.1, batch 1\n"
                   f"sharpness {sharpness:.3f} for every optimiser (constant Hessian)",
                   fontsize=10)
    left.legend(fontsize=8)
    y = np.arange(len(rows))
    right.barh(y, [r[1] for r in rows], xerr=[r[2] for r in rows], color=[f"C{k}" for k in y],
               capsize=3)
    right.set_yticks(y, [r[0] for r in rows], fontsize=8)
    right.set_xscale("log")
    right.set_xlabel(f"excess loss at step {steps} (mean, 95 % interval)")
    right.invert_yaxis()
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    plt.close(fig)
    print(f"L_min = {loss_min:.5f}; sharpness (top eigenvalue of A^T A / n) = {sharpness:.4f}")
    for label, mean, half, n in rows:
        print(f"{label:26s} excess loss {mean:.5f} +- {half:.5f} ({n} trajectories)")
    print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
