"""Per-point summary of a run file: estimates, intervals and theory, as a dict / JSON / table."""

from __future__ import annotations

import json
import math

import numpy as np

from . import _estimators as est
from . import _regimes
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


MAX_COORDINATES = 8  # summarise every coordinate up to this dimension; beyond it the first few and |theta|
_FIRST_COORDINATES = 4


def coordinate_labels(dim: int, x_dim=None) -> list:
    """Names of the state coordinates: x0.., y0.. for two-time-scale runs, theta0.. otherwise."""
    if x_dim:
        return [f"x{k}" for k in range(x_dim)] + [f"y{k}" for k in range(dim - x_dim)]
    return [f"theta{k}" for k in range(dim)]


def summarised_coordinates(dim: int) -> list:
    """Coordinates summarised one by one: all of them for dim <= 8, else the first four."""
    return list(range(dim)) if dim <= MAX_COORDINATES else list(range(_FIRST_COORDINATES))


def _coordinates_entry(run: RunFile, point: int) -> dict:
    """Per-coordinate final moments and histogram means of a d-dimensional point (d > 1)."""
    theta = run.read("final/theta")[point]
    dim = theta.shape[-1]
    x_dim = run.attrs.get("x_dim")
    labels = coordinate_labels(dim, x_dim)
    shown = summarised_coordinates(dim)
    entry = {"dim": dim, "x_dim": x_dim, "coordinates": shown, "labels": [labels[k] for k in shown],
             "final": [est.final_moments(theta[:, k]) for k in shown]}
    finite = theta[np.all(np.isfinite(theta), axis=1)]
    entry["final_norm"] = est.final_moments(np.sqrt((finite ** 2).sum(axis=1)))
    if run.has("histogram/counts") and run.has("histogram/edges"):
        per = []
        for k in shown:
            counts, edges, outside, batch = histogram_data(run, point, k)
            dens = est.stationary_density(counts, edges, outside, batch)
            per.append({key: dens[key] for key in ("visits", "outside_fraction", "mean", "mean_stderr",
                                                   "mean_ci95", "var")})
        entry["histogram"] = per
    return entry


def _stop_steps(run: RunFile, point: int):
    """Steps at which trajectories stopped early (diverged), for censoring; None if unknown."""
    if run.has("divergence/steps"):
        return run.read("divergence/steps")[point]
    return None


def _failures(run: RunFile, point: int):
    """Trajectories that became non-finite (or diverged) at point ``point``, or None if none."""
    name = next((n for n in ("divergence/steps", "nonfinite/steps") if run.has(n)), None)
    if name is None:
        return None
    steps = run.read(name)[point]
    failed = steps >= 0
    if not failed.any():
        return None
    what = "diverged or non-finite" if name.startswith("divergence") else "non-finite"
    return {"trajectories": int(failed.sum()), "of": int(steps.size), "what": what,
            "first_step": int(steps[failed].min()), "all": bool(failed.all())}


def summarize_point(run: RunFile, point: int) -> dict:
    """Estimates (with stderr and 95 % interval) and theory for sweep point ``point``."""
    params = run.params(point)
    dt = time_step(params)
    horizon = run.steps
    out = {"point": point, "params": point_params(params), "swept": run.swept_values(point)}
    if dt is not None:
        out["dt"] = dt

    failures = _failures(run, point)
    if failures is not None:
        out["failures"] = failures
    if run.has("final/theta"):
        out["final"] = est.final_moments(run.read("final/theta")[point, :, 0])
        if int(run.attrs.get("dim", 1)) > 1:
            out["coordinates"] = _coordinates_entry(run, point)

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
        for name in ("loss_mean", "tracking_error", "slow_error"):
            if run.has(f"timeseries/{name}"):
                entry[name] = float(run.read(f"timeseries/{name}")[point][-1])
        out["timeseries"] = entry

    tracked = per_trajectory_observables(run, point)
    if tracked:
        out["tracked"] = tracked
    if run.has("splitting/probability"):
        out["splitting"] = splitting_entry(run, point, params, dt)
        return out
    out["theory"] = _theory.point_theory(params, histogram)
    return out


