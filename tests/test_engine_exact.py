"""The engine against exact answers (fixed seeds, tolerances from standard errors)."""
import itertools
import math

import numpy as np
import pytest
from scipy import integrate

from tests.conftest import run_file


def sgd_quadratic_stationary(curvatures, centers, lr, batch):
    """Exact stationary mean and variance of theta <- A theta + b for SGD on a quadratic sum.

    With a batch z_1..z_B drawn with replacement, A = 1 - lr mean_j h_zj and
    b = lr mean_j h_zj c_zj; the moments follow from E[A], E[b], E[A^2], E[Ab], E[b^2]
    by exact enumeration of the n**B equally likely batches.
    """
    h, c = np.asarray(curvatures, float), np.asarray(centers, float)
    a_values, b_values = [], []
    for batch_indices in itertools.product(range(len(h)), repeat=batch):
        idx = list(batch_indices)
        a_values.append(1.0 - lr * h[idx].mean())
        b_values.append(lr * (h[idx] * c[idx]).mean())
    a, b = np.array(a_values), np.array(b_values)
    mean = b.mean() / (1.0 - a.mean())
    second = (2.0 * (a * b).mean() * mean + (b * b).mean()) / (1.0 - (a * a).mean())
    return mean, second - mean * mean


def quadratic_sgd(lr, batch=1, noise="finite_sum", **observables):
    return {
        "run": {"seed": 3, "trajectories": 40_000, "steps": 300, "backend": "cpu"},
        "model": {"name": "quadratic_finite_sum", "curvatures": [4.0, 1.0], "centers": [1.0, 0.0]},
        "dynamics": {"name": "sgd", "lr": lr, "batch_size": batch, "noise": noise},
        "init": {"value": 0.0},
        "observables": observables,
    }


@pytest.mark.parametrize("lr,batch", [(0.1, 1), (0.2, 2)])
def test_sgd_finite_sum_stationary_moments(tmp_path, lr, batch):
    data = run_file(tmp_path, quadratic_sgd(lr, batch))
    theta = data["final/theta"][0, :, 0]
    mean, var = sgd_quadratic_stationary([4.0, 1.0], [1.0, 0.0], lr, batch)
    n = theta.size
    assert abs(theta.mean() - mean) < 5 * math.sqrt(var / n)
    fourth = np.mean((theta - theta.mean()) ** 4)
    assert abs(theta.var() - var) < 5 * math.sqrt((fourth - var * var) / n)


def test_sgd_gaussian_noise_matches_its_linear_recursion(tmp_path):
    # theta <- theta - lr (L' + sqrt(Sigma) xi) with L' = 2.5 theta - 2, Sigma = var_i h_i(theta-c_i).
    # On this model Sigma(theta) = (1.5 theta - 2)^2 ... = var(h) th^2 - 2 cov th + var(hc):
    # the second moment recursion is linear, so compare against it exactly.
    lr = 0.05
    data = run_file(tmp_path, quadratic_sgd(lr, 1, "gaussian"), steps=400)
    theta = data["final/theta"][0, :, 0]
    h, c = np.array([4.0, 1.0]), np.array([1.0, 0.0])
    var_h, cov, var_hc = h.var(), (h * h * c).mean() - h.mean() * (h * c).mean(), (h * c).var()
    g1, g0 = h.mean(), (h * c).mean()          # L' = g1 theta - g0
    # m' = m - lr (g1 m - g0); s' = E[(theta - lr(g1 theta - g0))^2] + lr^2 E[Sigma(theta)]
    m = g0 / g1
    a = 1 - lr * g1
    # s = a^2 s + 2 a lr g0 m + lr^2 g0^2 + lr^2 (var_h s - 2 cov m + var_hc)
    s = (2 * a * lr * g0 * m + lr**2 * g0**2 + lr**2 * (var_hc - 2 * cov * m)) / \
        (1 - a * a - lr**2 * var_h)
    var = s - m * m
    n = theta.size
    assert abs(theta.mean() - m) < 5 * math.sqrt(var / n)
    fourth = np.mean((theta - theta.mean()) ** 4)
    assert abs(theta.var() - var) < 5 * math.sqrt((fourth - var * var) / n)


