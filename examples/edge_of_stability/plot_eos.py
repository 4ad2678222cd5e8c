#!/usr/bin/env python
"""Run eos.toml, measure how close the sharpness settles to 2 / lr, and draw eos.png.

    python examples/edge_of_stability/plot_eos.py [--outdir DIR] [--png PATH] [--quick]

Top panel: the ensemble mean of the sharpness (top Hessian eigenvalue, computed in-kernel
every 5 steps) with a band of one ensemble standard deviation, for each step size, and
2 / lr dashed. Bottom panel: the mean loss (log scale). The printed ratio is the final
sharpness over 2 / lr, averaged over trajectories, with a 95 % interval from the spread
of the trajectories (independent initialisations). ``--quick`` runs 128 trajectories
(the test). Exit status 0 when every step size ends within 5 % of 2 / lr.
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

from sgdsim import analysis  # noqa: E402
from sgdsim import sim  # noqa: E402


def run(outdir: str, quick: bool = False) -> str:
    overrides = {"run.trajectories": 128} if quick else None
    experiment = sim.load_experiment(os.path.join(HERE, "eos.toml"), overrides)
    path = os.path.join(outdir, "eos.h5")
    sim.run_experiment(experiment, path, overwrite=True, quiet=True)
    return path


def settling(run_file) -> list[dict]:
    """Per step size: the final sharpness over 2 / lr, mean and 95 % interval."""
    lrs = run_file.read("sweep/dynamics.lr")
    final = run_file.read("sharpness/final")
    rows = []
    for lr, values in zip(lrs, final):
        ratio = values[np.isfinite(values)] * lr / 2.0
        half = 1.96 * ratio.std(ddof=1) / math.sqrt(ratio.size)
        rows.append({"lr": float(lr), "two_over_lr": 2.0 / lr, "ratio": float(ratio.mean()),
                     "low": float(ratio.mean() - half), "high": float(ratio.mean() + half),
                     "trajectories": int(ratio.size)})
    return rows


def draw(run_file, rows: list[dict], png: str) -> None:
    steps = run_file.read("timeseries/steps").astype(float)
    mean = run_file.read("timeseries/sharpness_mean")
    sd = np.sqrt(run_file.read("timeseries/sharpness_var"))
    loss = run_file.read("timeseries/loss_mean")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True)
    for k, row in enumerate(rows):
        colour = f"C{k}"
        top.fill_between(steps, mean[k] - sd[k], mean[k] + sd[k], color=colour, alpha=0.2,
                         lw=0)
        top.plot(steps, mean[k], color=colour, lw=1.5,
                 label=f"lr = {row['lr']:g}: final / (2/lr) = {row['ratio']:.3f} "
                       f"[{row['low']:.3f}, {row['high']:.3f}]")
        top.axhline(row["two_over_lr"], color=colour, ls="--", lw=1)
        bottom.plot(steps, loss[k], color=colour, lw=1.2, label=f"lr = {row['lr']:g}")
    top.set_ylabel("sharpness (top Hessian eigenvalue)")
    top.set_title(f"GD on two_layer (width 8, tanh): sharpness rises to 2 / lr (dashed)\n"
                  f"mean and +-1 sd band over {rows[0]['trajectories']} initialisations")
    top.legend(fontsize=8, loc="lower right")
    bottom.set_yscale("log")
    bottom.set_xlabel("step")
    bottom.set_ylabel("mean loss")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--png", default=os.path.join(HERE, "eos.png"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    path = run(args.outdir, args.quick)
    run_file = analysis.open_run(path)
    rows = settling(run_file)
    draw(run_file, rows, args.png)
    for row in rows:
        print(f"lr = {row['lr']:g}: final sharpness / (2 / lr) = {row['ratio']:.4f} "
              f"(95 % [{row['low']:.4f}, {row['high']:.4f}], {row['trajectories']} "
              f"trajectories)")
    print(f"figure: {args.png}")
    return 0 if all(abs(row["ratio"] - 1.0) < 0.05 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
