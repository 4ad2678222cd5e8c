"""Adaptive multilevel splitting (sim._splitting) against exact answers and brute force.

- A replica is trajectory g of an ordinary run, bit for bit (the same update rule and
  Philox words), also when it is stopped and resumed mid-group.
- Gambler's ruin: SGD with lr 1 on L = 0 with per-sample gradients +-1 is the simple
  random walk on the integers, whose P(reach b before a) from x is (x - a) / (b - a)
  exactly (no overshoot; many ties in the levels). AMS's mean over runs matches it within
  5 standard errors, and over 200 independent groups of runs its 95 % interval covers it
  92-98 % of the time.
- The double well (theta^2 - 1)^2, Langevin: p from theta_0 against an independent
  brute-force NumPy simulation of the same Euler-Maruyama chain, and the MFPT from A's
  boundary against the brute-force mean first-passage time of the ordinary engine.
- Threads and the number of runs do not change a run's result; bad [splitting] tables
  are one-line errors (tests/test_config_errors.py).
"""
import math
import os
import signal
import subprocess
import sys

import h5py
import numba
import numpy as np
import pytest

from sgdsim import analysis, kernels, sim
from sgdsim.sim._runner import merge_shards
from tests._campaign import assert_same_datasets, sgdsim, to_toml
from tests.conftest import (ROOT, cuda_simulator_subprocess, read_run, requires_cuda_sim,
                            run_file)

WELL = {"name": "polynomial", "coefficients": [1.0, 0.0, -2.0, 0.0, 1.0], "noise_var": 1.0}


def splitting_run(tmp_path, raw, name="ams.h5"):
    path = tmp_path / name
    sim.run_experiment(sim.resolve_experiment(raw, "test"), path, overwrite=True, quiet=True)
    return read_run(path)


def double_well(start="boundary", runs=100, temperature=0.5, dt=0.01, seed=3, replicas=100):
    return {"run": {"seed": seed, "steps": 10**8, "backend": "cpu"},
            "model": WELL,
            "dynamics": {"name": "langevin", "dt": dt, "temperature": temperature},
            "init": {"value": -0.9},
            "splitting": {"replicas": replicas, "runs": runs, "a": -0.95, "b": 1.0,
                          "start": start}}


def walk(runs, replicas=20, b=20.0, seed=1):
    """The simple random walk from 1 between A = {<= 0} and B = {>= b}: p = 1 / b."""
    return {"run": {"seed": seed, "steps": 10**7, "backend": "cpu"},
            "model": {"name": "polynomial", "coefficients": [0.0], "noise_var": 1.0},
            "dynamics": {"name": "sgd", "lr": 1.0},
            "init": {"value": 1.0},
            "splitting": {"replicas": replicas, "runs": runs, "a": 0.0, "b": b,
                          "start": "init"}}


QUADRATIC = {"name": "quadratic_finite_sum", "curvatures": [4.0, 1.0], "centers": [1.0, 0.0]}
GROOVES = {"name": "grooves", "dim": 1, "kappa": 1.0, "mu": 4.0}


@pytest.mark.parametrize("model_spec, dynamics, dtype, init", [
    (WELL, {"name": "langevin", "dt": 0.01, "temperature": 0.5}, "float32",
     {"normal": {"mean": -1.0, "std": 0.1}}),
    (QUADRATIC, {"name": "sgd", "lr": 0.1, "momentum": 0.5}, "float64",
     {"normal": {"mean": -1.0, "std": 0.1}}),
    (QUADRATIC, {"name": "adamw", "lr": 0.05, "weight_decay": 0.1}, "float64",
     {"normal": {"mean": -1.0, "std": 0.1}}),
    (GROOVES, {"name": "two_time_scale", "a": 0.05, "eps": 0.1, "noise_x": 0.3,
               "noise_y": 0.2}, "float64", {"vector": [3.0, 4.75]}),
])
def test_a_replica_is_the_engine_trajectory_bit_for_bit(tmp_path, model_spec, dynamics, dtype,
                                                        init):
    from sgdsim.kernels._splitting import MODE_FORWARD, TIMEOUT, aux_columns, make_driver, \
        make_score
    from sgdsim.sim._plan import model_for

    raw = {"run": {"seed": 7, "trajectories": 8, "steps": 37, "backend": "cpu", "dtype": dtype},
           "model": model_spec, "dynamics": dynamics, "init": init, "observables": {}}
    engine = run_file(tmp_path, raw)["final/theta"][0]
    resolved = sim.resolve_experiment(raw, "test")
    model = model_for(resolved["model"], resolved["dynamics"])
    dim = model.dim
    drive = make_driver(model, resolved["dynamics"], np.dtype(dtype),
                        make_score("coordinate:0", dim))
    x = kernels.initial_state(resolved["init"], 0, 8, 7, np.dtype(dtype), dim)
    aux = np.zeros((8, aux_columns(resolved["dynamics"], dim)))
    t = np.zeros(8, dtype=np.int64)
    key_lo, key_hi = kernels.seed_key(7)
    p = np.array([model.params], dtype=dtype)       # in the state's dtype, as the engine's
    d = np.array([kernels.dynamics_params(resolved["dynamics"])], dtype=dtype)
    top, flag = np.zeros(8), np.zeros(8, dtype=np.int64)
    for stop in (13, 37):                 # 13: in the middle of a group of four steps
        drive(x, aux, t, np.arange(8, dtype=np.uint64), np.zeros(8, dtype=np.int64),
              MODE_FORWARD, np.zeros(8), -1e300, 1e300, stop, key_lo, key_hi, p, d, top, flag)
    assert np.all(flag == TIMEOUT) and np.all(t == 37)
    np.testing.assert_array_equal(x.reshape(engine.shape), engine)