def splitting_entry(run: RunFile, point: int, params: dict, dt) -> dict:
    """A splitting run's estimates at one sweep point (estimators.splitting), with the exact
    answers of 1-D Langevin beside them: P(b before a) from theta_0 (the scale function:
    for start = "init") and the MFPT from theta_0 to b with Kramers' (quadrature; the
    continuous process, so the chain's Euler-Maruyama bias is part of the difference)."""
    spl = params["splitting"]
    boundary = spl.get("start", "boundary") == "boundary"
    entry = est.splitting(run.read("splitting/probability")[point],
                          run.read("splitting/loop_steps")[point] if boundary else None,
                          run.read("splitting/reactive_steps")[point] if boundary else None)
    entry.update(start=spl.get("start", "boundary"), a=spl["a"], b=spl["b"],
                 iterations=float(np.mean(run.read("splitting/iterations")[point])),
                 cost_steps=float(np.mean(run.read("splitting/cost")[point])))
    theory = {}
    init, dyn = params.get("init", {}), params.get("dynamics", {})
    one_d = int(run.attrs.get("dim", 1)) == 1 and spl.get("score", "theta") == "theta"
    if dyn.get("name") == "langevin" and one_d and "value" in init:
        try:
            if not boundary:
                theory["p_exact"] = _theory.langevin_splitting_probability(
                    params["model"], dyn["temperature"], init["value"], spl["a"], spl["b"])
            mfpt = _theory.langevin_mfpt(params["model"], dyn["temperature"], init["value"],
                                         spl["b"])
            theory["mfpt_exact_steps"] = mfpt["time"] / dt
            if mfpt["kramers_time"] is not None:
                theory["mfpt_kramers_steps"] = mfpt["kramers_time"] / dt
        except _theory.TheoryUnavailable as exc:
            theory["unavailable"] = str(exc)
    entry["theory"] = theory
    return entry


def per_trajectory_observables(run: RunFile, point: int) -> dict:
    """Mean and variance, with intervals, of every per-trajectory output of the plug-in
    observables (groups whose ``per_trajectory`` attribute lists their datasets).

    Over the trajectories whose outputs are all finite (a plug-in marks "no value" by a
    non-finite one, e.g. inf); ``missing`` counts the others.
    """
    out = {}
    for group in run.observables():
        attrs = run.group_attrs(group)
        outputs = [str(o) for o in np.atleast_1d(attrs.get("per_trajectory", []))]
        if not outputs or not all(run.has(f"{group}/{o}") for o in outputs):
            continue
        values = {o: np.asarray(run.read(f"{group}/{o}")[point], dtype=np.float64) for o in outputs}
        finite = np.logical_and.reduce([np.isfinite(v) for v in values.values()])
        entry = {"doc": attrs.get("doc", ""), "missing": int(finite.size - finite.sum())}
        for output, v in values.items():
            entry[output] = est.final_moments(v[finite])
        out[group] = entry
    return out


def replicate_groups(run: RunFile) -> list:
    """Sweep points grouped by identical parameters (replicates), in order of first appearance."""
    groups: dict = {}
    for point in range(run.points):
        key = repr(sorted(point_params(run.params(point)).items()))
        groups.setdefault(key, []).append(point)
    return list(groups.values())


def _varying_params(run: RunFile, groups: list) -> list:
    """For each group, the swept keys whose value differs between groups ({} with one group)."""
    swept = [run.swept_values(g[0]) for g in groups]
    keys = [k for k in run.sweep if len({s[k] for s in swept}) > 1]
    return [{k: s[k] for k in keys} for s in swept]


def is_two_time_scale(run: RunFile) -> bool:
    """Whether the run is a two-time-scale run (root attr ``x_dim``, a two-time-scale dynamics)."""
    return (run.attrs.get("x_dim") is not None
            and run.experiment["dynamics"]["name"] in _regimes.TWO_TIME_SCALE_DYNAMICS)


