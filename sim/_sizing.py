"""Sizes of a run before it runs: the run file, the memory of one chunk, and their checks.

``sizes(plan)`` estimates, from the plan alone, the bytes of the run file and of
the buffers one chunk holds while it runs (per-trajectory state and outputs,
histogram copies, timeseries sums, paths), each by the experiment key that
drives it. ``check(plan, out_path)`` refuses, before anything is written, a run
whose file would not fit the free disk at the output path or whose chunk would
not fit the memory of the device (host memory for cpu and numpy, GPU memory for
cuda); ``--force`` skips it. ``describe(plan)`` is the text of ``--dry-run``.
"""
import os
import shutil

import numpy as np

from sgdsim.kernels import REDUCE_GROUP
from sgdsim.kernels._dynamics import aux_size, optimiser
from sgdsim.kernels._observe import series_rows, slot_rows, ts_columns

from ._config import ExperimentError
from .observables import enabled
from ._runfile import row_fields

__all__ = ["sizes", "check", "check_memory", "describe", "available_memory", "fit_chunk"]

# A chunk may use this share of the device's available memory.
MEMORY_SHARE = 0.5


def _threads(backend):
    if backend != "cpu":
        return 1
    import numba
    return numba.get_num_threads()


def _ts_columns(plan):
    """Columns of the timeseries sums (the plug-ins' recorded slots included)."""
    return ts_columns(plan.dim, len(series_rows(enabled(plan.observables), plan.dim)))


def per_trajectory_bytes(plan):
    """Bytes one trajectory of a chunk holds while it runs (state, outputs, buffers)."""
    item = plan.dtype.itemsize
    d = plan.dim
    slots = sum(slot_rows(obs, d) for obs in enabled(plan.observables))
    regions = plan.boundaries.size + 1 if plan.boundaries.size else 0
    aux = aux_size(optimiser(plan.points[0][1]["dynamics"]), d)
    return (2 * d * item                      # theta_0 and the state
            + 4 * 8 + 8 * regions             # steps, growth, occupancy counts
            + 8 * max(slots, 1) + 8 * max(aux, 1) + 8 * d + 8
            + 8 * _ts_columns(plan) * plan.ts_steps.size / REDUCE_GROUP)   # timeseries sums


def sizes(plan):
    """{"file": {key: bytes}, "chunk": {key: bytes}} (the keys name what drives each part)."""
    n_points, n = plan.n_points, plan.n_local
    d, item = plan.dim, plan.dtype.itemsize
    row = sum(np.dtype(dtype).itemsize * int(np.prod(tail, dtype=np.int64))
              for _, _, dtype, tail in row_fields(plan))
    file = {"run.trajectories": n_points * n * row}
    chunk = {"run.chunk": min(plan.chunk, n) * per_trajectory_bytes(plan)}
    if "histogram" in plan.observables:
        slots = d * (plan.bins + 2) * 8
        file["observables.histogram.bins"] = n_points * slots * (plan.hist_groups + 1)
        chunk["observables.histogram.bins"] = (_threads(plan.backend) * plan.hist_groups
                                               * slots)
    if plan.ts_steps.size:
        file["observables.timeseries.points"] = n_points * plan.ts_steps.size * _ts_columns(plan) * 8
    if plan.path_count:
        paths = plan.path_count * plan.path_steps.size * d * item
        file["observables.paths.count"] = n_points * paths
        chunk["observables.paths.count"] = paths
    return {"file": file, "chunk": chunk}


def available_memory(backend):
    """Bytes of memory a chunk may use on ``backend``'s device, or None if unknown.

    ``MEMORY_SHARE`` of the available memory, or ``SGDSIM_MEMORY`` bytes when set.
    """
    if os.environ.get("SGDSIM_MEMORY"):
        try:
            return int(float(os.environ["SGDSIM_MEMORY"]))
        except ValueError:
            raise ExperimentError(None, None, f"SGDSIM_MEMORY must be a number of bytes (got "
                                              f"{os.environ['SGDSIM_MEMORY']!r})") from None
    if backend == "cuda":
        try:
            from numba import cuda
            free, _ = cuda.current_context().get_memory_info()
            return int(free * MEMORY_SHARE)
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * MEMORY_SHARE)
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * MEMORY_SHARE)
    except (ValueError, OSError, AttributeError):
        return None


def fit_chunk(plan, memory=None):
    """The automatic chunk size shrunk (a multiple of REDUCE_GROUP) so a chunk fits memory."""
    memory = available_memory(plan.backend) if memory is None else memory
    if memory is None:
        return plan.chunk
    fixed = sum(v for k, v in sizes(plan)["chunk"].items() if k != "run.chunk")
    fits = int((memory - fixed) // max(per_trajectory_bytes(plan), 1))
    return max(REDUCE_GROUP, min(plan.chunk, fits // REDUCE_GROUP * REDUCE_GROUP))


def _gb(nbytes):
    return f"{nbytes / 1e9:.3g} GB"


def check(plan, out_path, source=None):
    """Refuse (ExperimentError, exit 2) a run that cannot fit the disk or the device memory."""
    found = sizes(plan)
    file_bytes = sum(found["file"].values())
    folder = os.path.dirname(os.path.abspath(os.fspath(out_path)))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and file_bytes > free:
        key = max(found["file"], key=found["file"].get)
        raise ExperimentError(source, key, f"is too large: the run file would take "
                                           f"{_gb(file_bytes)} and "
                                           f"{folder} has {_gb(free)} free (--force runs it "
                                           f"anyway)")
    check_memory(plan, source, found)


def check_memory(plan, source=None, found=None):
    """Refuse a run whose chunk would not fit the device's memory (see ``check``)."""
    found = sizes(plan) if found is None else found
    memory = available_memory(plan.backend)
    chunk_bytes = sum(found["chunk"].values())
    if memory is not None and chunk_bytes > memory:
        key = max(found["chunk"], key=found["chunk"].get)
        hint = "a smaller run.chunk" if key == "run.chunk" else "a smaller value"
        raise ExperimentError(source, key, f"is too large: one chunk would need "
                                           f"{_gb(chunk_bytes)} of "
                                           f"{plan.backend} memory, {_gb(memory)} is available "
                                           f"(try {hint}; --force runs it anyway)")


def describe(plan, kernels_to_compile):
    """The lines of ``sgdsim run --dry-run``."""
    found = sizes(plan)
    memory = available_memory(plan.backend)
    lines = [
        f"backend: {plan.backend} ({plan.dtype}), {plan.n_points} point(s) x "
        f"{plan.n_local} trajectories x {plan.steps} steps = "
        f"{plan.n_points * plan.n_local * plan.steps:.4g} trajectory-steps",
        f"kernels to compile: {kernels_to_compile}",
        f"chunks: {len(plan.chunks)} of up to {plan.chunk} trajectories",
        f"run file: about {_gb(sum(found['file'].values()))} ("
        + ", ".join(f"{k} {_gb(v)}" for k, v in found["file"].items()) + ")",
        f"memory per chunk: about {_gb(sum(found['chunk'].values()))}"
        + (f" of {_gb(memory)} available" if memory is not None else ""),
        "time: estimated by the progress line after the first slice of steps",
    ]
    return lines
