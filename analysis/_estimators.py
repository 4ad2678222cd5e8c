"""Estimators with standard errors and 95 % intervals, one sweep point at a time.

Every function takes plain numpy arrays (the raw run-file datasets of one point) and returns a
dict of floats / arrays. Units are steps unless a name says ``_time`` (time = steps * dt).
Trajectories are independent (SPEC 6), so across-trajectory errors are honest; within-trajectory
correlation in the histogram is handled by batch means over independent groups of trajectories.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


def t_interval(estimate: float, stderr: float, dof: float) -> tuple:
    """Two-sided 95 % Student-t interval ``estimate +- t_{0.975, dof} * stderr``."""
    if not np.isfinite(stderr) or dof < 1:
        return (math.nan, math.nan)
    half = float(stats.t.ppf(0.975, dof)) * stderr
    return (estimate - half, estimate + half)


def wilson_interval(successes, trials, z: float = Z95):
    """Wilson score interval for a binomial proportion (vectorised).

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with p = successes / trials.
    """
    successes = np.asarray(successes, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / trials
        denom = 1.0 + z * z / trials
        centre = (p + z * z / (2.0 * trials)) / denom
        half = z * np.sqrt(p * (1.0 - p) / trials + z * z / (4.0 * trials * trials)) / denom
    return centre - half, centre + half


def poisson_rate_interval(events: int, exposure: float) -> tuple:
    """Exact (Garwood) 95 % interval for a rate ``events / exposure`` of a Poisson count.

    ``[chi2_{0.025}(2D) / 2E, chi2_{0.975}(2D + 2) / 2E]``; the lower end is 0 when D = 0.
    """
    if exposure <= 0:
        return (math.nan, math.nan)
    low = 0.0 if events == 0 else float(stats.chi2.ppf(0.025, 2 * events)) / (2.0 * exposure)
    high = float(stats.chi2.ppf(0.975, 2 * events + 2)) / (2.0 * exposure)
    return (low, high)


def mean_estimate(values) -> dict:
    """Sample mean of independent values with stderr ``s / sqrt(n)`` and a t interval."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return {"estimate": math.nan, "stderr": math.nan, "ci95": (math.nan, math.nan), "n": 0}
    estimate = float(values.mean())
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"estimate": estimate, "stderr": stderr, "ci95": t_interval(estimate, stderr, n - 1), "n": int(n)}


def _ratio_stderr(numerators, denominators):
    """Stderr of ``R = sum(y) / sum(x)`` over G independent groups (delta method).

    ``var R = G/(G-1) * sum_g (y_g - R x_g)^2 / (sum_g x_g)^2``; for equal x_g this is the
    plain batch-means ``std(y_g/x_g, ddof=1) / sqrt(G)``. ``numerators`` is [G, ...].
    """
    numerators = np.asarray(numerators, dtype=np.float64)
    denominators = np.asarray(denominators, dtype=np.float64)
    groups = numerators.shape[0]
    total = denominators.sum()
    ratio = numerators.sum(axis=0) / total
    shape = (groups,) + (1,) * (numerators.ndim - 1)
    resid = numerators - ratio * denominators.reshape(shape)
    var = groups / (groups - 1) * (resid ** 2).sum(axis=0) / total ** 2
    return ratio, np.sqrt(var)