def regimes_summary(run: RunFile, fraction: float = 0.1) -> list:
    """Regime boundaries of each group of replicate points (analysis._regimes.regimes)."""
    if not (is_two_time_scale(run) and run.has("timeseries/loss_mean") and run.has("timeseries/steps")):
        return []
    steps = run.read("timeseries/steps")
    loss = run.read("timeseries/loss_mean")
    groups = replicate_groups(run)
    out = []
    for group, varying in zip(groups, _varying_params(run, groups)):
        entry = {"points": group, "swept": varying}
        entry.update(_regimes.regimes(steps, loss[group], fraction))
        if len(group) < 2:
            entry["note"] = ("one replicate: no error bar; repeat the point in the sweep "
                             "(identical values) or run several seeds")
        out.append(entry)
    return out


def _step_sizes(params: dict) -> tuple:
    dynamics = params["dynamics"]
    eps = float(dynamics["eps"])
    if dynamics["name"] == "two_time_scale":
        a = float(dynamics["a"])
        b = float(dynamics.get("b", eps * a))
        return a, b, eps
    return math.nan, math.nan, eps


def steady_state_summary(run: RunFile, terms=("a", "b/a")) -> dict:
    """Steady-state error E|x - lambda(y*)|^2 + E|y - y*|^2 per point, and its fit over the sweep.

    ``{"points": [{point, a, b, eps, b_over_a, error, stderr, ci95, tracking, slow, ...}],
    "fit": fit_steady_state(...) or absent}``; the fit needs ``two_time_scale`` and more points
    with distinct (a, b) than terms. {} for runs that are not two-time-scale.
    """
    if not (is_two_time_scale(run) and run.has("final/theta")
            and run.experiment["model"]["name"] in _regimes.TWO_TIME_SCALE_MODELS):
        return {}
    x_dim = int(run.attrs["x_dim"])
    theta = run.read("final/theta")
    rows = []
    for point in range(run.points):
        params = run.params(point)
        a, b, eps = _step_sizes(params)
        row = {"point": point, "swept": run.swept_values(point), "a": a, "b": b, "eps": eps,
               "b_over_a": b / a if a > 0 else math.nan}
        row.update(_regimes.steady_state_error(theta[point], params["model"], eps, x_dim))
        rows.append(row)
    out = {"definition": "E|x - lambda(y*)|^2 + E|y - y*|^2 over the final states", "points": rows}
    distinct = {(r["a"], r["b"]) for r in rows if math.isfinite(r["a"])}
    if run.experiment["dynamics"]["name"] == "two_time_scale" and len(distinct) > len(terms):
        out["fit"] = _regimes.fit_steady_state([r["a"] for r in rows], [r["b"] for r in rows],
                                               [r["error"] for r in rows], [r["stderr"] for r in rows], terms)
    return out


