"""Two-time-scale analysis (issue 4): regime boundaries, steady-state error and its fit."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import linalg

from sgdsim import analysis
from _runfiles import experiment_table, write_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "two_time_scales", "three_regimes.toml")


def broken_power_law(u, u0, u1, u2, u3, top, plateau, floor):
    """ln L on u = ln t: flat at ``top`` until u0, linear down to ``plateau`` at u1, flat until
    u2, linear down to ``floor`` at u3, flat after: kinks on the grid, so interpolation is exact."""
    return np.interp(u, [u0, u1, u2, u3], [top, plateau, plateau, floor])


def test_regime_boundaries_exact_on_piecewise_power_law():
    u = np.linspace(0.0, 10.0, 201)          # kinks below fall on grid points (spacing 0.05)
    u0, u1, u2, u3 = 1.0, 2.5, 6.0, 8.0
    top, plateau, floor = math.log(4.0), math.log(0.4), math.log(1e-3)
    level = broken_power_law(u, u0, u1, u2, u3, top, plateau, floor)
    s1, s2 = (top - plateau) / (u1 - u0), (plateau - floor) / (u3 - u2)
    for fraction in (0.1, 0.2):
        out = analysis.regime_boundaries(np.exp(u), np.exp(level), fraction)
        assert out["plateau_loss"] == pytest.approx(0.4, rel=1e-12)
        assert out["end_first_descent"] == pytest.approx(math.exp(u1 - math.log1p(fraction) / s1), rel=1e-12)
        assert out["start_second_descent"] == pytest.approx(math.exp(u2 - math.log1p(-fraction) / s2), rel=1e-12)
        assert abs(out["middle_slope"]) < 0.05
    # a step 0 only sets the initial loss
    with_zero = analysis.regime_boundaries(np.r_[0.0, np.exp(u)], np.exp(np.r_[top, level]))
    assert with_zero["end_first_descent"] == pytest.approx(math.exp(u1 - math.log1p(0.1) / s1), rel=1e-12)


def test_regime_boundaries_refuse_curves_without_plateau():
    t = np.geomspace(1, 1e4, 100)
    out = analysis.regime_boundaries(t, t ** -0.7)
    assert math.isnan(out["end_first_descent"]) and "plateau" in out["reason"]
    out = analysis.regime_boundaries(t, np.ones_like(t))
    assert math.isnan(out["start_second_descent"]) and "reason" in out


def test_regimes_jackknife_over_noisy_replicates():
    rng = np.random.default_rng(3)
    u = np.linspace(0.0, 10.0, 201)
    level = broken_power_law(u, 1.0, 2.5, 6.0, 8.0, math.log(4.0), math.log(0.4), math.log(1e-3))
    truth = analysis.regime_boundaries(np.exp(u), np.exp(level))
    curves = np.exp(level) * (1.0 + 0.01 * rng.standard_normal((8, u.size)))
    out = analysis.regimes(np.exp(u), curves)
    assert out["replicates"] == 8
    for key in ("end_first_descent", "start_second_descent"):
        entry = out[key]
        assert 0 < entry["stderr"] < 0.05 * entry["estimate"]
        assert entry["ci95"][0] < entry["estimate"] < entry["ci95"][1]
        assert abs(entry["estimate"] - truth[key]) < 5 * entry["stderr"] + 1e-3 * truth[key]
        assert entry["replicate_estimates"].shape == (8,)
    single = analysis.regimes(np.exp(u), curves[0])
    assert math.isnan(single["end_first_descent"]["stderr"])


def test_fit_recovers_known_coefficients():
    a, eps = np.meshgrid([0.02, 0.05, 0.1, 0.2], [0.05, 0.1, 0.3])
    a, b = a.ravel(), (eps * a).ravel() * np.repeat([1.0, 3.0, 0.5], 4)
    exact = 1.3 * a + 0.7 * b / a
    fit = analysis.fit_steady_state(a, b, exact, 0.01 * exact)
    np.testing.assert_allclose(fit["coefficients"], [1.3, 0.7], rtol=1e-10)
    assert fit["max_relative_residual"] < 1e-10
    rng = np.random.default_rng(1)
    se = 0.02 * exact
    noisy = exact + se * rng.standard_normal(exact.size)
    fit = analysis.fit_steady_state(a, b, noisy, se)
    for value, truth, err in zip(fit["coefficients"], (1.3, 0.7), fit["coefficient_stderr"]):
        assert abs(value - truth) < 5 * err
    assert fit["dof"] == a.size - 2 and fit["chi2"] < 3 * fit["dof"]
    assert np.abs(fit["standardized_residuals"]).max() < 5


def test_steady_state_error_definition():
    theta = np.array([[1.0, 2.0], [0.0, 1.0]])                   # (x, y), x_dim 1
    model = {"name": "coupled_quadratic", "kappa": 2.0, "mu": 1.0, "w_star": [0.5]}
    out = analysis.steady_state_error(theta, model, 0.25, 1)     # y* = 2, lambda(y*) = 1
    assert out["error"] == pytest.approx(0.5 * (0.0 + 0.0 + 1.0 + 1.0))
    grooves = analysis.steady_state_error(np.array([[0.9, 9.0]]), {"name": "grooves", "kappa": 1.0}, 0.1, 1)
    assert grooves["slow"] == pytest.approx(1.0) and grooves["tracking"] == pytest.approx(0.01)


def test_summary_of_high_dimensional_file(tmp_path):
    rng = np.random.default_rng(0)
    dim, n, bins = 12, 50, 10
    exp = experiment_table({"name": "linear_regression", "samples": 16, "features": dim},
                           {"name": "sgd", "lr": 0.1, "batch_size": 1}, trajectories=n, steps=10,
                           observables={"histogram": {"lo": -1.0, "hi": 1.0, "bins": bins}})
    counts = rng.integers(0, 5, size=(1, 4, dim, bins))
    path = write_run(tmp_path / "d12.h5", exp, {
        "final/theta": rng.standard_normal((1, n, dim)), "histogram/edges": np.linspace(-1, 1, bins + 1),
        "histogram/counts": counts.sum(axis=1), "histogram/batch_counts": counts,
        "histogram/outside": np.zeros((1, dim, 2), dtype=np.int64)}, dim=dim)
    summary = analysis.summarize(path)
    coords = summary["points"][0]["coordinates"]
    assert coords["coordinates"] == [0, 1, 2, 3] and len(coords["histogram"]) == 4
    assert "final_norm" in coords and "regimes" not in summary
    assert "theta3 mean" in analysis.format_table(summary)


def test_import_analysis_loads_no_numba():
    code = ("import sys, sgdsim.analysis, sgdsim.analysis._regimes, sgdsim.analysis._summary; "
            "bad = [m for m in sys.modules if (m.split('.')[0] == 'numba' or m.split('.')[:2] in (['sgdsim', 'kernels'], ['sgdsim', 'sim']))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "sgdsim.analysis", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT)


def test_regimes_on_reduced_three_regime_run(tmp_path):
    from sgdsim import sim

    experiment = sim.load_experiment(EXAMPLE, {"run.trajectories": 100, "run.backend": "cpu"})
    path = tmp_path / "three.h5"
    sim.run_experiment(experiment, path, overwrite=True, quiet=True)
    res = _cli("summary", str(path), "--json")
    assert res.returncode == 0, res.stderr
    regimes = json.loads(res.stdout)["regimes"]
    assert len(regimes) == 1 and regimes[0]["replicates"] == 8
    t1, t2 = regimes[0]["end_first_descent"], regimes[0]["start_second_descent"]
    # First descent ~ a few / a = 20 steps; plateau ~ 10^3 steps (full run: 42.2 and 948).
    assert 30 < t1["estimate"] < 60 and 700 < t2["estimate"] < 1300
    assert 0 < t1["stderr"] < 0.05 * t1["estimate"] and 0 < t2["stderr"] < 0.05 * t2["estimate"]
    assert regimes[0]["plateau_loss"] == pytest.approx(4.0 / math.pi ** 2, rel=0.05)
    out = tmp_path / "report"
    assert _cli("report", str(path), "-o", str(out)).returncode == 0
    assert (out / "regimes.png").read_bytes()[:4] == b"\x89PNG"


def exact_error_at(steps, a, b, eps, kappa, mu, w_star, nx, ny):
    """Exact E|z_T - z*|^2 of the linear recursion from z_0 = 0 (iterated moments)."""
    A = np.array([[1 - a, a * kappa * eps], [b * kappa, 1 - b * eps * (kappa ** 2 + mu)]])
    c = np.array([0.0, b * mu * w_star])
    Q = np.diag([(a * nx) ** 2, (b * ny) ** 2])
    mean, cov = np.zeros(2), np.zeros((2, 2))
    for _ in range(steps):
        mean, cov = A @ mean + c, A @ cov @ A.T + Q
    target = np.array([kappa * w_star, w_star / eps])
    return float(((mean - target) ** 2).sum() + np.trace(cov)), float(np.trace(linalg.solve_discrete_lyapunov(A, Q)))


def test_steady_state_error_matches_lyapunov_on_real_sweep(tmp_path):
    from sgdsim import sim

    raw = {"run": {"seed": 21, "trajectories": 4000, "steps": 600, "backend": "cpu"},
           "model": {"name": "coupled_quadratic", "dim": 1, "kappa": 1.0, "mu": 1.0, "w_star": [0.5]},
           "dynamics": {"name": "two_time_scale", "a": 0.1, "eps": 0.5, "noise_x": 1.0, "noise_y": 0.8},
           "init": {"value": 0.0}, "sweep": {"dynamics.a": [0.1, 0.15, 0.2]}}
    path = tmp_path / "grid.h5"
    sim.run_experiment(sim.resolve_experiment(raw, "grid.toml"), path, overwrite=True, quiet=True)
    steady = analysis.summarize(path)["steady_state_error"]
    assert "fit" in steady and len(steady["fit"]["coefficients"]) == 2
    for row in steady["points"]:
        exact, stationary = exact_error_at(600, row["a"], row["b"], 0.5, 1.0, 1.0, 0.5, 1.0, 0.8)
        assert row["b"] == pytest.approx(0.5 * row["a"])
        assert abs(exact / stationary - 1) < 1e-3
        assert abs(row["error"] - exact) < 5 * row["stderr"], (row, exact)
