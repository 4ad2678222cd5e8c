"""Closed forms and quadratures for the built-in 1-D models (SPEC 3-4, SCIENCE 1).

Conventions: the loss is L, its gradient L', the per-sample gradient variance Sigma. Langevin
is the Ito SDE ``d theta = -L'(theta) dt + sqrt(tau * Sigma(theta)) dW`` (tau = temperature),
integrated by the engine with step ``dt``: time = steps * dt. For SGD the small-step picture
uses tau = lr / B and time = steps * lr.

The effective potential is ``Phi(theta) = (2/tau) int L'(s) / Sigma(s) ds``; the stationary
density is ``p ∝ exp(-Phi) / Sigma``. Everything here is numpy/scipy only.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.polynomial import polynomial as npoly
from scipy import integrate, optimize, special

# 8-point Gauss-Legendre on [-1, 1]: exact to rounding for the smooth integrands L'/Sigma over
# the short grid cells used below, so Phi at grid nodes is accurate to ~1e-14 relative.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)
_GRID_CELLS = 20000
# exp(-45) ~ 3e-20: mass beyond the point where the log-density is 45 below its peak is dropped.
_LOG_CUTOFF = 45.0


class TheoryUnavailable(Exception):
    """No closed form or quadrature applies (user model, zero noise, non-normalisable density)."""


@dataclass(frozen=True)
class ModelFunctions:
    """Vectorised numpy versions of a built-in model: L, L', L'', Sigma, and sample data."""

    name: str
    loss: Callable
    grad: Callable
    hess: Callable
    noise_var: Callable
    constant_noise: bool
    constant_hess: bool


def model_functions(model: dict) -> ModelFunctions:
    """Numpy functions of a built-in model from its resolved ``[model]`` table (SPEC 3).

    polynomial: ``L = sum_k a_k theta^k``; Sigma a number or
    ``left + (right - left) / (1 + exp(-(theta - center) / width))``.
    quadratic_finite_sum: ``L' = mean_i h_i (theta - c_i)``, ``Sigma = var_i[h_i (theta - c_i)]``
    (population variance, 1/n).
    """
    name = model.get("name")
    if name == "polynomial":
        coefficients = np.asarray(model["coefficients"], dtype=np.float64)
        d1 = npoly.polyder(coefficients) if coefficients.size > 1 else np.zeros(1)
        d2 = npoly.polyder(d1) if d1.size > 1 else np.zeros(1)
        noise = model.get("noise_var", 1.0)
        if isinstance(noise, dict):
            left, right = float(noise["left"]), float(noise["right"])
            centre, width = float(noise["center"]), float(noise["width"])

            def noise_var(x):
                return left + (right - left) * special.expit((np.asarray(x, dtype=np.float64) - centre) / width)

            constant_noise = left == right
        else:
            value = float(noise)

            def noise_var(x):
                return np.full(np.shape(x), value)

            constant_noise = True
        return ModelFunctions(
            name=name,
            loss=lambda x: npoly.polyval(x, coefficients),
            grad=lambda x: npoly.polyval(x, d1),
            hess=lambda x: npoly.polyval(x, d2) + np.zeros(np.shape(x)),
            noise_var=noise_var,
            constant_noise=constant_noise,
            constant_hess=coefficients.size <= 3,
        )
    if name == "quadratic_finite_sum":
        h, c = finite_sum_samples(model)
        g = h * c
        mean_h, mean_g = h.mean(), g.mean()
        var_h, var_g = h.var(), g.var()
        cov_hg = ((h - mean_h) * (g - mean_g)).mean()
        mean_hc2 = (h * c * c).mean()
        return ModelFunctions(
            name=name,
            loss=lambda x: 0.5 * (mean_h * np.square(x) - 2.0 * mean_g * np.asarray(x) + mean_hc2),
            grad=lambda x: mean_h * np.asarray(x, dtype=np.float64) - mean_g,
            hess=lambda x: np.full(np.shape(x), mean_h),
            noise_var=lambda x: np.maximum(var_h * np.square(x) - 2.0 * cov_hg * np.asarray(x) + var_g, 0.0),
            constant_noise=bool(var_h == 0 and cov_hg == 0),
            constant_hess=True,
        )
    raise TheoryUnavailable(f"no theory for model {name!r} (built-in 1-D models only)")


