"""The plug-in observable loss_min (sim/observables/loss_min.py), the worked example of
docs/EXTENDING.md: checked against the minimum of the loss over the recorded paths of
the same run, on every backend; in tests/test_engine_backends.py it is also among the
observables whose cpu, numpy and CUDA-simulator results must agree bit for bit across
chunk sizes and threads."""
import subprocess
import sys

import numpy as np
import pytest

from sgdsim.kernels import linear_regression_data
from tests._campaign import to_toml
from tests.conftest import ROOT, run_file

COEFFICIENTS = [0.0, 0.0, -0.5, 0.0, 0.25]


def double_well(backend, steps=150, burn_in=0, trajectories=96):
    return {
        "run": {"seed": 31, "trajectories": trajectories, "steps": steps, "backend": backend},
        "model": {"name": "polynomial", "coefficients": COEFFICIENTS, "noise_var": 0.5},
        "dynamics": {"name": "langevin", "dt": 0.05, "temperature": 0.9},
        "init": {"normal": {"mean": 0.0, "std": 1.5}},
        # Some trajectories leave |theta| < 1.6 and stop: their minimum is over the steps
        # before (the paths are NaN from the divergence step on).
        "observables": {"loss_min": {"burn_in": burn_in}, "divergence": {"threshold": 1.6},
                        "paths": {"count": trajectories, "every": 1}},
    }


def expected_from_paths(paths, loss, burn_in):
    """min over recorded steps t >= burn_in of loss(theta_t), and the first step attaining it."""
    values = loss(paths.astype(np.float64))            # [P, N, T + 1]
    values[..., :burn_in] = np.nan
    finite = np.isfinite(values)
    masked = np.where(finite, values, np.inf)
    best = masked.min(axis=-1)
    step = np.where(finite.any(axis=-1), masked.argmin(axis=-1), -1)
    return best, step


def polynomial_loss(paths):
    x = paths[..., 0]
    return sum(c * x**k for k, c in enumerate(COEFFICIENTS))


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("burn_in", [0, 40])
def test_loss_min_is_the_minimum_over_the_recorded_path(tmp_path, backend, burn_in):
    out = run_file(tmp_path, double_well(backend, burn_in=burn_in))
    diverged = out["divergence/steps"] >= 0
    assert diverged.any() and not diverged.all()
    best, step = expected_from_paths(out["paths/theta"], polynomial_loss, burn_in)
    np.testing.assert_array_equal(out["loss_min/step"], step)
    np.testing.assert_allclose(out["loss_min/value"], best, rtol=1e-14, atol=0)
    # Trajectories that diverged before burn_in have no value.
    none = (out["divergence/steps"] >= 0) & (out["divergence/steps"] <= burn_in)
    assert np.all(np.isinf(out["loss_min/value"][none]))
    assert np.all(out["loss_min/step"][none] == -1)


def test_loss_min_in_d_dimensions_and_in_float32(tmp_path):
    spec = {"name": "linear_regression", "samples": 12, "features": 5, "label_noise": 0.3,
            "data_seed": 2}
    a, b, _, _ = linear_regression_data(12, 5, np.ones(5), 0.3, 2)
    experiment = {
        "run": {"seed": 5, "trajectories": 40, "steps": 60, "backend": "cpu",
                "dtype": "float32"},
        "model": spec, "dynamics": {"name": "sgd", "lr": 0.1},
        "init": {"normal": {"mean": 0.0, "std": 1.0}},
        "observables": {"loss_min": {}, "paths": {"count": 40, "every": 1}},
    }
    out = run_file(tmp_path, experiment)
    assert out["paths/theta"].dtype == np.float32

    def loss(paths):
        residual = paths @ a.T - b                      # [P, N, T + 1, samples]
        return 0.5 * (residual**2).mean(axis=-1)

    best, step = expected_from_paths(out["paths/theta"], loss, 0)
    np.testing.assert_array_equal(out["loss_min/step"], step)
    np.testing.assert_allclose(out["loss_min/value"], best, rtol=1e-12)
    # SGD's minimum is not simply the last step's loss.
    assert (out["loss_min/step"] < 60).any()


def _run_cli(tmp_path, experiment, *args):
    path = tmp_path / "exp.toml"
    path.write_text(to_toml(experiment))
    return subprocess.run([sys.executable, "-m", "sgdsim.sim", "run", str(path), "--out",
                           str(tmp_path / "out.h5"), "--quiet", *args],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path)})


def test_loss_min_keys_are_validated(tmp_path):
    experiment = double_well("cpu", steps=10, burn_in=11)
    result = _run_cli(tmp_path, experiment)
    assert result.returncode == 2
    assert "[observables] loss_min.burn_in" in result.stderr
    assert "must be <= run.steps = 10" in result.stderr
    assert not (tmp_path / "out.h5").exists()


def test_loss_min_needs_a_loss(tmp_path):
    experiment = double_well("cpu", steps=10)
    experiment["model"] = {"name": "gradient_only_model:model"}
    (tmp_path / "gradient_only_model.py").write_text(
        "class Model:\n    @staticmethod\n    def gradient(x):\n        return x\n\n"
        "model = Model()\n")
    result = _run_cli(tmp_path, experiment)
    assert result.returncode == 2, result.stderr
    assert "[observables] loss_min" in result.stderr and "loss function" in result.stderr