def stationary_density(counts, edges, outside=None, batch_counts=None) -> dict:
    """Histogram density with batch-means errors over independent groups of trajectories.

    density_b = counts_b / (V * width_b), V = all visits (inside + outside), per unit of theta.
    Errors: the inside density ``c_b / (n_in * w_b)`` is a ratio over the G groups of
    ``/histogram/batch_counts`` (stderr from :func:`_ratio_stderr`, t interval with G - 1
    degrees of freedom), scaled by the inside fraction ``n_in / V``, which is treated as fixed
    because the engine does not keep the outside counts per group. Without batch counts (or
    G < 2) the errors are NaN. Also returns the histogram's mean and variance from bin centres.
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64)
    widths = np.diff(edges)
    centres = 0.5 * (edges[:-1] + edges[1:])
    inside = counts.sum()
    outside = np.zeros(2) if outside is None else np.asarray(outside, dtype=np.float64).reshape(-1)
    visits = inside + outside.sum()
    result = {"edges": edges, "centres": centres, "visits": int(visits), "inside_visits": int(inside),
              "outside_fraction": float(outside.sum() / visits) if visits else math.nan,
              "outside_below": int(outside[0]), "outside_above": int(outside[1])}
    if visits == 0:
        nan = np.full(counts.shape, math.nan)
        result.update(density=nan, stderr=nan, ci95_low=nan, ci95_high=nan, groups=0,
                      mean=math.nan, mean_stderr=math.nan, mean_ci95=(math.nan, math.nan), var=math.nan)
        return result
    density = counts / (visits * widths)
    inside_fraction = inside / visits
    mean = float((centres * counts).sum() / inside) if inside else math.nan
    var = float(((centres - mean) ** 2 * counts).sum() / inside) if inside else math.nan
    groups = 0
    stderr = np.full(counts.shape, math.nan)
    mean_stderr = math.nan
    if batch_counts is not None:
        batch = np.asarray(batch_counts, dtype=np.float64).reshape(-1, counts.size)
        batch_inside = batch.sum(axis=1)
        groups = int((batch_inside > 0).sum())
        batch = batch[batch_inside > 0]
        batch_inside = batch_inside[batch_inside > 0]
        if groups >= 2:
            _, inside_se = _ratio_stderr(batch, batch_inside)
            stderr = inside_se * inside_fraction / widths
            _, mean_se = _ratio_stderr(batch @ centres, batch_inside)
            mean_stderr = float(mean_se)
    if groups >= 2:
        half = float(stats.t.ppf(0.975, groups - 1)) * stderr
    else:
        half = np.full(counts.shape, math.nan)
    result.update(density=density, stderr=stderr, ci95_low=density - half, ci95_high=density + half,
                  groups=groups, mean=mean, mean_stderr=mean_stderr,
                  mean_ci95=t_interval(mean, mean_stderr, groups - 1), var=var)
    return result


def occupancy_fractions(counts) -> dict:
    """Fraction of all steps spent in each region, pooled over trajectories, with errors.

    fraction_k = sum_i c_ik / sum_i n_i (n_i = steps run by trajectory i); stderr by the ratio
    delta method over independent trajectories; t interval with N - 1 degrees of freedom.
    """
    counts = np.asarray(counts, dtype=np.float64)
    run = counts.sum(axis=1)
    counts = counts[run > 0]
    run = run[run > 0]
    n = counts.shape[0]
    if n < 2:
        k = counts.shape[1]
        return {"fraction": np.full(k, math.nan), "stderr": np.full(k, math.nan),
                "ci95_low": np.full(k, math.nan), "ci95_high": np.full(k, math.nan), "trajectories": n}
    fraction, stderr = _ratio_stderr(counts, run)
    half = float(stats.t.ppf(0.975, n - 1)) * stderr
    return {"fraction": fraction, "stderr": stderr, "ci95_low": fraction - half,
            "ci95_high": fraction + half, "trajectories": int(n)}


def region_fractions(final_theta, boundaries) -> dict:
    """Fraction of trajectories whose final state lies in each region, with Wilson intervals.

    Region k is ``boundaries[k-1] <= theta < boundaries[k]``; non-finite states are excluded.
    """
    theta = np.asarray(final_theta, dtype=np.float64).reshape(-1)
    theta = theta[np.isfinite(theta)]
    region = np.searchsorted(np.asarray(boundaries, dtype=np.float64), theta, side="right")
    k = len(boundaries) + 1
    hits = np.bincount(region, minlength=k).astype(np.float64)
    n = theta.size
    low, high = wilson_interval(hits, np.full(k, float(n)))
    return {"fraction": hits / n if n else np.full(k, math.nan), "ci95_low": low, "ci95_high": high,
            "trajectories": int(n)}


def _kaplan_meier(observed, events):
    """scipy's Kaplan-Meier fit: (event times, S at them, band low, band high)."""
    data = stats.CensoredData(uncensored=observed[events], right=observed[~events])
    fit = stats.ecdf(data).sf
    times = np.asarray(fit.quantiles, dtype=np.float64)
    survival = np.asarray(fit.probabilities, dtype=np.float64)
    with warnings.catch_warnings():
        # scipy warns where the Greenwood band is undefined (S = 0 or 1); those points come back NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        band = fit.confidence_interval(0.95)
    return times, survival, np.asarray(band.low.evaluate(times)), np.asarray(band.high.evaluate(times))


def survival_curve(passage_steps, horizon: int, censor_steps=None) -> dict:
    """Kaplan-Meier survival S(t) = P(first passage > t) with its 95 % pointwise band.

    Times are steps. A trajectory with passage step -1 is censored at ``horizon`` or, where
    given, at ``censor_steps`` (e.g. the step it diverged). Fitted by ``scipy.stats.ecdf`` on
    ``scipy.stats.CensoredData`` (Greenwood variance, log-log band).
    """
    observed, events = _observed(passage_steps, horizon, censor_steps)
    if events.sum() == 0:
        empty = np.zeros(0)
        return {"times": empty, "survival": empty, "ci95_low": empty, "ci95_high": empty}
    times, survival, low, high = _kaplan_meier(observed, events)
    return {"times": times, "survival": survival, "ci95_low": low, "ci95_high": high}


