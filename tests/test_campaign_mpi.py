"""`mpiexec -n 2 sgdsim run --mpi` equals the single-process run bit for bit (issue 5, item 5)."""
import os
import shutil
import subprocess
import sys

import pytest

from sgdsim import sim
from tests._campaign import assert_same_datasets, f2_sweep, to_toml
from tests.conftest import ROOT

MPIEXEC = shutil.which("mpiexec")


def _mpi4py_available():
    try:
        import mpi4py  # noqa: F401
        return True
    except ImportError:
        return False


pytestmark = pytest.mark.skipif(MPIEXEC is None or not _mpi4py_available(),
                                reason="needs mpiexec and mpi4py")


def _mpiexec(ranks, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1")
    return subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, "-m", "sgdsim.sim",
                           *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_mpi_two_ranks_equal_the_single_process_run(tmp_path):
    raw = f2_sweep(trajectories=1300, steps=50, chunk=512)
    exp = tmp_path / "f2.toml"
    exp.write_text(to_toml(raw))
    single = tmp_path / "single.h5"
    sim.run_experiment(sim.resolve_experiment(raw, "f2.toml"), single, quiet=True)
    out = tmp_path / "mpi.h5"
    done = _mpiexec(2, "run", exp, "-o", out, "--mpi", "--quiet")
    assert done.returncode == 0, done.stderr
    assert_same_datasets(single, out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


FLAKY_MODEL = """
import os
import numpy as np


class Quadratic:
    n_samples = 2

    @staticmethod
    def gradient(x):
        return x

    @staticmethod
    def noise_var(x):
        return 1.0 + 0.0 * x

    @staticmethod
    def per_sample_gradient(x, i):
        return x + (1.0 - 2.0 * i)

    @staticmethod
    def second_derivative(x):
        return 1.0 + 0.0 * x


if os.environ.get("PMI_RANK") == "1":  # rank 1 of the job gets a model without a Hessian
    del Quadratic.second_derivative

model = Quadratic()
"""


@pytest.mark.slow  # compiles the user model's kernel on rank 0 (about 15-25 s)
def test_mpi_failing_rank_fails_the_job_and_writes_nothing(tmp_path):
    (tmp_path / "flaky_model.py").write_text(FLAKY_MODEL)
    raw = f2_sweep(trajectories=1024, steps=10, observables={"lyapunov": {}})
    raw["model"] = {"name": "flaky_model:model"}
    exp = tmp_path / "flaky.toml"
    exp.write_text(to_toml(raw))
    out = tmp_path / "mpi.h5"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}", NUMBA_NUM_THREADS="1")
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "sgdsim.sim", "run", str(exp),
                           "-o", str(out), "--mpi", "--quiet"], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "MPI rank 1 of 2 failed" in done.stderr and "second_derivative" in done.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_mpi_splitting_run_equals_the_single_process_run(tmp_path):
    """A splitting run over 2 ranks: rank r takes the independent runs of shard r/2."""
    from tests.test_splitting import two_walks

    exp = tmp_path / "ams.toml"
    exp.write_text(to_toml(two_walks()))
    single = tmp_path / "single.h5"
    sim.run_experiment(sim.resolve_experiment(two_walks(), "ams.toml"), single, quiet=True)
    out = tmp_path / "mpi.h5"
    done = _mpiexec(2, "run", exp, "-o", out, "--mpi", "--quiet")
    assert done.returncode == 0, done.stderr
    assert_same_datasets(single, out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
