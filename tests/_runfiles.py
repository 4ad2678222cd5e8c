"""Synthetic sgdsim run files (SPEC 5 + docs/SPEC.md) written with h5py from numpy draws.

The engine is not needed: every dataset is drawn from a distribution whose answer is known
exactly (normal stationary samples, geometric first-passage steps, binomial Lyapunov sums), so
the analysis estimators can be checked against the truth and against direct numpy computation.
"""

from __future__ import annotations

import math

import h5py
import numpy as np


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").isalnum() else '"' + key + '"'


def to_toml(experiment: dict) -> str:
    """A resolved experiment (tables of scalars, arrays, inline tables) as TOML text."""
    lines = []
    for table, body in experiment.items():
        lines.append(f"[{table}]")
        for key, value in body.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def write_run(path, experiment: dict, datasets: dict, group_attrs: dict | None = None, **root_attrs) -> str:
    """Write a run file: root attrs per SPEC 5 (overridable), the datasets, group attributes."""
    run = experiment["run"]
    attrs = {
        "format": "sgdsim-run", "format_version": 2, "package_version": "0.0.test",
        "experiment": to_toml(experiment), "seed": int(run["seed"]), "trajectories": int(run["trajectories"]),
        "steps": int(run["steps"]), "dtype": run.get("dtype", "float64"), "backend": "numpy",
        "device": "synthetic", "rng": "philox4x32-10", "complete": True, "kernel_seconds": 0.0,
        "compile_seconds": 0.0, "wall_seconds": 0.0, "created": "2026-01-01T00:00:00Z",
    }
    attrs.update(root_attrs)
    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            if value is not None:
                f.attrs[key] = value
        for name, data in datasets.items():
            f.create_dataset(name, data=np.asarray(data))
        for name, items in (group_attrs or {}).items():
            node = f.require_group(name) if name not in f else f[name]
            for key, value in items.items():
                node.attrs[key] = value
    return str(path)


def experiment_table(model: dict, dynamics: dict, *, trajectories: int, steps: int, seed: int = 1,
                     init=None, observables=None, sweep=None) -> dict:
    """A resolved experiment dict (docs/SPEC.md: every table present)."""
    return {
        "run": {"seed": seed, "trajectories": trajectories, "steps": steps, "dtype": "float64",
                "backend": "numpy", "chunk": 0},
        "model": model,
        "dynamics": dynamics,
        "init": init if init is not None else {"value": 0.0},
        "observables": observables or {},
        "sweep": sweep or {},
    }


def geometric_passage(rng, hazard: float, size, horizon: int) -> np.ndarray:
    """First-passage steps with constant per-step hazard: P(T = t) = (1-h)^(t-1) h, -1 beyond horizon."""
    steps = rng.geometric(hazard, size=size).astype(np.int64)
    steps[steps > horizon] = -1
    return steps


def f2_log_growth(rng, size, steps: int, lr: float = 0.15, curvatures=(18.0, 2.0)) -> np.ndarray:
    """Exact log growth of SGD's tangent on l_i = h_i theta^2/2, batch 1: sum of ln|1 - lr h_z|."""
    factors = np.log(np.abs(1.0 - lr * np.asarray(curvatures)))
    first = rng.binomial(steps, 0.5, size=size)
    return first * factors[0] + (steps - first) * factors[1]