def test_gamblers_ruin_probability_is_exact_and_its_intervals_cover(tmp_path):
    groups, per_group = 200, 20
    out = splitting_run(tmp_path, walk(groups * per_group))
    p = out["splitting/probability"][0]
    assert np.isfinite(p).all() and out["splitting/iterations"][0].min() >= 1
    exact = 1.0 / 20.0
    assert abs(p.mean() - exact) < 5 * p.std(ddof=1) / math.sqrt(p.size)
    covered = 0
    for block in p.reshape(groups, per_group):
        low, high = analysis.splitting(block)["p_ci95"]
        covered += low <= exact <= high
    assert 0.92 <= covered / groups <= 0.98, covered / groups


def test_a_negated_score_escapes_downwards(tmp_path):
    # The walk mirrored: from -1 between A = {-theta <= 0} and B = {-theta >= 20}.
    raw = walk(400)
    raw["init"] = {"value": -1.0}
    raw["splitting"]["score"] = "-theta"
    p = splitting_run(tmp_path, raw)["splitting/probability"][0]
    assert abs(p.mean() - 1.0 / 20.0) < 5 * p.std(ddof=1) / math.sqrt(p.size)


def test_double_well_probability_from_theta0_matches_brute_force(tmp_path):
    out = splitting_run(tmp_path, double_well(start="init"))
    estimate = analysis.splitting(out["splitting/probability"][0])
    # Brute force: the same Euler-Maruyama chain in NumPy, its own generator.
    rng = np.random.default_rng(2024)
    n, dt, amplitude = 400_000, 0.01, math.sqrt(0.5 * 0.01)
    x = np.full(n, -0.9)
    alive = np.ones(n, dtype=bool)
    reached = 0
    while alive.any():
        y = x[alive]
        y = y - 4.0 * y * (y * y - 1.0) * dt + amplitude * rng.standard_normal(y.size)
        x[alive] = y
        up, down = y >= 1.0, y <= -0.95
        reached += int(up.sum())
        idx = np.flatnonzero(alive)
        alive[idx[up | down]] = False
    brute = reached / n
    brute_se = math.sqrt(brute * (1 - brute) / n)
    assert reached > 500
    assert abs(estimate["p"] - brute) < 4 * math.hypot(estimate["p_stderr"], brute_se), \
        (estimate["p"], brute)


def test_mfpt_from_the_boundary_matches_the_engine_first_passage(tmp_path):
    out = splitting_run(tmp_path, double_well(start="boundary"))
    estimate = analysis.splitting(out["splitting/probability"][0],
                                  out["splitting/loop_steps"][0],
                                  out["splitting/reactive_steps"][0])
    brute = run_file(tmp_path, {
        "run": {"seed": 5, "trajectories": 2000, "steps": 200_000, "backend": "cpu"},
        "model": WELL, "dynamics": {"name": "langevin", "dt": 0.01, "temperature": 0.5},
        "init": {"value": -0.9},
        "observables": {"first_passage": {"above": 1.0, "stop": True}}},
        "brute.h5")["first_passage/steps"][0]
    assert (brute > 0).all()                       # none censored
    brute_se = brute.std(ddof=1) / math.sqrt(brute.size)
    assert abs(estimate["mfpt_steps"] - brute.mean()) < 4 * math.hypot(
        estimate["mfpt_stderr"], brute_se), (estimate["mfpt_steps"], brute.mean())
    # And beside the continuous process: the chain's Euler-Maruyama bias at dt = 0.01 is a
    # few per cent here.
    exact = analysis.langevin_mfpt(WELL, 0.5, -0.9, 1.0)["time"] / 0.01
    assert abs(brute.mean() / exact - 1.0) < 0.05


