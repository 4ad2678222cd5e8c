"""Two time scales (SCIENCE 2): regime boundaries of the loss curve, steady-state error and its fit.

Regime boundaries. The ensemble-mean loss L(t) of a two-time-scale run falls fast while x
catches up with lambda(y) (first descent), stalls or rises while the time scales do not separate
(plateau), then falls again while y descends (second descent). On the log-log curve
(u = ln t, l = ln L, linear interpolation between recorded steps) the plateau level L_p is the
loss at the flattest recorded segment (smallest |dl/du|) among the segments lying strictly inside
the band of levels between the first and the last loss (the band's outer ``fraction`` of the total
log drop on each side is excluded, so the initial flat and the final noise floor are never taken
for the plateau); it must be less than half as steep as the steepest segment before it and the
steepest after it, or the curve has no plateau (NaN boundaries with a ``reason``). Then

    end of the first descent    t1 = the step where L falls to (1 + fraction) L_p (last crossing
                                     before the plateau segment),
    start of the second descent t2 = the step where L falls to (1 - fraction) L_p (first crossing
                                     after the plateau segment),

both interpolated linearly in (ln t, ln L). On a curve that is piecewise linear in (ln t, ln L)
with its kinks on recorded steps this is exact: with descent slopes -s1, -s2 around a flat plateau
[T1, T2], ``ln t1 = ln T1 - ln(1 + fraction) / s1`` and ``ln t2 = ln T2 - ln(1 - fraction) / s2``.

Uncertainty. A run file keeps the ensemble mean of the loss but not its per-trajectory spread, so
the error of a boundary cannot be computed from one curve. It comes from R >= 2 independent
replicate curves: sweep points with identical parameters (e.g. ``"model.kappa" = [1.0, 1.0, 1.0,
1.0]``; trajectories of different points use different Philox counters, so the points are
independent) or separate runs with different seeds. The estimate uses the mean of the R curves;
its standard error is the delete-one jackknife over replicates, computed on ln t (boundaries are
positive and their errors multiplicative), with a Student-t interval of R - 1 degrees of freedom.

Steady-state error. For ``coupled_quadratic`` (lambda(y) = kappa eps y, y* = w_star / eps) the
error of one trajectory is |x - lambda(y*)|^2 + |y - y*|^2 = |x - kappa w_star|^2 +
|y - w_star/eps|^2; for ``grooves`` y* is the nearest groove round(eps y) / eps (per
coordinate). Its ensemble mean over the final states has the plain across-trajectory standard
error (trajectories are independent). Over a sweep the errors are fitted by weighted least
squares to ``C1 a + C2 b / a`` (or other ``terms``), weights 1 / stderr^2; the coefficients'
standard errors are scaled by sqrt(chi2 / dof) when that exceeds 1 (a misfit widens them).
"""

from __future__ import annotations

import math

import numpy as np

from ._estimators import t_interval

TWO_TIME_SCALE_MODELS = ("coupled_quadratic", "grooves")
TWO_TIME_SCALE_DYNAMICS = ("two_time_scale", "two_time_scale_sde")


