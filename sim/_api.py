"""The Python API: run an experiment from a notebook and get labelled arrays back.

    from sgdsim import sim
    ds = sim.run({"model": {...}, "dynamics": {...}, "observables": {...}},
                 trajectories=10_000)            # in memory: nothing is written
    ds["final_theta"].sel(point=0).mean()
    sgdsim.run("exp.toml", output="run.h5")        # the file `sgdsim run` writes, then read
    ds = sgdsim.open("run.h5")

Both return an ``xarray.Dataset`` (``sgdsim.analysis.to_dataset``): one variable per
run-file dataset, named by its path with ``/`` replaced by ``_``, dimensions named
(``point``, ``trajectory``, ``coordinate``, ``bin``, ``step``, ...), the sweep values as
coordinates of ``point`` and the root attributes as ``attrs``. An in-memory run holds
the same datasets, bit for bit, as the file of the same experiment.
"""
import os
import time
import uuid
import warnings

import h5py

from ._config import ExperimentError, _apply_overrides, load_experiment, resolve_experiment

__all__ = ["run", "open_run"]


def _dotted(overrides):
    """Keyword overrides as dotted keys: ``trajectories=10`` is ``run.trajectories``; a
    dotted key (``**{"dynamics.lr": 0.1}``) names its table."""
    return {key if "." in key else f"run.{key}": value for key, value in overrides.items()}


def _resolve(experiment, overrides):
    if isinstance(experiment, (str, os.PathLike)):
        return load_experiment(experiment, overrides), os.fspath(experiment)
    if not isinstance(experiment, dict):
        raise ExperimentError("<experiment>", None, "must be a dict in the experiment file's "
                                                    "shape or the path of a TOML file")
    source = "<experiment>"
    return resolve_experiment(_apply_overrides(experiment, overrides, source), source), source


def run(experiment, output=None, *, overwrite=False, quiet=True, **overrides):
    """Run ``experiment`` (a dict in the experiment file's shape, or a TOML path) and
    return its ``xarray.Dataset``.

    ``overrides`` replace keys before validation (``trajectories=1000``, ``seed=3``, or
    dotted ``**{"dynamics.lr": 0.1}``). With ``output`` the run file is written there
    (checkpointed, as by `sgdsim run`) and read back; without, nothing touches the disk.
    Bad input raises ``sgdsim.ExperimentError``.
    """
    from ._runner import run_experiment

    resolved, source = _resolve(experiment, _dotted(overrides))
    if output is not None:
        run_experiment(resolved, output, overwrite=overwrite, quiet=quiet, source=source)
        return open_run(output)
    return _run_in_memory(resolved, source, quiet)


def open_run(path):
    """The ``xarray.Dataset`` of the run file at ``path``."""
    from sgdsim.analysis._xarray import to_dataset
    return to_dataset(path)


def _run_in_memory(experiment, source, quiet):
    from sgdsim.analysis._xarray import to_dataset

    from . import _sizing
    from ._engine import Points, Progress, device_name, execute, resolve_backend
    from ._runfile import failure_warnings, root_attrs, write_run
    from ._runner import planned

    start = time.perf_counter()
    backend = resolve_backend(experiment["run"]["backend"])
    plan = planned(experiment, backend)
    _sizing.check_memory(plan, source)
    points = Points(plan, source)
    progress = Progress(plan.n_points * plan.n_local * plan.steps, quiet)
    try:
        piece, _ = execute(plan, points, 0, progress)
    finally:
        progress.close()
    with h5py.File(f"sgdsim-{uuid.uuid4().hex}.h5", "w", driver="core",
                   backing_store=False) as f:
        write_run(f, plan, [piece])
        f.attrs.update(root_attrs(plan, device_name(backend), True, piece.kernel_seconds,
                                  piece.compile_seconds, time.perf_counter() - start))
        for line in failure_warnings(f):
            warnings.warn(line, RuntimeWarning, stacklevel=3)
        return to_dataset(f)
