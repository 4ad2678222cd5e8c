"""sgdsim's driver: experiment files, planning and chunking, the run file, the command line."""
from sim._config import ExperimentError, load_experiment, resolve_experiment
from sim._runner import run_experiment
from sim._version import __version__

__all__ = [
    "ExperimentError",
    "__version__",
    "load_experiment",
    "resolve_experiment",
    "run_experiment",
]
