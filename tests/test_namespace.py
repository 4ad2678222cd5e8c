"""The packages install as sgdsim.kernels, sgdsim.sim and sgdsim.analysis: folders named
kernels/ or analysis/ in the working directory (or another package called kernels) do not
hijack them."""
import os
import shutil
import subprocess
import sys

import numpy as np

import sgdsim
import sgdsim.analysis
from sgdsim import sim
from tests._campaign import to_toml
from tests.conftest import ROOT, read_run


def test_commands_run_beside_folders_named_like_the_packages(tmp_path):
    for name in ("kernels", "sim", "analysis"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError('the {name} folder of the working directory was imported')\n")
    experiment = {"run": {"trajectories": 300, "steps": 50, "backend": "cpu"},
                  "model": {"name": "polynomial", "coefficients": [0.0, 0.0, 0.5]},
                  "dynamics": {"name": "langevin", "dt": 0.01, "temperature": 0.5},
                  "observables": {"first_passage": {"above": 0.5}}}
    (tmp_path / "exp.toml").write_text(to_toml(experiment))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bin_dir = os.path.dirname(sys.executable)
    scripts = [os.path.join(bin_dir, "sgdsim"), os.path.join(bin_dir, "sgdsim-analysis")]
    if all(shutil.which(s) for s in scripts):
        run = [scripts[0]]
        summary = [scripts[1]]
    else:                       # not installed: the same programs as modules
        run = [sys.executable, "-m", "sgdsim.sim"]
        summary = [sys.executable, "-m", "sgdsim.analysis"]
    done = subprocess.run(run + ["run", "exp.toml", "-o", "out.h5", "--quiet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shown = subprocess.run(summary + ["summary", "out.h5"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "first_passage.events" in shown.stdout
    module = subprocess.run([sys.executable, "-m", "sgdsim.analysis", "summary", "out.h5"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert module.returncode == 0 and module.stdout == shown.stdout, module.stderr


def test_the_top_level_api_is_the_sim_api(tmp_path):
    experiment = {"run": {"trajectories": 256, "steps": 30, "backend": "cpu"},
                  "model": {"name": "polynomial", "coefficients": [0.0, 0.0, 0.5]},
                  "dynamics": {"name": "langevin", "dt": 0.01, "temperature": 0.5}}
    ds = sgdsim.run(experiment, output=tmp_path / "run.h5")
    stored = read_run(tmp_path / "run.h5")
    np.testing.assert_array_equal(ds["final_theta"].values, stored["final/theta"])
    np.testing.assert_array_equal(sgdsim.open(tmp_path / "run.h5")["final_theta"].values,
                                  stored["final/theta"])
    assert sgdsim.run is sim.run and sgdsim.ExperimentError is sim.ExperimentError
    summary = sgdsim.analysis.summary(tmp_path / "run.h5")
    assert summary["points"][0]["final"]["trajectories"] == 256
    # The summary of the in-memory Dataset is the file's.
    in_memory = sgdsim.analysis.summary(sgdsim.run(experiment))
    assert in_memory["file"] == "<dataset>"
    assert in_memory["points"] == summary["points"]