def _observed(passage_steps, horizon, censor_steps):
    passage = np.asarray(passage_steps, dtype=np.int64).reshape(-1)
    events = passage >= 1
    censor = np.full(passage.shape, float(horizon))
    if censor_steps is not None:
        stopped = np.asarray(censor_steps, dtype=np.int64).reshape(-1)
        early = stopped >= 1
        censor[early] = np.minimum(censor[early], stopped[early])
    observed = np.where(events, passage.astype(np.float64), censor)
    return observed, events


def restricted_mean(observed, events, horizon: float) -> tuple:
    """Restricted mean ``int_0^horizon S(t) dt`` of a Kaplan-Meier curve, with its stderr.

    var = sum_j A_j^2 d_j / (r_j (r_j - d_j)), A_j = int_{t_j}^{horizon} S(u) du, over event
    times t_j with d_j events among r_j at risk (Greenwood applied to the area).
    """
    observed = np.asarray(observed, dtype=np.float64)
    events = np.asarray(events, dtype=bool)
    times = np.unique(observed[events & (observed <= horizon)])
    if times.size == 0:
        return float(horizon), 0.0
    at_risk = np.array([(observed >= t).sum() for t in times], dtype=np.float64)
    deaths = np.array([((observed == t) & events).sum() for t in times], dtype=np.float64)
    survival = np.cumprod(1.0 - deaths / at_risk)
    # S is 1 on [0, t_1), survival[j] on [t_j, t_{j+1}), survival[-1] on [t_k, horizon].
    ends = np.append(times[1:], horizon)
    pieces = survival * (ends - times)
    area = float(times[0] + pieces.sum())
    tail = np.cumsum(pieces[::-1])[::-1]  # A_j = int_{t_j}^{horizon} S
    ok = at_risk > deaths
    var = float((tail[ok] ** 2 * deaths[ok] / (at_risk[ok] * (at_risk[ok] - deaths[ok]))).sum())
    return area, math.sqrt(var)


def first_passage(passage_steps, horizon: int, censor_steps=None, dt=None) -> dict:
    """First-passage summary with right censoring: counts, KM median, mean, exponential rate.

    - mean: plain mean of the passage steps when nothing is censored (stderr s/sqrt(n), t
      interval); otherwise the restricted mean ``int_0^T S`` over the horizon T, flagged
      ``restricted = True`` (a lower bound on the true mean).
    - median: first event time with KM S(t) <= 1/2, interval from the KM band (None if the
      curve never reaches 1/2).
    - rate: exponential escape rate ``lambda = D / E`` per step, D events, E = total steps at risk
      ``sum_i min(passage_i, censor_i)``; exact Poisson interval; stderr sqrt(D)/E.
    With ``dt`` the ``*_time`` twins are in time units (time = steps * dt, rate per unit time).
    """
    observed, events = _observed(passage_steps, horizon, censor_steps)
    n = observed.size
    n_events = int(events.sum())
    exposure = float(observed.sum())
    out = {"trajectories": int(n), "events": n_events,
           "censored_fraction": float(1.0 - n_events / n) if n else math.nan}
    if n_events == n and n > 0:
        est = mean_estimate(observed)
        out.update(mean_steps=est["estimate"], mean_stderr=est["stderr"], mean_ci95=est["ci95"], restricted=False)
    elif n > 0:
        area, se = restricted_mean(observed, events, float(horizon))
        out.update(mean_steps=area, mean_stderr=se, mean_ci95=(area - Z95 * se, area + Z95 * se), restricted=True)
    median = median_low = median_high = None
    if n_events:
        times, survival, low, high = _kaplan_meier(observed, events)
        below = np.nonzero(survival <= 0.5)[0]
        median = float(times[below[0]]) if below.size else None
        lo_hit = np.nonzero(low <= 0.5)[0]
        hi_hit = np.nonzero(high <= 0.5)[0]
        median_low = float(times[lo_hit[0]]) if lo_hit.size else None
        median_high = float(times[hi_hit[0]]) if hi_hit.size else None
    out.update(median_steps=median, median_ci95=(median_low, median_high))
    rate = n_events / exposure if exposure > 0 else math.nan
    out.update(exposure_steps=exposure, rate_per_step=rate,
               rate_stderr=math.sqrt(n_events) / exposure if exposure > 0 else math.nan,
               rate_ci95=poisson_rate_interval(n_events, exposure))
    if dt is not None:
        scale = float(dt)
        out.update(
            mean_time=out.get("mean_steps", math.nan) * scale,
            mean_time_stderr=out.get("mean_stderr", math.nan) * scale,
            mean_time_ci95=tuple(v * scale for v in out.get("mean_ci95", (math.nan, math.nan))),
            median_time=None if median is None else median * scale,
            rate_per_time=rate / scale,
            rate_per_time_ci95=tuple(v / scale for v in out["rate_ci95"]),
        )
    return out