def f2(lr, steps=400, trajectories=4000):
    return {
        "run": {"seed": 9, "trajectories": trajectories, "steps": steps, "backend": "cpu"},
        "model": {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]},
        "dynamics": {"name": "sgd", "lr": lr},
        "init": {"value": 1.0},
        "observables": {"lyapunov": {}},
    }


def test_f2_lyapunov_exponent_positive(tmp_path):
    # Each step multiplies theta and the tangent by 1 - 0.15 h_z: -1.7 (z = 0) or 0.7 (z = 1).
    # After T steps with K picks of sample 0, log_growth = K ln 1.7 + (T - K) ln 0.7 and
    # theta_T = (-1.7)^K 0.7^(T - K) exactly, with K ~ Binomial(T, 1/2).
    steps = 400
    data = run_file(tmp_path, f2(0.15, steps=steps))
    growth = data["lyapunov/log_growth"][0]
    assert (data["lyapunov/steps"][0] == steps).all()
    up, down = math.log(1.7), math.log(0.7)
    picks = (growth - steps * down) / (up - down)
    k = np.round(picks)
    np.testing.assert_allclose(picks, k, rtol=0, atol=1e-9)      # on the lattice, to rounding
    np.testing.assert_allclose(data["final/theta"][0, :, 0],
                               (-1.7) ** k * 0.7 ** (steps - k), rtol=1e-10)
    # K against Binomial(T, 1/2): mean T/2, variance s^2 = T/4, fourth central moment
    # 3 s^4 + s^2 (1 - 6 pq) = 3 s^4 - s^2 / 2.
    n, var_k = k.size, steps / 4
    assert abs(k.mean() - steps / 2) < 5 * math.sqrt(var_k / n)
    fourth = 3 * var_k**2 - 0.5 * var_k
    assert abs(k.var() - var_k) < 5 * math.sqrt((fourth - var_k**2) / n)
    # The exponent: E ln|1 - lr h| = (ln 1.7 + ln 0.7) / 2, SE from the exact Binomial spread.
    per_step = growth / steps
    exact = 0.5 * (up + down)
    se = (up - down) / (2 * math.sqrt(steps * n))
    assert abs(per_step.mean() - exact) < 5 * se
    assert per_step.mean() - 5 * se > 0                          # positive, significantly


def test_f2_lyapunov_exact_at_lr_0_1(tmp_path):
    # Factors 1 - 0.1*18 = -0.8 and 1 - 0.1*2 = 0.8: every step multiplies |v| by exactly 0.8.
    data = run_file(tmp_path, f2(0.1, steps=300, trajectories=500))
    assert (data["lyapunov/steps"][0] == 300).all()
    np.testing.assert_allclose(data["lyapunov/log_growth"][0] / 300, math.log(0.8), rtol=1e-12)


def test_gd_is_deterministic_and_exact(tmp_path):
    exp = {
        "run": {"trajectories": 300, "steps": 50, "backend": "cpu"},
        "model": {"name": "quadratic_finite_sum", "curvatures": [4.0, 1.0], "centers": [1.0, 0.0]},
        "dynamics": {"name": "gd", "lr": 0.1},
        "init": {"value": 3.0},
        "observables": {"lyapunov": {}},
    }
    data = run_file(tmp_path, exp)
    # theta_t - 0.8 = 0.75^t (theta_0 - 0.8)
    np.testing.assert_allclose(data["final/theta"][0, :, 0], 0.8 + 0.75**50 * 2.2, rtol=1e-12)
    np.testing.assert_allclose(data["lyapunov/log_growth"][0], 50 * math.log(0.75), rtol=1e-12)


def fokker_planck_density(coefficients, noise, tau, grid):
    """p ∝ exp(-(2/tau) ∫ L'/Sigma) / Sigma on ``grid`` (trapezoid integration, normalised)."""
    c = np.asarray(coefficients, float)
    dl = np.polynomial.polynomial.polyval(grid, np.polynomial.polynomial.polyder(c))
    sigma = noise["left"] + (noise["right"] - noise["left"]) / (
        1 + np.exp(-(grid - noise["center"]) / noise["width"]))
    potential = integrate.cumulative_trapezoid(dl / sigma, grid, initial=0.0)
    logp = -(2.0 / tau) * potential - np.log(sigma)
    p = np.exp(logp - logp.max())
    return p / integrate.trapezoid(p, grid)


