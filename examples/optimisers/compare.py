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
excess loss measures. Beside the training excess loss, the population (test) excess loss
(theta - w*)' diag(eigenvalues) (theta - w*) / 2 against the teacher w*, with the exact
values of the least-squares and ridge minimisers. The claims "Adam is worse than SGD" and
"weight decay does nothing" are each measured as a difference paired by trajectory (the
runs share the seed: trajectory i starts at the same theta_0 and draws the same samples
in every run), for this one well-determined dataset (64 samples, 10 features: every
optimiser targets the same minimiser); generalisation.py asks them where the model
interpolates, over many datasets. ``--quick`` runs 128 trajectories and 1000 steps (the
test).
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


def data(model: dict = MODEL):
    """(A, b, w_min, L_min, w*) of a linear_regression model's data."""
    d = model["features"]
    args = (model["samples"], d, model.get("eigenvalues", [1.0] * d))
    a, b, w_min, loss_min = kernels.linear_regression_data(*args, model["label_noise"],
                                                           model["data_seed"])
    return a, b, w_min, loss_min, kernels.linear_regression_teacher(*args, model["data_seed"])


def excess(theta: np.ndarray, model: dict = MODEL) -> np.ndarray:
    """L(theta) - L_min per trajectory (theta [N, d]): the loss on the training points."""
    a, b, _, loss_min, _ = data(model)
    residual = theta @ a.T - b
    return 0.5 * (residual ** 2).mean(axis=1) - loss_min


def population_excess(theta: np.ndarray, model: dict = MODEL) -> np.ndarray:
    """The excess population loss (theta - w*)' diag(eigenvalues) (theta - w*) / 2 on a
    fresh point a ~ N(0, diag(eigenvalues)) (the test loss, label noise removed)."""
    *_, teacher = data(model)
    delta = np.atleast_2d(theta) - teacher
    eig = np.asarray(model.get("eigenvalues", [1.0] * model["features"]))
    return 0.5 * (delta ** 2 * eig).sum(axis=1)


def ridge(weight_decay: float, model: dict = MODEL) -> np.ndarray:
    """The minimiser of L(theta) + weight_decay |theta|^2 / 2 (where SGD with weight decay
    fluctuates); weight_decay 0: the least-squares solution of smallest norm (where SGD
    from theta_0 = 0 converges when the model interpolates)."""
    a, b, *_ = data(model)
    if weight_decay == 0:
        return np.linalg.pinv(a) @ b
    n, d = a.shape
    return np.linalg.solve(a.T @ a / n + weight_decay * np.eye(d), a.T @ b / n)


def interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95 % half-width over independent trajectories."""
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--png", default=os.path.join(HERE, "optimisers.png"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    trajectories, steps = (128, 1000) if args.quick else (1024, 4000)
    a, _, _, loss_min, _ = data()
    sharpness = float(np.linalg.eigvalsh(a.T @ a / MODEL["samples"])[-1])
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.8))
    rows, train, test = [], {}, {}
    for k, (label, dynamics) in enumerate(OPTIMISERS.items()):
        path = os.path.join(args.outdir, f"optimiser_{k}.h5")
        ds = sgdsim.run(experiment(dynamics, trajectories, steps), path, overwrite=True)
        theta = ds["final_theta"].values[0]
        train[label], test[label] = excess(theta), population_excess(theta)
        finite = np.isfinite(train[label])
        rows.append((label, *interval(train[label][finite]),
                     *interval(test[label][finite]), int(finite.sum())))
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
    for ax, column, name in ((middle, 1, "training"), (right, 3, "population (test)")):
        ax.barh(y, [r[column] for r in rows], xerr=[r[column + 1] for r in rows],
                color=[f"C{k}" for k in y], capsize=3)
        ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"{name} excess loss at step {steps}\n(mean, 95 % interval)")
        ax.invert_yaxis()
    exact = {wd: float(population_excess(ridge(wd))[0]) for wd in (0.0, 0.05)}
    right.axvline(exact[0.0], color="k", ls="--", lw=1, label="least-squares minimiser")
    right.axvline(exact[0.05], color="k", ls=":", lw=1, label="ridge minimiser, 0.05")
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    plt.close(fig)
    print(f"L_min = {loss_min:.5f}; sharpness (top eigenvalue of A^T A / n) = {sharpness:.4f}")
    for label, mean, half, tmean, thalf, n in rows:
        print(f"{label:26s} excess loss {mean:.5f} +- {half:.5f}, population {tmean:.5f} "
              f"+- {thalf:.5f} ({n} trajectories)")
    print(f"population excess of the minimisers: least squares {exact[0.0]:.5f}, "
          f"ridge 0.05 {exact[0.05]:.5f}")
    # The claims, each a difference paired by trajectory (the runs share the seed, so
    # trajectory i starts at the same theta_0 and draws the same samples in every run).
    claims = (("Adam is worse than SGD", "adam", "sgd"),
              ("Adam is worse than SGD with momentum", "adam", "sgd, momentum 0.9"),
              ("weight decay does nothing (SGD)", "sgd, weight decay 0.05", "sgd"),
              ("weight decay does nothing (Adam)", "adamw, weight decay 0.05", "adam"))
    for claim, first, second in claims:
        for name, values in (("training", train), ("population", test)):
            diff = values[first] - values[second]
            mean, half = interval(diff[np.isfinite(diff)])
            verdict = ("no difference resolved" if abs(mean) <= max(half, 1e-9) else
                       f"{first} {'higher' if mean > 0 else 'lower'}")
            print(f"claim '{claim}': {name} excess {first} - {second} = {mean:+.5f} +- "
                  f"{half:.5f}: {verdict}")
    print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
