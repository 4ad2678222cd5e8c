#!/usr/bin/env python
"""Run uv_orbits.toml and draw uv_orbits.png: GD's orbits on uv beyond the catapult window,
period doubling into chaos, and the same phase diagram with SGD's gradient noise.

    python examples/catapults/plot_orbits.py [--outdir DIR] [--png PATH] [--quick]

Per step size and noise level (noise_std 0 is GD):
- the period of the orbit at the last step (the `period` observable: the smallest p <= 32
  whose last cycle returns within tol; 0 if none, drawn as "none"): GD's, one run a step
  size at tol = 1e-8; for the noisy runs the most frequent one at tol = 5e-3;
- the fraction of runs whose orbit is periodic at that resolution, with 95 % Wilson
  intervals;
- the Lyapunov exponent per step of the tangent dynamics, mean +- 1.96 standard errors
  over the runs that did not diverge (GD: one value).
Prints one row per step size. ``--quick`` runs 16 trajectories per point (the test).
Exit status 0 when GD's periods are 1, then powers of two that never decrease with lr
(up to at least 8), then none with a positive exponent (chaos), then divergence; no period
with an exponent within 1e-3 of zero (an orbit still settling at a bifurcation) is allowed
before the chaos.
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

NONE_ROW = 64          # where "no period <= 32" is drawn on the log2 axis
DIVERGED_ROW = 128


GD = {"sweep.model.noise_std": [0.0], "run.trajectories": 1,
      "observables.period": {"max": 32, "tol": 1e-8}}


def run(outdir: str, name: str, overrides: dict) -> str:
    experiment = sim.load_experiment(os.path.join(HERE, "uv_orbits.toml"), overrides)
    path = os.path.join(outdir, f"{name}.h5")
    sim.run_experiment(experiment, path, overwrite=True, quiet=True)
    return path


def measure(run_file) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
    """(lrs, noise levels, rows[lr][noise]) from the sweep's grid (noise fastest)."""
    lrs = np.unique(run_file.read("sweep/dynamics.lr"))
    noises = np.unique(run_file.read("sweep/model.noise_std"))
    period = run_file.read("period/period").reshape(lrs.size, noises.size, -1)
    growth = run_file.read("lyapunov/log_growth").reshape(period.shape)
    grown = run_file.read("lyapunov/steps").reshape(period.shape)
    diverged = (run_file.read("divergence/steps") >= 0).reshape(period.shape)
    rows = []
    for i in range(lrs.size):
        rows.append([])
        for j in range(noises.size):
            alive = ~diverged[i, j]
            n = int(alive.sum())
            cell = {"alive": n, "periodic": math.nan, "low": math.nan, "high": math.nan,
                    "period": DIVERGED_ROW, "share": math.nan, "lyapunov": math.nan,
                    "half": math.nan}
            if n:
                found = period[i, j][alive]
                values, counts = np.unique(found, return_counts=True)
                mode = int(values[np.argmax(counts)])
                low, high = analysis.wilson_interval(int((found > 0).sum()), n)
                exponent = growth[i, j][alive] / grown[i, j][alive]
                half = 1.96 * exponent.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0
                cell.update(periodic=float((found > 0).mean()), low=low, high=high,
                            period=mode if mode > 0 else NONE_ROW,
                            share=float(counts.max() / n), lyapunov=float(exponent.mean()),
                            half=float(half))
            rows[-1].append(cell)
    return lrs, noises, rows


