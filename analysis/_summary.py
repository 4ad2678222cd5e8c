"""Per-point summary of a run file: estimates, intervals and theory, as a dict / JSON / table."""

from __future__ import annotations

import json
import math

import numpy as np

from . import _estimators as est
from . import _theory
from ._read import RunFile, open_run


def _flatten(table: dict, prefix: str) -> dict:
    flat = {}
    for key, value in table.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def point_params(params: dict) -> dict:
    """The model, dynamics and init of one point as ``{dotted.key: value}``."""
    flat = {}
    for table in ("model", "dynamics", "init"):
        flat.update(_flatten(params.get(table, {}), table))
    return flat


def time_step(params: dict):
    """``dt`` of the point's dynamics (langevin), or None: time = steps * dt."""
    dynamics = params.get("dynamics", {})
    dt = dynamics.get("dt")
    return float(dt) if dt is not None else None


def histogram_data(run: RunFile, point: int, dim: int = 0):
    """(counts, edges, outside, batch_counts or None) of one point and state component."""
    counts = run.read("histogram/counts")[point, dim]
    edges = run.read("histogram/edges")
    outside = run.read("histogram/outside")[point, dim] if run.has("histogram/outside") else None
    batch = run.read("histogram/batch_counts")[point, :, dim] if run.has("histogram/batch_counts") else None
    return counts, edges, outside, batch


def _stop_steps(run: RunFile, point: int):
    """Steps at which trajectories stopped early (diverged), for censoring; None if unknown."""
    if run.has("divergence/steps"):
        return run.read("divergence/steps")[point]
    return None


def summarize_point(run: RunFile, point: int) -> dict:
    """Estimates (with stderr and 95 % interval) and theory for sweep point ``point``."""
    params = run.params(point)
    dt = time_step(params)
    horizon = run.steps
    out = {"point": point, "params": point_params(params), "swept": run.swept_values(point)}
    if dt is not None:
        out["dt"] = dt

    if run.has("final/theta"):
        out["final"] = est.final_moments(run.read("final/theta")[point, :, 0])

    histogram = None
    if run.has("histogram/counts") and run.has("histogram/edges"):
        counts, edges, outside, batch = histogram_data(run, point)
        dens = est.stationary_density(counts, edges, outside, batch)
        histogram = {"edges": edges, "counts": counts, "outside": outside}
        out["histogram"] = {k: dens[k] for k in ("visits", "outside_fraction", "groups", "mean",
                                                  "mean_stderr", "mean_ci95", "var")}
        rel = dens["stderr"] / np.where(dens["density"] > 0, dens["density"], np.nan)
        out["histogram"]["median_relative_stderr"] = float(np.nanmedian(rel)) if np.any(np.isfinite(rel)) else None

    if run.has("occupancy/counts"):
        occ = est.occupancy_fractions(run.read("occupancy/counts")[point])
        entry = {"fraction": occ["fraction"], "stderr": occ["stderr"],
                 "ci95": [list(pair) for pair in zip(occ["ci95_low"], occ["ci95_high"])]}
        boundaries = run.group_attrs("occupancy").get("boundaries")
        if boundaries is None:
            boundaries = params.get("observables", {}).get("occupancy", {}).get("boundaries")
        if boundaries is not None and run.has("final/theta"):
            boundaries = np.atleast_1d(np.asarray(boundaries, dtype=np.float64))
            final = est.region_fractions(run.read("final/theta")[point, :, 0], boundaries)
            entry["boundaries"] = boundaries
            entry["final_fraction"] = final["fraction"]
            entry["final_ci95"] = [list(pair) for pair in zip(final["ci95_low"], final["ci95_high"])]
        out["occupancy"] = entry

    stop = _stop_steps(run, point)
    if run.has("first_passage/steps"):
        out["first_passage"] = est.first_passage(run.read("first_passage/steps")[point], horizon,
                                                 censor_steps=stop, dt=dt)
    if run.has("divergence/steps"):
        out["divergence"] = est.divergence(run.read("divergence/steps")[point], horizon, dt=dt)

    if run.has("lyapunov/log_growth"):
        steps_run = run.read("lyapunov/steps")[point] if run.has("lyapunov/steps") else horizon
        out["lyapunov"] = est.lyapunov(run.read("lyapunov/log_growth")[point], steps_run, dt=dt,
                                       horizon=horizon)

    if run.has("timeseries/mean") and run.has("timeseries/steps"):
        steps = run.read("timeseries/steps")
        mean = run.read("timeseries/mean")[point, :, 0]
        var = run.read("timeseries/var")[point, :, 0]
        count = run.read("timeseries/count")[point] if run.has("timeseries/count") else run.trajectories
        ts = est.timeseries(mean, var, count)
        entry = {"last_step": int(steps[-1]), "mean": float(ts["mean"][-1]), "stderr": float(ts["stderr"][-1]),
                 "ci95": (float(ts["ci95_low"][-1]), float(ts["ci95_high"][-1]))}
        if run.has("timeseries/loss_mean"):
            entry["loss_mean"] = float(run.read("timeseries/loss_mean")[point][-1])
        out["timeseries"] = entry

    out["theory"] = _theory.point_theory(params, histogram)
    return out


