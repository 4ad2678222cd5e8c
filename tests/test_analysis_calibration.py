"""Calibration: over many independent synthetic data sets with fixed seeds, 95 % intervals cover
the exact value 92-98 % of the time (Lyapunov exponent, censored escape rate, SGD stationary mean)."""
import numpy as np

from sgdsim.analysis import _estimators as est
from sgdsim.analysis import _theory as th
from _runfiles import f2_log_growth, geometric_passage

DATASETS = 400


def _coverage(intervals, truth):
    intervals = np.asarray(intervals, dtype=np.float64)
    return float(((intervals[:, 0] <= truth) & (truth <= intervals[:, 1])).mean())


def test_f2_lyapunov_interval_coverage():
    truth = th.sgd_lyapunov({"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]}, 0.15)
    rng = np.random.default_rng(20240601)
    intervals = []
    for _ in range(DATASETS):
        growth = f2_log_growth(rng, 60, 40)
        intervals.append(est.lyapunov(growth, 40)["ci95"])
    assert 0.92 <= _coverage(intervals, truth) <= 0.98


def test_normal_log_growth_interval_coverage():
    rng = np.random.default_rng(7)
    mu, sd, steps = -0.03, 0.4, 25
    intervals = []
    for _ in range(DATASETS):
        steps_run = rng.integers(1, steps + 1, 50)  # trajectories that stopped early run fewer steps
        growth = rng.normal(mu * steps_run, sd * np.sqrt(steps_run))
        intervals.append(est.lyapunov(growth, steps_run)["ci95"])
    assert 0.92 <= _coverage(intervals, mu) <= 0.98


def test_censored_escape_rate_coverage_against_long_uncensored_reference():
    hazard, horizon = 0.004, 150  # about 55 % censored
    rng = np.random.default_rng(99)
    reference = est.first_passage(rng.geometric(hazard, 200_000), 10**9)
    assert reference["censored_fraction"] == 0.0
    # the long uncensored run agrees with the exact hazard to 5 standard errors
    assert abs(reference["rate_per_step"] - hazard) < 5 * reference["rate_stderr"]
    intervals, censored = [], []
    for _ in range(DATASETS):
        fp = est.first_passage(geometric_passage(rng, hazard, 300, horizon), horizon)
        intervals.append(fp["rate_ci95"])
        censored.append(fp["censored_fraction"])
    assert np.mean(censored) > 0.4
    assert 0.92 <= _coverage(intervals, hazard) <= 0.98
    assert 0.92 <= _coverage(intervals, reference["rate_per_step"]) <= 0.98


def test_sgd_stationary_mean_coverage():
    model = {"name": "quadratic_finite_sum", "curvatures": [1.0, 3.0], "centers": [1.0, -1.0]}
    lr = 0.1
    truth = th.sgd_stationary_moments(model, lr)["mean"]
    h = np.array(model["curvatures"])
    c = np.array(model["centers"])
    rng = np.random.default_rng(12345)
    theta = np.zeros((DATASETS, 100))  # every data set: 100 independent SGD trajectories
    for _ in range(150):  # contraction E[A] = 0.8 per step: 0.8^150 ~ 3e-15, stationary
        z = rng.integers(0, 2, theta.shape)
        theta = theta - lr * h[z] * (theta - c[z])
    intervals = [est.final_moments(row)["mean_ci95"] for row in theta]
    assert 0.92 <= _coverage(intervals, truth) <= 0.98