def test_threads_and_the_number_of_runs_do_not_change_a_run(tmp_path):
    eight = splitting_run(tmp_path, walk(8, b=12.0), "eight.h5")
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        four = splitting_run(tmp_path, walk(4, b=12.0), "four.h5")
    finally:
        numba.set_num_threads(threads)
    for name in ("probability", "iterations", "reactive_steps", "cost"):
        np.testing.assert_array_equal(eight[f"splitting/{name}"][:, :4],
                                      four[f"splitting/{name}"], err_msg=name)


def backend_cases():
    """The random walk (exact in any arithmetic, its levels tied) from theta_0 and from the
    boundary, and Langevin from the boundary in float32 and float64."""
    cases = {"walk": walk(3, replicas=10, b=6.0), "walk_loops": walk(3, replicas=10, b=6.0),
             "float32": double_well(runs=2, replicas=8, temperature=1.0),
             "float64": double_well(runs=2, replicas=8, temperature=1.0)}
    cases["walk_loops"]["splitting"]["start"] = "boundary"
    cases["float32"]["run"]["dtype"] = "float32"
    return cases


def assert_same_decisions(tmp_path, cases, backend):
    """The runs at ``tmp_path``/NAME.BACKEND.h5 made the CPU driver's decisions: the same
    kills, survivors and branch points, so the same p, iterations and costs."""
    for name, raw in cases.items():
        other = read_run(tmp_path / f"{name}.{backend}.h5")
        cpu = splitting_run(tmp_path, raw, f"{name}.cpu.h5")
        assert other["attrs"]["backend"] == backend and cpu["attrs"]["backend"] == "cpu"
        assert np.all(cpu["splitting/iterations"] > 0), name
        for key in ("probability", "iterations", "cost", "timeouts", "non_finite"):
            np.testing.assert_array_equal(cpu[f"splitting/{key}"], other[f"splitting/{key}"],
                                          err_msg=f"{name} {key}")
        for key in ("mfpt", "reactive_steps", "loop_steps"):
            np.testing.assert_allclose(cpu[f"splitting/{key}"], other[f"splitting/{key}"],
                                       rtol=1e-12, equal_nan=True, err_msg=f"{name} {key}")