def test_langevin_stationary_histogram_matches_fokker_planck(tmp_path):
    noise = {"left": 0.5, "right": 1.5, "center": 0.0, "width": 0.5}
    coefficients = [0.0, 0.0, -0.5, 0.0, 0.25]
    tau, dt = 0.5, 0.002
    exp = {
        "run": {"seed": 5, "trajectories": 10_000, "steps": 30_000, "backend": "cpu"},
        "model": {"name": "polynomial", "coefficients": coefficients, "noise_var": noise},
        "dynamics": {"name": "langevin", "dt": dt, "temperature": tau},
        "init": {"uniform": {"low": -2.0, "high": 2.0}},
        # Relaxation inside a well takes ~1 time unit, but the slow mode, the balance
        # between the wells that the noise profile tilts, relaxes over ~10 units
        # (with 4 units of burn-in the TV is still 0.05). Burn in 20 units, sample 40.
        "observables": {"histogram": {"lo": -3.0, "hi": 3.0, "bins": 120, "burn_in": 10_000,
                                      "thin": 20}},
    }
    data = run_file(tmp_path, exp)
    counts = data["histogram/counts"][0, 0].astype(float)
    outside = data["histogram/outside"][0, 0]
    edges = data["histogram/edges"]
    total = counts.sum() + outside.sum()
    fine = np.linspace(-3.0, 3.0, 120 * 50 + 1)
    density = fokker_planck_density(coefficients, noise, tau, fine)
    cumulative = integrate.cumulative_trapezoid(density, fine, initial=0.0)
    exact = np.diff(np.interp(edges, fine, cumulative))
    tv = 0.5 * (np.abs(counts / total - exact).sum() + outside.sum() / total)
    assert tv < 0.01
    # And not by luck of a flat histogram: the two wells are resolved.
    assert counts[np.searchsorted(edges, -1.0)] > 3 * counts[np.searchsorted(edges, 0.0)]


def exact_mfpt(coefficients, tau, start, level, lower=-4.0):
    """Mean first-passage time from ``start`` up to ``level`` for dX = -L' dt + sqrt(tau) dW.

    T = (2/tau) ∫_start^level exp(2L(y)/tau) ∫_{-inf}^y exp(-2L(z)/tau) dz dy.
    """
    c = np.asarray(coefficients, float)
    loss = lambda x: np.polynomial.polynomial.polyval(x, c)
    inner = lambda y: integrate.quad(lambda z: np.exp(-2 * loss(z) / tau), lower, y)[0]
    outer = integrate.quad(lambda y: np.exp(2 * loss(y) / tau) * inner(y), start, level,
                           epsabs=0, epsrel=1e-10)[0]
    return 2.0 / tau * outer


def test_mean_first_passage_time_of_double_well(tmp_path):
    coefficients = [1.0, 0.0, -2.0, 0.0, 1.0]   # L = (x^2 - 1)^2
    tau, dt, level = 1.5, 2.5e-4, 0.5   # exact mean 4.15 time units
    exp = {
        "run": {"seed": 21, "trajectories": 12_000, "steps": 200_000, "backend": "cpu"},
        "model": {"name": "polynomial", "coefficients": coefficients, "noise_var": 1.0},
        "dynamics": {"name": "langevin", "dt": dt, "temperature": tau},
        "init": {"value": -1.0},
        "observables": {"first_passage": {"above": level, "stop": True}},
    }
    data = run_file(tmp_path, exp)
    steps = data["first_passage/steps"][0]
    assert (steps > 0).all(), "censored trajectories: raise steps"
    times = steps * dt
    exact = exact_mfpt(coefficients, tau, -1.0, level)
    se = times.std(ddof=1) / math.sqrt(times.size)
    assert abs(times.mean() - exact) / exact < 0.03
    assert abs(times.mean() - exact) < 5 * se + 0.01 * exact   # discretisation bias ~ sqrt(dt)
