"""Turn a resolved experiment into a run file (SPEC 5-6).

The runner plans the work (sweep points x chunks of trajectories), launches
the fused chunk kernel of the chosen backend for each chunk, accumulates
what the kernels return, and writes the HDF5 run file. Nothing is ever
written at the output path until the file is complete: the run goes to a
temporary file in the same folder that is fsync'ed and renamed into place.

Determinism: chunks start on multiples of REDUCE_GROUP trajectories within a
point and timeseries sums are added group by group in index order, so every
dataset is identical bit for bit whatever the chunk size or thread count.
"""
import copy
import datetime
import importlib
import itertools
import os
import sys
import time
import tomllib

import h5py
import numpy as np

import kernels
from kernels import REDUCE_GROUP

from kernels._observe import I_HIST_BINS, I_HIST_GROUPS

from ._config import ExperimentError
from ._version import __version__

__all__ = ["run_experiment", "resolve_backend", "sweep_points", "timeseries_steps",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "sgdsim-run"
FORMAT_VERSION = 1
HISTOGRAM_GROUPS = 20
# Automatic chunk size: trajectories per launch (a multiple of REDUCE_GROUP).
_AUTO_CHUNK = {"cpu": 1 << 18, "numpy": 1 << 16, "cuda": 1 << 22}


def resolve_backend(name):
    """The backend that ``name`` means here: ``auto`` is cuda when usable, else cpu."""
    if name == "auto":
        return "cuda" if kernels.cuda_usable() else "cpu"
    if name == "cuda" and not kernels.cuda_usable():
        raise ExperimentError(None, "run.backend", "cuda: no usable GPU (numba-cuda found none)")
    return name


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
    if spec.get("spacing", "linear") == "log":
        grid = np.geomspace(1, steps, spec["points"])
    else:
        grid = np.linspace(0, steps, spec["points"])
    return np.unique(np.rint(grid).astype(np.int64))


def _model_for(spec):
    name = spec["name"]
    if ":" in name:
        module_name, attr = name.split(":", 1)
        obj = getattr(importlib.import_module(module_name), attr)
        return kernels.user_model(obj, name)
    return kernels.builtin_model(spec)


def _check_capabilities(model, point, source):
    if "lyapunov" in point["observables"] and not model.has_hess:
        raise ExperimentError(source, "observables.lyapunov",
                              "needs the model's second_derivative")
    dyn = point["dynamics"]
    if dyn["name"] == "sgd" and dyn.get("noise", "finite_sum") == "finite_sum" \
            and not model.has_samples:
        raise ExperimentError(source, "dynamics.noise",
                              "finite_sum needs the model's per_sample_gradient and n_samples")


def _configuration(observables, per_point):
    from kernels._observe import (
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
    if "paths" in observables:
        conf_i[I_PATH_COUNT] = min(observables["paths"]["count"], per_point)
        conf_i[I_PATH_EVERY] = observables["paths"]["every"]
    return conf_i, conf_f


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def _toml_key(key):
    return key if key.replace("_", "").isalnum() else '"' + key + '"'


def experiment_toml(experiment):
    """The resolved experiment as TOML text (stored in the run file)."""
    lines = []
    for table in ("run", "model", "dynamics", "init", "observables", "sweep"):
        body = experiment.get(table) or {}
        if table == "sweep" and not body:
            continue
        lines.append(f"[{table}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items())
        lines.append("")
    text = "\n".join(lines)
    tomllib.loads(text)  # what we store must read back
    return text


class _Progress:
    """tqdm bar on an interactive stderr, a plain line per chunk otherwise."""

    def __init__(self, total, quiet):
        self.quiet = quiet
        self.total = total
        self.done = 0
        self.start = time.perf_counter()
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="traj-step", unit_scale=True, file=sys.stderr,
                            dynamic_ncols=True)

    def update(self, amount, label):
        self.done += amount
        if self.bar is not None:
            self.bar.update(amount)
        elif not self.quiet:
            elapsed = time.perf_counter() - self.start
            rate = self.done / elapsed if elapsed > 0 else float("nan")
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"sgdsim: {label}: {self.done / self.total:6.1%} done, "
                  f"{rate:.3g} traj-steps/s, {left:.0f} s left", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def shard_range(per_point, shard):
    """Point-local trajectories [lo, hi) of shard (i, n), cut on REDUCE_GROUP multiples."""
    if shard is None:
        return 0, per_point
    i, n = shard

    def cut(k):
        if k >= n:
            return per_point
        return (k * per_point // n) // REDUCE_GROUP * REDUCE_GROUP

    return cut(i), cut(i + 1)


def run_experiment(experiment, out_path, overwrite=False, quiet=False, shard=None, source=None):
    """Run a resolved experiment and write its run file at ``out_path``.

    Returns the path. The file appears at ``out_path`` only when complete.
    """
    wall_start = time.perf_counter()
    out_path = os.fspath(out_path)
    if os.path.exists(out_path) and not overwrite:
        raise ExperimentError(out_path, None, "exists (use --overwrite to replace it)")
    run = experiment["run"]
    backend = resolve_backend(run["backend"])
    dtype = np.dtype(run["dtype"])
    per_point, steps, seed = run["trajectories"], run["steps"], run["seed"]
    observables = experiment["observables"]
    points = sweep_points(experiment)
    lo, hi = shard_range(per_point, shard)
    n_local = hi - lo
    chunk = run["chunk"] or _AUTO_CHUNK[backend]
    chunk = max(REDUCE_GROUP, -(-chunk // REDUCE_GROUP) * REDUCE_GROUP)

    ts_steps = (timeseries_steps(observables["timeseries"], steps)
                if "timeseries" in observables else np.zeros(0, dtype=np.int64))
    boundaries = np.asarray(observables.get("occupancy", {}).get("boundaries", []), dtype=float)
    path_count = min(observables["paths"]["count"], per_point) if "paths" in observables else 0
    path_every = observables["paths"]["every"] if "paths" in observables else 1
    path_steps = np.arange(0, steps + 1, path_every, dtype=np.int64)

    directory = os.path.dirname(os.path.abspath(out_path))
    tmp_path = os.path.join(directory, f".{os.path.basename(out_path)}.{os.getpid()}.tmp")
    n_points = len(points)
    progress = _Progress(n_points * n_local * steps, quiet)
    kernel_seconds = 0.0
    compile_seconds = 0.0
    compiled = set()
    try:
        with h5py.File(tmp_path, "w") as f:
            datasets = _create_datasets(f, observables, dtype, n_points, n_local,
                                        boundaries, ts_steps, path_count, path_steps)
            for index, (values, point) in enumerate(points):
                model = _model_for(point["model"])
                _check_capabilities(model, point, source)
                kernel = kernels.get_kernel(backend, model, point["dynamics"], dtype)
                d = kernels.dynamics_params(point["dynamics"])
                conf_i, conf_f = _configuration(observables, per_point)
                paths = np.full((path_count, path_steps.size), np.nan, dtype=dtype)
                ts_sum = np.zeros((ts_steps.size, 4))
                hist = np.zeros((conf_i[I_HIST_GROUPS], conf_i[I_HIST_BINS] + 2), dtype=np.int64)
                for start in range(lo, hi, chunk):
                    stop = min(start + chunk, hi)
                    g_first = index * per_point + start
                    x0 = kernels.initial_state(point["init"], g_first, stop - start, seed, dtype)
                    out, seconds = kernel.run(x0, g_first, start, steps, seed, model.params, d,
                                              conf_i, conf_f, boundaries, ts_steps, paths)
                    if id(kernel.kernel) not in compiled:
                        compiled.add(id(kernel.kernel))
                        compile_seconds += kernel.compile_seconds
                    kernel_seconds += seconds
                    for partial in out["ts_partial"]:  # group by group, in index order
                        ts_sum += partial
                    hist += out["hist"]
                    _write_chunk(datasets, index, start - lo, stop - lo, out)
                    progress.update((stop - start) * steps,
                                    f"point {index + 1}/{n_points} trajectories {stop}/{hi}")
                _write_point(datasets, index, hist, ts_sum, paths)
            for key in experiment.get("sweep") or {}:
                values = [v for v, _ in points]
                try:
                    f.create_dataset(f"sweep/{key}",
                                     data=np.array([v[key] for v in values], dtype=np.float64))
                except (TypeError, ValueError):
                    f.create_dataset(f"sweep/{key}", data=np.array([str(v[key]) for v in values],
                                                                    dtype=h5py.string_dtype()))
            attrs = f.attrs
            attrs["format"] = FORMAT
            attrs["format_version"] = FORMAT_VERSION
            attrs["package_version"] = __version__
            attrs["experiment"] = experiment_toml(experiment)
            attrs["seed"] = np.uint64(seed)
            attrs["trajectories"] = per_point
            attrs["steps"] = steps
            attrs["dtype"] = dtype.name
            attrs["backend"] = backend
            attrs["device"] = _device_name(backend)
            attrs["rng"] = "philox4x32-10"
            attrs["kernel_seconds"] = kernel_seconds
            attrs["compile_seconds"] = compile_seconds
            attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
            if shard is not None:
                attrs["shard"] = np.array(shard, dtype=np.int64)
                attrs["shard_range"] = np.array([lo, hi], dtype=np.int64)
            attrs["wall_seconds"] = time.perf_counter() - wall_start
            attrs["complete"] = True
        _fsync(tmp_path)
        if os.path.exists(out_path) and not overwrite:
            raise ExperimentError(out_path, None, "appeared during the run; not overwritten")
        os.replace(tmp_path, out_path)
    finally:
        progress.close()
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
    return out_path


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _device_name(backend):
    if backend == "cuda":
        from numba import cuda
        try:
            return str(cuda.get_current_device().name, "utf-8") \
                if isinstance(cuda.get_current_device().name, bytes) \
                else str(cuda.get_current_device().name)
        except Exception:
            return "cuda"
    import platform
    import numba
    return f"{platform.processor() or platform.machine()} ({numba.get_num_threads()} threads)"


def _create_datasets(f, observables, dtype, n_points, n, boundaries, ts_steps, path_count,
                     path_steps):
    ds = {"final": f.create_dataset("final/theta", (n_points, n, 1), dtype=dtype)}
    if "histogram" in observables:
        h = observables["histogram"]
        group = f.require_group("histogram")
        for key in ("lo", "hi", "burn_in", "thin", "bins"):
            group.attrs[key] = h[key]
        f.create_dataset("histogram/edges", data=np.linspace(h["lo"], h["hi"], h["bins"] + 1))
    if "first_passage" in observables:
        fp = observables["first_passage"]
        ds["first_passage"] = f.create_dataset("first_passage/steps", (n_points, n),
                                               dtype=np.int64)
        for key, value in fp.items():
            f["first_passage"].attrs[key] = value
    if "divergence" in observables:
        ds["divergence"] = f.create_dataset("divergence/steps", (n_points, n), dtype=np.int64)
        f["divergence"].attrs["threshold"] = observables["divergence"]["threshold"]
    if "lyapunov" in observables:
        ds["log_growth"] = f.create_dataset("lyapunov/log_growth", (n_points, n), dtype=np.float64)
        ds["lyap_steps"] = f.create_dataset("lyapunov/steps", (n_points, n), dtype=np.int64)
    if "occupancy" in observables:
        ds["occupancy"] = f.create_dataset("occupancy/counts",
                                           (n_points, n, boundaries.size + 1), dtype=np.int64)
        f["occupancy"].attrs["boundaries"] = boundaries
    if "timeseries" in observables:
        f.create_dataset("timeseries/steps", data=ts_steps)
        f["timeseries"].attrs["spacing"] = observables["timeseries"]["spacing"]
    if "paths" in observables:
        f.create_dataset("paths/steps", data=path_steps)
        ds["paths"] = f.create_dataset("paths/theta",
                                       (n_points, path_count, path_steps.size, 1), dtype=dtype)
    ds["file"] = f
    ds["observables"] = observables
    return ds


def _write_chunk(ds, point, a, b, out):
    ds["final"][point, a:b, 0] = out["x_final"]
    if "first_passage" in ds:
        ds["first_passage"][point, a:b] = out["fp_steps"]
    if "divergence" in ds:
        ds["divergence"][point, a:b] = out["div_steps"]
    if "log_growth" in ds:
        ds["log_growth"][point, a:b] = out["log_growth"]
        ds["lyap_steps"][point, a:b] = out["lyap_steps"]
    if "occupancy" in ds:
        ds["occupancy"][point, a:b] = out["occupancy"]


def _write_point(ds, point, hist, ts_sum, paths):
    f, observables = ds["file"], ds["observables"]
    n_points = ds["final"].shape[0]
    if "histogram" in observables:
        bins = observables["histogram"]["bins"]
        if "histogram/batch_counts" not in f:
            f.create_dataset("histogram/batch_counts", (n_points, hist.shape[0], 1, bins),
                             dtype=np.int64)
            f.create_dataset("histogram/counts", (n_points, 1, bins), dtype=np.int64)
            f.create_dataset("histogram/outside", (n_points, 1, 2), dtype=np.int64)
            f["histogram"].attrs["groups"] = hist.shape[0]
        f["histogram/batch_counts"][point, :, 0, :] = hist[:, :bins]
        f["histogram/counts"][point, 0] = hist[:, :bins].sum(axis=0)
        f["histogram/outside"][point, 0] = hist[:, bins:].sum(axis=0)
    if "timeseries" in observables:
        t = ts_sum.shape[0]
        for name, shape in (("mean", (n_points, t, 1)), ("var", (n_points, t, 1)),
                            ("loss_mean", (n_points, t)), ("count", (n_points, t))):
            if f"timeseries/{name}" not in f:
                f.create_dataset(f"timeseries/{name}", shape,
                                 dtype=np.int64 if name == "count" else np.float64)
        count = ts_sum[:, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = ts_sum[:, 0] / count
            var = np.maximum(ts_sum[:, 1] / count - mean * mean, 0.0)
            loss_mean = ts_sum[:, 2] / count
        f["timeseries/mean"][point, :, 0] = mean
        f["timeseries/var"][point, :, 0] = var
        f["timeseries/loss_mean"][point] = loss_mean
        f["timeseries/count"][point] = count.astype(np.int64)
    if "paths" in ds:
        ds["paths"][point, :, :, 0] = paths
