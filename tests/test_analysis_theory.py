"""Theory functions against independent closed forms (1e-6 relative) and exact enumeration."""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from sgdsim.analysis import _theory as th


@pytest.mark.parametrize("model, k, sigma2", [
    ({"name": "polynomial", "coefficients": [0.3, 0.0, 1.5], "noise_var": 0.7}, 3.0, 0.7),
    # equal curvatures: L' = h (theta - mean c), Sigma = h^2 var(c), constant: also Ornstein-Uhlenbeck
    ({"name": "quadratic_finite_sum", "curvatures": [2.0, 2.0, 2.0], "centers": [-1.0, 0.5, 2.0]},
     2.0, 4.0 * np.var([-1.0, 0.5, 2.0])),
])
def test_density_is_ornstein_uhlenbeck(model, k, sigma2):
    tau = 0.4
    centre = 0.0 if model["name"] == "polynomial" else np.mean(model["centers"])
    sd = math.sqrt(tau * sigma2 / (2.0 * k))  # p ∝ exp(-k (x - c)^2 / (tau sigma2))
    dens = th.StationaryDensity(model, tau, -2.0, 2.0)
    x = centre + sd * np.linspace(-4, 4, 17)
    np.testing.assert_allclose(dens.pdf(x), stats.norm.pdf(x, centre, sd), rtol=1e-6)
    assert dens.mean == pytest.approx(centre, abs=1e-6 * sd)
    assert dens.var == pytest.approx(sd * sd, rel=1e-6)
    edges = centre + sd * np.linspace(-2, 2, 9)
    masses, below, above = dens.bin_masses(edges)
    np.testing.assert_allclose(masses, np.diff(stats.norm.cdf(edges, centre, sd)), rtol=1e-6)
    assert below == pytest.approx(stats.norm.cdf(edges[0], centre, sd), rel=1e-6)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_state_dependent_noise_density_against_direct_quadrature():
    """Logistic noise profile: p ∝ exp(-(2/tau) int L'/Sigma)/Sigma by scipy.quad, independently."""
    model = {"name": "polynomial", "coefficients": [0.0, 0.0, -0.5, 0.0, 0.25],
             "noise_var": {"left": 0.5, "right": 1.5, "center": 0.0, "width": 0.5}}
    tau = 0.5
    grad = lambda x: -x + x ** 3
    sigma = lambda x: 0.5 + 1.0 / (1.0 + math.exp(-x / 0.5))
    phi = lambda x: 2.0 / tau * integrate.quad(lambda s: grad(s) / sigma(s), 0.0, x, epsabs=1e-15, epsrel=1e-12)[0]
    unnorm = lambda x: math.exp(-phi(x)) / sigma(x)
    z = integrate.quad(unnorm, -6, 6, epsabs=0, epsrel=1e-12, limit=200)[0]
    dens = th.StationaryDensity(model, tau, -2.5, 2.5)
    for x in (-1.3, -1.0, 0.0, 0.4, 1.0, 1.7):
        assert dens.pdf(np.array([x]))[0] == pytest.approx(unnorm(x) / z, rel=1e-6)
    assert dens.mean < 0  # the low-noise well (left) holds more mass


def test_total_variation_zero_for_exact_masses_and_half_l1_otherwise():
    model = {"name": "polynomial", "coefficients": [0.0, 0.0, 0.5], "noise_var": 1.0}
    dens = th.StationaryDensity(model, 1.0, -3, 3)
    edges = np.linspace(-1.5, 1.5, 31)
    masses, below, above = dens.bin_masses(edges)
    scale = 1e12
    counts = masses * scale
    outside = np.array([below, above]) * scale
    assert th.total_variation(dens, edges, counts, outside) < 1e-9
    shifted = counts.copy()
    shifted[0] += 0.01 * scale
    shifted[-1] -= 0.01 * scale
    assert th.total_variation(dens, edges, shifted, outside) == pytest.approx(0.01, rel=1e-6)


def test_mfpt_harmonic_well_closed_form():
    """OU dX = -k X dt + sqrt(tau s2) dW from x0 to b: T = sqrt(pi)/k int_{u0}^{ub} erfcx(-u) du."""
    k, s2, tau = 3.0, 0.7, 0.4
    model = {"name": "polynomial", "coefficients": [0.0, 0.0, k / 2.0], "noise_var": s2}
    sd = math.sqrt(tau * s2 / (2.0 * k))
    for x0, b in ((-0.2, 0.5), (0.0, 4 * sd)):
        u0, ub = x0 / (sd * math.sqrt(2)), b / (sd * math.sqrt(2))
        exact = math.sqrt(math.pi) / k * integrate.quad(lambda u: special.erfcx(-u), u0, ub,
                                                        epsabs=0, epsrel=1e-13)[0]
        res = th.langevin_mfpt(model, tau, x0, b, "above")
        assert res["time"] == pytest.approx(exact, rel=1e-6)
        mirror = th.langevin_mfpt(model, tau, -x0, -b, "below")
        assert mirror["time"] == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("force, sigma2, tau", [(0.8, 1.3, 0.5), (2.0, 0.1, 0.05)])
def test_mfpt_linear_potential_is_distance_over_drift(force, sigma2, tau):
    up = {"name": "polynomial", "coefficients": [0.0, -force], "noise_var": sigma2}
    assert th.langevin_mfpt(up, tau, 0.1, 1.1)["time"] == pytest.approx(1.0 / force, rel=1e-6)
    down = {"name": "polynomial", "coefficients": [0.0, force], "noise_var": sigma2}
    assert th.langevin_mfpt(down, tau, 0.1, -0.9, "below")["time"] == pytest.approx(1.0 / force, rel=1e-6)