def divergence(divergence_steps, horizon: int, censor_steps=None, dt=None) -> dict:
    """Fraction diverged by the last step (Wilson interval) and the divergence rate per step.

    fraction = D / N; rate = D / E with E = sum_i min(divergence_i, censor_i) steps at risk and
    an exact Poisson interval. With ``dt`` also ``rate_per_time`` (per unit time).
    """
    observed, events = _observed(divergence_steps, horizon, censor_steps)
    n = observed.size
    n_events = int(events.sum())
    low, high = wilson_interval(n_events, n)
    exposure = float(observed.sum())
    out = {"trajectories": int(n), "events": n_events, "fraction": n_events / n if n else math.nan,
           "fraction_ci95": (float(low), float(high)), "exposure_steps": exposure,
           "rate_per_step": n_events / exposure if exposure > 0 else math.nan,
           "rate_ci95": poisson_rate_interval(n_events, exposure),
           "first_steps": int(observed[events].min()) if n_events else None}
    if dt is not None:
        out["rate_per_time"] = out["rate_per_step"] / dt
        out["rate_per_time_ci95"] = tuple(v / dt for v in out["rate_ci95"])
    return out


def divergence_curve(divergence_steps, horizon: int) -> dict:
    """Fraction of trajectories diverged by step t, t = 1..horizon, with Wilson intervals.

    F(t) = #{i : 1 <= divergence_i <= t} / N.
    """
    steps = np.asarray(divergence_steps, dtype=np.int64).reshape(-1)
    n = steps.size
    hits = np.bincount(steps[steps >= 1], minlength=horizon + 1)[: horizon + 1]
    cumulative = np.cumsum(hits)[1:].astype(np.float64)
    t = np.arange(1, horizon + 1)
    low, high = wilson_interval(cumulative, np.full(t.shape, float(n)))
    return {"steps": t, "fraction": cumulative / n, "ci95_low": low, "ci95_high": high}


def lyapunov(log_growth, steps_run, dt=None, horizon=None) -> dict:
    """Top Lyapunov exponent per step: mean over trajectories of log_growth_i / steps_i.

    lambda_i = log_growth_i / steps_i (trajectories with steps_i = 0 or a non-finite log growth
    are excluded and counted in ``excluded``); stderr s / sqrt(n); t interval. With ``dt`` also
    per unit time (lambda / dt).

    When trajectories stop before ``horizon`` steps (divergence, or a first passage with
    stop), their steps_i depend on their growth, and neither this mean nor the ratio of
    sums is unbiased; ``stopped`` counts them and ``warning`` says so. Run the Lyapunov
    observable without divergence stopping for an unbiased estimate.
    """
    log_growth = np.asarray(log_growth, dtype=np.float64).reshape(-1)
    steps_run = np.broadcast_to(np.asarray(steps_run, dtype=np.float64), log_growth.shape).reshape(-1)
    valid = (steps_run > 0) & np.isfinite(log_growth)
    per_step = log_growth[valid] / steps_run[valid]
    out = mean_estimate(per_step)
    out["excluded"] = int((~valid).sum())
    if horizon is not None:
        stopped = int((steps_run < horizon).sum())
        out["stopped"] = stopped
        if stopped:
            out["warning"] = (f"{stopped} trajectories stopped before step {horizon} "
                              "(divergence or first passage): the estimate is biased by the "
                              "stopping rule")
    if dt is not None:
        out["estimate_per_time"] = out["estimate"] / dt
        out["stderr_per_time"] = out["stderr"] / dt
        out["ci95_per_time"] = tuple(v / dt for v in out["ci95"])
    return out


def timeseries(mean, var, count) -> dict:
    """Ensemble mean at each recorded step with stderr ``sqrt(var / (count - 1))``.

    ``var`` is the ensemble (1/count) variance over the ``count`` trajectories still running;
    dividing by count - 1 gives the unbiased stderr. Interval: t with count - 1 degrees of freedom.
    """
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    count = np.broadcast_to(np.asarray(count, dtype=np.float64), mean.shape)
    dof = np.maximum(count - 1.0, 1.0)
    stderr = np.sqrt(np.maximum(var, 0.0) / dof)
    stderr = np.where(count > 1, stderr, math.nan)
    half = stats.t.ppf(0.975, dof) * stderr
    return {"mean": mean, "stderr": stderr, "ci95_low": mean - half, "ci95_high": mean + half, "count": count}


