#!/usr/bin/env python
"""Run uv_catapults.toml and draw uv_catapults.png: the catapult window of GD on uv.

    python examples/catapults/plot_catapults.py [--outdir DIR] [--png PATH] [--quick]

Per step size (all runs start at sharpness lambda_0 = 2.894):
- the fraction of runs that converge (final loss < 1e-4, not diverged), with 95 % Wilson
  intervals;
- the final sharpness (mean +- sd over the converged runs) against 2 / lr and lambda_0;
- the loss spike: the largest ensemble-mean loss over the run divided by the initial loss;
- the Lyapunov exponent per step of the tangent dynamics (mean +- 1.96 standard errors over
  the runs that did not diverge): negative where the run settles at a minimum, near zero on
  an orbit that does not converge, positive where it is chaotic.
The window 2 / lambda_0 < lr < 4 / lambda_0 is shaded. Prints one row per step size.
``--quick`` runs 64 trajectories (the test). Exit status 0 when, inside the window, the
converged runs end flatter than 2 / lr on average and at least 98 % of the runs below
the window converge, staying at lambda_0 (within 0.2; the noise lets a few drift along the
valley to where lambda > 2 / lr, and they catapult too).
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

START = (0.6, 1.6)


def start_sharpness() -> float:
    u, v = START
    cross = 2.0 * u * v - 1.0
    return float(np.linalg.eigvalsh(np.array([[v * v, cross], [cross, u * u]]))[-1])


def run(outdir: str, quick: bool = False) -> str:
    overrides = {"run.trajectories": 64} if quick else None
    experiment = sim.load_experiment(os.path.join(HERE, "uv_catapults.toml"), overrides)
    path = os.path.join(outdir, "uv_catapults.h5")
    sim.run_experiment(experiment, path, overwrite=True, quiet=True)
    return path


def measure(run_file) -> list[dict]:
    lrs = run_file.read("sweep/dynamics.lr")
    theta = run_file.read("final/theta")
    diverged = run_file.read("divergence/steps") >= 0
    sharp = run_file.read("sharpness/final")
    growth = run_file.read("lyapunov/log_growth")
    grown = run_file.read("lyapunov/steps")
    loss_mean = run_file.read("timeseries/loss_mean")
    rows = []
    for k, lr in enumerate(lrs):
        u, v = theta[k, :, 0], theta[k, :, 1]
        with np.errstate(over="ignore", invalid="ignore"):
            loss = 0.5 * (u * v - 1.0) ** 2
        converged = ~diverged[k] & (loss < 1e-4)
        n = converged.size
        low, high = analysis.wilson_interval(int(converged.sum()), n)
        alive = ~diverged[k] & (grown[k] > 0)
        exponent = growth[k][alive] / grown[k][alive]
        finite = np.isfinite(loss_mean[k])
        rows.append({
            "lr": float(lr), "converged": float(converged.mean()), "low": float(low),
            "high": float(high),
            "sharpness": float(sharp[k][converged].mean()) if converged.any() else math.nan,
            "sharpness_sd": float(sharp[k][converged].std()) if converged.any() else math.nan,
            "spike": float(np.nanmax(loss_mean[k][finite]) / loss_mean[k][0]),
            "lyapunov": float(exponent.mean()) if exponent.size else math.nan,
            "lyapunov_half": (float(1.96 * exponent.std(ddof=1) / math.sqrt(exponent.size))
                              if exponent.size > 1 else math.nan),
        })
    return rows


def draw(rows: list[dict], lam0: float, trajectories: int, png: str) -> None:
    lr = np.array([r["lr"] for r in rows])
    fig, axes = plt.subplots(4, 1, figsize=(7.5, 10), sharex=True)
    for ax in axes:
        ax.axvspan(2 / lam0, 4 / lam0, color="0.9", zorder=0)
    frac = np.array([r["converged"] for r in rows])
    err = np.maximum(np.array([[r["converged"] - r["low"] for r in rows],
                               [r["high"] - r["converged"] for r in rows]]), 0.0)  # rounding
    axes[0].errorbar(lr, frac, yerr=err, fmt="o-", ms=3, capsize=2)
    axes[0].set_ylabel("fraction converged")
    axes[0].set_title(f"GD + small gradient noise on uv from lambda_0 = {lam0:.3f}, "
                      f"{trajectories} runs a step size\nshaded: the catapult window "
                      f"2/lambda_0 < lr < 4/lambda_0", fontsize=10)
    mean = np.array([r["sharpness"] for r in rows])
    sd = np.array([r["sharpness_sd"] for r in rows])
    axes[1].errorbar(lr, mean, yerr=sd, fmt="o", ms=3, capsize=2, label="final sharpness")
    grid = np.linspace(lr.min(), lr.max(), 200)
    axes[1].plot(grid, 2 / grid, "k--", lw=1, label="2 / lr")
    axes[1].axhline(lam0, color="C3", lw=1, label="lambda_0")
    axes[1].set_ylim(0, 1.3 * lam0)
    axes[1].set_ylabel("sharpness (converged runs)")
    axes[1].legend(fontsize=8)
    axes[2].semilogy(lr, [r["spike"] for r in rows], "o-", ms=3)
    axes[2].set_ylim(0.5, 1e6)
    axes[2].set_ylabel("max mean loss / initial loss\n(off the top: divergence)")
    lyap = np.array([r["lyapunov"] for r in rows])
    half = np.array([r["lyapunov_half"] for r in rows])
    axes[3].errorbar(lr, lyap, yerr=half, fmt="o-", ms=3, capsize=2)
    axes[3].axhline(0.0, color="k", lw=0.8)
    axes[3].set_ylabel("Lyapunov exponent / step")
    axes[3].set_xlabel("lr")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--png", default=os.path.join(HERE, "uv_catapults.png"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    path = run(args.outdir, args.quick)
    run_file = analysis.open_run(path)
    rows = measure(run_file)
    lam0 = start_sharpness()
    draw(rows, lam0, run_file.trajectories, args.png)
    print(f"lambda_0 = {lam0:.4f}: window {2 / lam0:.3f} < lr < {4 / lam0:.3f}")
    print("    lr  converged (95 %)        final sharpness   2/lr   spike     lyapunov")
    for r in rows:
        print(f"{r['lr']:6.2f}  {r['converged']:.3f} [{r['low']:.3f}, {r['high']:.3f}]  "
              f"{r['sharpness']:7.3f} +- {r['sharpness_sd']:.3f}  {2 / r['lr']:5.2f}  "
              f"{r['spike']:8.3g}  {r['lyapunov']:+.4f} +- {r['lyapunov_half']:.4f}")
    print(f"figure: {args.png}")
    ok = True
    for r in rows:
        if r["lr"] < 2 / lam0 - 0.02:
            ok &= r["converged"] >= 0.98 and abs(r["sharpness"] - lam0) < 0.2
        elif 2 / lam0 + 0.02 < r["lr"] < 4 / lam0 and r["converged"] > 0:
            ok &= r["sharpness"] < 2 / r["lr"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