@requires_cuda_sim
def test_the_cuda_driver_agrees_with_the_cpu_driver_under_the_simulator(tmp_path):
    """backend = "cuda": kernels._splitting's walk, a thread per replica."""
    cases = backend_cases()
    code = f"""
import pathlib
from sgdsim import sim
cases = {cases!r}
for name, raw in cases.items():
    raw["run"]["backend"] = "cuda"
    sim.run_experiment(sim.resolve_experiment(raw, "test"),
                       pathlib.Path({str(tmp_path)!r}) / (name + ".cuda.h5"), quiet=True)
print("ok")
"""
    result = cuda_simulator_subprocess(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_decisions(tmp_path, cases, "cuda")


def test_the_numpy_reference_driver_agrees_with_the_cpu_driver(tmp_path):
    """backend = "numpy": the stopping rules written again in array form, the replicas at
    one step stepped together."""
    cases = backend_cases()
    for name, raw in cases.items():
        splitting_run(tmp_path, dict(raw, run=dict(raw["run"], backend="numpy")),
                      f"{name}.numpy.h5")
    assert_same_decisions(tmp_path, cases, "numpy")


def two_walks():
    """Two sweep points of the random walk, p = 1/40 each; the second takes the longer."""
    raw = walk(24, b=40.0)
    raw["sweep"] = {"dynamics.lr": [1.0, 0.02]}
    return raw


def test_a_checkpointed_run_resumes_bit_identical(tmp_path, monkeypatch):
    whole = tmp_path / "whole.h5"
    sim.run_experiment(sim.resolve_experiment(two_walks(), "test"), whole, quiet=True)
    from sgdsim.sim import _splitting
    from sgdsim.sim._runner import resume_run

    saves, real_save = [], _splitting._save

    def save_then_stop(*args):
        real_save(*args)
        saves.append(args[4])                 # the point the checkpoint resumes at
        if len(saves) == 3:
            raise KeyboardInterrupt           # as if killed after the third checkpoint

    monkeypatch.setattr(_splitting, "_save", save_then_stop)
    out = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        sim.run_experiment(sim.resolve_experiment(two_walks(), "test"), out, quiet=True,
                           checkpoint_seconds=0)
    monkeypatch.setattr(_splitting, "_save", real_save)
    assert read_run(out)["splitting/probability"].shape[0] == saves[-1]
    with h5py.File(out, "r") as f:
        assert not f.attrs["complete"] and f["checkpoint"].attrs["kind"] == "splitting"
        assert "state" in f["checkpoint"]     # in the middle of a point
    resume_run(out, quiet=True)
    assert_same_datasets(out, whole)


def test_shards_merge_into_the_unsharded_run_bit_for_bit(tmp_path):
    """--shard I/N cuts a splitting run over its independent runs (4 + 5 + 5 + 5 + 5 of 24
    here); the merge puts them side by side, so it equals the unsharded run."""
    whole = tmp_path / "whole.h5"
    sim.run_experiment(sim.resolve_experiment(two_walks(), "test"), whole, quiet=True)
    raw = two_walks()
    shards = []
    for i in range(5):
        shards.append(tmp_path / f"shard{i}.h5")
        sim.run_experiment(sim.resolve_experiment(raw, "test"), shards[-1], quiet=True,
                           shard=(i, 5))
    with h5py.File(shards[1], "r") as f:
        assert list(f.attrs["shard_runs"]) == [4, 9]
        assert f["splitting/probability"].shape == (2, 5)
    merged = tmp_path / "merged.h5"
    merge_shards(shards[::-1], merged)
    assert_same_datasets(merged, whole)
    with h5py.File(merged, "r") as f:
        assert f.attrs["merged_shards"] == 5 and f.attrs["complete"]
        assert "shard" not in f.attrs
    missing = sgdsim("merge", *shards[:3], shards[4], "-o", tmp_path / "four.h5")
    assert missing.returncode == 2 and "shard 3/5 missing" in missing.stderr, missing.stderr
    (tmp_path / "exp.toml").write_text(to_toml(raw))
    too_many = sgdsim("run", tmp_path / "exp.toml", "-o", tmp_path / "x.h5", "--shard", "0/25")
    assert too_many.returncode == 2
    assert "[splitting] runs = 24 cannot be split into --shard 0/25" in too_many.stderr
    assert not (tmp_path / "x.h5").exists()
    plan = sgdsim("run", tmp_path / "exp.toml", "-o", tmp_path / "x.h5", "--shard", "1/5",
                  "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "2 sweep point(s) x 5 independent run(s) (runs 4..8 of 24" in plan.stdout
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow  # about 20 s: two subprocesses and a resume
def test_sigterm_saves_a_checkpoint_that_resumes_bit_identical(tmp_path):
    (tmp_path / "exp.toml").write_text(to_toml(two_walks()))
    whole = sgdsim("run", tmp_path / "exp.toml", "--out", tmp_path / "whole.h5", "--quiet")
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "run.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "sgdsim.sim", "run", str(tmp_path / "exp.toml"), "--out",
         str(out), "--checkpoint-seconds", "0"], stderr=subprocess.PIPE, text=True,
        cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = process.stderr.readline()          # point 1 is done; point 2 is running
    assert "splitting point 1/2" in line, line
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[1]
    assert process.returncode == 130, rest
    assert "checkpoint saved" in rest
    resumed = sgdsim("resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert_same_datasets(out, tmp_path / "whole.h5")


@pytest.mark.slow  # about 40 s: two step sizes, 100 runs each, MFPT ~ 4e9 steps
def test_mfpt_beyond_brute_force_is_within_ten_per_cent_of_quadrature(tmp_path):
    exact = analysis.langevin_mfpt(WELL, 0.12, -0.9, 1.0)["time"]
    found = {}
    for dt in (0.01, 0.005):
        out = splitting_run(tmp_path, double_well(temperature=0.12, dt=dt, seed=5),
                            f"ams_{dt}.h5")
        found[dt] = analysis.splitting(out["splitting/probability"][0],
                                       out["splitting/loop_steps"][0],
                                       out["splitting/reactive_steps"][0])
    fine = found[0.005]
    assert exact / 0.005 > 1e9
    assert abs(fine["mfpt_steps"] * 0.005 / exact - 1.0) < 0.10
    low, high = fine["mfpt_ci95"]
    assert low * 0.005 <= exact <= high * 0.005
    # The Euler-Maruyama bias is first order in dt: the two step sizes' times (in time
    # units) extrapolate to dt = 0 within the interval of the finer one.
    coarse = found[0.01]["mfpt_steps"] * 0.01
    extrapolated = 2 * fine["mfpt_steps"] * 0.005 - coarse
    assert abs(extrapolated / exact - 1.0) < 2 * (high - low) * 0.005 / exact
