#!/usr/bin/env python
"""Run three_regimes.toml, estimate the regime boundaries and draw three_regimes.png.

    python examples/two_time_scales/plot_regimes.py [--outdir DIR] [--png PATH] [--quick]

The boundaries come from ``analysis.regimes_summary``: the end of the first descent is where the
mean loss falls to 1.1 x its plateau level, the start of the second descent where it falls to
0.9 x (interpolated in log-log); 95 % intervals from the delete-one jackknife over the 8
replicate points of the sweep. Top panel: the loss (log time axis), each replicate thin, their
mean thick, the boundaries with their bands. Bottom panel: the tracking error |x - lambda(y)|^2
and the slow error |y - y*|^2 (squared distance to the nearest groove). ``--quick`` runs 200
trajectories per replicate (the test). Prints the boundaries; exit status 0 when both exist and
end_first_descent < start_second_descent, 1 otherwise.
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
    """Run the experiment into ``outdir/three_regimes.h5``; returns the path."""
    overrides = {"run.trajectories": 200} if quick else None
    experiment = sim.load_experiment(os.path.join(HERE, "three_regimes.toml"), overrides)
    path = os.path.join(outdir, "three_regimes.h5")
    sim.run_experiment(experiment, path, overwrite=True, quiet=True)
    return path


def draw(run_file, regimes: dict, png: str) -> None:
    """Loss with the boundaries (top) and tracking / slow errors (bottom), log time axis."""
    steps = run_file.read("timeseries/steps").astype(float)
    keep = steps > 0
    points = regimes["points"]
    loss = run_file.read("timeseries/loss_mean")[points]
    tracking = run_file.read("timeseries/tracking_error")[points].mean(axis=0)
    slow = run_file.read("timeseries/slow_error")[points].mean(axis=0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True)
    for curve in loss:
        top.plot(steps[keep], curve[keep], color="C0", lw=0.5, alpha=0.4)
    top.plot(steps[keep], loss.mean(axis=0)[keep], color="C0", lw=2,
             label=f"ensemble-mean loss ({len(points)} replicates x {run_file.trajectories})")
    top.axhline(regimes["plateau_loss"], color="0.5", lw=0.8, ls="-.",
                label=f"plateau level {regimes['plateau_loss']:.3g}")
    for key, colour, name in (("end_first_descent", "C2", "end of first descent"),
                              ("start_second_descent", "C3", "start of second descent")):
        entry = regimes[key]
        top.axvline(entry["estimate"], color=colour, ls="--",
                    label=f"{name}: {entry['estimate']:.1f} ± {entry['stderr']:.2g} steps")
        top.axvspan(*entry["ci95"], color=colour, alpha=0.25)
        for ax in (top, bottom):
            ax.axvline(entry["estimate"], color=colour, ls="--", lw=0.8)
    top.text(0.12, 0.56, "first descent:\nx -> lambda(y)", transform=top.transAxes, fontsize=8)
    top.text(0.45, 0.80, "plateau: y on the ridge w = 1/2", transform=top.transAxes, fontsize=8)
    top.text(0.79, 0.45, "second descent:\ny into a groove", transform=top.transAxes, fontsize=8)
    top.set_yscale("log")
    top.set_ylabel("loss f(x, eps y)")
    top.set_title("grooves under two_time_scale: a = 0.05, eps = 0.1, b = 0.005, mu = 4", fontsize=10)
    top.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.18))
    bottom.plot(steps[keep], tracking[keep], color="C1", label="tracking error |x - lambda(y)|^2")
    bottom.plot(steps[keep], slow[keep], color="C4", label="slow error |y - y*|^2 (nearest groove)")
    bottom.set_xscale("log")
    bottom.set_yscale("log")
    bottom.set_xlabel("step t")
    bottom.set_ylabel("ensemble mean")
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".", help="directory for the run file (default: .)")
    parser.add_argument("--png", default=os.path.join(HERE, "three_regimes.png"), help="figure path")
    parser.add_argument("--quick", action="store_true", help="200 trajectories per replicate")
    args = parser.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    run_file = analysis.open_run(run(args.outdir, args.quick))
    regimes = analysis.regimes_summary(run_file)[0]
    for key in ("end_first_descent", "start_second_descent"):
        entry = regimes[key]
        low, high = entry["ci95"]
        print(f"{key:22s} {entry['estimate']:9.1f} ± {entry['stderr']:6.2g} steps  95% [{low:.1f}, {high:.1f}]"
              f"  (replicates: {np.array2string(entry['replicate_estimates'], precision=1)})")
    print(f"plateau loss {regimes['plateau_loss']:.4g} (mu/pi^2 = {4 / math.pi ** 2:.4g}), "
          f"log-log slope between the boundaries {regimes['middle_slope']:.3g}; "
          f"initial loss {regimes['initial_loss']:.3g}, final loss {regimes['final_loss']:.3g}")
    draw(run_file, regimes, args.png)
    print(f"wrote {args.png}")
    t1, t2 = regimes["end_first_descent"]["estimate"], regimes["start_second_descent"]["estimate"]
    ok = math.isfinite(t1) and math.isfinite(t2) and t1 < t2
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