def regime_boundaries(steps, loss, fraction: float = 0.1) -> dict:
    """End of the first descent and start of the second descent of one loss curve, in steps.

    ``steps`` [T] recorded steps (increasing; a step 0 only sets the initial loss), ``loss`` [T]
    ensemble-mean loss (> 0). Returns ``end_first_descent``, ``start_second_descent`` (steps,
    NaN with ``reason`` when the curve has no plateau between two descents), ``plateau_loss``,
    ``plateau_step`` (geometric middle of the flattest segment), ``initial_loss``,
    ``final_loss`` and ``middle_slope`` (d ln L / d ln t fitted between the two boundaries: about
    0 on a plateau, > 0 when the loss rises).
    """
    steps = np.asarray(steps, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if steps.shape != loss.shape or steps.ndim != 1:
        raise ValueError("steps and loss must be 1-d arrays of the same length")
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    out = {"fraction": float(fraction), "end_first_descent": math.nan, "start_second_descent": math.nan,
           "plateau_loss": math.nan, "plateau_step": math.nan, "middle_slope": math.nan,
           "initial_loss": float(loss[0]) if loss.size else math.nan,
           "final_loss": float(loss[-1]) if loss.size else math.nan}
    keep = (steps > 0) & np.isfinite(loss) & (loss > 0)
    if not (np.isfinite(loss[0]) and loss[0] > 0) or keep.sum() < 3:
        out["reason"] = "fewer than 3 recorded steps with a positive loss"
        return out
    u = np.log(steps[keep])
    level = np.log(loss[keep])
    first, last = math.log(loss[0]), level[-1]
    drop = first - last
    if not drop > 0:
        out["reason"] = "the loss does not decrease"
        return out
    slope = np.diff(level) / np.diff(u)
    inside = ((np.minimum(level[:-1], level[1:]) > last + fraction * drop)
              & (np.maximum(level[:-1], level[1:]) < first - fraction * drop))
    if not inside.any():
        out["reason"] = "no recorded segment between the first and the last loss levels"
        return out
    candidates = np.flatnonzero(inside)
    flat = int(candidates[np.argmin(np.abs(slope[candidates]))])
    before, after = slope[:flat], slope[flat + 1:]
    if before.size == 0 or after.size == 0 or not (
            abs(slope[flat]) < 0.5 * -before.min() and abs(slope[flat]) < 0.5 * -after.min()):
        out["reason"] = "no plateau: the flattest segment is not half as steep as the descents around it"
        return out
    plateau = 0.5 * (level[flat] + level[flat + 1])
    out["plateau_loss"] = float(math.exp(plateau))
    out["plateau_step"] = float(math.exp(0.5 * (u[flat] + u[flat + 1])))

    upper = plateau + math.log1p(fraction)
    above = np.flatnonzero(level[: flat + 1] > upper)
    lower = plateau + math.log1p(-fraction)
    below = flat + 1 + np.flatnonzero(level[flat + 1:] < lower)
    if above.size == 0:
        out["reason"] = f"the loss never exceeds (1 + {fraction:g}) x the plateau before it: no first descent"
        return out
    if below.size == 0:
        out["reason"] = f"the loss never falls below (1 - {fraction:g}) x the plateau after it: no second descent"
        return out
    i = int(above[-1])          # last step above the upper level; the crossing is in (i, i + 1]
    t1 = u[i] + (upper - level[i]) * (u[i + 1] - u[i]) / (level[i + 1] - level[i])
    j = int(below[0])           # first step below the lower level; the crossing is in [j - 1, j)
    t2 = u[j - 1] + (lower - level[j - 1]) * (u[j] - u[j - 1]) / (level[j] - level[j - 1])
    out["end_first_descent"] = float(math.exp(t1))
    out["start_second_descent"] = float(math.exp(t2))
    middle = (u >= t1) & (u <= t2)
    if middle.sum() >= 2:
        out["middle_slope"] = float(np.polyfit(u[middle], level[middle], 1)[0])
    return out


def _jackknife_log(full: float, leave_one_out: np.ndarray) -> tuple:
    """Delete-one jackknife stderr of ln(estimate) from R leave-one-out estimates."""
    r = leave_one_out.size
    if r < 2 or not np.all(np.isfinite(leave_one_out)) or not np.all(leave_one_out > 0) or not full > 0:
        return math.nan, (math.nan, math.nan)
    logs = np.log(leave_one_out)
    se = math.sqrt((r - 1) / r * float(((logs - logs.mean()) ** 2).sum()))
    low, high = t_interval(math.log(full), se, r - 1)
    return se, (math.exp(low), math.exp(high))


def regimes(steps, loss_curves, fraction: float = 0.1) -> dict:
    """Regime boundaries of the mean of R replicate loss curves, with jackknife errors.

    ``loss_curves`` [R, T] (or [T] for one curve: no error then). Returns the keys of
    :func:`regime_boundaries` for the mean curve, and for ``end_first_descent`` and
    ``start_second_descent`` a dict ``{"estimate", "stderr", "log_stderr", "ci95",
    "replicate_estimates"}``: ``log_stderr`` is the jackknife stderr of ln t, ``stderr`` =
    t * log_stderr (delta method), ``ci95`` the t interval on ln t mapped back to steps,
    ``replicate_estimates`` each replicate's own boundary. ``replicates`` = R.
    """
    curves = np.atleast_2d(np.asarray(loss_curves, dtype=np.float64))
    replicates = curves.shape[0]
    mean_curve = curves.mean(axis=0)
    out = regime_boundaries(steps, mean_curve, fraction)
    out["replicates"] = int(replicates)
    out["method"] = ("boundaries where the mean loss is (1 +- fraction) x its plateau level; "
                     "stderr: delete-one jackknife over replicate curves, on ln t")
    single = [regime_boundaries(steps, c, fraction) for c in curves]
    if replicates >= 2:
        loo = [regime_boundaries(steps, (curves.sum(axis=0) - c) / (replicates - 1), fraction) for c in curves]
    else:
        loo = []
    for key in ("end_first_descent", "start_second_descent"):
        estimate = out[key]
        se_log, ci = _jackknife_log(estimate, np.array([b[key] for b in loo], dtype=np.float64))
        out[key] = {"estimate": estimate, "stderr": estimate * se_log if math.isfinite(se_log) else math.nan,
                    "log_stderr": se_log, "ci95": ci,
                    "replicate_estimates": np.array([b[key] for b in single], dtype=np.float64)}
    return out


def _as_vector(value, dim: int) -> np.ndarray:
    vector = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if vector.size == 1:
        return np.full(dim, float(vector[0]))
    if vector.size != dim:
        raise ValueError(f"w_star has {vector.size} entries, expected 1 or {dim}")
    return vector


def slow_optimum(model: dict, eps: float, y: np.ndarray) -> np.ndarray:
    """y* of a two-time-scale model: ``w_star / eps`` (coupled_quadratic), nearest groove (grooves).

    ``y`` [N, dim] slow coordinates (only used by ``grooves``); returns y* broadcast to [N, dim].
    """
    name = model.get("name")
    dim = y.shape[-1]
    if name == "coupled_quadratic":
        return np.broadcast_to(_as_vector(model.get("w_star", 0.0), dim) / eps, y.shape)
    if name == "grooves":
        return np.round(eps * y) / eps
    raise ValueError(f"model {name!r} has no known lambda and y*")


def steady_state_error(theta, model: dict, eps: float, x_dim: int) -> dict:
    """Ensemble mean of |x - lambda(y*)|^2 + |y - y*|^2 over final states, with stderr.

    ``theta`` [N, 2 x_dim] final states (x first, then y); lambda(y*) = kappa eps y*. Returns
    ``error``, ``stderr``, ``ci95`` and the parts ``tracking`` = E|x - lambda(y*)|^2,
    ``slow`` = E|y - y*|^2 (each with ``_stderr``), and ``n`` (finite trajectories).
    """
    theta = np.asarray(theta, dtype=np.float64)
    theta = theta[np.all(np.isfinite(theta), axis=1)]
    x, y = theta[:, :x_dim], theta[:, x_dim:2 * x_dim]
    y_star = slow_optimum(model, eps, y)
    kappa = float(model.get("kappa", 1.0))
    tracking = ((x - kappa * eps * y_star) ** 2).sum(axis=1)
    slow = ((y - y_star) ** 2).sum(axis=1)
    total = tracking + slow
    n = total.size
    out = {"n": int(n)}
    for key, values in (("error", total), ("tracking", tracking), ("slow", slow)):
        mean = float(values.mean()) if n else math.nan
        se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        out[key] = mean
        out["stderr" if key == "error" else f"{key}_stderr"] = se
    out["ci95"] = t_interval(out["error"], out["stderr"], n - 1)
    return out


_TERMS = {"a": lambda a, b: a, "b": lambda a, b: b, "b/a": lambda a, b: b / a, "a^2": lambda a, b: a * a,
          "1": lambda a, b: np.ones_like(a)}


def fit_steady_state(a, b, error, stderr, terms=("a", "b/a")) -> dict:
    """Weighted least-squares fit ``error = sum_k C_k term_k(a, b)``, default ``C1 a + C2 b/a``.

    Weights 1 / stderr^2. Returns ``terms``, ``coefficients``, ``coefficient_stderr`` (scaled by
    sqrt(chi2/dof) when that exceeds 1), ``fitted``, ``residuals`` (error - fitted),
    ``relative_residuals`` (residual / fitted), ``standardized_residuals`` (residual / stderr),
    ``chi2``, ``dof`` and ``max_relative_residual``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    stderr = np.asarray(stderr, dtype=np.float64)
    unknown = [t for t in terms if t not in _TERMS]
    if unknown:
        raise ValueError(f"unknown fit terms {unknown}; known: {sorted(_TERMS)}")
    if error.size < len(terms):
        raise ValueError(f"{error.size} points cannot fit {len(terms)} coefficients")
    design = np.column_stack([_TERMS[t](a, b) for t in terms])
    weight = 1.0 / np.where(stderr > 0, stderr, np.nan)
    if not np.all(np.isfinite(weight)):
        weight = np.full_like(error, 1.0 / max(float(np.abs(error).mean()), 1e-300))
    coef, *_ = np.linalg.lstsq(design * weight[:, None], error * weight, rcond=None)
    fitted = design @ coef
    resid = error - fitted
    chi2 = float(((resid * weight) ** 2).sum())
    dof = int(error.size - len(terms))
    cov = np.linalg.pinv((design * weight[:, None]).T @ (design * weight[:, None]))
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = resid / fitted
    return {"terms": list(terms), "coefficients": coef, "coefficient_stderr": np.sqrt(np.diag(cov) * scale),
            "fitted": fitted, "residuals": resid, "relative_residuals": relative,
            "standardized_residuals": resid * weight, "chi2": chi2, "dof": dof,
            "max_relative_residual": float(np.nanmax(np.abs(relative))) if relative.size else math.nan}