def draw(lrs, noises, rows, trajectories: int, png: str) -> None:
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 9.5), sharex=True)
    for j, noise in enumerate(noises):
        label = "GD" if noise == 0 else f"noise_std {noise:g}"
        cells = [r[j] for r in rows]
        shift = (j - 1) * 0.0015            # side by side, not on top of each other
        axes[0].plot(lrs + shift, [c["period"] for c in cells], "o", ms=3.5 - j, label=label)
        if noise > 0:                       # GD is one run: periodic or not, no interval
            frac = np.array([c["periodic"] for c in cells])
            err = np.maximum(np.array([[c["periodic"] - c["low"] for c in cells],
                                       [c["high"] - c["periodic"] for c in cells]]), 0.0)
            axes[1].errorbar(lrs + shift, frac, yerr=err, fmt="o-", ms=3, capsize=2,
                             label=label, color=f"C{j}")
        axes[2].errorbar(lrs + shift, [c["lyapunov"] for c in cells],
                         yerr=[0.0 if noise == 0 else c["half"] for c in cells],
                         fmt="o-", ms=3, capsize=2, label=label)
    axes[0].set_yscale("log", base=2)
    axes[0].set_yticks([1, 2, 4, 8, 16, 32, NONE_ROW, DIVERGED_ROW],
                       ["1", "2", "4", "8", "16", "32", "none", "diverged"])
    axes[0].set_ylabel("period (noisy: most frequent)")
    axes[0].legend(fontsize=8, loc="upper left")
    axes[0].set_title(f"uv from (0.6, 1.6): GD (one run a step size), SGD ({trajectories} "
                      "runs a point)\nperiod from the last 64 states: GD at tol 1e-8, "
                      "SGD at resolution 5e-3", fontsize=10)
    axes[1].set_ylabel("SGD: fraction periodic (95 %)")
    axes[1].legend(fontsize=8, loc="lower left")
    axes[1].set_ylim(-0.05, 1.05)
    axes[2].axhline(0.0, color="k", lw=0.8)
    axes[2].set_ylabel("Lyapunov exponent / step")
    axes[2].set_xlabel("lr")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def cascade_holds(lrs, rows) -> bool:
    """GD (noise 0): period 1, then non-decreasing powers of two (exponent <= 0), then
    chaos (no period, exponent > 1e-3), then divergence. No period with an exponent
    within 1e-3 of 0 is an orbit still settling at a bifurcation (lr = 1: the multiplier
    is -1 and the orbit converges algebraically), allowed before chaos."""
    seen, stage = 1, "periodic"
    for cell in (r[0] for r in rows):
        p, exponent = cell["period"], cell["lyapunov"]
        if p == DIVERGED_ROW:
            stage = "diverged"
        elif stage == "diverged":
            return False
        elif p == NONE_ROW and exponent > 1e-3:
            stage = "chaos"
        elif stage == "chaos":
            return False
        elif p == NONE_ROW:
            if abs(exponent) > 1e-3:
                return False
        elif p < seen or p & (p - 1) or exponent > 1e-3:
            return False
        else:
            seen = p
    return stage == "diverged" and seen >= 8


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--png", default=os.path.join(HERE, "uv_orbits.png"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    gd = analysis.open_run(run(args.outdir, "uv_orbits_gd", GD))
    noisy = analysis.open_run(run(args.outdir, "uv_orbits",
                                  {"run.trajectories": 16} if args.quick else {}))
    lrs, exact, exact_rows = measure(gd)
    lrs_noisy, noises, noisy_rows = measure(noisy)
    assert np.array_equal(lrs, lrs_noisy)
    noises = np.concatenate([exact, noises])
    rows = [a + b for a, b in zip(exact_rows, noisy_rows)]
    draw(lrs, noises, rows, noisy.trajectories, args.png)

    def show(c):
        if c["period"] == DIVERGED_ROW:
            return f"{'diverged':>30}"
        p = "none" if c["period"] == NONE_ROW else str(c["period"])
        return (f"{p:>4} ({c['share']:.2f}) {c['lyapunov']:+.4f} +- {c['half']:.4f}")

    print("   lr  " + "  ".join(f"{'GD' if n == 0 else f'noise {n:g}':>30}" for n in noises))
    print("       " + "  ".join(f"{'period (share) lyapunov':>30}" for _ in noises))
    for lr, r in zip(lrs, rows):
        print(f"{lr:5.2f}  " + "  ".join(f"{show(c):>30}" for c in r))
    print(f"figure: {args.png}")
    return 0 if cascade_holds(lrs, rows) else 1


if __name__ == "__main__":
    sys.exit(main())
