"""Every estimator against a direct numpy computation from the raw datasets."""

import math

import numpy as np
import pytest
from scipy import stats

from sgdsim.analysis import _estimators as est


def test_density_matches_direct_batch_means():
    rng = np.random.default_rng(1)
    # Edges wide enough that every visit is inside, so all groups have equal totals and the
    # ratio estimator reduces to plain batch means; then 40 outside visits are added.
    edges = np.linspace(-6, 6, 31)
    groups, per_group = 10, 3000
    samples = rng.normal(0.0, 0.8, (groups, per_group))
    batch = np.stack([np.histogram(s, edges)[0] for s in samples])
    assert batch.sum() == samples.size
    outside = np.array([15, 25])
    res = est.stationary_density(batch.sum(axis=0), edges, outside, batch)
    width = edges[1] - edges[0]
    visits = samples.size + 40
    np.testing.assert_allclose(res["density"], batch.sum(axis=0) / (visits * width), rtol=1e-12)
    # Direct batch means: per-group inside densities, their spread, scaled by the inside fraction.
    inside = batch.sum(axis=1, keepdims=True)
    per_group_density = batch / (inside * width)
    inside_fraction = batch.sum() / visits
    direct_se = per_group_density.std(axis=0, ddof=1) / math.sqrt(groups) * inside_fraction
    np.testing.assert_allclose(res["stderr"], direct_se, rtol=1e-10)
    half = stats.t.ppf(0.975, groups - 1) * direct_se
    np.testing.assert_allclose(res["ci95_high"] - res["density"], half, rtol=1e-10)
    centres = 0.5 * (edges[1:] + edges[:-1])
    direct_means = (batch * centres).sum(axis=1) / batch.sum(axis=1)
    assert res["mean"] == pytest.approx(direct_means.mean(), rel=1e-12)
    assert res["mean_stderr"] == pytest.approx(direct_means.std(ddof=1) / math.sqrt(groups), rel=1e-10)
    assert res["outside_fraction"] == pytest.approx(outside.sum() / visits)