def ou_run(path, seed: int = 0, temperatures=(0.5, 1.0), trajectories: int = 2000, steps: int = 2000,
           groups: int = 16, dt: float = 0.01, curvature: float = 1.0, level: float = 1.0,
           start: float = -0.5, hazards=None, divergence_hazard: float = 2e-5, lyapunov_sd: float = 0.05,
           bins: int = 60) -> dict:
    """A langevin run on L = k theta^2 / 2 with unit noise, swept over the temperature.

    Stationary law N(0, tau / (2k)) exactly: the histogram visits and final states are drawn
    from it (each group's visits i.i.d.); first passage is geometric with the given per-step
    hazards; divergence geometric with ``divergence_hazard``; Lyapunov per-step exponents
    normal around ln(1 - k dt); occupancy binomial; timeseries the exact OU moments; paths exact
    OU transitions. Returns the truth used, for tests.
    """
    rng = np.random.default_rng(seed)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    points = temperatures.size
    hazards = np.full(points, 2e-3) if hazards is None else np.asarray(hazards, dtype=np.float64)
    lo, hi = -2.0, 2.0
    edges = np.linspace(lo, hi, bins + 1)
    model = {"name": "polynomial", "coefficients": [0.0, 0.0, curvature / 2.0], "noise_var": 1.0}
    dynamics = {"name": "langevin", "dt": dt, "temperature": float(temperatures[0])}
    observables = {
        "histogram": {"lo": lo, "hi": hi, "bins": bins, "burn_in": 0, "thin": 1},
        "first_passage": {"above": level, "stop": False},
        "divergence": {"threshold": 1e8},
        "lyapunov": {},
        "occupancy": {"boundaries": [0.0]},
        "timeseries": {"points": 30, "spacing": "linear"},
        "paths": {"count": 6, "every": 10},
    }
    experiment = experiment_table(model, dynamics, trajectories=trajectories, steps=steps, seed=seed,
                                  init={"value": start}, observables=observables,
                                  sweep={"dynamics.temperature": temperatures.tolist()})
    visits_per_group = 4000
    batch_counts = np.zeros((points, groups, 1, bins), dtype=np.int64)
    outside = np.zeros((points, 1, 2), dtype=np.int64)
    final = np.zeros((points, trajectories, 1))
    lyap_exact = math.log(1.0 - curvature * dt)
    log_growth = np.zeros((points, trajectories))
    lyap_steps = np.full((points, trajectories), steps, dtype=np.int64)
    occupancy = np.zeros((points, trajectories, 2), dtype=np.int64)
    ts_steps = np.linspace(0, steps, 30).astype(np.int64)
    ts_mean = np.zeros((points, ts_steps.size, 1))
    ts_var = np.zeros((points, ts_steps.size, 1))
    paths_steps = np.arange(0, steps + 1, 10)
    paths = np.zeros((points, 6, paths_steps.size, 1))
    passage = np.zeros((points, trajectories), dtype=np.int64)
    divergence = np.zeros((points, trajectories), dtype=np.int64)
    for p, tau in enumerate(temperatures):
        sd = math.sqrt(tau / (2.0 * curvature))
        for g in range(groups):
            samples = rng.normal(0.0, sd, visits_per_group)
            batch_counts[p, g, 0] = np.histogram(samples, edges)[0]
            outside[p, 0, 0] += int((samples < lo).sum())
            outside[p, 0, 1] += int((samples >= hi).sum())
        final[p, :, 0] = rng.normal(0.0, sd, trajectories)
        log_growth[p] = rng.normal(lyap_exact, lyapunov_sd, trajectories) * steps
        occupancy[p, :, 0] = rng.binomial(steps, 0.5, trajectories)
        occupancy[p, :, 1] = steps - occupancy[p, :, 0]
        decay = np.exp(-curvature * ts_steps * dt)
        ts_mean[p, :, 0] = start * decay
        ts_var[p, :, 0] = sd * sd * (1.0 - decay ** 2)
        passage[p] = geometric_passage(rng, hazards[p], trajectories, steps)
        divergence[p] = geometric_passage(rng, divergence_hazard, trajectories, steps)
        x = np.full(6, start)
        every = 10 * dt
        a = math.exp(-curvature * every)
        for k in range(paths_steps.size):
            paths[p, :, k, 0] = x
            x = a * x + sd * math.sqrt(1.0 - a * a) * rng.normal(size=6)
    datasets = {
        "final/theta": final,
        "histogram/counts": batch_counts.sum(axis=1),
        "histogram/batch_counts": batch_counts,
        "histogram/outside": outside,
        "histogram/edges": edges,
        "first_passage/steps": passage,
        "divergence/steps": divergence,
        "lyapunov/log_growth": log_growth,
        "lyapunov/steps": lyap_steps,
        "occupancy/counts": occupancy,
        "timeseries/steps": ts_steps,
        "timeseries/mean": ts_mean,
        "timeseries/var": ts_var,
        "timeseries/loss_mean": 0.5 * curvature * (ts_mean[:, :, 0] ** 2 + ts_var[:, :, 0]),
        "timeseries/count": np.full((points, ts_steps.size), trajectories, dtype=np.int64),
        "paths/steps": paths_steps,
        "paths/theta": paths,
        "sweep/dynamics.temperature": temperatures,
    }
    group_attrs = {
        "histogram": {"lo": lo, "hi": hi, "burn_in": 0, "thin": 1, "bins": bins, "groups": groups},
        "occupancy": {"boundaries": np.array([0.0])},
        "first_passage": {"above": level, "stop": False},
        "divergence": {"threshold": 1e8},
    }
    write_run(path, experiment, datasets, group_attrs)
    return {"experiment": experiment, "datasets": datasets, "lyapunov": lyap_exact, "hazards": hazards,
            "stationary_sd": np.sqrt(temperatures / (2.0 * curvature))}