def finite_sum_samples(model: dict) -> tuple:
    """Curvatures h_i and centres c_i of a quadratic_finite_sum model (centres default 0)."""
    h = np.asarray(model["curvatures"], dtype=np.float64).reshape(-1)
    c = np.asarray(model.get("centers", np.zeros_like(h)), dtype=np.float64).reshape(-1)
    if c.size == 1 and h.size > 1:
        c = np.full_like(h, c[0])
    if c.size != h.size:
        raise TheoryUnavailable("curvatures and centers differ in length")
    return h, c


def _cell_integrals(f, grid):
    """int_{grid[k]}^{grid[k+1]} f by 8-point Gauss-Legendre on each cell, vectorised."""
    left, right = grid[:-1], grid[1:]
    half = 0.5 * (right - left)
    mid = 0.5 * (right + left)
    points = mid[:, None] + half[:, None] * _GL_NODES[None, :]
    return half * (f(points) * _GL_WEIGHTS[None, :]).sum(axis=1)


def _partial_integrals(f, start, stop):
    """int_start^stop f elementwise (8-point Gauss-Legendre; start/stop arrays)."""
    start = np.asarray(start, dtype=np.float64)
    stop = np.asarray(stop, dtype=np.float64)
    half = 0.5 * (stop - start)
    mid = 0.5 * (stop + start)
    points = mid[..., None] + half[..., None] * _GL_NODES
    return half * (f(points) * _GL_WEIGHTS).sum(axis=-1)


def _phi_on_grid(drift_ratio, grid):
    """Phi at the grid nodes, Phi(grid[0]) = 0: cumulative sum of per-cell GL integrals."""
    return np.concatenate(([0.0], np.cumsum(_cell_integrals(drift_ratio, grid))))


def _check_noise(fns, grid):
    sigma = fns.noise_var(grid)
    if not np.all(sigma > 0) or not np.all(np.isfinite(sigma)):
        raise TheoryUnavailable("gradient-noise variance is not positive everywhere, so the "
                                "Fokker-Planck density is degenerate")


def _drift_ratio(fns, tau):
    scale = 2.0 / tau

    def ratio(x):
        return scale * fns.grad(x) / fns.noise_var(x)

    return ratio


def _find_support(fns, tau, lo, hi, lower=True, upper=True):
    """Interval outside of which the unnormalised log density ``-Phi - log Sigma`` is negligible.

    Starts from [lo, hi], doubles outward on each side that asks for it (``lower``/``upper``)
    until the log density at the edge is ``_LOG_CUTOFF`` below its maximum, then trims to the
    part within the cutoff. Raises TheoryUnavailable if it never decays (not normalisable).
    """
    ratio = _drift_ratio(fns, tau)
    a, b = float(lo), float(hi)
    if not b > a:
        a, b = a - 1.0, a + 1.0
    for _ in range(60):
        grid = np.linspace(a, b, 4001)
        _check_noise(fns, grid)
        log_density = -_phi_on_grid(ratio, grid) - np.log(fns.noise_var(grid))
        top = log_density.max()
        grow_low = lower and log_density[0] > top - _LOG_CUTOFF
        grow_high = upper and log_density[-1] > top - _LOG_CUTOFF
        if not (grow_low or grow_high):
            keep = np.nonzero(log_density > top - _LOG_CUTOFF)[0]
            i0 = max(keep[0] - 1, 0) if lower else 0
            i1 = min(keep[-1] + 1, grid.size - 1) if upper else grid.size - 1
            return float(grid[i0]), float(grid[i1])
        width = b - a
        if grow_low:
            a -= width
        if grow_high:
            b += width
        if width > 1e12:
            break
    raise TheoryUnavailable("stationary density is not normalisable (exp(-Phi)/Sigma does not decay)")


