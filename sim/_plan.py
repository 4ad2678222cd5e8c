"""Plan a run: sweep points, the share of trajectories this process runs, and its chunks.

A plan is pure bookkeeping (no kernels are compiled here), so ``merge`` and
``resume`` can rebuild the plan of a run file written on another machine.
"""
import copy
import importlib
import itertools
from dataclasses import dataclass, field

import numpy as np

from sgdsim import kernels
from sgdsim.kernels import REDUCE_GROUP
from sgdsim.kernels._dynamics import SGD_FAMILY

from ._config import ExperimentError
from ._schema import state_dimension
from .observables import config_vector, enabled

__all__ = ["Plan", "make_plan", "sweep_points", "timeseries_steps", "shard_range",
           "model_for", "check_capabilities", "check_initial_values", "configuration",
           "HISTOGRAM_GROUPS", "AUTO_CHUNK"]

HISTOGRAM_GROUPS = 20
# Automatic chunk size: trajectories per launch (a multiple of REDUCE_GROUP).
AUTO_CHUNK = {"cpu": 1 << 18, "numpy": 1 << 16, "cuda": 1 << 22}


def sweep_points(experiment):
    """The list of (swept values, point experiment) pairs; last sweep key varies fastest."""
    sweep = experiment.get("sweep") or {}
    keys = list(sweep)
    points = []
    for values in itertools.product(*(sweep[k] for k in keys)):
        point = copy.deepcopy(experiment)
        for key, value in zip(keys, values):
            table, name = key.split(".", 1)
            target = point[table]
            if table == "init" and name == "value":
                point["init"] = {"value": value}
                continue
            target[name] = value
        points.append((dict(zip(keys, values)), point))
    return points


def timeseries_steps(spec, steps):
    """Recorded steps of the timeseries observable: linear from 0, or log from 1."""
    points = spec["points"]
    if spec.get("spacing", "linear") == "log":
        # Grid increments below 1 hit every integer: the same steps without the grid.
        if points - 1 > steps * (np.log(steps) + 1):
            return np.arange(1, steps + 1, dtype=np.int64)
        grid = np.geomspace(1, steps, points)
    else:
        if points >= steps + 1:
            return np.arange(0, steps + 1, dtype=np.int64)
        grid = np.linspace(0, steps, points)
    return np.unique(np.rint(grid).astype(np.int64))


