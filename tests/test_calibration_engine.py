"""Calibration through the engine: 200 independent small runs (seeds 0..199) of cases with
exact answers; the analysis package's 95 % intervals must cover the truth 92-98 % of the time
(issue 3). Each run goes through sim.run_experiment and analysis.summarize, as a user's would."""
import math

import pytest

from sgdsim import analysis
from sgdsim import sim

RUNS = 200


def coverage(tmp_path, experiment, pick, truth):
    hits = 0
    for seed in range(RUNS):
        raw = {**experiment, "run": {**experiment["run"], "seed": seed, "backend": "cpu"}}
        path = tmp_path / f"run{seed}.h5"
        sim.run_experiment(sim.resolve_experiment(raw, "calibration.toml"), path,
                           overwrite=True, quiet=True)
        low, high = pick(analysis.summarize(path)["points"][0])
        hits += low <= truth <= high
        path.unlink()
    return hits / RUNS


def test_f2_lyapunov_interval_coverage(tmp_path):
    f2 = {"run": {"trajectories": 60, "steps": 40},
          "model": {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]},
          "dynamics": {"name": "sgd", "lr": 0.15}, "init": {"value": 1.0},
          "observables": {"lyapunov": {}}}
    truth = 0.5 * math.log(1.7 * 0.7)
    rate = coverage(tmp_path, f2, lambda point: point["lyapunov"]["ci95"], truth)
    assert 0.92 <= rate <= 0.98


def test_sgd_stationary_mean_interval_coverage(tmp_path):
    # theta' = (1 - lr h_z) theta + lr h_z c_z: E[A] = 0.8, E[b] = 0.1 * (1 - 3) / 2 = -0.1,
    # stationary mean E[b] / (1 - E[A]) = -0.5; 150 steps from 0 leave 0.8^150 ~ 3e-15 of it.
    sgd = {"run": {"trajectories": 100, "steps": 150},
           "model": {"name": "quadratic_finite_sum", "curvatures": [1.0, 3.0],
                     "centers": [1.0, -1.0]},
           "dynamics": {"name": "sgd", "lr": 0.1}, "init": {"value": 0.0},
           "observables": {}}
    rate = coverage(tmp_path, sgd, lambda point: point["final"]["mean_ci95"], -0.5)
    assert 0.92 <= rate <= 0.98


def geometric_escape(trajectories, steps):
    # lr = 1 on l_i = (theta - c_i)^2 / 2 puts theta at c_z every step: with 99 centers at 0
    # and one at 2, each step passes above 1 with probability exactly 1/100, independently.
    return {"run": {"trajectories": trajectories, "steps": steps},
            "model": {"name": "quadratic_finite_sum", "curvatures": [1.0] * 100,
                      "centers": [0.0] * 99 + [2.0]},
            "dynamics": {"name": "sgd", "lr": 1.0}, "init": {"value": 0.0},
            "observables": {"first_passage": {"above": 1.0, "stop": True}}}


def test_censored_escape_rate_coverage_against_uncensored_reference(tmp_path):
    reference_path = tmp_path / "reference.h5"
    raw = geometric_escape(20_000, 4000)
    raw["run"].update(seed=10_000, backend="cpu")
    sim.run_experiment(sim.resolve_experiment(raw, "reference.toml"), reference_path,
                       overwrite=True, quiet=True)
    reference = analysis.summarize(reference_path)["points"][0]["first_passage"]
    assert reference["censored_fraction"] < 1e-3
    # The long run agrees with the exact hazard, and is the reference the short runs meet.
    assert abs(reference["rate_per_step"] - 0.01) < 5 * reference["rate_stderr"]
    censored = []

    def pick(point):
        censored.append(point["first_passage"]["censored_fraction"])
        return point["first_passage"]["rate_ci95"]

    # Horizon 70 steps: about half the trajectories (0.99^70 = 0.49) are censored.
    rate = coverage(tmp_path, geometric_escape(300, 70), pick, reference["rate_per_step"])
    assert sum(censored) / len(censored) == pytest.approx(0.49, abs=0.03)
    assert 0.92 <= rate <= 0.98