def summarize(run) -> dict:
    """Summary of every sweep point of a run file (a path or an open :class:`RunFile`).

    ``{"file", "trajectories", "steps", "sweep": {key: [values]}, "points": [per point]}``; each
    point has ``params`` and, where the data exist, ``final`` (coordinate 0), ``coordinates``
    (d > 1: per-coordinate final moments and histogram means, all coordinates for d <= 8, else
    the first four, and ``final_norm`` of |theta|), ``histogram`` (coordinate 0), ``occupancy``,
    ``first_passage``, ``divergence``, ``lyapunov``, ``timeseries``, and ``theory``.
    Two-time-scale runs add ``regimes`` (regime boundaries per group of replicate points) and
    ``steady_state_error`` (per point, with the fit C1 a + C2 b/a over the sweep).
    Units: steps, and time (= steps * dt) in the ``*_time`` entries for dynamics with a dt.
    """
    if not isinstance(run, RunFile):
        run = open_run(run)
    extra = {}
    regimes = regimes_summary(run)
    if regimes:
        extra["regimes"] = regimes
    if "splitting" in run.experiment:
        extra["splitting"] = {k: run.experiment["splitting"][k]
                              for k in ("runs", "replicas", "kill")}
    steady = steady_state_summary(run)
    if steady:
        extra["steady_state_error"] = steady
    return {
        "file": run.path,
        "format_version": run.attrs.get("format_version"),
        "model": run.experiment["model"]["name"],
        "dynamics": run.experiment["dynamics"]["name"],
        "trajectories": run.trajectories,
        "steps": run.steps,
        "sweep": {k: v for k, v in run.sweep.items()},
        "points": [summarize_point(run, p) for p in range(run.points)],
        **extra,
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
    if "failures" in point:
        f = point["failures"]
        text = (f"{f['trajectories']} of {f['of']} trajectories {f['what']}, the first at step "
                f"{f['first_step']}; estimates below leave out non-finite states")
        if f["all"]:
            text = (f"all {f['of']} trajectories {f['what']}, the first at step "
                    f"{f['first_step']}: the estimates below mean nothing")
        rows.append(("WARNING", "failures", text))
    if "final" in point:
        f = point["final"]
        rows.append(("final", "mean", _pm(f["mean"], f["mean_stderr"], f["mean_ci95"])))
        rows.append(("final", "var", _pm(f["var"], f["var_stderr"], f["var_ci95"])))
    if "coordinates" in point:
        c = point["coordinates"]
        for label, moments in zip(c["labels"], c["final"]):
            rows.append(("final", f"{label} mean", _pm(moments["mean"], moments["mean_stderr"], moments["mean_ci95"])))
            rows.append(("final", f"{label} var", _fmt(moments["var"])))
        rows.append(("final", "|theta| mean", _pm(c["final_norm"]["mean"], c["final_norm"]["mean_stderr"],
                                                  c["final_norm"]["mean_ci95"])))
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
        rate, (rate_low, rate_high) = fp["rate_per_step"], fp["rate_ci95"]
        if rate and rate > 0:
            rows.append(("first_passage", "mean steps from the rate (1/rate)",
                         _pm(1.0 / rate, None, (1.0 / rate_high if rate_high > 0 else math.inf,
                                                1.0 / rate_low if rate_low > 0 else math.inf))))
        if fp.get("restricted"):
            rows.append(("first_passage", "note", "some trajectories had no passage within the "
                         "steps: the restricted mean is the mean of min(T, horizon), a lower bound "
                         "of the mean; 1/rate assumes an exponential escape"))
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
        for name in ("loss_mean", "tracking_error", "slow_error"):
            if name in ts:
                rows.append(("timeseries", f"{name} at step {ts['last_step']}", _fmt(ts[name])))
    for group, entry in point.get("tracked", {}).items():
        for output, m in entry.items():
            if isinstance(m, dict):
                rows.append((group, f"{output} mean", _pm(m["mean"], m["mean_stderr"], m["mean_ci95"])))
                rows.append((group, f"{output} var", _fmt(m["var"])))
        if entry["missing"]:
            rows.append((group, "trajectories without a value", str(entry["missing"])))
    if "splitting" in point:
        sp = point["splitting"]
        rows.append(("splitting", f"p = P(b = {_fmt(sp['b'])} before a = {_fmt(sp['a'])}) "
                                  f"from {'A' if sp['start'] == 'boundary' else 'theta_0'}",
                     _pm(sp["p"], sp["p_stderr"], sp["p_ci95"])
                     + f"  ({sp['runs']} runs, relative stderr {_fmt(sp['relative_stderr'])})"))
        if "mfpt_steps" in sp:
            rows.append(("splitting", "mean first-passage steps",
                         _pm(sp["mfpt_steps"], sp["mfpt_stderr"], sp["mfpt_ci95"])))
        rows.append(("splitting", "iterations a run (cost in steps)",
                     f"{_fmt(sp['iterations'])} ({_fmt(sp['cost_steps'])})"))
        if sp["warning"]:
            rows.append(("splitting", "warning", sp["warning"]))
        for key, value in sp["theory"].items():
            rows.append(("theory", key, value if key == "unavailable" else _fmt(value)))
    for key, value in point.get("theory", {}).items():
        if key == "unavailable":
            continue
        rows.append(("theory", key, _fmt(value)))
    return rows


def format_table(summary: dict) -> str:
    """Human-readable text table of a summary, one block per sweep point."""
    if "splitting" in summary:
        spl = summary["splitting"]
        size = (f"AMS, {spl['runs']} runs x {spl['replicas']} replicas (kill {spl['kill']}), "
                f"paths capped at {summary['steps']} steps")
    else:
        size = f"{summary['trajectories']} trajectories x {summary['steps']} steps"
    lines = [f"{summary['file']}: {summary['model']} / {summary['dynamics']}, {size}, "
             f"{len(summary['points'])} point(s)"]
    failing = [p["point"] for p in summary["points"] if "failures" in p]
    if failing:
        lines.append(f"WARNING: trajectories became non-finite or diverged at point(s) "
                     f"{', '.join(map(str, failing))} (see each point's failures line)")
    for point in summary["points"]:
        lines.append("")
        swept = ", ".join(f"{k} = {_fmt(v)}" for k, v in point["swept"].items())
        lines.append(f"point {point['point']}" + (f" ({swept})" if swept else ""))
        rows = summary_rows(point)
        width = max((len(f"{s}.{q}") for s, q, _ in rows), default=10)
        for section, quantity, text in rows:
            lines.append(f"  {f'{section}.{quantity}':<{width}}  {text}")
    lines += _two_time_scale_lines(summary)
    return "\n".join(lines)


def _boundary_text(entry: dict) -> str:
    return _pm(entry["estimate"], entry["stderr"], entry["ci95"])


def _two_time_scale_lines(summary: dict) -> list:
    lines = []
    for group in summary.get("regimes", []):
        swept = ", ".join(f"{k} = {_fmt(v)}" for k, v in group["swept"].items())
        lines += ["", f"regimes, points {group['points']}" + (f" ({swept})" if swept else "")
                  + f": {group['replicates']} replicate(s), fraction {_fmt(group['fraction'])}"]
        lines.append(f"  end of first descent (steps)     {_boundary_text(group['end_first_descent'])}")
        lines.append(f"  start of second descent (steps)  {_boundary_text(group['start_second_descent'])}")
        lines.append(f"  plateau loss                     {_fmt(group['plateau_loss'])}"
                     f" (middle slope d ln L / d ln t = {_fmt(group['middle_slope'])})")
        for key in ("reason", "note"):
            if key in group:
                lines.append(f"  {key}: {group[key]}")
    steady = summary.get("steady_state_error")
    if steady:
        lines += ["", "steady-state error E|x - lambda(y*)|^2 + E|y - y*|^2 (final states)"]
        lines.append(f"  {'point':>5} {'a':>9} {'b':>9} {'eps':>7} {'b/a':>8}  {'error':>12} {'stderr':>10}"
                     + ("  fit      rel.resid" if "fit" in steady else ""))
        fit = steady.get("fit")
        for k, row in enumerate(steady["points"]):
            line = (f"  {row['point']:>5} {_fmt(row['a']):>9} {_fmt(row['b']):>9} {_fmt(row['eps']):>7} "
                    f"{_fmt(row['b_over_a']):>8}  {_fmt(row['error']):>12} {_fmt(row['stderr']):>10}")
            if fit:
                line += f"  {_fmt(fit['fitted'][k]):<8} {_fmt(fit['relative_residuals'][k])}"
            lines.append(line)
        if fit:
            coefs = ", ".join(f"C[{t}] = {_fmt(c)} ± {_fmt(se)}" for t, c, se in
                              zip(fit["terms"], fit["coefficients"], fit["coefficient_stderr"]))
            lines.append(f"  fit: {coefs}; chi2/dof = {_fmt(fit['chi2'])}/{fit['dof']}, "
                         f"max |relative residual| = {_fmt(fit['max_relative_residual'])}")
    return lines