def test_density_without_batches_has_no_error_bars():
    res = est.stationary_density(np.array([1, 2, 3]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert np.all(np.isnan(res["stderr"]))
    np.testing.assert_allclose(res["density"], [1 / 6, 2 / 6, 3 / 6])


def test_occupancy_equals_mean_of_trajectory_fractions_when_steps_equal():
    rng = np.random.default_rng(2)
    steps = 400
    first = rng.binomial(steps, 0.3, size=500)
    counts = np.stack([first, steps - first], axis=1)
    res = est.occupancy_fractions(counts)
    per_traj = counts / steps
    np.testing.assert_allclose(res["fraction"], per_traj.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(res["stderr"], per_traj.std(axis=0, ddof=1) / math.sqrt(500), rtol=1e-10)


def test_region_fractions_counts_final_states():
    theta = np.array([-1.0, -0.5, 0.0, 0.2, 3.0, np.nan])
    res = est.region_fractions(theta, [0.0, 1.0])
    np.testing.assert_allclose(res["fraction"], [2 / 5, 2 / 5, 1 / 5])


def _km_direct(observed, events):
    """Product-limit estimator written out: S(t) = prod_{t_j <= t} (1 - d_j / r_j)."""
    times = np.unique(observed[events])
    surv, s = [], 1.0
    for t in times:
        at_risk = (observed >= t).sum()
        deaths = ((observed == t) & events).sum()
        s *= 1.0 - deaths / at_risk
        surv.append(s)
    return times, np.array(surv)


def test_first_passage_single_censoring_matches_empirical():
    rng = np.random.default_rng(3)
    horizon = 150
    raw = rng.geometric(0.01, 3000)
    passage = np.where(raw <= horizon, raw, -1)
    res = est.first_passage(passage, horizon, dt=0.5)
    observed = np.minimum(raw, horizon)
    assert res["events"] == (raw <= horizon).sum()
    assert res["censored_fraction"] == pytest.approx((raw > horizon).mean())
    assert res["restricted"] is True
    assert res["mean_steps"] == pytest.approx(observed.mean(), rel=1e-12)  # E min(X, T) = int_0^T S
    assert res["rate_per_step"] == pytest.approx(res["events"] / observed.sum(), rel=1e-12)
    assert res["mean_time"] == pytest.approx(0.5 * res["mean_steps"])
    assert res["rate_per_time"] == pytest.approx(res["rate_per_step"] / 0.5)
    curve = est.survival_curve(passage, horizon)
    empirical = np.array([(raw > t).mean() for t in curve["times"]])
    np.testing.assert_allclose(curve["survival"], empirical, rtol=1e-12)
    median = min(t for t in curve["times"] if (raw > t).mean() <= 0.5)
    assert res["median_steps"] == median


def test_first_passage_uncensored_uses_plain_mean():
    rng = np.random.default_rng(4)
    passage = rng.geometric(0.05, 1000)
    res = est.first_passage(passage, 10_000)
    assert res["restricted"] is False
    assert res["mean_steps"] == pytest.approx(passage.mean())
    assert res["mean_stderr"] == pytest.approx(passage.std(ddof=1) / math.sqrt(1000))
    assert res["median_steps"] == np.sort(passage)[499]  # first t with F(t) >= 1/2


def test_kaplan_meier_with_early_censoring_matches_product_limit():
    rng = np.random.default_rng(5)
    horizon = 200
    raw = rng.geometric(0.01, 800)
    diverged = np.where(rng.random(800) < 0.3, rng.integers(1, horizon, 800), -1)
    passage = np.where((raw <= horizon) & ((diverged < 0) | (raw < diverged)), raw, -1)
    curve = est.survival_curve(passage, horizon, censor_steps=diverged)
    observed = np.where(passage >= 1, passage, np.where(diverged >= 1, diverged, horizon)).astype(float)
    times, surv = _km_direct(observed, passage >= 1)
    # scipy also lists the censoring times; compare the step functions at every listed time.
    index = np.searchsorted(times, curve["times"], side="right") - 1
    direct_at = np.where(index >= 0, surv[np.maximum(index, 0)], 1.0)
    np.testing.assert_allclose(curve["survival"], direct_at, rtol=1e-12)
    assert set(times) <= set(curve["times"])
    res = est.first_passage(passage, horizon, censor_steps=diverged)
    area = times[0] + np.sum(surv * np.diff(np.append(times, horizon)))
    assert res["mean_steps"] == pytest.approx(area, rel=1e-12)
    assert res["rate_per_step"] == pytest.approx((passage >= 1).sum() / observed.sum(), rel=1e-12)


def test_poisson_interval_has_its_defining_tail_probabilities():
    events, exposure = 37, 1234.5
    low, high = est.poisson_rate_interval(events, exposure)
    assert stats.poisson.sf(events - 1, low * exposure) == pytest.approx(0.025, rel=1e-8)
    assert stats.poisson.cdf(events, high * exposure) == pytest.approx(0.025, rel=1e-8)
    assert est.poisson_rate_interval(0, 10.0)[0] == 0.0


def test_wilson_interval_solves_the_score_equation():
    low, high = est.wilson_interval(17, 120)
    p_hat, n, z = 17 / 120, 120, stats.norm.ppf(0.975)
    for p in (low, high):
        assert abs(p_hat - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), rel=1e-10)


def test_divergence_fraction_curve_and_rate():
    rng = np.random.default_rng(6)
    horizon = 300
    raw = rng.geometric(0.002, 2000)
    steps = np.where(raw <= horizon, raw, -1)
    res = est.divergence(steps, horizon)
    assert res["fraction"] == pytest.approx((steps >= 1).mean())
    assert res["rate_per_step"] == pytest.approx((steps >= 1).sum() / np.minimum(raw, horizon).sum())
    curve = est.divergence_curve(steps, horizon)
    for t in (1, 50, 299, 300):
        assert curve["fraction"][t - 1] == pytest.approx(((steps >= 1) & (steps <= t)).mean())
    assert np.all(curve["ci95_low"] <= curve["fraction"]) and np.all(curve["fraction"] <= curve["ci95_high"])


def test_lyapunov_is_mean_log_growth_per_step_run():
    rng = np.random.default_rng(7)
    steps_run = rng.integers(0, 500, 300)
    growth = rng.normal(0.1, 0.3, 300) * steps_run
    growth[3] = np.inf
    res = est.lyapunov(growth, steps_run, dt=0.01)
    ok = (steps_run > 0) & np.isfinite(growth)
    per_step = growth[ok] / steps_run[ok]
    assert res["estimate"] == pytest.approx(per_step.mean(), rel=1e-12)
    assert res["stderr"] == pytest.approx(per_step.std(ddof=1) / math.sqrt(ok.sum()), rel=1e-12)
    assert res["excluded"] == (~ok).sum()
    assert res["estimate_per_time"] == pytest.approx(per_step.mean() / 0.01)


def test_timeseries_stderr():
    mean = np.array([0.0, 1.0, 2.0])
    var = np.array([0.0, 4.0, 9.0])
    count = np.array([100, 100, 50])
    res = est.timeseries(mean, var, count)
    np.testing.assert_allclose(res["stderr"], np.sqrt(var / (count - 1)))


def test_final_moments():
    rng = np.random.default_rng(8)
    theta = rng.normal(1.0, 2.0, 5000)
    res = est.final_moments(np.append(theta, np.nan))
    assert res["mean"] == pytest.approx(theta.mean())
    assert res["var"] == pytest.approx(theta.var(ddof=1))
    assert res["trajectories"] == 5000