def shard_range(per_point, shard):
    """Point-local trajectories [lo, hi) of shard (i, n).

    Shard i of n starts at floor(floor(i * N / n) / 256) * 256: the SPEC's
    i * N / n rounded down to a multiple of REDUCE_GROUP, so that every
    timeseries reduction group lies inside one shard (docs/campaigns.md).
    """
    if shard is None:
        return 0, per_point
    i, n = shard

    def cut(k):
        if k >= n:
            return per_point
        return (k * per_point // n) // REDUCE_GROUP * REDUCE_GROUP

    return cut(i), cut(i + 1)


def model_for(spec, dynamics=None):
    """The kernels model of a resolved ``[model]`` table (built-in, d-dimensional or user).

    Two-time-scale models take ``eps`` from the dynamics (1 under gd/langevin).
    """
    name = spec["name"]
    if ":" in name:
        module_name, attr = name.split(":", 1)
        obj = getattr(importlib.import_module(module_name), attr)
        return kernels.user_model(obj, name)
    two_scale = (dynamics or {}).get("name") in kernels.TWO_SCALE_DYNAMICS
    return kernels.builtin_model(spec, dynamics["eps"] if two_scale else 1.0)


def check_initial_values(point, seed, source, point_index=0, per_point=1, dtype="float64"):
    """Bad input when a user model's functions are not finite at theta_0.

    The gradient (and noise variance, per-sample gradient where the dynamics uses
    them) is evaluated in Python at the initial states of the point's first
    trajectories; a NaN or inf there would make every trajectory non-finite at step 1.
    """
    name = point["model"]["name"]
    if ":" not in name:
        return
    module_name, attr = name.split(":", 1)
    obj = getattr(importlib.import_module(module_name), attr)
    dyn = point["dynamics"]
    checks = [("gradient", lambda f, x: f(x))]
    if hasattr(obj, "noise_var") and dyn["name"] in ("langevin",) + SGD_FAMILY:
        checks.append(("noise_var", lambda f, x: f(x)))
    if dyn["name"] in SGD_FAMILY and dyn.get("noise", "finite_sum") == "finite_sum" \
            and hasattr(obj, "per_sample_gradient"):
        checks.append(("per_sample_gradient", lambda f, x: f(x, 0)))
    x0 = kernels.initial_state(point["init"], point_index * per_point, min(per_point, 8), seed,
                               dtype, 1)[:, 0]
    for fn_name, call in checks:
        fn = getattr(obj, fn_name)
        for x in np.unique(x0):
            try:
                value = float(call(fn, float(x)))
            except Exception:
                return      # compiling the kernel reports it, with the file and line
            if not np.isfinite(value):
                raise ExperimentError(source, "model.name",
                                      f"{name}: {fn_name}({float(x):g}) = {value} at theta_0 "
                                      f"is not finite; every trajectory would fail at step 1")


def check_capabilities(model, point, source):
    """Bad input when an observable or noise needs a function the model lacks."""
    for obs in enabled(point["observables"]):
        if "loss" in obs.needs and not model.has_loss:
            raise ExperimentError(source, f"observables.{obs.name}",
                                  "needs the model's loss function (loss(theta))")
    dyn = point["dynamics"]
    if dyn["name"] in SGD_FAMILY and dyn.get("noise", "finite_sum") == "finite_sum" \
            and not model.has_samples:
        raise ExperimentError(source, "dynamics.noise",
                              "finite_sum needs the model's per_sample_gradient and n_samples")


def configuration(observables, per_point, point=None):
    """The kernels' (conf_i, conf_f) arrays for the requested observables (at a sweep
    point's resolved experiment ``point``, which plug-ins may read: sharpness' level
    2 / lr)."""
    from sgdsim.kernels._observe import (
        COORD_NORM, I_COORD,
        F_DIV_THRESHOLD, F_FP_LEVEL, F_HIST_HI, F_HIST_LO, FP_ABOVE, FP_BELOW, I_FP_MODE,
        I_FP_STOP, I_HIST_BINS, I_HIST_BURN, I_HIST_GROUPS, I_HIST_ON, I_HIST_THIN, I_LYAP_ON,
        I_PATH_COUNT, I_PATH_EVERY, I_PER_POINT, N_CONF_F, N_CONF_I,
    )
    conf_i = np.zeros(N_CONF_I, dtype=np.int64)
    conf_f = np.zeros(N_CONF_F)
    conf_i[I_PER_POINT] = per_point
    conf_i[I_HIST_GROUPS] = 1
    conf_i[I_HIST_BINS] = 1
    conf_i[I_HIST_THIN] = 1
    conf_i[I_PATH_EVERY] = 1
    conf_f[F_DIV_THRESHOLD] = np.inf
    if "histogram" in observables:
        h = observables["histogram"]
        conf_i[I_HIST_ON] = 1
        conf_i[I_HIST_BINS] = h["bins"]
        conf_i[I_HIST_BURN] = h["burn_in"]
        conf_i[I_HIST_THIN] = h["thin"]
        conf_i[I_HIST_GROUPS] = min(HISTOGRAM_GROUPS, per_point)
        conf_f[F_HIST_LO] = h["lo"]
        conf_f[F_HIST_HI] = h["hi"]
    if "first_passage" in observables:
        fp = observables["first_passage"]
        conf_i[I_FP_MODE] = FP_ABOVE if "above" in fp else FP_BELOW
        conf_f[F_FP_LEVEL] = fp["above"] if "above" in fp else fp["below"]
        conf_i[I_FP_STOP] = int(fp.get("stop", False))
    if "divergence" in observables:
        conf_f[F_DIV_THRESHOLD] = observables["divergence"]["threshold"]
    if "lyapunov" in observables:
        conf_i[I_LYAP_ON] = 1
    for name in ("first_passage", "divergence", "occupancy"):
        if name in observables:
            coordinate = observables[name].get("coordinate", 0)
            conf_i[I_COORD] = COORD_NORM if coordinate == "norm" else coordinate
    # Plug-in observables read their configuration after the built-in slots.
    conf_f = np.concatenate([conf_f, config_vector(observables, point or {})])
    if "paths" in observables:
        conf_i[I_PATH_COUNT] = min(observables["paths"]["count"], per_point)
        conf_i[I_PATH_EVERY] = observables["paths"]["every"]
    return conf_i, conf_f


@dataclass
class Plan:
    """Everything about a run that does not need a kernel.

    ``chunks`` lists (point, a, b): point-local trajectories [a, b) of one
    launch, in the order they run; their concatenation is this process's
    share [lo, hi) of point 0, then of point 1, and so on.
    """

    experiment: dict
    backend: str
    dtype: np.dtype
    points: list
    per_point: int
    steps: int
    seed: int
    lo: int
    hi: int
    chunk: int
    shard: tuple = None
    chunks: list = field(default_factory=list)
    ts_steps: np.ndarray = None
    boundaries: np.ndarray = None
    path_count: int = 0
    path_steps: np.ndarray = None
    hist_groups: int = 1
    bins: int = 1
    dim: int = 1          # coordinates of the state
    x_dim: int = 0        # of which the fast variable x (two-time-scale models)

    @property
    def observables(self):
        return self.experiment["observables"]

    @property
    def n_points(self):
        return len(self.points)

    @property
    def n_local(self):
        return self.hi - self.lo

    @property
    def groups_per_point(self):
        """Timeseries reduction groups of a whole point (the leaves of its sum tree)."""
        return -(-self.per_point // REDUCE_GROUP)


def _auto_chunk(experiment, backend):
    # Per-chunk buffers grow with d (timeseries partial sums: 4 + 2d columns per group and
    # recorded step); keep a chunk's buffers near the scalar kernels' size.
    dim, _ = state_dimension(experiment["model"])
    return max(REDUCE_GROUP, AUTO_CHUNK[backend] // max(1, dim))


def make_plan(experiment, backend, shard=None, chunk=None):
    """The plan of ``experiment`` on an already resolved ``backend`` (no GPU check here).

    ``chunk`` (trajectories per launch) defaults to the experiment's, or the
    backend's automatic size; it is rounded up to a multiple of REDUCE_GROUP so
    every chunk starts on a reduction-group boundary.
    """
    run = experiment["run"]
    observables = experiment["observables"]
    per_point, steps = run["trajectories"], run["steps"]
    lo, hi = shard_range(per_point, shard)
    chunk = chunk or run["chunk"] or _auto_chunk(experiment, backend)
    chunk = max(REDUCE_GROUP, -(-chunk // REDUCE_GROUP) * REDUCE_GROUP)
    points = sweep_points(experiment)
    path_every = observables["paths"]["every"] if "paths" in observables else 1
    plan = Plan(
        experiment=experiment, backend=backend, dtype=np.dtype(run["dtype"]), points=points,
        per_point=per_point, steps=steps, seed=run["seed"], lo=lo, hi=hi, chunk=chunk,
        shard=tuple(shard) if shard is not None else None,
        ts_steps=(timeseries_steps(observables["timeseries"], steps)
                  if "timeseries" in observables else np.zeros(0, dtype=np.int64)),
        boundaries=np.asarray(observables.get("occupancy", {}).get("boundaries", []),
                              dtype=float),
        path_count=min(observables["paths"]["count"], per_point) if "paths" in observables
        else 0,
        path_steps=np.arange(0, steps + 1, path_every, dtype=np.int64),
        hist_groups=min(HISTOGRAM_GROUPS, per_point) if "histogram" in observables else 1,
        bins=observables["histogram"]["bins"] if "histogram" in observables else 1,
    )
    plan.dim, plan.x_dim = state_dimension(experiment["model"])
    plan.chunks = [(p, a, min(a + chunk, hi)) for p in range(len(points))
                   for a in range(lo, hi, chunk)]
    return plan
