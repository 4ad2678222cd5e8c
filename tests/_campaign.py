"""Shared experiments and helpers of the campaign tests (sweeps, checkpoints, shards, MPI)."""
import os
import subprocess
import sys

import numpy as np

from sgdsim.sim import _toml
from tests.conftest import ROOT, read_run

F2_LRS = [0.02, 0.05, 0.08, 0.15]


def f2_sweep(trajectories=3000, steps=300, chunk=0, lrs=F2_LRS, observables=None):
    """Failure mode F2: SGD on two quadratics of curvature 18 and 2, swept over lr."""
    return {
        "run": {"seed": 2024, "trajectories": trajectories, "steps": steps, "backend": "cpu",
                "chunk": chunk},
        "model": {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]},
        "dynamics": {"name": "sgd", "lr": lrs[0]},
        "init": {"uniform": {"low": -1.0, "high": 1.0}},
        "observables": observables if observables is not None else {
            "lyapunov": {},
            "histogram": {"lo": -1.0, "hi": 1.0, "bins": 16, "burn_in": 5},
            "occupancy": {"boundaries": [0.0]},
            "first_passage": {"above": 0.9},
            "timeseries": {"points": 9},
            "paths": {"count": 3, "every": 25},
        },
        "sweep": {"dynamics.lr": list(lrs)},
    }


def to_toml(experiment):
    """A raw experiment dict as TOML text (tables of scalars, lists and inline tables)."""
    return _toml.dumps(experiment)


def sgdsim(*args, env=None, **kwargs):
    """Run `python -m sgdsim.sim ARGS` in a subprocess (the kernel cache on disk is shared)."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "sgdsim.sim", *map(str, args)], env=full_env,
                          capture_output=True, text=True, timeout=300, **kwargs)


def datasets(path_or_data):
    data = read_run(path_or_data) if not isinstance(path_or_data, dict) else path_or_data
    return {k: v for k, v in data.items() if k != "attrs"}


def assert_same_datasets(a, b):
    """Every dataset equal bit for bit (attributes such as timings may differ)."""
    a, b = datasets(a), datasets(b)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
