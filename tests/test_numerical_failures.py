"""Numerical failures are reported, whatever the observables: non-finite trajectories are
counted in the run file, `sgdsim run` warns, the summary says so first; a user model that is
not finite at theta_0 is refused before the run."""
import subprocess
import sys

import h5py
import numpy as np

from tests._campaign import sgdsim, to_toml
from tests.conftest import ROOT


def diverging_gd():
    # GD on a mean curvature of 2 with lr = 1.5: theta_t = (-2)^t theta_0 overflows near t = 1022.
    return {"run": {"seed": 3, "trajectories": 300, "steps": 1500, "backend": "cpu"},
            "model": {"name": "quadratic_finite_sum", "curvatures": [1.0, 3.0]},
            "dynamics": {"name": "gd", "lr": 1.5},
            "init": {"normal": {"mean": 0.0, "std": 1.0}},
            "observables": {}}


def test_non_finite_trajectories_are_counted_warned_and_summarised(tmp_path):
    (tmp_path / "exp.toml").write_text(to_toml(diverging_gd()))
    out = tmp_path / "run.h5"
    result = sgdsim("run", tmp_path / "exp.toml", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warning: point 0: 300 of 300 trajectories became non-finite" in result.stderr
    with h5py.File(out, "r") as f:
        steps = f["nonfinite/steps"][()]
    # |theta_t| = 2^t |theta_0| passes the largest double, 2^1024, at t = 1024 - log2|theta_0|.
    assert steps.shape == (1, 300) and (steps > 0).all()
    assert np.all(np.abs(steps - 1024) <= 12)
    summary = subprocess.run([sys.executable, "-m", "sgdsim.analysis", "summary", str(out)],
                             capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert lines[1].startswith("WARNING")
    assert "all 300 trajectories non-finite" in summary.stdout


def test_a_model_not_finite_at_theta0_is_refused(tmp_path):
    (tmp_path / "nan_model.py").write_text(
        "import math\n\nclass M:\n    @staticmethod\n    def gradient(x):\n"
        "        return math.nan if x < 5 else x\n\nmodel = M()\n")
    experiment = {"run": {"trajectories": 10, "steps": 5, "backend": "cpu"},
                  "model": {"name": "nan_model:model"},
                  "dynamics": {"name": "gd", "lr": 0.1}}
    (tmp_path / "exp.toml").write_text(to_toml(experiment))
    result = subprocess.run([sys.executable, "-m", "sgdsim.sim", "run", "exp.toml", "--out", "o.h5"],
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                 "HOME": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "gradient(0) = nan at theta_0" in lines[0]
    assert not (tmp_path / "o.h5").exists()
