"""HTML report with PNG figures: estimates with 95 % bands beside the theory curves."""

from __future__ import annotations

import copy
import html
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import _estimators as est  # noqa: E402
from . import _theory  # noqa: E402
from ._read import RunFile, _set_dotted, open_run  # noqa: E402
from ._summary import _two_time_scale_lines, histogram_data, summarize, summary_rows, time_step  # noqa: E402

_MAX_CURVES = 6  # points drawn in one panel; larger sweeps are thinned evenly


def _shown_points(run: RunFile) -> list:
    if run.points <= _MAX_CURVES:
        return list(range(run.points))
    return sorted(set(np.linspace(0, run.points - 1, _MAX_CURVES).round().astype(int).tolist()))


def _label(run: RunFile, point: int) -> str:
    swept = run.swept_values(point)
    if not swept:
        return "run"
    return ", ".join(f"{k.split('.')[-1]}={v:.4g}" for k, v in swept.items())


def _save(fig, out_dir, name) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name


def _figure_density(run, out_dir, points):
    ncols = min(3, len(points))
    nrows = math.ceil(len(points) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax, point in zip(axes.flat, points):
        counts, edges, outside, batch = histogram_data(run, point)
        dens = est.stationary_density(counts, edges, outside, batch)
        ax.stairs(dens["density"], edges, color="C0", label="histogram")
        centres = dens["centres"]
        if np.any(np.isfinite(dens["stderr"])):
            ax.fill_between(centres, dens["ci95_low"], dens["ci95_high"], step="mid", color="C0", alpha=0.3,
                            label="95% (batch means)")
        params = run.params(point)
        if params["dynamics"].get("name") == "langevin":
            try:
                theory = _theory.StationaryDensity(params["model"], float(params["dynamics"]["temperature"]),
                                                   float(edges[0]), float(edges[-1]))
                x = np.linspace(edges[0], edges[-1], 600)
                tv = _theory.total_variation(theory, edges, counts, outside)
                ax.plot(x, theory.pdf(x), color="C3", lw=1.5, label=f"Fokker-Planck (TV {tv:.3g})")
            except _theory.TheoryUnavailable:
                pass
        ax.set_xlabel("theta")
        ax.set_ylabel("density (per unit theta)")
        ax.set_title(_label(run, point), fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(points):]:
        ax.axis("off")
    return _save(fig, out_dir, "density.png")


def _figure_survival(run, out_dir, points, summary):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    passage = run.read("first_passage/steps")
    stops = run.read("divergence/steps") if run.has("divergence/steps") else None
    lowest = 1.0
    for colour, point in enumerate(points):
        curve = est.survival_curve(passage[point], run.steps, None if stops is None else stops[point])
        if curve["times"].size == 0:
            continue
        # Only where the estimate is positive: a log axis cannot show S = 0 after the last
        # event, which would otherwise draw as a vertical drop.
        keep = curve["survival"] > 0
        times = np.concatenate(([0.0], curve["times"][keep]))
        surv = np.concatenate(([1.0], curve["survival"][keep]))
        ax.step(times, surv, where="post", color=f"C{colour}", label=f"{_label(run, point)} Kaplan-Meier")
        low = np.where(curve["ci95_low"][keep] > 0, curve["ci95_low"][keep], np.nan)
        ax.fill_between(curve["times"][keep], low, curve["ci95_high"][keep], step="post",
                        color=f"C{colour}", alpha=0.25)
        lowest = min(lowest, float(surv.min()))
        horizon = float(times[-1]) if times.size > 1 else float(run.steps)
        rate = summary["points"][point]["first_passage"]["rate_per_step"]
        if rate and np.isfinite(rate) and rate > 0:
            t = np.linspace(0, horizon, 200)
            ax.plot(t, np.exp(-rate * t), color=f"C{colour}", ls="--", lw=1,
                    label=f"exp(-{rate:.3g} t) (fitted rate)")
        prefix = ("first_passage" if run.experiment["dynamics"]["name"] == "langevin"
                  else "first_passage_sde")
        log_mean = summary["points"][point].get("theory", {}).get(f"{prefix}_log_mean_steps")
        if log_mean is not None and np.isfinite(log_mean):
            t = np.linspace(0, horizon, 200)
            ax.plot(t, np.exp(-t / np.exp(log_mean)), color=f"C{colour}", ls=":", lw=1.2,
                    label="exp(-t / MFPT), the diffusion's MFPT")
    ax.set_yscale("log")
    ax.set_ylim(max(lowest * 0.3, 1e-6), 1.5)
    ax.set_xlabel("step t")
    ax.set_ylabel("survival P(first passage > t)")
    ax.set_title("first passage: Kaplan-Meier with 95% band, fitted exponential (dashed)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, out_dir, "survival.png")


def _figure_divergence_lyapunov(run, out_dir, points, summary):
    has_div = run.has("divergence/steps")
    has_lyap = run.has("lyapunov/log_growth")
    panels = has_div + has_lyap
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 4.0), squeeze=False)
    axes = list(axes.flat)
    if has_div:
        ax = axes.pop(0)
        div = run.read("divergence/steps")
        for colour, point in enumerate(points):
            curve = est.divergence_curve(div[point], run.steps)
            ax.plot(curve["steps"], curve["fraction"], color=f"C{colour}", label=_label(run, point))
            ax.fill_between(curve["steps"], curve["ci95_low"], curve["ci95_high"], color=f"C{colour}", alpha=0.25)
        ax.set_xlabel("step t")
        ax.set_ylabel("fraction diverged by step t")
        ax.set_title("divergence (95% Wilson band)", fontsize=9)
        ax.legend(fontsize=7)
    if has_lyap:
        ax = axes.pop(0)
        growth = run.read("lyapunov/log_growth")
        steps_run = run.read("lyapunov/steps") if run.has("lyapunov/steps") else np.full(growth.shape, run.steps)
        for colour, point in enumerate(points):
            ok = (steps_run[point] > 0) & np.isfinite(growth[point])
            per_step = growth[point][ok] / steps_run[point][ok]
            ax.hist(per_step, bins=40, density=True, histtype="step", color=f"C{colour}", label=_label(run, point))
            ly = summary["points"][point]["lyapunov"]
            ax.axvspan(ly["ci95"][0], ly["ci95"][1], color=f"C{colour}", alpha=0.3)
            theory = summary["points"][point]["theory"].get("lyapunov")
            if theory is not None and math.isfinite(theory):
                ax.axvline(theory, color=f"C{colour}", ls="--", lw=1.5)
        ax.set_xlabel("log growth per step (per trajectory)")
        ax.set_ylabel("density")
        ax.set_title("Lyapunov: per-trajectory exponents, 95% CI of the mean (band), exact (dashed)", fontsize=8)
        ax.legend(fontsize=7)
    return _save(fig, out_dir, "divergence_lyapunov.png")


