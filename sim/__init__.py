"""sgdsim's driver: experiment files, planning and chunking, the run file, the command line."""
from sgdsim.sim._config import ExperimentError, load_experiment, resolve_experiment
from sgdsim.sim._version import __version__

__all__ = [
    "ExperimentError",
    "__version__",
    "load_experiment",
    "resolve_experiment",
    "run_experiment",
    "run",
]


def __getattr__(name):
    # The runner pulls in numba and the kernels; load it only when a run needs it,
    # so `sgdsim models`, `sgdsim info` and error paths start fast.
    if name == "run_experiment":
        from sgdsim.sim._runner import run_experiment
        return run_experiment
    if name == "run":
        from sgdsim.sim._api import run
        return run
    if name == "open":
        from sgdsim.sim._api import open_run
        return open_run
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