def summarize(run) -> dict:
    """Summary of every sweep point of a run file (a path or an open :class:`RunFile`).

    ``{"file", "trajectories", "steps", "sweep": {key: [values]}, "points": [per point]}``; each
    point has ``params`` and, where the data exist, ``final``, ``histogram``, ``occupancy``,
    ``first_passage``, ``divergence``, ``lyapunov``, ``timeseries``, and ``theory``.
    Units: steps, and time (= steps * dt) in the ``*_time`` entries for dynamics with a dt.
    """
    if not isinstance(run, RunFile):
        run = open_run(run)
    return {
        "file": run.path,
        "format_version": run.attrs.get("format_version"),
        "model": run.experiment["model"]["name"],
        "dynamics": run.experiment["dynamics"]["name"],
        "trajectories": run.trajectories,
        "steps": run.steps,
        "sweep": {k: v for k, v in run.sweep.items()},
        "points": [summarize_point(run, p) for p in range(run.points)],
    }


def jsonable(value):
    """Plain JSON types: arrays/tuples -> lists, numpy scalars -> Python, NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(summary: dict) -> str:
    """The summary as strict JSON (non-finite numbers become null)."""
    return json.dumps(jsonable(summary), indent=2, allow_nan=False)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _pm(estimate, stderr, ci) -> str:
    text = _fmt(estimate)
    if stderr is not None and isinstance(stderr, float) and math.isfinite(stderr):
        text += f" ± {_fmt(stderr)}"
    if ci is not None:
        text += f"  95% [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return text


def summary_rows(point: dict) -> list:
    """(section, quantity, text) rows of one point's summary, for the table and the report."""
    rows = []
    if "final" in point:
        f = point["final"]
        rows.append(("final", "mean", _pm(f["mean"], f["mean_stderr"], f["mean_ci95"])))
        rows.append(("final", "var", _pm(f["var"], f["var_stderr"], f["var_ci95"])))
    if "histogram" in point:
        h = point["histogram"]
        rows.append(("histogram", "mean", _pm(h["mean"], h["mean_stderr"], h["mean_ci95"])))
        rows.append(("histogram", "var", _fmt(h["var"])))
        rows.append(("histogram", "visits (outside fraction)", f"{h['visits']} ({_fmt(h['outside_fraction'])})"))
    if "occupancy" in point:
        o = point["occupancy"]
        for k, frac in enumerate(o["fraction"]):
            rows.append(("occupancy", f"region {k} time fraction", _pm(frac, float(o["stderr"][k]), o["ci95"][k])))
            if "final_fraction" in o:
                rows.append(("occupancy", f"region {k} final fraction",
                             _pm(o["final_fraction"][k], None, o["final_ci95"][k])))
    if "first_passage" in point:
        fp = point["first_passage"]
        rows.append(("first_passage", "events (censored fraction)",
                     f"{fp['events']} ({_fmt(fp['censored_fraction'])})"))
        label = "restricted mean steps" if fp.get("restricted") else "mean steps"
        rows.append(("first_passage", label, _pm(fp.get("mean_steps"), fp.get("mean_stderr"), fp.get("mean_ci95"))))
        rows.append(("first_passage", "median steps", _pm(fp["median_steps"], None, fp["median_ci95"])))
        rows.append(("first_passage", "rate per step", _pm(fp["rate_per_step"], fp["rate_stderr"], fp["rate_ci95"])))
        if "mean_time" in fp:
            rows.append(("first_passage", "restricted mean time" if fp.get("restricted") else "mean time",
                         _pm(fp["mean_time"], fp["mean_time_stderr"], fp["mean_time_ci95"])))
            rows.append(("first_passage", "rate per time", _pm(fp["rate_per_time"], None, fp["rate_per_time_ci95"])))
    if "divergence" in point:
        d = point["divergence"]
        rows.append(("divergence", "fraction diverged", _pm(d["fraction"], None, d["fraction_ci95"])))
        rows.append(("divergence", "rate per step", _pm(d["rate_per_step"], None, d["rate_ci95"])))
    if "lyapunov" in point:
        ly = point["lyapunov"]
        rows.append(("lyapunov", "exponent per step", _pm(ly["estimate"], ly["stderr"], ly["ci95"])))
        if ly.get("warning"):
            rows.append(("lyapunov", "warning", ly["warning"]))
        if "estimate_per_time" in ly:
            rows.append(("lyapunov", "exponent per time",
                         _pm(ly["estimate_per_time"], ly["stderr_per_time"], ly["ci95_per_time"])))
    if "timeseries" in point:
        ts = point["timeseries"]
        rows.append(("timeseries", f"mean at step {ts['last_step']}", _pm(ts["mean"], ts["stderr"], ts["ci95"])))
    for key, value in point.get("theory", {}).items():
        if key == "unavailable":
            continue
        rows.append(("theory", key, _fmt(value)))
    return rows


def format_table(summary: dict) -> str:
    """Human-readable text table of a summary, one block per sweep point."""
    lines = [f"{summary['file']}: {summary['model']} / {summary['dynamics']}, "
             f"{summary['trajectories']} trajectories x {summary['steps']} steps, {len(summary['points'])} point(s)"]
    for point in summary["points"]:
        lines.append("")
        swept = ", ".join(f"{k} = {_fmt(v)}" for k, v in point["swept"].items())
        lines.append(f"point {point['point']}" + (f" ({swept})" if swept else ""))
        rows = summary_rows(point)
        width = max((len(f"{s}.{q}") for s, q, _ in rows), default=10)
        for section, quantity, text in rows:
            lines.append(f"  {f'{section}.{quantity}':<{width}}  {text}")
    return "\n".join(lines)