class StationaryDensity:
    """The 1-D Fokker-Planck stationary density of Langevin with temperature tau.

    ``p(theta) = exp(-Phi(theta)) / (Z Sigma(theta))``, ``Phi = (2/tau) int L'/Sigma``, Z by
    composite Simpson on a 20 001-node grid over the support (where p is within e^-45 of its
    peak). pdf is per unit theta. ``cdf`` is the cumulative Simpson integral, interpolated
    linearly between grid nodes.
    """

    def __init__(self, model: dict, temperature: float, lo: float = -1.0, hi: float = 1.0):
        if not temperature > 0:
            raise TheoryUnavailable("temperature must be > 0 for a stationary density")
        self.fns = model_functions(model)
        self.tau = float(temperature)
        self._ratio = _drift_ratio(self.fns, self.tau)
        a, b = _find_support(self.fns, self.tau, lo, hi)
        self.grid = np.linspace(a, b, _GRID_CELLS + 1)
        _check_noise(self.fns, self.grid)
        self._phi = _phi_on_grid(self._ratio, self.grid)
        log_unnorm = -self._phi - np.log(self.fns.noise_var(self.grid))
        self._shift = log_unnorm.max()
        unnorm = np.exp(log_unnorm - self._shift)
        self._log_z = math.log(integrate.simpson(unnorm, x=self.grid)) + self._shift
        self.density = np.exp(log_unnorm - self._log_z)
        cdf = integrate.cumulative_simpson(self.density, x=self.grid, initial=0.0)
        self._cdf = cdf / cdf[-1]
        self.mean = float(integrate.simpson(self.grid * self.density, x=self.grid))
        self.var = float(integrate.simpson((self.grid - self.mean) ** 2 * self.density, x=self.grid))

    def log_pdf(self, x):
        """log p(x), with Phi(x) from the nearest grid node plus a Gauss-Legendre remainder."""
        x = np.asarray(x, dtype=np.float64)
        index = np.clip(np.searchsorted(self.grid, x) - 1, 0, self.grid.size - 1)
        phi = self._phi[index] + _partial_integrals(self._ratio, self.grid[index], x)
        return -phi - np.log(self.fns.noise_var(x)) - self._log_z

    def pdf(self, x):
        """p(x) per unit theta."""
        return np.exp(self.log_pdf(x))

    def cdf(self, x):
        """P(theta <= x) (0 below the support, 1 above)."""
        return np.interp(np.asarray(x, dtype=np.float64), self.grid, self._cdf, left=0.0, right=1.0)

    def bin_masses(self, edges) -> tuple:
        """(mass of each bin, mass below edges[0], mass at or above edges[-1])."""
        cdf = self.cdf(edges)
        return np.diff(cdf), float(cdf[0]), float(1.0 - cdf[-1])


def stationary_density(model: dict, temperature: float, lo: float = -1.0, hi: float = 1.0) -> StationaryDensity:
    """Fokker-Planck stationary density ``p ∝ exp(-(2/tau) int L'/Sigma) / Sigma`` (see class)."""
    return StationaryDensity(model, temperature, lo, hi)


