"""Sizes are checked before a run: the run file against the free disk, a chunk against the
device memory; --dry-run prints the plan; values the schema accepts never end in an
internal error."""
import subprocess
import sys

import pytest

from tests._campaign import to_toml
from tests.conftest import ROOT


def experiment(**observables):
    return {"run": {"trajectories": 2000, "steps": 100, "backend": "cpu"},
            "model": {"name": "polynomial", "coefficients": [0.0, 0.0, 0.5]},
            "dynamics": {"name": "langevin", "dt": 0.01, "temperature": 0.5},
            "observables": observables}


def sgdsim_run(tmp_path, exp, *flags, memory=None):
    (tmp_path / "exp.toml").write_text(to_toml(exp))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "SGDSIM_CACHE_DIR": "off"}
    if memory is not None:
        env["SGDSIM_MEMORY"] = str(memory)
    return subprocess.run([sys.executable, "-m", "sgdsim.sim", "run", "exp.toml", "--out", "out.h5",
                           "--quiet", *flags], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=120)


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: exp.toml: "), lines
    return lines[0]


@pytest.mark.parametrize("exp, flags, key", [
    (experiment(), ["--trajectories", "1000000000000"], "[run] trajectories is too large"),
    (experiment(histogram={"lo": -1.0, "hi": 1.0, "bins": 2**26}), [],
     "[observables] histogram.bins is too large"),
    (experiment(paths={"count": 2000, "every": 1}), ["--steps", "4000000"],
     "[observables] paths.count is too large"),
    (experiment(histogram={"lo": -1.0, "hi": 1.0, "bins": 10**10}), [],
     "[observables] histogram.bins must be in [1, 2**27)"),
    (experiment(timeseries={"points": 10**11}), [],
     "[observables] timeseries.points must be in [1, 2**27)"),
    (experiment(paths={"count": 10**8}), [],
     "[observables] paths.count must be <= run.trajectories = 2000"),
])
def test_oversized_runs_are_refused_before_anything_is_written(tmp_path, exp, flags, key):
    for dry in ([], ["--dry-run"]):
        line = one_error_line(sgdsim_run(tmp_path, exp, *flags, *dry, memory=10**9))
        assert key in line, line
        assert not (tmp_path / "out.h5").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    exp = experiment(timeseries={"points": 10})
    exp["sweep"] = {"dynamics.dt": [0.01, 0.02]}
    result = sgdsim_run(tmp_path, exp, "--dry-run", "--trajectories", "100000")
    assert result.returncode == 0, result.stderr
    assert "2 point(s) x 100000 trajectories x 100 steps" in result.stdout
    assert "kernels to compile: 1" in result.stdout
    assert "run file: about" in result.stdout and "memory per chunk" in result.stdout
    assert not (tmp_path / "out.h5").exists()


def test_automatic_chunks_shrink_to_fit_the_memory(tmp_path):
    exp = experiment()
    small = sgdsim_run(tmp_path, exp, "--dry-run", "--trajectories", "100000",
                       memory=2 * 10**6)
    assert small.returncode == 0, small.stderr
    chunks = next(l for l in small.stdout.splitlines() if l.startswith("chunks:"))
    count, size = int(chunks.split()[1]), int(chunks.split()[-2])
    assert size % 256 == 0 and size < 100000 and count == -(-100000 // size)