def _figure_occupancy(run, out_dir, points, summary):
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    width = 0.8 / len(points)
    for colour, point in enumerate(points):
        occ = summary["points"][point]["occupancy"]
        fraction = np.asarray(occ["fraction"])
        ci = np.asarray(occ["ci95"], dtype=np.float64)
        x = np.arange(fraction.size) + colour * width
        ax.bar(x, fraction, width=width, color=f"C{colour}", label=_label(run, point),
               yerr=np.abs(np.vstack((fraction - ci[:, 0], ci[:, 1] - fraction))), capsize=3)
    ax.set_xticks(np.arange(fraction.size) + 0.4 - width / 2)
    ax.set_xticklabels([f"region {k}" for k in range(fraction.size)])
    ax.set_ylabel("fraction of steps")
    ax.set_ylim(0, 1)
    ax.set_title("occupancy with 95% intervals", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "occupancy.png")


def _figure_timeseries(run, out_dir, points):
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = run.read("timeseries/steps")
    mean = run.read("timeseries/mean")
    var = run.read("timeseries/var")
    count = run.read("timeseries/count") if run.has("timeseries/count") else None
    for colour, point in enumerate(points):
        ts = est.timeseries(mean[point, :, 0], var[point, :, 0],
                            run.trajectories if count is None else count[point])
        ax.plot(steps, ts["mean"], color=f"C{colour}", label=_label(run, point))
        ax.fill_between(steps, ts["ci95_low"], ts["ci95_high"], color=f"C{colour}", alpha=0.3)
    if run.group_attrs("timeseries").get("spacing") == "log":
        ax.set_xscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("ensemble mean of theta")
    ax.set_title("timeseries: mean with 95% band", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "timeseries.png")


