"""Optimisers: SGD with momentum, Nesterov and weight decay, Adam and AdamW.

PyTorch's update rules are checked against a plain-Python transcription of torch.optim's
documented algorithms; the buffers against slices of a chunk, a resume and shards (on the
CUDA simulator in tests/test_sharpness.py); heavy-ball SGD
against the exact moments of its (theta, v) recursion, computed here by iterating the
recursion over the enumerated samples (fixed seeds, tolerances from standard errors).
"""
import math

import numpy as np
import pytest

from sgdsim import analysis, kernels
from tests.conftest import read_run, run_file
from tests.test_slices import assert_same, sliced_outputs

DOUBLE_WELL = {"name": "polynomial", "coefficients": [0.0, 0.0, -0.5, 0.0, 0.25]}
REGRESSION = {"name": "linear_regression", "samples": 6, "features": 3,
              "eigenvalues": [4.0, 1.0, 0.25], "label_noise": 0.3, "data_seed": 2}


def double_well_grad(theta):
    return -theta + theta ** 3                       # L = -theta^2 / 2 + theta^4 / 4


def regression_grad():
    a, b, _, _ = kernels.linear_regression_data(6, 3, [4.0, 1.0, 0.25], 0.3, 2)
    return lambda theta: a.T @ (a @ theta - b) / len(b)


