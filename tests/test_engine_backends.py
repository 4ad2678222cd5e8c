"""Reproducibility across chunks and threads, agreement across backends, user models."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from tests.conftest import ROOT, cuda_simulator_subprocess, read_run, requires_cuda_sim, run_file

EXAMPLES = ROOT / "examples"

ALL_OBSERVABLES = {
    "histogram": {"lo": -2.0, "hi": 2.0, "bins": 40, "burn_in": 10, "thin": 3},
    "first_passage": {"above": 0.5},
    "divergence": {"threshold": 50.0},
    "lyapunov": {},
    "occupancy": {"boundaries": [-0.5, 0.5]},
    "timeseries": {"points": 12, "spacing": "linear"},
    "paths": {"count": 5, "every": 7},
    "loss_min": {"burn_in": 4},
    "period": {"max": 8, "tol": 1e-3},
}


def langevin(trajectories=1500, steps=120, **run):
    return {
        "run": {"seed": 123, "trajectories": trajectories, "steps": steps, "backend": "cpu",
                **run},
        "model": {"name": "polynomial", "coefficients": [0.0, 0.0, -0.5, 0.0, 0.25],
                  "noise_var": {"left": 0.5, "right": 1.5, "center": 0.0, "width": 0.5}},
        "dynamics": {"name": "langevin", "dt": 0.01, "temperature": 0.8},
        "init": {"normal": {"mean": -1.0, "std": 0.3}},
        "observables": ALL_OBSERVABLES,
    }


def sgd_unstable(trajectories=1500, steps=120, **run):
    # F2-like: lr above 2/h_max, so some trajectories diverge (exercises stopping).
    return {
        "run": {"seed": 77, "trajectories": trajectories, "steps": steps, "backend": "cpu",
                **run},
        "model": {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0],
                  "centers": [0.1, -0.2]},
        "dynamics": {"name": "sgd", "lr": 0.15},
        "init": {"uniform": {"low": -1.0, "high": 1.0}},
        "observables": ALL_OBSERVABLES,
    }


def datasets(data):
    return {k: v for k, v in data.items() if k != "attrs"}


def assert_identical(a, b):
    a, b = datasets(a), datasets(b)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("make", [langevin, sgd_unstable])
def test_bit_identical_across_chunk_sizes_and_threads(tmp_path, make):
    reference = run_file(tmp_path, make(), "auto.h5")
    assert (reference["divergence/steps"] >= 0).any() or make is langevin
    assert_identical(reference, run_file(tmp_path, make(chunk=256), "c256.h5"))
    assert_identical(reference, run_file(tmp_path, make(chunk=768), "c768.h5"))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert_identical(reference, run_file(tmp_path, make(chunk=512), "t1.h5"))
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("make", [langevin, sgd_unstable])
def test_numpy_reference_agrees_with_cpu(tmp_path, make):
    cpu = run_file(tmp_path, make(trajectories=600, steps=80), "cpu.h5")
    ref = run_file(tmp_path, make(trajectories=600, steps=80, backend="numpy"), "np.h5")
    # Same random words and update order: integer observables agree exactly,
    # floats to rounding (the two evaluate the same float64 expressions).
    for key in datasets(cpu):
        if cpu[key].dtype.kind in "iub":
            np.testing.assert_array_equal(cpu[key], ref[key], err_msg=key)
        else:
            np.testing.assert_allclose(cpu[key], ref[key], rtol=1e-12, atol=1e-12,
                                       equal_nan=True, err_msg=key)


def test_float32_state_stays_float32_and_close_to_float64(tmp_path):
    single = run_file(tmp_path, langevin(trajectories=400, steps=60, dtype="float32"), "32.h5")
    double = run_file(tmp_path, langevin(trajectories=400, steps=60, dtype="float64"), "64.h5")
    assert single["final/theta"].dtype == np.float32
    np.testing.assert_allclose(single["final/theta"], double["final/theta"], atol=1e-4)


def test_float32_runs_update_in_float32_on_cpu_and_numpy_alike(tmp_path):
    """A float32 run takes its step in float32 (the polynomial's Horner rule, dt and the
    noise amplitude in float32) on the vectorised CPU kernel and on the numpy reference:
    the same float32 operations in the same order, so the same bits."""
    def w1(backend):
        return {"run": {"seed": 11, "trajectories": 600, "steps": 80, "backend": backend,
                        "dtype": "float32"},
                "model": {"name": "polynomial", "coefficients": [1.0, 0.0, -2.0, 0.0, 1.0],
                          "noise_var": 1.0},
                "dynamics": {"name": "langevin", "dt": 0.05, "temperature": 0.5},
                "init": {"normal": {"mean": -1.0, "std": 0.5}},
                "observables": {"first_passage": {"above": 0.0}}}
    cpu = run_file(tmp_path, w1("cpu"), "cpu.h5")
    ref = run_file(tmp_path, w1("numpy"), "np.h5")
    assert cpu["final/theta"].dtype == np.float32
    np.testing.assert_array_equal(cpu["final/theta"], ref["final/theta"])
    np.testing.assert_array_equal(cpu["first_passage/steps"], ref["first_passage/steps"])
    assert 0 < (cpu["first_passage/steps"] >= 0).mean() < 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # 1e300 -> inf
def test_float32_event_limits_answer_as_the_float64_comparisons():
    """The CPU lanes compare a float32 state with the divergence threshold and the first
    passage level rounded outward to float32: for every float32 y near them, the answers
    are those of the float64 comparisons |y| <= threshold and sign y >= sign level."""
    import numba
    from sgdsim.kernels._cpu import state_limits

    limits = numba.njit(lambda like, t, s, level: state_limits(like, t, s, level))
    like = np.zeros(1, dtype=np.float32)
    for threshold in (3.0, 1e6 + 0.3, 0.1, 1e300):
        for sign, level in ((1.0, 0.1), (-1.0, -0.1), (1.0, -1e-3), (-1.0, 2.5), (1.0, 1e39)):
            # (numba returns float32 scalars as Python floats: they must be float32 values.)
            got = limits(like, threshold, sign, sign * level)
            t32, s32, l32 = (np.float32(v) for v in got)
            assert got == (t32, s32, l32)
            near = []
            for centre in (np.float32(threshold), np.float32(level), -np.float32(level), t32,
                           l32, -l32):
                up, down = centre, centre
                for _ in range(3):
                    near += [up, down]
                    up = np.nextafter(up, np.float32(np.inf))
                    down = np.nextafter(down, np.float32(-np.inf))
            for y in near:
                assert (abs(y) <= t32) == (abs(np.float64(y)) <= threshold), (y, threshold)
                assert (s32 * y >= l32) == (sign * np.float64(y) >= sign * level), (y, level)
    # A float64 state compares with the values themselves.
    assert limits(np.zeros(1), 0.1, -1.0, -0.3) == (0.1, -1.0, -0.3)


@requires_cuda_sim
@pytest.mark.parametrize("make", ["langevin", "sgd_unstable"])
def test_cuda_simulator_agrees_with_cpu(tmp_path, make):
    code = f"""