def _figure_paths(run, out_dir, points):
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = run.read("paths/steps")
    theta = run.read("paths/theta")
    point = points[0]
    for m in range(theta.shape[1]):
        ax.plot(steps, theta[point, m, :, 0], lw=0.8)
    ax.set_xlabel("step t")
    ax.set_ylabel("theta")
    ax.set_title(f"sample paths ({_label(run, point)})", fontsize=9)
    return _save(fig, out_dir, "paths.png")


def _dense_theory(run: RunFile, key: str, values: np.ndarray) -> tuple:
    """Theory evaluated on a fine grid of one swept key (other keys at point 0's values)."""
    base = run.params(0)
    grid = np.linspace(values.min(), values.max(), 40)
    theories = []
    for value in grid:
        params = copy.deepcopy(base)
        _set_dotted(params, key, float(value))
        theories.append(_theory.point_theory(params))
    return grid, theories


def _figure_sweep(run, out_dir, summary, key):
    values = run.sweep[key]
    points = summary["points"]
    grid, theories = _dense_theory(run, key, values) if len(run.sweep) == 1 else (None, None)
    panels = []
    if all("lyapunov" in p for p in points):
        panels.append(("lyapunov", "Lyapunov exponent per step",
                       [p["lyapunov"]["estimate"] for p in points], [p["lyapunov"]["ci95"] for p in points],
                       "lyapunov", False))
    if all("first_passage" in p for p in points):
        panels.append(("first_passage", "mean first-passage steps" + (" (restricted)" if any(
            p["first_passage"].get("restricted") for p in points) else ""),
            [p["first_passage"]["mean_steps"] for p in points], [p["first_passage"]["mean_ci95"] for p in points],
            "first_passage_mean_steps" if run.experiment["dynamics"]["name"] == "langevin"
            else "first_passage_sde_mean_steps", True))
    if all("final" in p for p in points):
        panels.append(("final_var", "stationary variance (final states)", [p["final"]["var"] for p in points],
                       [p["final"]["var_ci95"] for p in points], "stationary_var", False))
    if all("divergence" in p for p in points):
        panels.append(("divergence", "fraction diverged", [p["divergence"]["fraction"] for p in points],
                       [p["divergence"]["fraction_ci95"] for p in points], None, False))
    if all("occupancy" in p for p in points):
        panels.append(("occupancy", "time fraction in region 0", [p["occupancy"]["fraction"][0] for p in points],
                       [p["occupancy"]["ci95"][0] for p in points], None, False))
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax, (name, ylabel, estimate, ci, theory_key, log) in zip(axes.flat, panels):
        estimate = np.asarray(estimate, dtype=np.float64)
        ci = np.asarray(ci, dtype=np.float64)
        err = np.abs(np.vstack((estimate - ci[:, 0], ci[:, 1] - estimate)))
        ax.errorbar(values, estimate, yerr=err, fmt="o", color="C0", capsize=3, label="estimate, 95% CI")
        if theory_key is not None:
            if grid is not None:
                curve = np.array([t.get(theory_key, np.nan) if t.get(theory_key) is not None else np.nan
                                  for t in theories], dtype=np.float64)
                if np.any(np.isfinite(curve)):
                    ax.plot(grid, curve, color="C3", label="theory")
            else:
                at_points = np.array([p["theory"].get(theory_key) or np.nan for p in points], dtype=np.float64)
                if np.any(np.isfinite(at_points)):
                    ax.plot(values, at_points, "x", color="C3", label="theory")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    return _save(fig, out_dir, f"sweep_{key.replace('.', '_')}.png")


