#!/usr/bin/env python
"""F1 at the paper's scale: escape times measured by adaptive multilevel splitting (AMS) far
beyond brute force, and SCIENCE's 10^1087 steps extrapolated from the measured slope.

    cd examples/failure_modes && python f1_paper_scale.py            # ~3 min on 2 cores
    python f1_paper_scale.py --quick                                 # the pytest version

F1 says the mean escape time from well B grows like exp(2 dU / eta). Brute force
(f1_escape.toml) measures it only where an escape takes < ~1e7 steps (eta >= 0.007 here).
f1_splitting.toml estimates the same mean first-passage time by AMS on the same SGD chain
(noise = "gaussian", the same landscape, start and target), at step sizes from that range
down to eta = 0.0015, where an escape takes ~2e17 steps (brute force would need > 1e15 steps
per escape below eta ~ 0.0018).

Checks, each printed with PASS/FAIL (exit status 1 if any fails):
1. Where brute force is feasible, AMS and brute force agree (|difference| <= 3 combined SE).
2. At every eta, AMS agrees with the exact answer (|log ratio| <= 3 SE): the exact mean
   first-passage steps of the SGD chain itself (check.chain_mfpt, a linear solve on a grid)
   for eta >= 0.003; below, that solve loses its digits (the escape probability per step is
   under 1e-13) and the reference is the diffusion's quadrature (analysis.langevin_mfpt),
   which the chain approaches as eta -> 0 (their ratio is 0.996 at eta = 0.003).
3. The slope of log(eta x steps) against 1/eta, fitted by weighted least squares to the AMS
   points, equals 2 dU (the exact 2 int L' / Sigma from B's minimum to the barrier top)
   within 3 SE plus the slope of the exact references over the same points minus 2 dU (the
   finite-eta curvature of the line).

Extrapolation. SCIENCE's F1 has the same wells (H_A = 2, Sigma_A = 1, H_B = 8, Sigma_B = 8) with a
barrier dV = 100 instead of 0.2, so dU is 500 times this landscape's. At fixed curvatures the
escape time is A(eta) exp(2 dU / eta) with the same prefactor (assumed: the barrier top's
curvature, which SCIENCE does not give, is this landscape's -1.6), so at eta = 0.01

    log(steps) = c + 500 s / 0.01 - log(0.01),

with s and c the fitted slope and intercept (in time units, time = eta x steps); its standard
error comes from their covariance. The fit's extrapolation (by a factor ~75 in 1/eta) is
honest only if the law holds that far: the figure shows how straight the line is.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check  # noqa: E402  (the brute-force F1 mode, chain_mfpt, wls_line)
from check import sim, analysis  # noqa: E402

PAPER = {"dV": 100.0, "Sigma_B": 8.0, "eta": 0.01}       # SCIENCE section 1, F1
QUICK = {"sweep.dynamics.lr": [0.010, 0.004, 0.002], "splitting.runs": 12,
         "splitting.replicas": 50}
CHAIN_ETA = 0.003             # the exact chain solve is trusted at and above this eta
Z = 3.0


def fit(x, y, sigma):
    """Weighted least squares y = s x + c: (s, c, covariance of (s, c), chi2/dof)."""
    x, y, w = np.asarray(x), np.asarray(y), 1.0 / np.asarray(sigma) ** 2
    design = np.stack([x, np.ones_like(x)], axis=1)
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    s, c = cov @ (design.T @ (w * y))
    dof = max(len(x) - 2, 1)
    return float(s), float(c), cov, float((w * (y - s * x - c) ** 2).sum() / dof)


def run_ams(outdir, quick):
    experiment = sim.load_experiment(HERE / "f1_splitting.toml", QUICK if quick else None)
    out = pathlib.Path(outdir) / f"f1_splitting{'_quick' if quick else ''}.h5"
    start = time.perf_counter()
    sim.run_experiment(experiment, out, overwrite=True, quiet=True)
    return analysis.open_run(out), time.perf_counter() - start


def measure(outdir, quick=False):
    run, seconds = run_ams(outdir, quick)
    brute = check.mode_f1(outdir, quick)
    brute_rows = {round(r["eta"], 6): r for r in brute["rows"]}
    model = run.params(0)["model"]
    start = float(run.params(0)["init"]["value"])
    target = -float(run.params(0)["splitting"]["b"])          # score = -theta
    rows, checks = [], []
    for point in range(run.points):
        eta = float(run.params(point)["dynamics"]["lr"])
        est = analysis.splitting(run.read("splitting/probability")[point],
                                 run.read("splitting/loop_steps")[point],
                                 run.read("splitting/reactive_steps")[point])
        sde = analysis.langevin_mfpt(model, eta, start, target, "below")
        chain = (check.chain_mfpt(model, eta, start, target, hi=1.4, n=5000)
                 if eta >= CHAIN_ETA else None)
        exact, source = (chain, "SGD chain") if chain is not None else (sde["time"] / eta,
                                                                         "diffusion")
        t, se = est["mfpt_steps"], est["mfpt_stderr"]
        row = {"eta": eta, "p": est["p"], "p_se": est["p_stderr"], "iterations":
               float(run.read("splitting/iterations")[point].mean()), "mfpt": t,
               "mfpt_se": se, "exact": exact, "exact_from": source,
               "z_exact": math.log(t / exact) / (se / t),
               "cost_per_run": float(run.read("splitting/cost")[point].mean()),
               "warning": est["warning"]}
        # Trajectory-steps for a 10 % relative standard error: AMS scales its measured cost by
        # (its relative SE / 0.1)^2; brute force needs 100 escapes (exponential escape times,
        # coefficient of variation 1) of exact mean length each.
        total = row["cost_per_run"] * est["runs"]
        row["ams_steps_10pct"] = total * (se / t / 0.1) ** 2
        row["brute_steps_10pct"] = exact / 0.1 ** 2
        bf = brute_rows.get(round(eta, 6))
        if bf is not None:
            row["brute"], row["brute_se"] = bf["mean_steps"], bf["se_steps"]
            row["z_brute"] = (t - bf["mean_steps"]) / math.hypot(se, bf["se_steps"])
            checks.append(check.check(f"AMS vs brute force, eta {eta:g}",
                                      abs(row["z_brute"]) <= Z,
                                      f"{t:.4g} vs {bf['mean_steps']:.4g}: z = "
                                      f"{row['z_brute']:+.2f}"))
        checks.append(check.check(f"AMS vs exact ({source}), eta {eta:g}",
                                  abs(row["z_exact"]) <= Z,
                                  f"{t:.4g} vs {exact:.4g}: z = {row['z_exact']:+.2f}"))
        rows.append(row)
    two_du = float(analysis.langevin_mfpt(model, rows[0]["eta"], start, target,
                                          "below")["kramers_slope"])
    x = np.array([1.0 / r["eta"] for r in rows])
    y = np.array([math.log(r["eta"] * r["mfpt"]) for r in rows])
    sy = np.array([r["mfpt_se"] / r["mfpt"] for r in rows])
    s, c, cov, chi2 = fit(x, y, sy)
    s_exact, c_exact = fit(x, [math.log(r["eta"] * r["exact"]) for r in rows], sy)[:2]
    bias = abs(s_exact - two_du)
    s_se = math.sqrt(cov[0, 0])
    checks.append(check.check("slope vs 2 dU", abs(s - two_du) <= Z * s_se + bias,
                              f"|{s:.5f} - {two_du:.5f}| = {abs(s - two_du):.5f} <= "
                              f"3*{s_se:.5f} + finite-eta {bias:.5f}"))
    scale = (PAPER["dV"] / PAPER["Sigma_B"]) / (two_du / 2.0)
    lever = np.array([scale / PAPER["eta"], 1.0])
    log_steps = float(lever @ np.array([s, c]) - math.log(PAPER["eta"]))
    log_se = float(math.sqrt(lever @ cov @ lever))
    summary = {"2dU": two_du, "slope": s, "slope_se": s_se, "slope_exact": s_exact,
               "intercept": c, "chi2_dof": chi2, "barrier_scale": scale,
               "paper_log10_steps": log_steps / math.log(10),
               "paper_log10_se": log_se / math.log(10),
               "paper_log10_exact_line": (lever @ np.array([s_exact, c_exact])
                                          - math.log(PAPER["eta"])) / math.log(10),
               "ams_seconds": seconds}
    return {"rows": rows, "checks": checks, "summary": summary, "brute": brute}


def figure(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, summary = result["rows"], result["summary"]
    inv = np.array([1.0 / r["eta"] for r in rows])
    t = np.array([r["mfpt"] for r in rows])
    se = np.array([r["mfpt_se"] for r in rows])
    exact = np.array([r["exact"] for r in rows])
    fig, (ax, res) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.errorbar(inv, np.log10(t), yerr=1.96 * se / t / math.log(10), fmt="o", ms=5,
                label="AMS (95 % interval)", zorder=3)
    brute = [(1 / r["eta"], r["brute"], r["brute_se"]) for r in rows if "brute" in r]
    extra = [(1 / b["eta"], b["mean_steps"], b["se_steps"]) for b in result["brute"]["rows"]
             if not any(abs(b["eta"] - r["eta"]) < 1e-9 for r in rows)]
    if brute or extra:
        bx, by, bs = map(np.array, zip(*(brute + extra)))
        ax.errorbar(bx, np.log10(by), yerr=1.96 * bs / by / math.log(10), fmt="s", mfc="none",
                    ms=8, color="C3", label="brute force (f1_escape)")
    grid = np.linspace(0.7 * inv.min(), inv.max() * 1.05, 200)
    ax.plot(grid, (summary["slope"] * grid + summary["intercept"] + np.log(grid))
            / math.log(10), "C0--", lw=1,
            label=f"fit: slope {summary['slope']:.4f} ± {summary['slope_se']:.4f} "
                  f"(2 dU = {summary['2dU']:.4f})")
    ax.plot(inv, np.log10(exact), "k.", ms=4, label="exact (SGD chain / diffusion)")
    ax.axhline(15, color="grey", lw=0.8, ls=":")
    ax.text(grid[0], 15.3, "1e15 steps", color="grey", fontsize=8)
    ax.set_ylabel("log10 mean escape steps")
    ax.set_title("F1: escape from well B, SGD (noise gaussian), dV = 0.2")
    ax.text(0.03, 0.62, f"extrapolated to SCIENCE's dV = 100, eta = 0.01:\n"
                        f"10^({summary['paper_log10_steps']:.1f} ± "
                        f"{summary['paper_log10_se']:.1f}) steps (SCIENCE: ~10^1087)",
            transform=ax.transAxes, fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "grey"})
    ax.legend(fontsize=8, loc="lower right")
    res.errorbar(inv, t / exact - 1, yerr=1.96 * se / exact, fmt="o", ms=4)
    res.axhline(0, color="k", lw=0.8)
    res.set_xlabel("1 / eta")
    res.set_ylabel("AMS / exact - 1")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(result):
    cols = ("eta", "p", "iterations", "mfpt", "mfpt_se", "exact", "exact_from", "z_exact",
            "brute", "z_brute", "cost_per_run", "ams_steps_10pct", "brute_steps_10pct")
    print("  ".join(f"{c:>12}" for c in cols))
    for r in result["rows"]:
        print("  ".join(f"{check.fmt(r.get(c)):>12}" if not isinstance(r.get(c), str)
                        else f"{r[c]:>12}" for c in cols))
    for key, value in result["summary"].items():
        print(f"{key}: {check.fmt(value, 6)}")
    for c in result["checks"]:
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['check']}: {c['detail']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (the test)")
    parser.add_argument("--outdir", help="folder for the run files (default: a temporary one)")
    parser.add_argument("--figure", default=str(HERE / "f1_paper_scale.png"))
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.outdir or tmp, args.quick)
    report(result)
    if args.figure:
        figure(result, args.figure)
        print(f"figure: {args.figure}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    return 0 if all(c["passed"] for c in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
