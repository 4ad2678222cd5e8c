#!/usr/bin/env python
"""SGD's noise scale lr/B on linear regression: same stationary excess loss for small steps only.

    python examples/two_time_scales/noise_scale.py [--outdir DIR] [--quick]

Runs noise_scale.toml at (lr, B) = (0.02, 1), (0.04, 2), (0.08, 4) (small steps, lr/B = 0.02) and
(0.15, 1), (0.6, 4) (large steps, lr/B = 0.15). The excess loss of a final state theta is
L(theta) - L(w_min), L = mean over the n samples of (a_i . theta - b_i)^2 / 2, with the data and the
least-squares solution w_min rebuilt by ``kernels.linear_regression_data`` (an example may import
kernels; the analysis package may not). Small-step theory: the stationary law depends on lr and B
only through lr/B (SDE limit), so the three small-step excess losses agree; at large steps the
O(lr^2) terms of the discrete chain differ between B = 1 and B = 4. PASS when the small-step
values agree within 10 % (max/min < 1.10) and the large-step pair differs by more than 10 % and
more than 5 combined SE. ``--quick`` uses 1000 trajectories.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import numpy as np  # noqa: E402

from sgdsim import analysis  # noqa: E402
from sgdsim import sim  # noqa: E402
from sgdsim.kernels import linear_regression_data  # noqa: E402

SMALL = ((0.02, 1), (0.04, 2), (0.08, 4))
LARGE = ((0.15, 1), (0.6, 4))


def excess_loss(path: str) -> tuple:
    """(mean, stderr) over trajectories of L(theta_T) - L(w_min) for one run file."""
    run = analysis.open_run(path)
    model = run.experiment["model"]
    a, b, w_min, loss_min = linear_regression_data(model["samples"], model["features"], model["eigenvalues"],
                                                   model["label_noise"], model["data_seed"])
    theta = run.read("final/theta")[0]
    excess = 0.5 * ((theta @ a.T - b) ** 2).mean(axis=1) - loss_min
    return float(excess.mean()), float(excess.std(ddof=1) / np.sqrt(excess.size))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".", help="directory for the run files (default: .)")
    parser.add_argument("--quick", action="store_true", help="1000 trajectories per run")
    args = parser.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    results = {}
    for lr, batch in SMALL + LARGE:
        overrides = {"dynamics.lr": lr, "dynamics.batch_size": batch}
        if args.quick:
            overrides["run.trajectories"] = 1000
        experiment = sim.load_experiment(os.path.join(HERE, "noise_scale.toml"), overrides)
        path = os.path.join(args.outdir, f"noise_scale_lr{lr:g}_B{batch}.h5")
        sim.run_experiment(experiment, path, overwrite=True, quiet=True)
        results[(lr, batch)] = excess_loss(path)

    small = np.array([results[k][0] for k in SMALL])
    (m1, s1), (m4, s4) = results[LARGE[0]], results[LARGE[1]]
    print(f"{'small steps (lr/B = 0.02)':<28} {'excess loss':>14}   {'large steps (lr/B = 0.15)':<28} {'excess loss':>14}")
    for k in range(max(len(SMALL), len(LARGE))):
        left = f"lr = {SMALL[k][0]:<5g} B = {SMALL[k][1]:<3d}" if k < len(SMALL) else ""
        lval = f"{results[SMALL[k]][0]:.5f} ± {results[SMALL[k]][1]:.5f}" if k < len(SMALL) else ""
        right = f"lr = {LARGE[k][0]:<5g} B = {LARGE[k][1]:<3d}" if k < len(LARGE) else ""
        rval = f"{results[LARGE[k]][0]:.5f} ± {results[LARGE[k]][1]:.5f}" if k < len(LARGE) else ""
        print(f"{left:<28} {lval:>14}   {right:<28} {rval:>14}")
    spread = small.max() / small.min()
    gap = abs(m4 - m1) / min(m1, m4)
    print(f"\nsmall steps: max/min = {spread:.4f} (same within 10 %: {spread < 1.10})")
    print(f"large steps: |B=4 - B=1| / min = {gap:.3f}, = {abs(m4 - m1) / np.hypot(s1, s4):.1f} SE "
          f"(differ by > 10 % and > 5 SE: {gap > 0.10 and abs(m4 - m1) > 5 * np.hypot(s1, s4)})")
    ok = spread < 1.10 and gap > 0.10 and abs(m4 - m1) > 5 * np.hypot(s1, s4)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