def _figure_escape(run, out_dir, summary, key):
    """log mean escape steps against 1/temperature (or 1/lr) with the Kramers slope 2 dU."""
    points = summary["points"]
    if not all("first_passage" in p for p in points):
        return None
    inverse = 1.0 / run.sweep[key]
    mean = np.array([p["first_passage"].get("mean_steps", np.nan) for p in points], dtype=np.float64)
    ci = np.array([p["first_passage"].get("mean_ci95", (np.nan, np.nan)) for p in points], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    ok = mean > 0
    restricted = np.array([bool(p["first_passage"].get("restricted")) for p in points])
    low = np.log(np.clip(ci[:, 0], 1e-300, None))
    for mask, style, label in ((ok & ~restricted, "o", "log mean steps (95% CI)"),
                               (ok & restricted, "v", "censored: restricted mean, a lower bound")):
        if mask.any():
            ax.errorbar(inverse[mask], np.log(mean[mask]),
                        yerr=np.abs(np.vstack((np.log(mean[mask]) - low[mask],
                                               np.log(ci[mask, 1]) - np.log(mean[mask])))),
                        fmt=style, mfc="none" if style == "v" else None, capsize=3, label=label)
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(inverse[ok], np.log(mean[ok]), 1)
        x = np.linspace(inverse.min(), inverse.max(), 50)
        ax.plot(x, slope * x + intercept, color="C0", ls=":", label=f"fit slope {slope:.3g}")
    prefix = "first_passage" if run.experiment["dynamics"]["name"] == "langevin" else "first_passage_sde"
    exact = np.array([p["theory"].get(f"{prefix}_log_mean_steps", np.nan) for p in points], dtype=np.float64)
    if np.any(np.isfinite(exact)):
        order = np.argsort(inverse)
        ax.plot(inverse[order], exact[order], color="C3",
                label="the diffusion's MFPT (quadrature; Euler-Maruyama bias not included)")
    slopes = [p["theory"].get("kramers_slope") for p in points if p["theory"].get("kramers_slope") is not None]
    kramers = np.array([p["theory"].get(f"{prefix}_kramers_steps", np.nan) or np.nan for p in points],
                       dtype=np.float64)
    if slopes and np.any(np.isfinite(kramers)):
        order = np.argsort(inverse)
        ax.plot(inverse[order], np.log(kramers[order]), color="C2", ls="--",
                label=f"Kramers (slope 2dU = {slopes[0]:.3g})")
    ax.set_xlabel(f"1 / {key}")
    ax.set_ylabel("log mean first-passage steps")
    ax.set_title("escape time against inverse noise", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "escape_arrhenius.png")


def _figure_regimes(run, out_dir, summary):
    """Loss curves (log-log) with the regime boundaries; tracking and slow errors beside them."""
    steps = run.read("timeseries/steps").astype(np.float64)
    loss = run.read("timeseries/loss_mean")
    positive = steps > 0
    has_errors = run.has("timeseries/tracking_error") and run.has("timeseries/slow_error")
    fig, axes = plt.subplots(1, 1 + has_errors, figsize=(6.2 * (1 + has_errors), 4.3), squeeze=False)
    ax = axes[0, 0]
    groups = summary["regimes"][:_MAX_CURVES]
    for colour, group in enumerate(groups):
        label = ", ".join(f"{k.split('.')[-1]}={v:.4g}" for k, v in group["swept"].items()) or "run"
        for point in group["points"]:
            ax.plot(steps[positive], loss[point, positive], color=f"C{colour}", lw=0.5, alpha=0.35)
        mean = loss[group["points"]].mean(axis=0)
        ax.plot(steps[positive], mean[positive], color=f"C{colour}", lw=1.8,
                label=f"{label} (mean of {group['replicates']})")
        for key, style in (("end_first_descent", "--"), ("start_second_descent", ":")):
            entry = group[key]
            if math.isfinite(entry["estimate"]):
                ax.axvline(entry["estimate"], color=f"C{colour}", ls=style, lw=1.2)
                if all(math.isfinite(c) for c in entry["ci95"]):
                    ax.axvspan(entry["ci95"][0], entry["ci95"][1], color=f"C{colour}", alpha=0.2)
        if math.isfinite(group["plateau_loss"]):
            ax.axhline(group["plateau_loss"], color=f"C{colour}", lw=0.6, alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("ensemble-mean loss")
    ax.set_title("loss: end of first descent (--), start of second descent (:), 95% bands", fontsize=9)
    ax.legend(fontsize=7)
    if has_errors:
        ax = axes[0, 1]
        tracking = run.read("timeseries/tracking_error")
        slow = run.read("timeseries/slow_error")
        for colour, group in enumerate(groups):
            ax.plot(steps[positive], tracking[group["points"]].mean(axis=0)[positive], color=f"C{colour}",
                    label="|x - lambda(y)|^2" if colour == 0 else None)
            ax.plot(steps[positive], slow[group["points"]].mean(axis=0)[positive], color=f"C{colour}", ls="--",
                    label="|y - y*|^2" if colour == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_ylabel("ensemble mean")
        ax.set_title("tracking error (solid) and slow error (dashed)", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, out_dir, "regimes.png")


def _figure_steady_state(run, out_dir, summary):
    """Steady-state error against a and against b/a, with the fit C1 a + C2 b/a."""
    steady = summary["steady_state_error"]
    rows = steady["points"]
    fit = steady.get("fit")
    a = np.array([r["a"] for r in rows])
    ratio = np.array([r["b_over_a"] for r in rows])
    eps = np.array([r["eps"] for r in rows])
    error = np.array([r["error"] for r in rows])
    ci = np.array([r["ci95"] for r in rows], dtype=np.float64)
    err = np.abs(np.vstack((error - ci[:, 0], ci[:, 1] - error)))
    fig, axes = plt.subplots(1, 3 if fit else 2, figsize=(15.0 if fit else 10.5, 4.2), squeeze=False)
    for ax, x, name, other, other_name in ((axes[0, 0], a, "a", eps, "eps"), (axes[0, 1], ratio, "b/a", a, "a")):
        for colour, value in enumerate(np.unique(other)[:10]):
            sel = other == value
            order = np.argsort(x[sel])
            ax.errorbar(x[sel][order], error[sel][order], yerr=err[:, sel][:, order], fmt="o", capsize=3,
                        color=f"C{colour}", label=f"{other_name} = {value:.4g}")
            if fit:
                ax.plot(x[sel][order], np.asarray(fit["fitted"])[sel][order], color=f"C{colour}", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("E|x - lambda(y*)|^2 + E|y - y*|^2")
        ax.legend(fontsize=7)
    if fit:
        terms = " + ".join(f"{c:.3g} {t}" for c, t in zip(fit["coefficients"], fit["terms"]))
        axes[0, 0].set_title(f"points: measured (95% CI); lines: fit {terms}", fontsize=9)
        axes[0, 1].set_title("the same against b/a", fontsize=9)
        ax = axes[0, 2]
        ax.axhline(0.0, color="k", lw=0.8)
        ax.errorbar(a, fit["relative_residuals"], yerr=np.abs(err / np.asarray(fit["fitted"])), fmt="o",
                    capsize=3, color="C0")
        ax.set_xscale("log")
        ax.set_xlabel("a")
        ax.set_ylabel("(measured - fit) / fit")
        ax.set_title(f"residuals: chi2/dof = {fit['chi2']:.3g}/{fit['dof']}", fontsize=9)
    return _save(fig, out_dir, "steady_state.png")


def _html_table(summary: dict) -> str:
    points = summary["points"]
    rows_per_point = [summary_rows(p) for p in points]
    keys = []
    for rows in rows_per_point:
        for section, quantity, _ in rows:
            if (section, quantity) not in keys:
                keys.append((section, quantity))
    lookup = [{(s, q): text for s, q, text in rows} for rows in rows_per_point]
    head = "".join(f"<th>point {p['point']}<br>{html.escape(', '.join(f'{k} = {v:.4g}' for k, v in p['swept'].items()))}</th>"
                   for p in points)
    body = []
    for section, quantity in keys:
        cells = "".join(f"<td>{html.escape(row.get((section, quantity), '-'))}</td>" for row in lookup)
        body.append(f"<tr><td>{html.escape(section)}</td><td>{html.escape(quantity)}</td>{cells}</tr>")
    return (f"<table><thead><tr><th>section</th><th>quantity</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def write_report(run, out_dir) -> str:
    """Write ``index.html`` (summary table, experiment, figures) and PNGs into ``out_dir``.

    Figures, where the run has the data: density.png (histogram vs Fokker-Planck), survival.png
    (Kaplan-Meier, log scale, exponential fit), divergence_lyapunov.png, occupancy.png,
    timeseries.png, paths.png, regimes.png (two time scales: loss curve with the regime
    boundaries, tracking and slow errors), steady_state.png (error against a and b/a with the
    fit C1 a + C2 b/a), and for sweeps sweep_<key>.png (estimates vs the swept value with
    theory) and escape_arrhenius.png (log mean escape steps vs 1/temperature or 1/lr, Kramers
    slope). Returns the path of index.html.
    """
    if not isinstance(run, RunFile):
        run = open_run(run)
    summary = summarize(run)
    os.makedirs(out_dir, exist_ok=True)
    points = _shown_points(run)
    figures = []
    if run.has("histogram/counts") and run.has("histogram/edges"):
        figures.append(("Stationary density", _figure_density(run, out_dir, points)))
    if run.has("first_passage/steps"):
        figures.append(("First passage", _figure_survival(run, out_dir, points, summary)))
    if run.has("divergence/steps") or run.has("lyapunov/log_growth"):
        figures.append(("Divergence and Lyapunov exponent", _figure_divergence_lyapunov(run, out_dir, points, summary)))
    if run.has("occupancy/counts"):
        figures.append(("Occupancy", _figure_occupancy(run, out_dir, points, summary)))
    if run.has("timeseries/mean") and run.has("timeseries/steps"):
        figures.append(("Timeseries", _figure_timeseries(run, out_dir, points)))
    if run.has("paths/theta") and run.has("paths/steps"):
        figures.append(("Sample paths", _figure_paths(run, out_dir, points)))
    if summary.get("regimes"):
        figures.append(("Regimes: first descent, plateau, second descent", _figure_regimes(run, out_dir, summary)))
    if summary.get("steady_state_error"):
        figures.append(("Steady-state error", _figure_steady_state(run, out_dir, summary)))
    if run.points > 1:
        for key in run.sweep:
            name = _figure_sweep(run, out_dir, summary, key)
            if name:
                figures.append((f"Sweep over {key}", name))
            if key in ("dynamics.temperature", "dynamics.lr") and run.has("first_passage/steps"):
                name = _figure_escape(run, out_dir, summary, key)
                if name:
                    figures.append(("Escape time against inverse noise", name))
    dt = time_step(run.params(0))
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>sgdsim report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #bbb;padding:3px 6px;text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>sgdsim report: {html.escape(os.path.basename(run.path))}</h1>",
        f"<p>{html.escape(summary['model'])} / {html.escape(summary['dynamics'])}; {summary['trajectories']} "
        f"trajectories per point, {summary['steps']} steps, {run.points} point(s)"
        + (f"; dt = {dt:g} (time = steps x dt)" if dt is not None else "") + ". Intervals are 95 %.</p>",
        "<h2>Summary</h2>", _html_table(summary),
    ]
    extra = _two_time_scale_lines(summary)
    if extra:
        parts.append("<h2>Two time scales</h2><pre>" + html.escape("\n".join(extra).strip("\n")) + "</pre>")
    for title, name in figures:
        parts.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(name)}' alt='{html.escape(title)}'>")
    parts.append("<h2>Experiment</h2><pre>" + html.escape(run.attrs.get("experiment", "")) + "</pre></body></html>")
    index = os.path.join(out_dir, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return index