def final_moments(final_theta) -> dict:
    """Mean and variance of the final state over independent trajectories, with errors.

    mean: t interval from s / sqrt(n). var (ddof = 1): stderr ``sqrt((m4 - s^4) / n)`` (m4 the
    fourth central moment), normal interval. Non-finite states (diverged) are excluded.
    """
    theta = np.asarray(final_theta, dtype=np.float64).reshape(-1)
    theta = theta[np.isfinite(theta)]
    est = mean_estimate(theta)
    n = theta.size
    var = float(theta.var(ddof=1)) if n > 1 else math.nan
    m4 = float(((theta - theta.mean()) ** 4).mean()) if n else math.nan
    var_se = math.sqrt(max(m4 - var * var, 0.0) / n) if n > 1 else math.nan
    return {"mean": est["estimate"], "mean_stderr": est["stderr"], "mean_ci95": est["ci95"],
            "var": var, "var_stderr": var_se, "var_ci95": (var - Z95 * var_se, var + Z95 * var_se),
            "trajectories": int(n)}


def splitting(probability, loop_steps=None, reactive_steps=None) -> dict:
    """P(B before A) and the mean first-passage time from independent AMS runs.

    ``probability`` [runs]: one unbiased estimate per run (NaN: a run that gave up). p is
    their mean, with stderr sd / sqrt(runs) and a 95 % Student-t interval (the CLT over
    runs; lower end clipped at 0). The interval is flagged (``warning``) when it cannot be
    trusted: fewer than 10 runs, or a sample skewness above 2 (the estimates of a few runs
    carry the mean, and the CLT interval undercovers). With ``loop_steps`` and
    ``reactive_steps`` [runs] (per-run means), the mean first-passage time

        T = (1 / p - 1) L + R,   L, R the means over runs,

    with stderr by the delta method (p, L and R independent) and a 95 % interval
    T exp(+-1.96 stderr / T) (T is positive and skewed with 1 / p).
    """
    values = np.asarray(probability, dtype=np.float64)
    finite = values[np.isfinite(values)]
    runs = int(finite.size)
    out = {"runs": runs, "failed_runs": int(values.size - runs), "p": math.nan,
           "p_stderr": math.nan, "p_ci95": (math.nan, math.nan), "relative_stderr": math.nan,
           "warning": None}
    if runs == 0:
        out["warning"] = "no run finished"
        return out
    p = float(finite.mean())
    stderr = float(finite.std(ddof=1) / math.sqrt(runs)) if runs > 1 else math.nan
    low, high = t_interval(p, stderr, runs - 1)
    out.update(p=p, p_stderr=stderr, p_ci95=(max(low, 0.0), high),
               relative_stderr=stderr / p if p > 0 else math.nan)
    skew = float(stats.skew(finite)) if runs > 2 and finite.std() > 0 else 0.0
    out["skewness"] = skew
    if runs < 10:
        out["warning"] = f"only {runs} runs: the CLT interval is rough"
    elif skew > 2.0:
        out["warning"] = (f"the {runs} runs' estimates are skewed (skewness {skew:.1f}): the "
                          "interval may undercover; use more runs or more replicas")
    if loop_steps is None or reactive_steps is None:
        return out
    loops = np.asarray(loop_steps, dtype=np.float64)
    reactive = np.asarray(reactive_steps, dtype=np.float64)
    loops, reactive = loops[np.isfinite(loops)], reactive[np.isfinite(reactive)]
    if not loops.size or not reactive.size or not p > 0:
        return out
    mean_loop, mean_reac = float(loops.mean()), float(reactive.mean())

    def var_of_mean(x):
        return float(x.var(ddof=1) / x.size) if x.size > 1 else 0.0

    time = (1.0 / p - 1.0) * mean_loop + mean_reac
    t_stderr = math.sqrt((mean_loop / p ** 2) ** 2 * stderr ** 2
                         + (1.0 / p - 1.0) ** 2 * var_of_mean(loops) + var_of_mean(reactive))
    spread = math.exp(Z95 * t_stderr / time) if time > 0 else math.nan
    out.update(mfpt_steps=time, mfpt_stderr=t_stderr,
               mfpt_ci95=(time / spread, time * spread), loop_steps=mean_loop,
               reactive_steps=mean_reac)
    return out