import json, pathlib, numpy as np
from tests.test_engine_backends import {make} as make
from tests.conftest import run_file
out = run_file(pathlib.Path({str(tmp_path)!r}), make(trajectories=200, steps=20, backend="cuda"), "cuda.h5")
assert out["attrs"]["backend"] == "cuda"
print("ok")
"""
    result = cuda_simulator_subprocess(code)
    assert result.returncode == 0, result.stderr[-3000:]
    cuda = read_run(tmp_path / "cuda.h5")
    cpu = run_file(tmp_path, globals()[make](trajectories=200, steps=20), "cpu.h5")
    for key in datasets(cpu):
        if cpu[key].dtype.kind in "iub":
            np.testing.assert_array_equal(cpu[key], cuda[key], err_msg=key)
        else:
            # The GPU adds timeseries sums in a tree: equal up to rounding.
            np.testing.assert_allclose(cpu[key], cuda[key], rtol=1e-11, atol=1e-12,
                                       equal_nan=True, err_msg=key)


def user_model_experiment(backend, trajectories=400, steps=200):
    return {
        "run": {"seed": 4, "trajectories": trajectories, "steps": steps, "backend": backend},
        "model": {"name": "tilted_double_well:model"},
        "dynamics": {"name": "sgd", "lr": 0.05},
        "init": {"value": -1.0},
        "observables": {"occupancy": {"boundaries": [0.0]}, "lyapunov": {},
                        "timeseries": {"points": 5}},
    }


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_user_model_runs_on_cpu_and_numpy_and_they_agree(tmp_path, examples_on_path):
    cpu = run_file(tmp_path, user_model_experiment("cpu"), "cpu.h5")
    ref = run_file(tmp_path, user_model_experiment("numpy"), "np.h5")
    np.testing.assert_allclose(cpu["final/theta"], ref["final/theta"], rtol=1e-12)
    np.testing.assert_array_equal(cpu["occupancy/counts"], ref["occupancy/counts"])
    np.testing.assert_allclose(cpu["timeseries/loss_mean"], ref["timeseries/loss_mean"],
                               rtol=1e-12)
    # It really is the user's model: the tilt makes the left well the deeper one.
    assert cpu["occupancy/counts"][0, :, 0].sum() > cpu["occupancy/counts"][0, :, 1].sum()


@requires_cuda_sim
def test_user_model_runs_on_cuda_simulator(tmp_path):
    code = f"""
import pathlib, sys
sys.path.insert(0, {str(EXAMPLES)!r})
from tests.test_engine_backends import user_model_experiment
from tests.conftest import run_file
run_file(pathlib.Path({str(tmp_path)!r}), user_model_experiment("cuda", 64, 20), "cuda.h5")
print("ok")
"""
    result = cuda_simulator_subprocess(code)
    assert result.returncode == 0, result.stderr[-3000:]
    cuda = read_run(tmp_path / "cuda.h5")
    sys.path.insert(0, str(EXAMPLES))
    try:
        cpu = run_file(tmp_path, user_model_experiment("cpu", 64, 20), "cpu.h5")
    finally:
        sys.path.remove(str(EXAMPLES))
    np.testing.assert_allclose(cpu["final/theta"], cuda["final/theta"], rtol=1e-12)


def test_user_model_that_cannot_compile_is_a_clear_error(tmp_path):
    module = tmp_path / "broken_model.py"
    module.write_text("class M:\n    @staticmethod\n    def gradient(x):\n"
                      "        return {'not': 'a number'}[x]\nmodel = M()\n")
    exp = tmp_path / "exp.toml"
    exp.write_text('[run]\nbackend = "cpu"\ntrajectories = 10\nsteps = 5\n'
                   '[model]\nname = "broken_model:model"\n'
                   '[dynamics]\nname = "gd"\nlr = 0.1\n')
    out = tmp_path / "out.h5"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    result = subprocess.run([sys.executable, "-m", "sgdsim.sim", "run", str(exp), "-o", str(out)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "model" in lines[0] and "compile" in lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out.h5*"))
