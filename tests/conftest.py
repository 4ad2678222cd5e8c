"""Shared fixtures: run small experiments through the real runner."""
import copy
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Random123's known-answer vectors (its tests/kat_vectors), shipped with the tests.
KAT_FILE = ROOT / "tests" / "data" / "philox4x32_kat.txt"


def run_file(tmp_path, experiment, name="run.h5", **run_overrides):
    """Resolve ``experiment`` (a raw dict), run it, and return every dataset and attribute."""
    from sgdsim import sim

    raw = copy.deepcopy(experiment)
    raw.setdefault("run", {}).update(run_overrides)
    resolved = sim.resolve_experiment(raw, "test.toml")
    out = tmp_path / name
    sim.run_experiment(resolved, out, overwrite=True, quiet=True)
    return read_run(out)


def read_run(path):
    data = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda key, obj: data.__setitem__(key, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        data["attrs"] = dict(f.attrs)
    return data


def cuda_simulator_subprocess(code, timeout=600):
    """Run ``code`` in a fresh interpreter with numba's CUDA simulator on.

    With ``SGDSIM_CUDA_TESTS=device`` (on a GPU node) the same code runs on the GPU
    instead: the CUDA tests then test the compiled kernels, not the simulator.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if os.environ.get("SGDSIM_CUDA_TESTS") == "device":
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    else:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def cuda_simulator_available():
    try:
        import numba_cuda  # noqa: F401
        return True
    except ImportError:
        try:
            from numba import cuda  # noqa: F401
            return True
        except ImportError:
            return False


requires_cuda_sim = pytest.mark.skipif(not cuda_simulator_available(),
                                       reason="needs numba-cuda for the CUDA simulator")


@pytest.fixture
def kat_vectors():
    rows = []
    for line in KAT_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split()
            rows.append((int(fields[0]), [np.uint64(int(x, 16)) for x in fields[1:]]))
    return rows
