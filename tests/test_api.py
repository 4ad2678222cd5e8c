"""The Python API: sim.run in memory equals the run file `sgdsim run` writes, dataset for
dataset; sim.open reads a file back as the same Dataset."""
import numpy as np
import pytest

from sgdsim import sim
from tests._campaign import sgdsim, to_toml
from tests.conftest import read_run


def experiment():
    return {"run": {"seed": 4, "trajectories": 600, "steps": 80, "backend": "cpu"},
            "model": {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]},
            "dynamics": {"name": "sgd", "lr": 0.05},
            "init": {"uniform": {"low": -1.0, "high": 1.0}},
            "observables": {"histogram": {"lo": -1.0, "hi": 1.0, "bins": 16},
                            "timeseries": {"points": 5}, "paths": {"count": 3, "every": 10},
                            "first_passage": {"above": 0.9}, "loss_min": {}},
            "sweep": {"dynamics.lr": [0.02, 0.05]}}


def test_in_memory_run_equals_the_cli_run_file(tmp_path):
    (tmp_path / "exp.toml").write_text(to_toml(experiment()))
    result = sgdsim("run", tmp_path / "exp.toml", "--out", tmp_path / "run.h5", "--quiet",
                    "--trajectories", "500")
    assert result.returncode == 0, result.stderr
    ds = sim.run(experiment(), trajectories=500)
    stored = {k: v for k, v in read_run(tmp_path / "run.h5").items() if k != "attrs"}
    names = {k.replace("/", "_") for k in stored if not k.startswith("sweep/")}
    assert names == set(ds.data_vars)
    for key, value in stored.items():
        if key.startswith("sweep/"):
            np.testing.assert_array_equal(ds.coords[key[len("sweep/"):]].values, value)
            continue
        got = ds[key.replace("/", "_")].values
        assert got.dtype == value.dtype, key
        np.testing.assert_array_equal(got, value, err_msg=key)
    assert ds["final_theta"].dims == ("point", "trajectory", "coordinate")
    assert ds["histogram_counts"].dims == ("point", "coordinate", "bin")
    assert ds["loss_min_value"].dims == ("point", "trajectory")
    assert ds.attrs["trajectories"] == 500 and ds.attrs["complete"]
    opened = sim.open(tmp_path / "run.h5")
    for name in ds.data_vars:
        np.testing.assert_array_equal(opened[name].values, ds[name].values, err_msg=name)
        assert opened[name].dims == ds[name].dims


def test_api_takes_a_toml_path_and_dotted_overrides(tmp_path):
    exp = experiment()
    exp["sweep"] = {}
    (tmp_path / "exp.toml").write_text(to_toml(exp))
    ds = sim.run(tmp_path / "exp.toml", output=tmp_path / "out.h5",
                 **{"dynamics.lr": 0.02, "trajectories": 256})
    assert (tmp_path / "out.h5").exists()
    assert ds["final_theta"].shape == (1, 256, 1)
    assert "lr = 0.02" in ds.attrs["experiment"]


def test_api_bad_input_is_an_experiment_error():
    with pytest.raises(sim.ExperimentError, match=r"\[run\] trajectories"):
        sim.run(experiment(), trajectories=0)
    with pytest.raises(sim.ExperimentError, match="must be a dict"):
        sim.run(42)