def total_variation(density: StationaryDensity, edges, counts, outside=None) -> float:
    """Total variation distance between the histogram and the theory, bin by bin.

    TV = 1/2 (sum_b |c_b/V - q_b| + |below/V - q_below| + |above/V - q_above|), V = all visits,
    q the theory's mass in each bin and beyond each end. Includes sampling noise: even an exact
    histogram of V_eff independent draws has TV of order sqrt(bins / V_eff).
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)
    outside = np.zeros(2) if outside is None else np.asarray(outside, dtype=np.float64).reshape(-1)
    visits = counts.sum() + outside.sum()
    masses, below, above = density.bin_masses(edges)
    return 0.5 * float(np.abs(counts / visits - masses).sum() + abs(outside[0] / visits - below)
                       + abs(outside[1] / visits - above))


def _reflected(fns: ModelFunctions) -> ModelFunctions:
    """The model seen through u = -theta: L~(u) = L(-u), so L~'(u) = -L'(-u), L~'' = L''(-u)."""
    return ModelFunctions(
        name=fns.name,
        loss=lambda u: fns.loss(-np.asarray(u)),
        grad=lambda u: -fns.grad(-np.asarray(u)),
        hess=lambda u: fns.hess(-np.asarray(u)),
        noise_var=lambda u: fns.noise_var(-np.asarray(u)),
        constant_noise=fns.constant_noise,
        constant_hess=fns.constant_hess,
    )


def _log_cumulative(log_f, grid, block: int = 200):
    """log of int_{grid[0]}^{grid[k]} exp(log_f) for every k (cumulative Simpson per block).

    Each block of ``block`` cells is integrated scaled by its own maximum and the blocks are
    joined with logaddexp, so integrands ranging over e^{+-1000} keep full relative accuracy.
    """
    out = np.empty_like(log_f)
    out[0] = -np.inf
    running = -np.inf
    last = grid.size - 1
    for start in range(0, last, block):
        stop = min(start + block, last)
        seg = slice(start, stop + 1)
        top = log_f[seg].max()
        part = integrate.cumulative_simpson(np.exp(log_f[seg] - top), x=grid[seg], initial=0.0)
        with np.errstate(divide="ignore"):
            out[start + 1: stop + 1] = np.logaddexp(running, top + np.log(part[1:]))
        running = out[stop]
    return out


def _log_simpson(log_f, grid):
    top = np.max(log_f)
    if not np.isfinite(top):
        return -math.inf
    return top + math.log(integrate.simpson(np.exp(log_f - top), x=grid))


def langevin_mfpt(model: dict, temperature: float, start: float, level: float, direction: str = "above") -> dict:
    """Exact mean first-passage time of 1-D Langevin from ``start`` to ``level``, and Kramers.

    For ``above`` (level > start), with the generator's scale density exp(Phi) and speed
    density (2/tau) exp(-Phi)/Sigma (reflecting at -infinity):

        T = (2/tau) int_start^level exp(Phi(y)) int_{-inf}^y exp(-Phi(z)) / Sigma(z) dz dy

    (``below`` is the mirror image). Both integrals by Simpson on 20 001-node grids, in log space
    so barriers of any height work (``log_time`` is always finite; ``time`` may be inf). Kramers
    (Laplace's method at the well z* = argmin Phi and barrier y* = argmax Phi before the level):

        T_K = (2/tau) sqrt(2 pi / Phi''(z*)) sqrt(2 pi / |Phi''(y*)|) exp(Phi(y*) - Phi(z*)) / Sigma(z*)

    with Phi'' = (2/tau) L'' / Sigma at critical points; ``barrier`` = dU = int_{z*}^{y*} L'/Sigma,
    so log T_K grows like 2 dU / tau (``kramers_slope`` = 2 dU against 1/tau). Kramers entries are
    None when Phi has no interior maximum between start and level. Units: time.
    """
    if direction not in ("above", "below"):
        raise ValueError("direction must be 'above' or 'below'")
    if not temperature > 0:
        raise TheoryUnavailable("temperature must be > 0")
    fns = model_functions(model)
    x0, b = float(start), float(level)
    if direction == "below":
        fns, x0, b = _reflected(fns), -x0, -b
    if not b > x0:
        raise TheoryUnavailable("start is already in the target set")
    tau = float(temperature)
    ratio = _drift_ratio(fns, tau)
    # The inner integral from -inf is cut where exp(-Phi)/Sigma is e^-45 below its maximum on
    # [a, start]; J(y) >= J(start) for every y of the outer integral, so nothing of note is lost.
    a, _ = _find_support(fns, tau, x0 - (b - x0), x0, lower=True, upper=False)
    a = min(a, x0 - 1e-9 * max(1.0, abs(x0)))
    inner_grid = np.linspace(a, x0, _GRID_CELLS + 1)
    outer_grid = np.linspace(x0, b, _GRID_CELLS + 1)
    grid = np.concatenate((inner_grid, outer_grid[1:]))
    _check_noise(fns, grid)
    phi = _phi_on_grid(ratio, grid)
    log_speed = -phi - np.log(fns.noise_var(grid))
    # log J(y), J(y) = int_a^y exp(-Phi)/Sigma, accumulated in log space: J spans any range.
    log_inner = _log_cumulative(log_speed, grid)
    outer_phi = phi[inner_grid.size - 1:]
    log_integrand = outer_phi + log_inner[inner_grid.size - 1:]
    log_time = math.log(2.0 / tau) + _log_simpson(log_integrand, outer_grid)
    out = {"time": _safe_exp(log_time), "log_time": log_time,
           "kramers_time": None, "kramers_log_time": None, "barrier": None, "kramers_slope": None}

    barrier_index = int(np.argmax(outer_phi))
    if 0 < barrier_index < outer_grid.size - 1:
        barrier = _refine_critical(fns.grad, outer_grid, barrier_index)
        well_index = int(np.argmin(phi[: inner_grid.size - 1 + barrier_index + 1]))
        if 0 < well_index:
            well = _refine_critical(fns.grad, grid, well_index)
            h_well = float(fns.hess(np.array(well)))
            h_barrier = float(fns.hess(np.array(barrier)))
            if h_well > 0 and h_barrier < 0:
                sigma_well = float(fns.noise_var(np.array(well)))
                sigma_barrier = float(fns.noise_var(np.array(barrier)))
                d_phi = float(_partial_integrals(ratio, well, barrier))
                curv_well = 2.0 / tau * h_well / sigma_well
                curv_barrier = 2.0 / tau * -h_barrier / sigma_barrier
                log_kramers = (math.log(2.0 / tau) + 0.5 * math.log(2 * math.pi / curv_well)
                               + 0.5 * math.log(2 * math.pi / curv_barrier) + d_phi - math.log(sigma_well))
                d_u = d_phi * tau / 2.0
                out.update(kramers_time=_safe_exp(log_kramers), kramers_log_time=log_kramers,
                           barrier=d_u, kramers_slope=2.0 * d_u)
    return out


def langevin_splitting_probability(model: dict, temperature: float, start: float, a: float,
                                   b: float) -> float:
    """P(reach b before a | start) of 1-D Langevin (a < start < b), the scale function:

        p = int_a^start exp(Phi) / int_a^b exp(Phi),   Phi' = (2/tau) L' / Sigma

    by Simpson on a 20 001-node grid in log space (any barrier). The continuous process:
    a discrete chain overshoots the levels by up to a step's displacement."""
    if not a < start < b:
        raise TheoryUnavailable("start must lie between a and b")
    if not temperature > 0:
        raise TheoryUnavailable("temperature must be > 0")
    fns = model_functions(model)
    grid = np.linspace(float(a), float(b), _GRID_CELLS + 1)
    _check_noise(fns, grid)
    phi = _phi_on_grid(_drift_ratio(fns, float(temperature)), grid)
    log_cumulative = _log_cumulative(phi, grid)
    inside = np.interp(start, grid, log_cumulative)
    return float(math.exp(inside - log_cumulative[-1]))


def _refine_critical(grad, grid, index):
    """Root of L' bracketed by the grid nodes around ``index`` (the node itself if no bracket)."""
    lo = grid[max(index - 1, 0)]
    hi = grid[min(index + 1, grid.size - 1)]
    g_lo, g_hi = float(grad(np.array(lo))), float(grad(np.array(hi)))
    if g_lo == 0.0:
        return float(lo)
    if g_lo * g_hi < 0:
        return float(optimize.brentq(lambda x: float(grad(np.array(x))), lo, hi, xtol=1e-14, rtol=1e-14))
    return float(grid[index])


def _safe_exp(value):
    return math.exp(value) if value < 709.0 else math.inf


def _batch_means(values: np.ndarray, batch_size: int, max_multisets: int = 2_000_000):
    """All batch averages (1/B) sum_j values[z_j] over multisets with their probabilities.

    Draws with replacement: a multiset with counts k_i has probability B! / prod k_i! / n^B.
    """
    n = values.size
    count = math.comb(n + batch_size - 1, batch_size)
    if count > max_multisets:
        raise TheoryUnavailable(f"{count} batch compositions is too many to enumerate")
    combos = np.array(list(itertools.combinations_with_replacement(range(n), batch_size)), dtype=np.int64)
    averages = values[combos].mean(axis=1)
    multiplicity = np.zeros((combos.shape[0], n), dtype=np.int64)
    for j in range(batch_size):
        np.add.at(multiplicity, (np.arange(combos.shape[0]), combos[:, j]), 1)
    log_prob = (special.gammaln(batch_size + 1) - special.gammaln(multiplicity + 1).sum(axis=1)
                - batch_size * math.log(n))
    return averages, np.exp(log_prob)


def sgd_lyapunov(model: dict, lr: float, batch_size: int = 1) -> float:
    """Exact top Lyapunov exponent per step of SGD on quadratic_finite_sum (finite-sum noise).

    The tangent map is v <- (1 - lr * (1/B) sum_j h_{z_j}) v, i.i.d. over steps, so
    ``lambda = E ln|1 - lr * mean_batch(h)|``: for B = 1 the plain average of ln|1 - lr h_i|;
    for B > 1 the exact average over all multisets of B samples (with replacement).
    """
    if model.get("name") != "quadratic_finite_sum":
        raise TheoryUnavailable("exact Lyapunov exponent only for quadratic_finite_sum")
    h, _ = finite_sum_samples(model)
    averages, prob = _batch_means(h, int(batch_size))
    with np.errstate(divide="ignore"):
        return float((prob * np.log(np.abs(1.0 - lr * averages))).sum())


def sgd_stationary_moments(model: dict, lr: float, batch_size: int = 1) -> dict:
    """Exact stationary mean and variance of SGD on quadratic_finite_sum.

    The iteration is linear: theta <- A theta + b with A = 1 - lr * hbar, b = lr * gbar,
    hbar = (1/B) sum_j h_{z_j}, gbar = (1/B) sum_j h_{z_j} c_{z_j}; (A, b) i.i.d. over steps and
    E hbar^2 = mu_h^2 + var(h)/B etc. (population moments, draws with replacement). Then

        m = E b / (1 - E A),   s = (E b^2 + 2 m E[A b]) / (1 - E A^2),   var = s - m^2.

    The same first two moments hold for ``noise = "gaussian"`` (its variance is Sigma/B with
    the same mean), so the result applies to both. mean is None if |E A| >= 1; var is inf if
    E A^2 >= 1 (the second moment grows without bound).
    """
    mu_h, mu_g, e_h2, e_g2, e_hg = _batch_moments(model, batch_size)
    e_a = 1.0 - lr * mu_h
    e_a2 = 1.0 - 2.0 * lr * mu_h + lr * lr * e_h2
    e_b = lr * mu_g
    e_b2 = lr * lr * e_g2
    e_ab = lr * mu_g - lr * lr * e_hg
    if abs(e_a) >= 1.0:
        return {"mean": None, "var": None}
    mean = e_b / (1.0 - e_a)
    if e_a2 >= 1.0:
        return {"mean": float(mean), "var": math.inf}
    second = (e_b2 + 2.0 * mean * e_ab) / (1.0 - e_a2)
    return {"mean": float(mean), "var": float(max(second - mean * mean, 0.0))}


def _batch_moments(model, batch_size):
    """(E hbar, E gbar, E hbar^2, E gbar^2, E hbar gbar) of a minibatch of quadratic_finite_sum
    (B samples with replacement; hbar, gbar the batch means of h_i and h_i c_i)."""
    if model.get("name") != "quadratic_finite_sum":
        raise TheoryUnavailable("exact stationary moments only for quadratic_finite_sum")
    h, c = finite_sum_samples(model)
    g = h * c
    b_size = float(batch_size)
    mu_h, mu_g = h.mean(), g.mean()
    return (mu_h, mu_g, mu_h ** 2 + h.var() / b_size, mu_g ** 2 + g.var() / b_size,
            mu_h * mu_g + ((h - mu_h) * (g - mu_g)).mean() / b_size)


def heavy_ball_stationary_moments(model: dict, lr: float, momentum: float = 0.0,
                                  batch_size: int = 1, nesterov: bool = False,
                                  weight_decay: float = 0.0) -> dict:
    """Exact stationary mean and variance of SGD with momentum (PyTorch's heavy ball) on
    quadratic_finite_sum.

    With g = hbar theta - gbar + wd theta (a = hbar + wd) the step is
    v <- mu v + g, theta <- theta - lr (k g + q v) with (k, q) = (1, mu), or (1 + mu, mu^2)
    with Nesterov. The pair x = (theta, v) follows x <- A x + b with A = A0 + hbar A1 and
    b = gbar b1, i.i.d. over steps and independent of x, so its moments close:

        m = (I - E A)^-1 E b,
        S = E[A S A^T] + E[A m b^T] + E[b m^T A^T] + E[b b^T],

    a linear system for S (``E[A (x) A]`` acts on vec S). Returns ``mean``, ``var`` (of theta),
    ``mean_radius`` (spectral radius of E A: the mean converges iff < 1) and ``radius``
    (spectral radius of E[A (x) A]: mean-square stable iff < 1); mean is None and var inf
    where they fail. Momentum 0 gives ``sgd_stationary_moments``.
    """
    mu_h, mu_g, e_h2, e_g2, e_hg = _batch_moments(model, batch_size)
    mu, wd = float(momentum), float(weight_decay)
    k, q = (1.0 + mu, mu * mu) if nesterov else (1.0, mu)
    a0 = np.array([[1.0 - lr * k * wd, -lr * q], [wd, mu]])
    a1 = np.array([[-lr * k, 0.0], [1.0, 0.0]])
    b1 = np.array([lr * k, -1.0])
    e_a = a0 + mu_h * a1
    second = (np.kron(a0, a0) + mu_h * (np.kron(a0, a1) + np.kron(a1, a0))
              + e_h2 * np.kron(a1, a1))
    mean_radius = float(np.abs(np.linalg.eigvals(e_a)).max())
    radius = float(np.abs(np.linalg.eigvals(second)).max())
    out = {"mean": None, "var": math.inf, "mean_radius": mean_radius, "radius": radius}
    if mean_radius >= 1.0:
        out["var"] = None
        return out
    m = np.linalg.solve(np.eye(2) - e_a, mu_g * b1)
    out["mean"] = float(m[0])
    if radius >= 1.0:
        return out
    cross = np.outer(mu_g * (a0 @ m) + e_hg * (a1 @ m), b1)
    rhs = cross + cross.T + e_g2 * np.outer(b1, b1)
    s = np.linalg.solve(np.eye(4) - second, rhs.reshape(-1)).reshape(2, 2)
    out["var"] = float(max(s[0, 0] - m[0] * m[0], 0.0))
    return out


def heavy_ball_stability_boundary(model: dict, momentum: float = 0.0, batch_size: int = 1,
                                  nesterov: bool = False, weight_decay: float = 0.0) -> float:
    """The smallest lr at which heavy-ball SGD on quadratic_finite_sum loses mean-square
    stability (the spectral radius of E[A (x) A] of ``heavy_ball_stationary_moments``
    reaches 1), found by doubling from a stable lr and bisecting to relative 1e-12."""
    def radius(lr):
        return heavy_ball_stationary_moments(model, lr, momentum, batch_size, nesterov,
                                             weight_decay)["radius"]

    lo, hi = 0.0, 1e-6
    while radius(hi) < 1.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e12:
            return math.inf
    return float(optimize.brentq(lambda lr: radius(lr) - 1.0, lo, hi, xtol=1e-14, rtol=1e-12))


def _get(table, key, default=None):
    value = table.get(key, default)
    return default if value is None else value


def point_theory(params: dict, histogram: dict | None = None) -> dict:
    """Every theory value that applies to one sweep point's experiment ``params``.

    Keys (only those that apply): ``stationary_mean``, ``stationary_var``, ``stationary_tv``
    (langevin; TV needs ``histogram`` = {"edges", "counts", "outside"}), ``lyapunov`` (per step),
    ``first_passage_mean_time`` / ``first_passage_mean_steps`` (exact, langevin),
    ``first_passage_kramers_time`` / ``_steps``, ``kramers_barrier`` (dU), ``kramers_slope``
    (2 dU); for sgd the small-step SDE picture (tau = lr/B, time = steps * lr) gives
    ``first_passage_sde_mean_steps`` and the Kramers entries. Failures are recorded under
    ``unavailable`` as {key: reason}.
    """
    model = params.get("model", {})
    dynamics = params.get("dynamics", {})
    observables = params.get("observables", {})
    kind = dynamics.get("name")
    out: dict = {}
    unavailable: dict = {}

    def attempt(key, fn):
        try:
            fn()
        except TheoryUnavailable as exc:
            unavailable[key] = str(exc)
        except (ValueError, ArithmeticError, KeyError, TypeError) as exc:
            unavailable[key] = f"{type(exc).__name__}: {exc}"

    if kind == "langevin":
        tau = float(dynamics["temperature"])
        dt = float(dynamics["dt"])

        def density():
            lo, hi = -1.0, 1.0
            if histogram is not None:
                lo, hi = float(histogram["edges"][0]), float(histogram["edges"][-1])
            dens = StationaryDensity(model, tau, lo, hi)
            out["stationary_mean"] = dens.mean
            out["stationary_var"] = dens.var
            if histogram is not None:
                out["stationary_tv"] = total_variation(dens, histogram["edges"], histogram["counts"],
                                                       histogram.get("outside"))

        attempt("stationary", density)

        def lyap():
            fns = model_functions(model)
            if not (fns.constant_noise and fns.constant_hess):
                raise TheoryUnavailable("exact only for additive noise on a quadratic loss")
            out["lyapunov"] = float(np.log(abs(1.0 - float(fns.hess(np.array(0.0))) * dt)))

        if "lyapunov" in observables:
            attempt("lyapunov", lyap)
        if "first_passage" in observables:
            attempt("first_passage", lambda: _mfpt_entries(out, model, params, tau, time_per_step=dt))
    elif kind in ("sgd", "gd"):
        lr = float(dynamics["lr"])
        batch = int(_get(dynamics, "batch_size", 1))
        if kind == "sgd":
            noise = _get(dynamics, "noise", "finite_sum")
            if noise == "none":
                batch = math.inf          # the full gradient: a batch without variance
            if "lyapunov" in observables:
                def lyap_sgd():
                    if noise != "finite_sum":
                        raise TheoryUnavailable("exact Lyapunov exponent only for finite_sum noise")
                    out["lyapunov"] = sgd_lyapunov(model, lr, batch)

                attempt("lyapunov", lyap_sgd)

            def moments():
                heavy = [dynamics.get(key) for key in ("momentum", "nesterov", "weight_decay")]
                if any(value is not None for value in heavy):
                    m = heavy_ball_stationary_moments(
                        model, lr, float(heavy[0] or 0.0), batch, bool(heavy[1]),
                        float(heavy[2] or 0.0))
                    out["mean_square_radius"] = m["radius"]
                else:
                    m = sgd_stationary_moments(model, lr, batch)
                out["stationary_mean"], out["stationary_var"] = m["mean"], m["var"]

            attempt("stationary", moments)
            if "first_passage" in observables and noise != "none":
                attempt("first_passage", lambda: _mfpt_entries(out, model, params, lr / batch, time_per_step=lr,
                                                               prefix="first_passage_sde"))
        else:
            def gd_theory():
                fns = model_functions(model)
                if model.get("name") != "quadratic_finite_sum":
                    raise TheoryUnavailable("gd theory only for quadratic_finite_sum")
                mu_h = float(fns.hess(np.array(0.0)))
                if "lyapunov" in observables:
                    out["lyapunov"] = float(np.log(abs(1.0 - lr * mu_h)))
                m = sgd_stationary_moments({**model, "curvatures": [mu_h],
                                            "centers": [float(-fns.grad(np.array(0.0))) / mu_h]}, lr, 1)
                out["stationary_mean"], out["stationary_var"] = m["mean"], m["var"]

            attempt("gd", gd_theory)
    else:
        unavailable["dynamics"] = f"no theory for dynamics {kind!r}"
    if unavailable:
        out["unavailable"] = unavailable
    return out


def _mfpt_entries(out, model, params, tau, time_per_step, prefix="first_passage"):
    init = params.get("init", {})
    if "value" not in init:
        raise TheoryUnavailable("mean first-passage time needs a constant start ([init] value)")
    target = params.get("observables", {}).get("first_passage", {})
    if "above" in target:
        level, direction = float(target["above"]), "above"
    elif "below" in target:
        level, direction = float(target["below"]), "below"
    else:
        raise TheoryUnavailable("first_passage has neither above nor below")
    res = langevin_mfpt(model, tau, float(init["value"]), level, direction)
    if prefix == "first_passage":
        out["first_passage_mean_time"] = res["time"]
    out[f"{prefix}_mean_steps"] = res["time"] / time_per_step
    out[f"{prefix}_log_mean_steps"] = res["log_time"] - math.log(time_per_step)
    if res["kramers_time"] is not None:
        if prefix == "first_passage":
            out["first_passage_kramers_time"] = res["kramers_time"]
        out[f"{prefix}_kramers_steps"] = res["kramers_time"] / time_per_step
        out["kramers_barrier"] = res["barrier"]
        out["kramers_slope"] = res["kramers_slope"]
