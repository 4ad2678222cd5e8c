"""sgdsim's driver: experiment files, planning and chunking, the run file, the command line."""
from sim._config import ExperimentError, load_experiment, resolve_experiment

__all__ = [
    "ExperimentError",
    "load_experiment",
    "resolve_experiment",
]