def torch_optimiser(name, lr, momentum=0.0, nesterov=False, weight_decay=0.0, beta1=0.9,
                    beta2=0.999, eps=1e-8):
    """step(theta, grad, state, t) -> theta: torch.optim.SGD, Adam and AdamW as their
    documentation writes them (no dampening, no amsgrad), one trajectory, numpy float64."""
    def sgd(theta, g, state, t):
        g = g + weight_decay * theta
        if momentum != 0.0:
            buf = g.copy() if t == 1 else momentum * state["momentum"] + g
            state["momentum"] = buf
            g = g + momentum * buf if nesterov else buf
        return theta - lr * g

    def adam(theta, g, state, t):
        if name == "adamw":
            theta = theta * (1.0 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = beta1 * state.get("adam_m", 0.0) + (1.0 - beta1) * g
        v = beta2 * state.get("adam_v", 0.0) + (1.0 - beta2) * g * g
        state["adam_m"], state["adam_v"] = m, v
        m_hat, v_hat = m / (1.0 - beta1 ** t), v / (1.0 - beta2 ** t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)

    return sgd if name == "sgd" else adam


CASES = [
    ("momentum", DOUBLE_WELL, {"name": "sgd", "lr": 0.05, "momentum": 0.9}),
    ("nesterov-decay", DOUBLE_WELL, {"name": "sgd", "lr": 0.05, "momentum": 0.6,
                                     "nesterov": True, "weight_decay": 0.1}),
    ("decay-only", REGRESSION, {"name": "sgd", "lr": 0.1, "weight_decay": 0.5}),
    ("adam", DOUBLE_WELL, {"name": "adam", "lr": 0.02, "beta1": 0.8, "weight_decay": 0.05}),
    ("adam-d3", REGRESSION, {"name": "adam", "lr": 0.05}),
    ("adamw-d3", REGRESSION, {"name": "adamw", "lr": 0.05, "weight_decay": 0.2,
                              "beta2": 0.99, "eps": 1e-3}),
]


# The numpy backend runs every case; the CPU template (a kernel compile each) the three
# that cover its 64-lane path with a velocity and with Adam's moments, and its d > 1 path.
ON_CPU = ("nesterov-decay", "adam", "adamw-d3")
PARAMS = [pytest.param(backend, *case, id=f"{case[0]}-{backend}") for case in CASES
          for backend in (("cpu", "numpy") if case[0] in ON_CPU else ("numpy",))]


@pytest.mark.parametrize("backend, case, model, dynamics", PARAMS)
def test_full_batch_optimisers_follow_pytorch(tmp_path, backend, case, model, dynamics):
    steps, count = 40, 12
    raw = {
        "run": {"seed": 5, "trajectories": 256, "steps": steps, "backend": backend},
        "model": model,
        "dynamics": {**dynamics, "noise": "none", "record_buffers": "momentum" in dynamics
                     or dynamics["name"] != "sgd"},
        "init": {"uniform": {"low": -1.5, "high": 1.5}},
        "observables": {"paths": {"count": count, "every": steps}},
    }
    data = run_file(tmp_path, raw)
    grad = double_well_grad if model is DOUBLE_WELL else regression_grad()
    options = {k: v for k, v in dynamics.items() if k != "name"}
    step = torch_optimiser(dynamics["name"], **options)
    start, final = data["paths/theta"][0, :, 0], data["paths/theta"][0, :, 1]
    np.testing.assert_array_equal(final, data["final/theta"][0, :count])
    for j in range(count):
        theta, state = start[j].astype(np.float64), {}
        for t in range(1, steps + 1):
            theta = step(theta, grad(theta), state, t)
        np.testing.assert_allclose(final[j], theta, rtol=1e-12, atol=1e-14, err_msg=case)
        for name, value in state.items():
            np.testing.assert_allclose(data[f"final/{name}"][0, j], value, rtol=1e-12,
                                       atol=1e-14, err_msg=f"{case} {name}")
    assert ("final/momentum" in data) == ("momentum" in dynamics)
    assert ("final/adam_m" in data) == (dynamics["name"] != "sgd")


def hb_experiment(backend="cpu", **dynamics):
    return {
        "run": {"seed": 11, "trajectories": 40_000, "steps": 200, "backend": backend},
        "model": {"name": "quadratic_finite_sum", "curvatures": [4.0, 1.0],
                  "centers": [1.0, 0.0]},
        "dynamics": {"name": "sgd", "lr": 0.1, "momentum": 0.5, "record_buffers": True,
                     **dynamics},
        "init": {"value": 0.0},
        "observables": {},
    }


def exact_moments(curvatures, centers, lr, momentum, steps, nesterov=False, decay=0.0):
    """Mean and covariance of (theta, v) after ``steps`` steps of batch-1 heavy-ball SGD
    from (0, 0): the moment recursion iterated over the n equally likely samples, each
    step's (A_i, b_i) written from PyTorch's update."""
    mean, second = np.zeros(2), np.zeros((2, 2))
    k, q = (1.0 + momentum, momentum ** 2) if nesterov else (1.0, momentum)
    pairs = []
    for h, c in zip(curvatures, centers):
        a = h + decay          # g = a theta - h c; v' = mu v + g; theta' = theta - lr (k g + q v)
        pairs.append((np.array([[1.0 - lr * k * a, -lr * q], [a, momentum]]),
                      np.array([lr * k * h * c, -h * c])))
    for _ in range(steps):
        new_mean = sum(a @ mean + b for a, b in pairs) / len(pairs)
        second = sum(a @ second @ a.T + np.outer(a @ mean, b) + np.outer(b, a @ mean)
                     + np.outer(b, b) for a, b in pairs) / len(pairs)
        mean = new_mean
    return mean, second - np.outer(mean, mean)


def assert_moments(sample, mean, var):
    n = sample.size
    assert abs(sample.mean() - mean) < 5 * math.sqrt(var / n)
    fourth = np.mean((sample - sample.mean()) ** 4)
    assert abs(sample.var() - var) < 5 * math.sqrt((fourth - var * var) / n)


@pytest.mark.parametrize("dynamics", [{}, {"nesterov": True, "weight_decay": 0.2}],
                         ids=["heavy-ball", "nesterov-decay"])
def test_heavy_ball_sgd_matches_its_second_moment_recursion(tmp_path, dynamics):
    raw = hb_experiment(**dynamics)
    data = run_file(tmp_path, raw)
    mean, cov = exact_moments([4.0, 1.0], [1.0, 0.0], 0.1, 0.5, 200,
                              dynamics.get("nesterov", False), dynamics.get("weight_decay", 0.0))
    assert_moments(data["final/theta"][0, :, 0], mean[0], cov[0, 0])
    assert_moments(data["final/momentum"][0, :, 0], mean[1], cov[1, 1])
    # 200 steps are far past the mixing time (|eigenvalues| <= 0.75): the analysis'
    # stationary solution is the same to 1e-10, and the summary puts it beside the ensemble.
    model = raw["model"]
    theory = analysis.heavy_ball_stationary_moments(
        model, 0.1, 0.5, 1, dynamics.get("nesterov", False), dynamics.get("weight_decay", 0.0))
    assert theory["radius"] < 1.0
    assert theory["mean"] == pytest.approx(mean[0], rel=1e-10)
    assert theory["var"] == pytest.approx(cov[0, 0], rel=1e-10)
    point = analysis.summarize(tmp_path / "run.h5")["points"][0]
    assert point["theory"]["stationary_mean"] == pytest.approx(theory["mean"], rel=1e-12)
    assert point["theory"]["stationary_var"] == pytest.approx(theory["var"], rel=1e-12)


def test_heavy_ball_theory_reduces_to_sgd_and_to_the_gd_boundary():
    model = {"name": "quadratic_finite_sum", "curvatures": [4.0, 1.0], "centers": [1.0, 0.0]}
    for lr, batch in ((0.1, 1), (0.3, 3)):
        plain = analysis.sgd_stationary_moments(model, lr, batch)
        heavy = analysis.heavy_ball_stationary_moments(model, lr, 0.0, batch)
        assert heavy["mean"] == pytest.approx(plain["mean"], rel=1e-12)
        assert heavy["var"] == pytest.approx(plain["var"], rel=1e-12)
    # One sample: no noise, so mean-square stability is GD's, lr < 2 (1 + mu) / h.
    single = {"name": "quadratic_finite_sum", "curvatures": [3.0], "centers": [0.5]}
    for mu in (0.0, 0.5, 0.9):
        boundary = analysis.heavy_ball_stability_boundary(single, mu)
        assert boundary == pytest.approx(2.0 * (1.0 + mu) / 3.0, rel=1e-9)
    # With noise the boundary moves below GD's and the radius crosses 1 there.
    boundary = analysis.heavy_ball_stability_boundary(model, 0.5)
    assert boundary < 2.0 * 1.5 / 4.0
    below = analysis.heavy_ball_stationary_moments(model, boundary * (1 - 1e-6), 0.5)
    above = analysis.heavy_ball_stationary_moments(model, boundary * (1 + 1e-6), 0.5)
    assert below["radius"] < 1.0 < above["radius"]
    assert math.isfinite(below["var"]) and above["var"] == math.inf


def adam_sgd(**run):
    return {
        "run": {"seed": 21, "trajectories": 700, "steps": 60, "backend": "cpu", **run},
        "model": REGRESSION,
        "dynamics": {"name": "adam", "lr": 0.05, "batch_size": 1, "record_buffers": True},
        "init": {"normal": {"mean": 0.0, "std": 1.0}},
        "observables": {"timeseries": {"points": 9}, "divergence": {"threshold": 1e6},
                        "paths": {"count": 3, "every": 5}},
    }


def momentum_sgd(**run):
    raw = hb_experiment(**{"nesterov": True})
    raw["run"].update({"trajectories": 700, "steps": 60, **run})
    raw["observables"] = {"histogram": {"lo": -1.0, "hi": 2.0, "bins": 30},
                          "first_passage": {"above": 1.2}}
    return raw


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("make", [adam_sgd, momentum_sgd])
def test_buffers_carry_across_slices_bit_for_bit(backend, make):
    whole, sliced, _, _ = sliced_outputs(make(), backend, [1, 2, 7, 33])
    assert np.abs(whole["aux"]).max() > 0
    assert_same(whole, sliced)


def test_buffers_survive_a_resume(tmp_path, monkeypatch):
    from sgdsim import sim
    from sgdsim.sim import _runfile
    from sgdsim.sim._runner import resume_run
    from tests._campaign import assert_same_datasets

    raw = adam_sgd(trajectories=1024, chunk=256)
    reference = tmp_path / "reference.h5"
    sim.run_experiment(sim.resolve_experiment(raw, "t.toml"), reference, quiet=True)
    out = tmp_path / "out.h5"
    monkeypatch.setenv("SGDSIM_CHECKPOINT_SECONDS", "0")
    original, calls = _runfile.Piece.add_chunk, []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated node failure")
        return original(self, *args)

    monkeypatch.setattr(_runfile.Piece, "add_chunk", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        sim.run_experiment(sim.resolve_experiment(raw, "t.toml"), out, quiet=True)
    monkeypatch.setattr(_runfile.Piece, "add_chunk", original)
    resume_run(out, quiet=True)
    assert_same_datasets(reference, out)
    assert "final/adam_v" in read_run(out)


def test_optimisers_agree_between_cpu_and_numpy_with_minibatches(tmp_path):
    for name, make in (("adam", adam_sgd), ("momentum", momentum_sgd)):
        raw = make()
        raw["dynamics"]["batch_size"] = 3
        cpu = run_file(tmp_path, raw, f"{name}-cpu.h5")
        ref = run_file(tmp_path, raw, f"{name}-np.h5", backend="numpy")
        for key in cpu:
            if key == "attrs":
                continue
            if cpu[key].dtype.kind in "iub":
                np.testing.assert_array_equal(cpu[key], ref[key], err_msg=key)
            else:
                np.testing.assert_allclose(cpu[key], ref[key], rtol=1e-12, atol=1e-13,
                                           err_msg=key)


def test_optimiser_sweep_in_shards_merges_to_the_unsharded_run(tmp_path):
    from sgdsim import sim
    from tests._campaign import assert_same_datasets, sgdsim

    raw = {
        "run": {"seed": 6, "trajectories": 600, "steps": 40, "backend": "cpu", "chunk": 256},
        "model": REGRESSION,
        "dynamics": {"name": "sgd", "lr": 0.05, "momentum": 0.0, "record_buffers": True},
        "init": {"normal": {"mean": 0.0, "std": 1.0}},
        "observables": {"timeseries": {"points": 6}, "sharpness": {"every": 8}},
        "sweep": {"dynamics.momentum": [0.0, 0.5, 0.9]},
    }
    whole = tmp_path / "whole.h5"
    sim.run_experiment(sim.resolve_experiment(raw, "t.toml"), whole, quiet=True)
    shards = []
    for index in range(2):
        path = tmp_path / f"shard{index}.h5"
        sim.run_experiment(sim.resolve_experiment(raw, "t.toml"), path, quiet=True,
                           shard=(index, 2))
        shards.append(path)
    merged = tmp_path / "merged.h5"
    done = sgdsim("merge", *shards, "-o", merged)
    assert done.returncode == 0, done.stderr
    assert_same_datasets(whole, merged)
    data = read_run(merged)
    assert data["final/momentum"].shape == (3, 600, 3)
    # Momentum 0 keeps its buffer, v = g: PyTorch's SGD without momentum, the same steps.
    plain = dict(raw, dynamics={"name": "sgd", "lr": 0.05}, sweep={})
    reference = run_file(tmp_path, plain, "plain.h5")
    np.testing.assert_array_equal(data["final/theta"][0], reference["final/theta"][0])
