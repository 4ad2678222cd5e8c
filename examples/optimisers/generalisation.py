#!/usr/bin/env python
"""Do Adam and weight decay generalise worse or better than SGD where the model can
interpolate? Over-parameterised linear regression, many datasets. Draws generalisation.png.

    python examples/optimisers/generalisation.py [--outdir DIR] [--png PATH] [--quick]

Two claims are often made: "Adam is worse than SGD" (at generalising: with more parameters
than samples, SGD from theta_0 = 0 stays in the row space of the data and converges to the
interpolant of smallest norm, while Adam's per-coordinate steps leave it) and "weight decay
does nothing". Both are measured here on linear_regression with 64 features, 32 samples
(isotropic, label noise 0.5), over 64 datasets (data_seed 0..63, one sweep point each) and
32 trajectories per dataset (minibatches of one sample; all start at theta_0 = 0, so a
dataset's trajectories differ by the samples they draw only), 10000 steps. The measure is
the excess population loss (theta - w*)'(theta - w*) / 2 against the teacher w* (the test
loss on fresh points, label noise removed): per dataset the mean over its trajectories,
then the difference to SGD's on the same dataset, with a 95 % Student-t interval over the
64 datasets (the question is about the data, not one draw of it). Beside them, exactly
from each dataset: the minimum-norm interpolant (where SGD goes) and the ridge minimiser
of weight decay 0.05 (where SGD with weight decay goes). ``--quick``: 4 datasets, 8
trajectories (the test). Exit status 0 when SGD's population excess equals the
minimum-norm interpolant's (within 1e-6) and SGD with weight decay's the ridge minimiser's
(within 2 %), dataset by dataset.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import sgdsim  # noqa: E402
from compare import excess, population_excess, ridge  # noqa: E402

MODEL = {"name": "linear_regression", "samples": 32, "features": 64, "label_noise": 0.5}
OPTIMISERS = {
    "sgd": {"name": "sgd", "lr": 0.01},
    "sgd, momentum 0.9": {"name": "sgd", "lr": 0.001, "momentum": 0.9},
    "sgd, weight decay 0.05": {"name": "sgd", "lr": 0.01, "weight_decay": 0.05},
    "adam": {"name": "adam", "lr": 0.001},
    "adamw, weight decay 0.05": {"name": "adamw", "lr": 0.001, "weight_decay": 0.05},
}


def experiment(dynamics: dict, datasets: int, trajectories: int, steps: int) -> dict:
    return {"run": {"seed": 17, "trajectories": trajectories, "steps": steps},
            "model": {**MODEL, "data_seed": 0}, "dynamics": dynamics,
            "init": {"value": 0.0},
            "observables": {"divergence": {"threshold": 1e6}},
            "sweep": {"model.data_seed": list(range(datasets))}}


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95 % Student-t half-width over datasets."""
    n = values.size
    return (float(values.mean()),
            float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--png", default=os.path.join(HERE, "generalisation.png"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    datasets, trajectories, steps = (4, 8, 10000) if args.quick else (64, 32, 10000)
    models = [{**MODEL, "data_seed": k} for k in range(datasets)]
    test, train = {}, {}                          # per optimiser: [datasets] means
    for k, (label, dynamics) in enumerate(OPTIMISERS.items()):
        path = os.path.join(args.outdir, f"generalisation_{k}.h5")
        ds = sgdsim.run(experiment(dynamics, datasets, trajectories, steps), path,
                        overwrite=True)
        theta = ds["final_theta"].values                              # [P, N, d]
        test[label] = np.array([population_excess(theta[j], m).mean()
                                for j, m in enumerate(models)])
        train[label] = np.array([excess(theta[j], m).mean() for j, m in enumerate(models)])
    exact = {wd: np.array([population_excess(ridge(wd, m), m)[0] for m in models])
             for wd in (0.0, 0.05)}

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.8))
    base = test["sgd"]
    for k, label in enumerate(OPTIMISERS):
        if label != "sgd":
            left.plot(base, test[label], "o", ms=4, color=f"C{k}", label=label)
    left.plot(base, exact[0.05], "k+", ms=7, label="ridge minimiser 0.05 (exact)")
    grid = np.linspace(base.min(), base.max(), 2)
    left.plot(grid, grid, "k--", lw=1, label="= SGD (the minimum-norm interpolant)")
    left.set_xlabel("SGD's population excess loss, per dataset")
    left.set_ylabel("the optimiser's, same dataset")
    left.set_title(f"linear regression, 64 features, 32 samples: {datasets} datasets x "
                   f"{trajectories} runs", fontsize=10)
    left.legend(fontsize=7)
    labels = [label for label in OPTIMISERS if label != "sgd"]
    diffs = [t_interval(test[label] - base) for label in labels]
    y = np.arange(len(labels))
    right.barh(y, [d[0] for d in diffs], xerr=[d[1] for d in diffs], capsize=3,
               color=[f"C{k + 1}" for k in y])
    right.axvline(0.0, color="k", lw=0.8)
    right.set_yticks(y, labels, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("population excess minus SGD's\n(mean over datasets, 95 % t "
                     "interval; < 0: better than SGD)")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    plt.close(fig)

    print(f"{datasets} datasets x {trajectories} trajectories, {steps} steps")
    print(f"minimum-norm interpolant: population excess {exact[0.0].mean():.5f} (mean over "
          f"datasets); ridge 0.05: {exact[0.05].mean():.5f}")
    for label in OPTIMISERS:
        mean, half = t_interval(test[label])
        print(f"{label:26s} population {mean:.5f} +- {half:.5f}, training excess "
              f"{train[label].mean():.2e}")
    for label, (mean, half) in zip(labels, diffs):
        verdict = ("no difference resolved" if abs(mean) <= max(half, 1e-9) else
                   "worse than sgd" if mean > 0 else "better than sgd")
        print(f"{label:26s} minus sgd: {mean:+.5f} +- {half:.5f} ({verdict})")
    print(f"figure: {args.png}")
    ok = (np.abs(test["sgd"] - exact[0.0]).max() < 1e-6
          and np.abs(test["sgd, weight decay 0.05"] / exact[0.05] - 1).max() < 0.02)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
