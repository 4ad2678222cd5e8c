"""Models with a d-dimensional state (issue 4): plain functions, written once.

Functions are written coordinate-major with explicit loops over coordinates,
so one source serves every backend: inside a kernel ``th`` is a length-d array
of one trajectory and ``th[k]`` a scalar; in the numpy backend ``th`` is a
[d, n] array of all trajectories and ``th[k]`` a length-n array. Outputs are
written into caller-provided buffers (registers or thread-local memory in a
kernel, so nothing is allocated per step).

Every vector model provides

    loss(th, p)                         L(theta)
    grad(th, out, p)                    out <- grad L(theta)
    noise_var(th, p)                    isotropic gradient-noise variance (langevin)
    n_samples(p)                        n per-sample losses
    add_sample_grad(th, i, scale, out, p)   out += scale * grad l_i(theta)

and a two-time-scale model (state theta = (x, y), x and y of dimension m,
f(x, w) evaluated at w = eps*y) also

    f_loss(x, w, p), f_grad_x(x, w, out, p), f_grad_w(x, w, out, p)
    tracking_error(x, y, eps, p)        |x - lambda(y)|^2
    slow_error(y, eps, p)               |y - y*|^2 (NaN where y* is not unique)
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._jit import jitable

__all__ = ["VectorModel", "vector_model", "VECTOR_MODELS", "linear_regression_data"]

_jitable = jitable


@dataclass(frozen=True)
class VectorModel:
    """The functions and parameters of a d-dimensional model."""

    name: str
    dim: int                     # state dimension d
    x_dim: int                   # fast-variable dimension m of a two-time-scale model (else 0)
    loss: Callable
    grad: Callable
    noise_var: Callable
    n_samples: Callable
    add_sample_grad: Callable
    params: np.ndarray
    f_loss: Callable = None
    f_grad_x: Callable = None
    f_grad_w: Callable = None
    tracking_error: Callable = None
    slow_error: Callable = None
    info: dict = field(default_factory=dict)   # extra run-file attributes (e.g. loss_min)
    fingerprint: str = ""
    has_samples: bool = True
    has_hess: bool = True

    @property
    def specialisation(self):
        return (self.dim, self.x_dim, self.loss, self.grad, self.noise_var, self.n_samples,
                self.add_sample_grad, self.f_loss, self.f_grad_x, self.f_grad_w,
                self.tracking_error, self.slow_error)


# --- two-time-scale: whole-state views of f(x, w) at w = eps*y -------------------------------
# p = [m, eps, ...model parameters]; the state is theta = (x_0..x_{m-1}, y_0..y_{m-1}).


_TWO_SCALE = {}


def _two_scale(name, m, f_loss, f_grad_x, f_grad_w, tracking_error, slow_error, params, info):
    """Wrap f(x, w) into whole-state functions of theta = (x, y) with L(theta) = f(x, eps y).

    The wrappers are made once per (model, m) so that every sweep point, and
    every run in a process, reuses one compiled kernel.
    """
    key = (name, m)
    if key not in _TWO_SCALE:
        _TWO_SCALE[key] = _two_scale_functions(m, f_loss, f_grad_x, f_grad_w)
    loss, grad, noise_var, n_samples, add_sample_grad = _TWO_SCALE[key]
    return VectorModel(name, 2 * m, m, loss, grad, noise_var, n_samples, add_sample_grad,
                       params, f_loss, f_grad_x, f_grad_w, tracking_error, slow_error, info,
                       fingerprint=f"dim={2 * m} x_dim={m}", has_samples=False)


def _two_scale_functions(m, f_loss, f_grad_x, f_grad_w):

    @_jitable
    def loss(th, p):
        return f_loss(th[:m], th[m:], p, p[1])

    @_jitable
    def grad(th, out, p):
        # dL/dx = grad_x f; dL/dy = eps grad_w f (plain SGD on F(z) = f(x, eps y)).
        f_grad_x(th[:m], th[m:], out[:m], p, p[1])
        f_grad_w(th[:m], th[m:], out[m:], p, p[1])
        for k in range(m):
            out[m + k] = p[1] * out[m + k]

    @_jitable
    def noise_var(th, p):
        return 1.0 + 0.0 * th[0]

    @_jitable
    def n_samples(p):
        return 1

    @_jitable
    def add_sample_grad(th, i, scale, out, p):
        f_grad_x(th[:m], th[m:], out[:m], p, p[1])

    # Two-time-scale dynamics call f_grad_x / f_grad_w directly with w = eps*y;
    # the whole-state views above serve gd/langevin on F and the loss timeseries.
    return loss, grad, noise_var, n_samples, add_sample_grad


# coupled_quadratic: f(x, w) = 1/2 |x - kappa w|^2 + 1/2 mu |w - w_star|^2
# p = [m, eps, kappa, mu, w_star_0..w_star_{m-1}]
_CQ = 4


@_jitable
def cq_f_loss(x, y, p, eps):
    m = x.shape[0]
    total = 0.0 * x[0]
    for k in range(m):
        w = eps * y[k]
        a = x[k] - p[2] * w
        b = w - p[_CQ + k]
        total = total + 0.5 * a * a + 0.5 * p[3] * b * b
    return total


@_jitable
def cq_f_grad_x(x, y, out, p, eps):
    for k in range(x.shape[0]):
        out[k] = x[k] - p[2] * eps * y[k]


@_jitable
def cq_f_grad_w(x, y, out, p, eps):
    # d f / d w = -kappa (x - kappa w) + mu (w - w_star), evaluated at w = eps y.
    for k in range(x.shape[0]):
        w = eps * y[k]
        out[k] = -p[2] * (x[k] - p[2] * w) + p[3] * (w - p[_CQ + k])


@_jitable
def cq_tracking_error(x, y, eps, p):
    total = 0.0 * x[0]
    for k in range(x.shape[0]):
        a = x[k] - p[2] * eps * y[k]          # lambda(y) = kappa eps y
        total = total + a * a
    return total


@_jitable
def cq_slow_error(y, eps, p):
    total = 0.0 * y[0]
    for k in range(y.shape[0]):
        b = y[k] - p[_CQ + k] / eps           # y* = w_star / eps
        total = total + b * b
    return total


# grooves: f(x, w) = 1/2 |x - kappa w|^2 + mu sum_k (1 - cos(2 pi w_k)) / (2 pi^2)
# min_x f(x, eps y) = mu sum_k (1 - cos(2 pi eps y_k)) / (2 pi^2): grooves at eps y_k integer,
# curvature mu there, ridges at half-integers. p = [m, eps, kappa, mu]
_TWO_PI = 2.0 * np.pi


@_jitable
def gr_f_loss(x, y, p, eps):
    total = 0.0 * x[0]
    for k in range(x.shape[0]):
        w = eps * y[k]
        a = x[k] - p[2] * w
        total = total + 0.5 * a * a + p[3] * (1.0 - np.cos(_TWO_PI * w)) / (0.5 * _TWO_PI**2)
    return total


@_jitable
def gr_f_grad_w(x, y, out, p, eps):
    for k in range(x.shape[0]):
        w = eps * y[k]
        out[k] = -p[2] * (x[k] - p[2] * w) + p[3] * np.sin(_TWO_PI * w) / np.pi


@_jitable
def gr_slow_error(y, eps, p):
    # Squared distance (in y) to the nearest groove floor eps*y in Z.
    total = 0.0 * y[0]
    for k in range(y.shape[0]):
        w = eps * y[k]
        b = (w - np.floor(w + 0.5)) / eps
        total = total + b * b
    return total


# linear_regression: l_i = 1/2 (a_i . theta - b_i)^2; p = [n, d, A (n x d, row-major), b]
_LR = 2


_LINEAR_REGRESSION = {}


# Up to this many features the coordinate loops get a compile-time trip count (see below).
REGISTER_FEATURES = 16


def _linear_regression_functions(d):
    """loss, grad, noise_var, n_samples, add_sample_grad of linear regression in d features.

    For d <= REGISTER_FEATURES the feature count is a compile-time constant of these
    functions (one set per d), so the GPU compiler unrolls the coordinate loops and
    keeps a trajectory's state in registers instead of local memory. Larger states
    cannot live in registers anyway, and unrolling their loops only makes compiling
    slow, so they read d from the parameters (p[1]). The sample count n is always a
    parameter (p[0]).
    """
    if d in _LINEAR_REGRESSION:
        return _LINEAR_REGRESSION[d]

    if d <= REGISTER_FEATURES:
        @_jitable
        def features(p):
            return d
    else:
        @_jitable
        def features(p):
            return np.int64(p[1])

    @_jitable
    def residual(th, i, p):
        d = features(p)
        row = _LR + i * d
        r = 0.0 * th[0] - p[_LR + np.int64(p[0]) * d + i]
        for k in range(d):
            r = r + p[row + k] * th[k]
        return r

    @_jitable
    def loss(th, p):
        n = np.int64(p[0])
        total = 0.0 * th[0]
        for i in range(n):
            r = residual(th, i, p)
            total = total + 0.5 * r * r
        return total / n

    @_jitable
    def add_sample_grad(th, i, scale, out, p):
        d = features(p)
        r = scale * residual(th, i, p)
        row = _LR + i * d
        for k in range(d):
            out[k] = out[k] + r * p[row + k]

    @_jitable
    def grad(th, out, p):
        n = np.int64(p[0])
        for k in range(features(p)):
            out[k] = 0.0 * th[0]
        for i in range(n):
            add_sample_grad(th, i, 1.0 / n, out, p)

    @_jitable
    def noise_var(th, p):
        return 1.0 + 0.0 * th[0]

    @_jitable
    def n_samples(p):
        return np.int64(p[0])

    _LINEAR_REGRESSION[d] = (loss, grad, noise_var, n_samples, add_sample_grad)
    return _LINEAR_REGRESSION[d]


def linear_regression_data(samples, features, eigenvalues, label_noise, data_seed):
    """Synthetic regression data: a_i ~ N(0, diag(eigenvalues)), b_i = a_i.w* + noise.

    The teacher w* ~ N(0, I/d). Drawn on the host with numpy's PCG64 from
    ``data_seed`` (independent of the run's Philox seed). Returns (A, b, w_min,
    loss_min): the least-squares solution and its loss.
    """
    rng = np.random.Generator(np.random.PCG64(data_seed))
    eig = np.asarray(eigenvalues, dtype=np.float64)
    a = rng.standard_normal((samples, features)) * np.sqrt(eig)
    teacher = rng.standard_normal(features) / np.sqrt(features)
    b = a @ teacher + label_noise * rng.standard_normal(samples)
    w_min, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = a @ w_min - b
    return a, b, w_min, 0.5 * float(residual @ residual) / samples


VECTOR_MODELS = {
    "coupled_quadratic": "f(x, w) = |x - kappa w|^2/2 + mu |w - w_star|^2/2, x, w in R^dim; "
                         "lambda(y) = kappa eps y, y* = w_star/eps",
    "grooves": "f(x, w) = |x - kappa w|^2/2 + mu sum_k (1 - cos(2 pi w_k))/(2 pi^2); "
               "grooves where eps y_k is an integer",
    "linear_regression": "l_i = (a_i . theta - b_i)^2/2 on synthetic data (samples, features, "
                         "eigenvalues, label_noise, data_seed)",
}


def vector_model(spec, eps=None):
    """VectorModel for a resolved ``[model]`` table (``eps`` from two-time-scale dynamics)."""
    name = spec["name"]
    if name in ("coupled_quadratic", "grooves"):
        m = int(spec.get("dim", 1))
        eps = 1.0 if eps is None else float(eps)
        if name == "coupled_quadratic":
            w_star = np.broadcast_to(np.asarray(spec.get("w_star", 0.0), dtype=np.float64), (m,))
            params = np.concatenate([[m, eps, spec.get("kappa", 1.0), spec.get("mu", 1.0)],
                                     w_star])
            return _two_scale(name, m, cq_f_loss, cq_f_grad_x, cq_f_grad_w,
                              cq_tracking_error, cq_slow_error, params, {})
        params = np.array([m, eps, spec.get("kappa", 1.0), spec.get("mu", 1.0)])
        return _two_scale(name, m, gr_f_loss, cq_f_grad_x, gr_f_grad_w, cq_tracking_error,
                          gr_slow_error, params, {})
    if name == "linear_regression":
        n, d = int(spec["samples"]), int(spec["features"])
        eig = spec.get("eigenvalues", [1.0] * d)
        a, b, w_min, loss_min = linear_regression_data(n, d, eig, spec.get("label_noise", 0.0),
                                                       int(spec.get("data_seed", 0)))
        params = np.concatenate([[n, d], a.ravel(), b])
        return VectorModel(name, d, 0, *_linear_regression_functions(d), params,
                           info={"loss_min": loss_min, "w_min": w_min},
                           fingerprint=f"dim={d}")
    raise KeyError(name)