def test_kramers_matches_exact_mfpt_at_low_temperature_and_classic_formula():
    """Double well L = -x^2/2 + x^4/4, Sigma = 1: T_K = 2 pi / sqrt(H_w |H_b|) exp(2 dV / tau)."""
    model = {"name": "polynomial", "coefficients": [0.0, 0.0, -0.5, 0.0, 0.25], "noise_var": 1.0}
    for tau in (0.1, 0.03):
        res = th.langevin_mfpt(model, tau, -1.0, 0.0 + 0.5, "above")
        classic = 2 * math.pi / math.sqrt(2.0 * 1.0) * math.exp(2 * 0.25 / tau)
        assert res["kramers_time"] == pytest.approx(classic, rel=1e-9)
        assert res["barrier"] == pytest.approx(0.25, rel=1e-9)
        assert res["kramers_slope"] == pytest.approx(0.5, rel=1e-9)
    # Laplace's method is asymptotic: relative error O(tau).
    assert res["time"] / res["kramers_time"] == pytest.approx(1.0, abs=0.1)
    high = th.langevin_mfpt(model, 0.002, -1.0, 0.5)
    assert high["time"] == math.inf or high["time"] > 1e50
    assert high["log_time"] == pytest.approx(high["kramers_log_time"], abs=0.05)


def test_f2_lyapunov_exponent():
    model = {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]}
    assert th.sgd_lyapunov(model, 0.15) == pytest.approx(0.5 * math.log(1.7 * 0.7), rel=1e-12)


@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_batch_lyapunov_equals_ordered_tuple_enumeration(batch):
    h = np.array([18.0, 2.0, 5.0])
    lr = 0.15
    direct = np.mean([math.log(abs(1 - lr * np.mean([h[i] for i in tup])))
                      for tup in itertools.product(range(3), repeat=batch)])
    assert th.sgd_lyapunov({"name": "quadratic_finite_sum", "curvatures": h.tolist()}, lr, batch) == \
        pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_sgd_stationary_moments_from_enumerated_affine_maps(batch):
    """Moments of theta <- A theta + b with (A, b) enumerated over all ordered batches."""
    h = np.array([1.0, 3.0, 0.5])
    c = np.array([1.0, -1.0, 2.0])
    lr = 0.2
    maps = [(1 - lr * h[list(t)].mean(), lr * (h[list(t)] * c[list(t)]).mean())
            for t in itertools.product(range(3), repeat=batch)]
    a = np.array([m[0] for m in maps])
    b = np.array([m[1] for m in maps])
    # Fixed point of the exact moment map (m, s) -> (E[A] m + E[b], E[A^2] s + 2 E[Ab] m + E[b^2]).
    mean = b.mean() / (1 - a.mean())
    second = ((b * b).mean() + 2 * (a * b).mean() * mean) / (1 - (a * a).mean())
    res = th.sgd_stationary_moments({"name": "quadratic_finite_sum", "curvatures": h.tolist(),
                                     "centers": c.tolist()}, lr, batch)
    assert res["mean"] == pytest.approx(mean, rel=1e-12)
    assert res["var"] == pytest.approx(second - mean * mean, rel=1e-10)


def test_sgd_stationary_moments_against_simulation():
    rng = np.random.default_rng(11)
    h = np.array([1.0, 3.0])
    c = np.array([1.0, -1.0])
    lr, n = 0.1, 200_000
    theta = np.zeros(n)
    for _ in range(200):
        z = rng.integers(0, 2, n)
        theta = theta - lr * h[z] * (theta - c[z])
    res = th.sgd_stationary_moments({"name": "quadratic_finite_sum", "curvatures": h.tolist(),
                                     "centers": c.tolist()}, lr)
    assert theta.mean() == pytest.approx(res["mean"], abs=5 * theta.std() / math.sqrt(n))
    var_se = math.sqrt((np.mean((theta - theta.mean()) ** 4) - theta.var() ** 2) / n)
    assert theta.var() == pytest.approx(res["var"], abs=5 * var_se)


def test_unstable_second_moment_reports_infinite_variance():
    res = th.sgd_stationary_moments({"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0],
                                     "centers": [1.0, -1.0]}, 0.15)
    assert res["var"] == math.inf


def test_point_theory_keys_and_unavailable():
    params = {"model": {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0], "centers": [0.0, 0.0]},
              "dynamics": {"name": "sgd", "lr": 0.15, "batch_size": 1, "noise": "finite_sum"},
              "init": {"value": 1.0}, "observables": {"lyapunov": {}}}
    out = th.point_theory(params)
    assert out["lyapunov"] == pytest.approx(0.5 * math.log(1.19))
    assert out["stationary_mean"] == 0.0
    user = th.point_theory({"model": {"name": "mypkg.mod:model"}, "dynamics": {"name": "langevin", "dt": 0.01,
                                                                             "temperature": 1.0}})
    assert "stationary" in user["unavailable"] and "stationary_tv" not in user


def test_zero_noise_density_is_unavailable():
    # Sigma = var(h) theta^2 vanishes at 0: the density is not normalisable.
    with pytest.raises(th.TheoryUnavailable):
        th.StationaryDensity({"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]}, 0.1)
