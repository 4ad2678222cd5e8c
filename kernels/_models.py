"""Models: plain functions of a d-dimensional state, written once for every backend.

Every model is d-dimensional; a 1-D model is d = 1. A model's functions read
the state as ``th[k, l]``: coordinate k of lane l. Inside a compiled kernel
``th`` is a [d, lanes] block of trajectories and ``l`` one lane (an integer),
so ``th[k, l]`` is a scalar; in the numpy reference ``th`` is [d, n] and ``l``
is ``slice(None)``, so the same source computes on all trajectories at once.
Outputs go to rows ``row..row+d-1`` of a caller's buffer (``out[row + k, l]``),
so nothing is allocated per step. Arithmetic is float64.

Functions of every model (SPEC 3):

    loss(th, l, p)                         L(theta)
    grad(th, l, p, out, row)               grad L
    hvp(th, l, p, v, vrow, out, row)       H v, the Hessian of L applied to v[vrow + k, l]
    noise_std(th, l, p)                    sqrt(Sigma(theta)), Sigma the per-coordinate
                                           per-sample gradient variance (isotropic)
    noise_var_dir(th, l, p, v, vrow)       grad Sigma . v
    n_samples(p)                           n, the number of per-sample losses
    add_sample_grad(th, l, p, i, scale, out, row)           out += scale grad l_i
    add_sample_hvp(th, l, p, i, v, vrow, scale, out, row)   out += scale H_i v

A two-time-scale model (theta = (x, y), both of dimension m, f(x, w) at w = eps y)
also has ``f_grad(th, l, p, eps, out, row)`` ((grad_x f, grad_w f)),
``f_hvp(th, l, p, eps, v, vrow, out, row)`` (the Hessian of f in (x, w) applied to
(v_x, eps v_y)), ``tracking_error(th, l, p, eps)`` |x - lambda(y)|^2 and
``slow_error(th, l, p, eps)`` |y - y*|^2. Its whole-state functions are those of
L(theta) = f(x, eps y).
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._jit import jitable

__all__ = ["Model", "builtin_model", "user_model", "MAX_COEFFICIENTS", "BUILTIN_MODELS",
           "linear_regression_data", "two_layer_data", "REGISTER_FEATURES"]

MAX_COEFFICIENTS = 12
# Small scalar functions are inlined into the CPU lane loops, which then vectorise;
# functions with loops over samples or coordinates are ordinary calls (IR-inlining
# those multiplies compile times).
_inline = jitable(inline=True)
_call = jitable


@dataclass(frozen=True)
class Model:
    """A model's functions (compiled for every target) and its parameter vector."""

    name: str
    dim: int
    loss: Callable
    grad: Callable
    hvp: Callable
    noise_std: Callable
    noise_var_dir: Callable
    n_samples: Callable
    add_sample_grad: Callable
    add_sample_hvp: Callable
    params: np.ndarray
    x_dim: int = 0                  # m of a two-time-scale model (theta = (x, y)), else 0
    f_grad: Callable = None
    f_hvp: Callable = None
    tracking_error: Callable = None
    slow_error: Callable = None
    has_samples: bool = True        # per-sample gradients (finite-sum SGD)
    exact_hvp: bool = True          # H v from second derivatives, not a finite difference
    gathers: bool = False           # per-sample functions index the parameters by the sample
    has_loss: bool = True           # a loss function (a user model may give only the gradient)
    sharpness: Callable = None      # sharpness(th, l, p): the top Hessian eigenvalue, exactly
    info: dict = field(default_factory=dict)   # extra run-file attributes (e.g. loss_min)
    fingerprint: str = ""           # what, besides the name, decides the compiled code
    user_functions: tuple = ()      # a user model's own functions (to locate compile errors)

    @property
    def specialisation(self):
        """What decides the compiled kernel (the parameters do not)."""
        return (self.dim, self.x_dim, self.loss, self.grad, self.hvp, self.noise_std,
                self.noise_var_dir, self.n_samples, self.add_sample_grad, self.add_sample_hvp,
                self.f_grad, self.f_hvp, self.tracking_error, self.slow_error, self.sharpness)


# --- polynomial (d = 1): L = sum_k c_k x**k; p = [c | c' | c'' | left, right, center, width,
# sqrt(left)]; a two-sample finite sum l_{0,1}' = L' +- sqrt(Sigma) ---
_C, _D1, _D2, _NOISE = 0, MAX_COEFFICIENTS, 2 * MAX_COEFFICIENTS, 3 * MAX_COEFFICIENTS
_HORNER = {}
_POLY = {}


def _horner(terms):
    """Straight-line Horner's rule for ``terms`` coefficients p[offset:offset+terms].

    Generated as unrolled source: a loop here, even of constant length, is not
    unrolled once the RNG is inlined beside it, and then the update does not
    vectorise.
    """
    if terms not in _HORNER:
        lines = [f"def horner_{terms}(x, p, offset):",
                 f"    acc = p[offset + {terms - 1}] + (x - x)"]
        lines += [f"    acc = acc * x + p[offset + {k}]" for k in range(terms - 2, -1, -1)]
        lines.append("    return acc")
        namespace = {}
        exec("\n".join(lines), namespace)  # noqa: S102 - source built above from an int
        _HORNER[terms] = _inline(namespace[f"horner_{terms}"])
    return _HORNER[terms]


@_inline
def _logistic(x, p):
    return 1.0 / (1.0 + np.exp(-(x - p[_NOISE + 2]) / p[_NOISE + 3]))


@_inline
def _const_std(x, p):
    return p[_NOISE + 4] + (x - x)


@_inline
def _const_var_deriv(x, p):
    return 0.0 * x


@_inline
def _logistic_std(x, p):
    """sqrt(Sigma), Sigma = left + (right - left) / (1 + exp(-(x - center) / width))."""
    return np.sqrt(p[_NOISE] + (p[_NOISE + 1] - p[_NOISE]) * _logistic(x, p))


@_inline
def _logistic_var_deriv(x, p):
    s = _logistic(x, p)
    return (p[_NOISE + 1] - p[_NOISE]) * s * (1.0 - s) / p[_NOISE + 3]


@_inline
def _two_samples(p):
    return 2


_SCALAR_WRAPPERS = {}


def _scalar_model(name, params, loss1, grad1, hess1, std1, var_deriv1, n_samples,
                  sample_grad1, sample_hess1, **extra):
    """A d = 1 Model from scalar functions f(x, p) (and f(x, i, p) per sample).

    The wrappers are made once per set of scalar functions, so that models that
    differ only in their parameters (the points of a sweep) share one kernel.
    """
    key = (loss1, grad1, hess1, std1, var_deriv1, sample_grad1, sample_hess1)
    if key not in _SCALAR_WRAPPERS:
        _SCALAR_WRAPPERS[key] = _scalar_wrappers(*key)
    (loss, grad, hvp, noise_std, noise_var_dir, add_sample_grad,
     add_sample_hvp) = _SCALAR_WRAPPERS[key]
    return Model(name, 1, loss, grad, hvp, noise_std, noise_var_dir, n_samples,
                 add_sample_grad, add_sample_hvp, params, **extra)


def _scalar_wrappers(loss1, grad1, hess1, std1, var_deriv1, sample_grad1, sample_hess1):
    """The th[k, l] functions of a d = 1 model from its scalar functions."""

    @_call
    def loss(th, l, p):
        return loss1(np.float64(th[0, l]), p)

    @_call
    def grad(th, l, p, out, row):
        out[row, l] = grad1(th[0, l], p)

    @_call
    def hvp(th, l, p, v, vrow, out, row):
        out[row, l] = hess1(np.float64(th[0, l]), p) * v[vrow, l]

    @_call
    def noise_std(th, l, p):
        return std1(th[0, l], p)

    @_call
    def noise_var_dir(th, l, p, v, vrow):
        return var_deriv1(np.float64(th[0, l]), p) * v[vrow, l]

    @_call
    def add_sample_grad(th, l, p, i, scale, out, row):
        out[row, l] = out[row, l] + scale * sample_grad1(th[0, l], i, p)

    @_call
    def add_sample_hvp(th, l, p, i, v, vrow, scale, out, row):
        out[row, l] = out[row, l] + scale * sample_hess1(np.float64(th[0, l]), i, p) * v[vrow, l]

    return loss, grad, hvp, noise_std, noise_var_dir, add_sample_grad, add_sample_hvp


def _polynomial_functions(length, logistic):
    key = (length, logistic)
    if key not in _POLY:
        loss_terms = _horner(length)
        grad_terms = _horner(max(length - 1, 1))
        hess_terms = _horner(max(length - 2, 1))
        std = _logistic_std if logistic else _const_std
        var_deriv = _logistic_var_deriv if logistic else _const_var_deriv

        @_inline
        def loss(x, p):
            return loss_terms(x, p, _C)

        @_inline
        def grad(x, p):
            return grad_terms(x, p, _D1)

        @_inline
        def hess(x, p):
            return hess_terms(x, p, _D2)

        @_inline
        def sample_grad(x, i, p):
            sign = 1.0 - 2.0 * np.float64(i)
            return grad(x, p) + sign * std(x, p)

        @_inline
        def sample_hess(x, i, p):
            sign = 1.0 - 2.0 * np.float64(i)
            root = std(x, p)
            # d sqrt(Sigma)/dx = Sigma' / (2 sqrt(Sigma)), taken as 0 where Sigma = 0.
            safe = root + np.float64(root == 0.0)
            return hess(x, p) + sign * 0.5 * var_deriv(x, p) / safe

        _POLY[key] = (loss, grad, hess, std, var_deriv, _two_samples, sample_grad, sample_hess)
    return _POLY[key]


def polynomial_params(coefficients, noise_var):
    """Parameter vector: [c | c' | c'' (each padded to 12) | left, right, center, width, sqrt(left)]."""
    c = np.zeros(MAX_COEFFICIENTS)
    c[: len(coefficients)] = coefficients
    k = np.arange(MAX_COEFFICIENTS, dtype=np.float64)
    d1 = np.zeros(MAX_COEFFICIENTS)
    d1[:-1] = c[1:] * k[1:]
    d2 = np.zeros(MAX_COEFFICIENTS)
    d2[:-1] = d1[1:] * k[1:]
    if isinstance(noise_var, dict):
        noise = [noise_var["left"], noise_var["right"], noise_var["center"], noise_var["width"],
                 np.sqrt(noise_var["left"])]
    else:
        noise = [noise_var, noise_var, 0.0, 1.0, np.sqrt(noise_var)]
    return np.concatenate([c, d1, d2, np.asarray(noise, dtype=np.float64)])


# --- quadratic_finite_sum (d = 1): l_i = h_i (x - c_i)**2 / 2 ---
# p = [n, mean h, mean hc, mean hc^2, var h, cov(h, hc), var hc, 0, h_0.., c_0..]
_Q = 8


@_inline
def _quad_loss(x, p):
    return 0.5 * (p[1] * x * x - 2.0 * p[2] * x + p[3])


@_inline
def _quad_grad(x, p):
    return p[1] * x - p[2]


@_inline
def _quad_hess(x, p):
    return p[1] + 0.0 * x


@_inline
def _quad_std(x, p):
    """sqrt(Sigma), Sigma = var_i[h_i (x - c_i)] = var(h) x^2 - 2 cov(h, hc) x + var(hc)."""
    s = p[4] * x * x - 2.0 * p[5] * x + p[6]
    return np.sqrt(s * np.float64(s > 0.0))


@_inline
def _quad_var_deriv(x, p):
    return 2.0 * p[4] * x - 2.0 * p[5]


@_inline
def _quad_n_samples(p):
    return np.int64(p[0])


@_inline
def _quad_sample_grad(x, i, p):
    return p[_Q + i] * (x - p[_Q + np.int64(p[0]) + i])


@_inline
def _quad_sample_hess(x, i, p):
    return p[_Q + i] + 0.0 * x


_QUADRATIC = (_quad_loss, _quad_grad, _quad_hess, _quad_std, _quad_var_deriv, _quad_n_samples,
              _quad_sample_grad, _quad_sample_hess)

# Up to SELECT_SAMPLES samples, h and c are padded to that many slots and a sample is
# picked by selects over constant slots: a branch-free lane loop that vectorises, where a
# gather from the parameter vector does not (and a CUDA thread keeps them in registers).
SELECT_SAMPLES = 4


@_inline
def _select(p, offset, i):
    """p[offset + i] for i < 4, from constant offsets only: a sum of products with 0 and 1,
    which is exact (the parameters are finite) and works on numpy arrays of i too."""
    return (p[offset] * np.float64(i == 0) + p[offset + 1] * np.float64(i == 1)
            + p[offset + 2] * np.float64(i == 2) + p[offset + 3] * np.float64(i == 3))


@_inline
def _quad_select_grad(x, i, p):
    return _select(p, _Q, i) * (x - _select(p, _Q + SELECT_SAMPLES, i))


@_inline
def _quad_select_hess(x, i, p):
    return _select(p, _Q, i) + 0.0 * x


_QUADRATIC_SELECT = _QUADRATIC[:6] + (_quad_select_grad, _quad_select_hess)


def quadratic_params(curvatures, centers):
    """Parameter vector of quadratic_finite_sum with its sample moments precomputed (h and
    c padded with zeros to SELECT_SAMPLES slots each where there are fewer samples)."""
    h = np.asarray(curvatures, dtype=np.float64)
    c = np.zeros_like(h) if centers is None else np.asarray(centers, dtype=np.float64)
    hc = h * c
    head = [len(h), h.mean(), hc.mean(), (hc * c).mean(), h.var(),
            (h * hc).mean() - h.mean() * hc.mean(), hc.var(), 0.0]
    pad = np.zeros(max(SELECT_SAMPLES - len(h), 0))
    return np.concatenate([np.asarray(head, dtype=np.float64), h, pad, c, pad])


# --- two-time-scale models: whole-state views of f(x, w) at w = eps y ---
# p = [m, eps, kappa, mu, ...]; theta = (x_0..x_{m-1}, y_0..y_{m-1}).
_TWO_SCALE = {}
_CQ = 4
_TWO_PI = 2.0 * np.pi


def _two_scale_functions(m, f_loss, f_grad, f_hvp):
    """Whole-state functions of L(theta) = f(x, eps y), made once per (f, m)."""
    key = (f_loss, m)
    if key in _TWO_SCALE:
        return _TWO_SCALE[key]

    @_call
    def loss(th, l, p):
        return f_loss(th, l, p, p[1], m)

    @_call
    def grad(th, l, p, out, row):
        # dL/dx = grad_x f; dL/dy = eps grad_w f.
        f_grad(th, l, p, p[1], out, row, m)
        for k in range(m):
            out[row + m + k, l] = p[1] * out[row + m + k, l]

    @_call
    def hvp(th, l, p, v, vrow, out, row):
        f_hvp(th, l, p, p[1], v, vrow, out, row, m)
        for k in range(m):
            out[row + m + k, l] = p[1] * out[row + m + k, l]

    @_call
    def noise_std(th, l, p):
        return 1.0 + 0.0 * th[0, l]

    @_call
    def noise_var_dir(th, l, p, v, vrow):
        return 0.0 * th[0, l]

    @_call
    def n_samples(p):
        return 1

    @_call
    def add_sample_grad(th, l, p, i, scale, out, row):
        f_grad(th, l, p, p[1], out, row, m)

    @_call
    def add_sample_hvp(th, l, p, i, v, vrow, scale, out, row):
        f_hvp(th, l, p, p[1], v, vrow, out, row, m)

    @_call
    def f_grad_m(th, l, p, eps, out, row):
        f_grad(th, l, p, eps, out, row, m)

    @_call
    def f_hvp_m(th, l, p, eps, v, vrow, out, row):
        f_hvp(th, l, p, eps, v, vrow, out, row, m)

    _TWO_SCALE[key] = (loss, grad, hvp, noise_std, noise_var_dir, n_samples, add_sample_grad,
                       add_sample_hvp, f_grad_m, f_hvp_m)
    return _TWO_SCALE[key]


def _errors(m, tracking, slow):
    key = (tracking, slow, m)
    if key not in _TWO_SCALE:
        @_call
        def tracking_error(th, l, p, eps):
            return tracking(th, l, p, eps, m)

        @_call
        def slow_error(th, l, p, eps):
            return slow(th, l, p, eps, m)

        _TWO_SCALE[key] = tracking_error, slow_error
    return _TWO_SCALE[key]


# coupled_quadratic: f(x, w) = 1/2 |x - kappa w|^2 + 1/2 mu |w - w_star|^2
# p = [m, eps, kappa, mu, w_star_0..w_star_{m-1}]


@_call
def _cq_f_loss(th, l, p, eps, m):
    total = 0.0 * th[0, l]
    for k in range(m):
        w = eps * th[m + k, l]
        a = th[k, l] - p[2] * w
        b = w - p[_CQ + k]
        total = total + 0.5 * a * a + 0.5 * p[3] * b * b
    return total


@_call
def _cq_f_grad(th, l, p, eps, out, row, m):
    # d f / d x = x - kappa w; d f / d w = -kappa (x - kappa w) + mu (w - w_star).
    for k in range(m):
        w = eps * th[m + k, l]
        a = th[k, l] - p[2] * w
        out[row + k, l] = a
        out[row + m + k, l] = -p[2] * a + p[3] * (w - p[_CQ + k])


@_call
def _cq_f_hvp(th, l, p, eps, v, vrow, out, row, m):
    # f_xx = 1, f_xw = -kappa, f_ww = kappa^2 + mu, applied to (v_x, eps v_y).
    for k in range(m):
        vx = v[vrow + k, l]
        vw = eps * v[vrow + m + k, l]
        out[row + k, l] = vx - p[2] * vw
        out[row + m + k, l] = -p[2] * vx + (p[2] * p[2] + p[3]) * vw


@_call
def _cq_tracking_error(th, l, p, eps, m):
    total = 0.0 * th[0, l]
    for k in range(m):
        a = th[k, l] - p[2] * eps * th[m + k, l]      # lambda(y) = kappa eps y
        total = total + a * a
    return total


@_call
def _cq_slow_error(th, l, p, eps, m):
    total = 0.0 * th[0, l]
    for k in range(m):
        b = th[m + k, l] - p[_CQ + k] / eps            # y* = w_star / eps
        total = total + b * b
    return total


# grooves: f(x, w) = 1/2 |x - kappa w|^2 + mu sum_k (1 - cos(2 pi w_k)) / (2 pi^2)
# min_x f(x, eps y) = mu sum_k (1 - cos(2 pi eps y_k)) / (2 pi^2): grooves at eps y_k integer,
# curvature mu there, ridges at half-integers. p = [m, eps, kappa, mu]


@_call
def _gr_f_loss(th, l, p, eps, m):
    total = 0.0 * th[0, l]
    for k in range(m):
        w = eps * th[m + k, l]
        a = th[k, l] - p[2] * w
        total = total + 0.5 * a * a + p[3] * (1.0 - np.cos(_TWO_PI * w)) / (0.5 * _TWO_PI**2)
    return total


@_call
def _gr_f_grad(th, l, p, eps, out, row, m):
    for k in range(m):
        w = eps * th[m + k, l]
        a = th[k, l] - p[2] * w
        out[row + k, l] = a
        out[row + m + k, l] = -p[2] * a + p[3] * np.sin(_TWO_PI * w) / np.pi


@_call
def _gr_f_hvp(th, l, p, eps, v, vrow, out, row, m):
    # f_ww = kappa^2 + 2 mu cos(2 pi w).
    for k in range(m):
        w = eps * th[m + k, l]
        vx = v[vrow + k, l]
        vw = eps * v[vrow + m + k, l]
        out[row + k, l] = vx - p[2] * vw
        out[row + m + k, l] = -p[2] * vx + (p[2] * p[2] + 2.0 * p[3] * np.cos(_TWO_PI * w)) * vw


@_call
def _gr_slow_error(th, l, p, eps, m):
    # Squared distance (in y) to the nearest groove floor eps*y in Z.
    total = 0.0 * th[0, l]
    for k in range(m):
        w = eps * th[m + k, l]
        b = (w - np.floor(w + 0.5)) / eps
        total = total + b * b
    return total


def _two_scale(name, m, f_loss, f_grad, f_hvp, tracking, slow, params):
    (loss, grad, hvp, noise_std, noise_var_dir, n_samples, add_sample_grad, add_sample_hvp,
     f_grad_m, f_hvp_m) = _two_scale_functions(m, f_loss, f_grad, f_hvp)
    tracking_error, slow_error = _errors(m, tracking, slow)
    return Model(name, 2 * m, loss, grad, hvp, noise_std, noise_var_dir, n_samples,
                 add_sample_grad, add_sample_hvp, params, x_dim=m, f_grad=f_grad_m,
                 f_hvp=f_hvp_m, tracking_error=tracking_error, slow_error=slow_error,
                 has_samples=False, fingerprint=f"dim={2 * m} x_dim={m}")


# --- linear_regression: l_i = 1/2 (a_i . theta - b_i)^2; p = [n, d, A (n x d, row-major), b]
_LR = 2
_LINEAR_REGRESSION = {}
# Up to this many features the coordinate loops get a compile-time trip count (see below).
REGISTER_FEATURES = 16


def _squared_finite_sum(coordinates, residual, add_sample_grad, add_sample_hvp):
    """(loss, grad, hvp, n_samples) of L = (1/n) sum_i r_i^2 / 2 with n = p[0], from a
    model's residual r_i and its per-sample gradient and Hessian-vector product;
    ``coordinates(p)`` is d."""

    @_call
    def loss(th, l, p):
        n = np.int64(p[0])
        total = 0.0 * th[0, l]
        for i in range(n):
            r = residual(th, l, p, i)
            total = total + 0.5 * r * r
        return total / n

    @_call
    def grad(th, l, p, out, row):
        n = np.int64(p[0])
        for k in range(coordinates(p)):
            out[row + k, l] = 0.0 * th[0, l]
        for i in range(n):
            add_sample_grad(th, l, p, i, 1.0 / n, out, row)

    @_call
    def hvp(th, l, p, v, vrow, out, row):
        n = np.int64(p[0])
        for k in range(coordinates(p)):
            out[row + k, l] = 0.0 * th[0, l]
        for i in range(n):
            add_sample_hvp(th, l, p, i, v, vrow, 1.0 / n, out, row)

    @_call
    def n_samples(p):
        return np.int64(p[0])

    return loss, grad, hvp, n_samples


def _linear_regression_functions(d):
    """The functions of linear regression in d features.

    For d <= REGISTER_FEATURES the feature count is a compile-time constant (one
    set per d), so the GPU compiler unrolls the coordinate loops and keeps a
    trajectory's state in registers instead of local memory. Larger states cannot
    live in registers anyway, and unrolling their loops only makes compiling slow,
    so they read d from the parameters (p[1]). The sample count n is always p[0].
    """
    if d in _LINEAR_REGRESSION:
        return _LINEAR_REGRESSION[d]

    if d <= REGISTER_FEATURES:
        @_call
        def features(p):
            return d
    else:
        @_call
        def features(p):
            return np.int64(p[1])

    @_call
    def residual(th, l, p, i):
        d = features(p)
        row = _LR + i * d
        r = 0.0 * th[0, l] - p[_LR + np.int64(p[0]) * d + i]
        for k in range(d):
            r = r + p[row + k] * th[k, l]
        return r

    @_call
    def dot_row(v, vrow, l, p, i):
        d = features(p)
        row = _LR + i * d
        r = 0.0 * v[vrow, l]
        for k in range(d):
            r = r + p[row + k] * v[vrow + k, l]
        return r

    @_call
    def add_sample_grad(th, l, p, i, scale, out, row):
        d = features(p)
        r = scale * residual(th, l, p, i)
        first = _LR + i * d
        for k in range(d):
            out[row + k, l] = out[row + k, l] + r * p[first + k]

    @_call
    def add_sample_hvp(th, l, p, i, v, vrow, scale, out, row):
        d = features(p)
        r = scale * dot_row(v, vrow, l, p, i)
        first = _LR + i * d
        for k in range(d):
            out[row + k, l] = out[row + k, l] + r * p[first + k]

    loss, grad, hvp, n_samples = _squared_finite_sum(features, residual, add_sample_grad,
                                                     add_sample_hvp)

    @_call
    def noise_std(th, l, p):
        return 1.0 + 0.0 * th[0, l]

    @_call
    def noise_var_dir(th, l, p, v, vrow):
        return 0.0 * th[0, l]

    _LINEAR_REGRESSION[d] = (loss, grad, hvp, noise_std, noise_var_dir, n_samples,
                             add_sample_grad, add_sample_hvp)
    return _LINEAR_REGRESSION[d]


# --- uv (d = 2): L(u, v) = (u v - target)^2 / 2; p = [target, noise_std]. Its Hessian
# [[v^2, 2 u v - target], [2 u v - target, u^2]] has, at a minimum (u v = target), the
# eigenvalues 0 and u^2 + v^2. One sample: the loss itself (finite-sum SGD is GD). ---

@_inline
def _uv_loss(th, l, p):
    r = th[0, l] * th[1, l] - p[0]
    return 0.5 * r * r


@_inline
def _uv_add_grad(th, l, p, i, scale, out, row):
    u, v = th[0, l], th[1, l]
    r = scale * (u * v - p[0])
    out[row, l] = out[row, l] + r * v
    out[row + 1, l] = out[row + 1, l] + r * u


@_inline
def _uv_add_hvp(th, l, p, i, w, wrow, scale, out, row):
    u, v = th[0, l], th[1, l]
    cross = 2.0 * u * v - p[0]
    a, b = w[wrow, l], w[wrow + 1, l]
    out[row, l] = out[row, l] + scale * (v * v * a + cross * b)
    out[row + 1, l] = out[row + 1, l] + scale * (cross * a + u * u * b)


@_inline
def _uv_grad(th, l, p, out, row):
    out[row, l] = 0.0 * th[0, l]
    out[row + 1, l] = 0.0 * th[0, l]
    _uv_add_grad(th, l, p, 0, 1.0, out, row)


@_inline
def _uv_hvp(th, l, p, w, wrow, out, row):
    out[row, l] = 0.0 * th[0, l]
    out[row + 1, l] = 0.0 * th[0, l]
    _uv_add_hvp(th, l, p, 0, w, wrow, 1.0, out, row)


@_inline
def _uv_noise_std(th, l, p):
    return p[1] + 0.0 * th[0, l]


@_inline
def _uv_noise_var_dir(th, l, p, w, wrow):
    return 0.0 * th[0, l]


@_inline
def _uv_n_samples(p):
    return 1


@_inline
def _uv_sharpness(th, l, p):
    """The top eigenvalue of the 2x2 Hessian, exactly."""
    u, v = th[0, l], th[1, l]
    half_trace = 0.5 * (u * u + v * v)
    half_gap = 0.5 * (v * v - u * u)
    cross = 2.0 * u * v - p[0]
    return half_trace + np.sqrt(half_gap * half_gap + cross * cross)


# --- two_layer (d = 2 width): f(x) = sum_j a_j act(w_j x), state (w_1..w_W, a_1..a_W);
# l_i = (f(x_i) - y_i)^2 / 2 on the points of two_layer_data; p = [n, noise_std, x | y] ---
_TWO_LAYER = {}


def _two_layer_functions(width, activation):
    key = (width, activation)
    if key in _TWO_LAYER:
        return _TWO_LAYER[key]
    W = width

    if activation == "linear":
        @_inline
        def act(z):
            return z

        @_inline
        def act1(z):
            return 1.0 + 0.0 * z

        @_inline
        def act2(z):
            return 0.0 * z
    else:
        @_inline
        def act(z):
            return np.tanh(z)

        @_inline
        def act1(z):
            t = np.tanh(z)
            return 1.0 - t * t

        @_inline
        def act2(z):
            t = np.tanh(z)
            return -2.0 * t * (1.0 - t * t)

    @_call
    def residual(th, l, p, i):
        n = np.int64(p[0])
        x = p[2 + i]
        f = 0.0 * th[0, l] - p[2 + n + i]
        for j in range(W):
            f = f + th[W + j, l] * act(th[j, l] * x)
        return f

    @_call
    def add_sample_grad(th, l, p, i, scale, out, row):
        x = p[2 + i]
        r = scale * residual(th, l, p, i)
        for j in range(W):
            z = th[j, l] * x
            out[row + j, l] = out[row + j, l] + r * th[W + j, l] * act1(z) * x
            out[row + W + j, l] = out[row + W + j, l] + r * act(z)

    @_call
    def add_sample_hvp(th, l, p, i, v, vrow, scale, out, row):
        # H_i v = (grad r . v) grad r + r (Hess r) v.
        x = p[2 + i]
        r = residual(th, l, p, i)
        jv = 0.0 * th[0, l]
        for j in range(W):
            z = th[j, l] * x
            jv = jv + th[W + j, l] * act1(z) * x * v[vrow + j, l] + act(z) * v[vrow + W + j, l]
        for j in range(W):
            z = th[j, l] * x
            a, d1 = th[W + j, l], act1(z)
            vw, va = v[vrow + j, l], v[vrow + W + j, l]
            out[row + j, l] = out[row + j, l] + scale * (
                jv * a * d1 * x + r * (a * act2(z) * x * x * vw + d1 * x * va))
            out[row + W + j, l] = out[row + W + j, l] + scale * (jv * act(z) + r * d1 * x * vw)

    @_call
    def coordinates(p):
        return 2 * W

    loss, grad, hvp, n_samples = _squared_finite_sum(coordinates, residual, add_sample_grad,
                                                     add_sample_hvp)

    @_call
    def noise_std(th, l, p):
        return p[1] + 0.0 * th[0, l]

    @_call
    def noise_var_dir(th, l, p, v, vrow):
        return 0.0 * th[0, l]

    _TWO_LAYER[key] = (loss, grad, hvp, noise_std, noise_var_dir, n_samples, add_sample_grad,
                       add_sample_hvp)
    return _TWO_LAYER[key]


def two_layer_data(samples, data_seed):
    """The points of two_layer: x_i ~ N(0, 1), y_i = sin(2 x_i), drawn on the host with
    numpy's PCG64 from ``data_seed`` (independent of the run's Philox seed)."""
    x = np.random.Generator(np.random.PCG64(data_seed)).standard_normal(samples)
    return x, np.sin(2.0 * x)


def linear_regression_data(samples, features, eigenvalues, label_noise, data_seed):
    """Synthetic regression data: a_i ~ N(0, diag(eigenvalues)), b_i = a_i.w* + noise.

    The teacher w* ~ N(0, I/d) (``linear_regression_teacher``). Drawn on the host with
    numpy's PCG64 from ``data_seed`` (independent of the run's Philox seed). Returns
    (A, b, w_min, loss_min): the least-squares solution and its loss.
    """
    a, teacher, noise = _linear_regression_draw(samples, features, eigenvalues, data_seed)
    b = a @ teacher + label_noise * noise
    w_min, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = a @ w_min - b
    return a, b, w_min, 0.5 * float(residual @ residual) / samples


def linear_regression_teacher(samples, features, eigenvalues, data_seed):
    """The teacher w* of ``linear_regression_data``: a fresh point a ~ N(0, diag(eigenvalues))
    has E[(a.theta - b)^2] / 2 = (theta - w*)' diag(eigenvalues) (theta - w*) / 2 +
    label_noise^2 / 2 (the population loss)."""
    return _linear_regression_draw(samples, features, eigenvalues, data_seed)[1]


def _linear_regression_draw(samples, features, eigenvalues, data_seed):
    rng = np.random.Generator(np.random.PCG64(data_seed))
    eig = np.asarray(eigenvalues, dtype=np.float64)
    a = rng.standard_normal((samples, features)) * np.sqrt(eig)
    teacher = rng.standard_normal(features) / np.sqrt(features)
    return a, teacher, rng.standard_normal(samples)


BUILTIN_MODELS = {
    "polynomial": "L = sum_k coefficients[k] x**k; two-sample finite sum L' +- sqrt(Sigma)",
    "quadratic_finite_sum": "l_i = h_i (x - c_i)**2 / 2, i < n",
    "coupled_quadratic": "f(x, w) = |x - kappa w|^2/2 + mu |w - w_star|^2/2, x, w in R^dim; "
                         "lambda(y) = kappa eps y, y* = w_star/eps",
    "grooves": "f(x, w) = |x - kappa w|^2/2 + mu sum_k (1 - cos(2 pi w_k))/(2 pi^2); "
               "grooves where eps y_k is an integer",
    "linear_regression": "l_i = (a_i . theta - b_i)^2/2 on synthetic data (samples, features, "
                         "eigenvalues, label_noise, data_seed)",
    "uv": "L(u, v) = (u v - target)^2 / 2; sharpness u^2 + v^2 at a minimum",
    "two_layer": "f(x) = sum_j a_j act(w_j x), l_i = (f(x_i) - y_i)^2/2 on x_i ~ N(0, 1), "
                 "y_i = sin(2 x_i)",
}


def builtin_model(spec, eps=None):
    """Model for a resolved ``[model]`` table naming a built-in model.

    ``eps`` is a two-time-scale dynamics' time-scale ratio (1 under other dynamics).
    """
    name = spec["name"]
    if name == "polynomial":
        noise = spec.get("noise_var", 1.0)
        coefficients = list(spec["coefficients"])
        while len(coefficients) > 1 and coefficients[-1] == 0:
            coefficients.pop()              # trailing zeros cost Horner steps, nothing else
        logistic = isinstance(noise, dict)
        return _scalar_model(name, polynomial_params(coefficients, noise),
                             *_polynomial_functions(len(coefficients), logistic),
                             fingerprint=f"length={len(coefficients)} logistic={logistic}")
    if name == "quadratic_finite_sum":
        if len(spec["curvatures"]) <= SELECT_SAMPLES:
            return _scalar_model(name, quadratic_params(spec["curvatures"], spec.get("centers")),
                                 *_QUADRATIC_SELECT, fingerprint=f"select={SELECT_SAMPLES}")
        return _scalar_model(name, quadratic_params(spec["curvatures"], spec.get("centers")),
                             *_QUADRATIC, gathers=True)
    if name in ("coupled_quadratic", "grooves"):
        m = int(spec.get("dim", 1))
        eps = 1.0 if eps is None else float(eps)
        head = [m, eps, spec.get("kappa", 1.0), spec.get("mu", 1.0)]
        if name == "coupled_quadratic":
            w_star = np.broadcast_to(np.asarray(spec.get("w_star", 0.0), dtype=np.float64), (m,))
            return _two_scale(name, m, _cq_f_loss, _cq_f_grad, _cq_f_hvp, _cq_tracking_error,
                              _cq_slow_error, np.concatenate([head, w_star]))
        return _two_scale(name, m, _gr_f_loss, _gr_f_grad, _gr_f_hvp, _cq_tracking_error,
                          _gr_slow_error, np.array(head, dtype=np.float64))
    if name == "linear_regression":
        n, d = int(spec["samples"]), int(spec["features"])
        eig = spec.get("eigenvalues", [1.0] * d)
        a, b, w_min, loss_min = linear_regression_data(n, d, eig, spec.get("label_noise", 0.0),
                                                       int(spec.get("data_seed", 0)))
        return Model(name, d, *_linear_regression_functions(d),
                     np.concatenate([[n, d], a.ravel(), b]),
                     info={"loss_min": loss_min, "w_min": w_min}, fingerprint=f"dim={d}",
                     gathers=True)
    if name == "two_layer":
        width, activation = int(spec.get("width", 8)), spec.get("activation", "tanh")
        x, y = two_layer_data(int(spec.get("samples", 16)), int(spec.get("data_seed", 0)))
        return Model(name, 2 * width, *_two_layer_functions(width, activation),
                     np.concatenate([[x.size, spec.get("noise_std", 0.0)], x, y]),
                     fingerprint=f"width={width} activation={activation}", gathers=True)
    if name == "uv":
        return Model(name, 2, _uv_loss, _uv_grad, _uv_hvp, _uv_noise_std, _uv_noise_var_dir,
                     _uv_n_samples, _uv_add_grad, _uv_add_hvp,
                     np.array([spec.get("target", 1.0), spec.get("noise_std", 0.0)]),
                     sharpness=_uv_sharpness)
    raise KeyError(name)


_USER_CACHE = {}
# Relative step of the central difference that stands in for a user model's missing
# second derivative: H v ~ (g(x + h v) - g(x - h v)) / (2 h), h = FD_STEP (1 + |x|).
FD_STEP = 1e-6


def _source_fingerprint(obj):
    """Hash of the file defining a user model (keys the on-disk kernel cache)."""
    import hashlib
    import inspect
    try:
        path = inspect.getsourcefile(obj if inspect.ismodule(obj) or inspect.isclass(obj)
                                     else type(obj))
        if path is None or path.endswith("builtins.py"):
            path = inspect.getsourcefile(obj.gradient)
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (TypeError, OSError):
        return "uncached:" + str(id(obj))


def user_model(obj, name):
    """Adapt a user object with plain scalar functions (a d = 1 model) into a Model.

    Required: ``gradient(theta)``. Optional: ``noise_var(theta)`` (default 0),
    ``noise_var_derivative(theta)`` (default 0), ``loss(theta)`` (default NaN),
    ``second_derivative(theta)``, and for finite-sum SGD ``n_samples`` (an int)
    with ``per_sample_gradient(theta, i)`` and optionally
    ``per_sample_second_derivative(theta, i)``. Write them with numpy functions
    (``np.exp``, ``np.sqrt``) so that they compile for every backend.

    Without a second derivative, the Lyapunov tangent uses a central difference
    of the gradient, (g(x + h) - g(x - h)) / (2 h) with h = FD_STEP (1 + |x|):
    an O(h^2) approximation, the documented fallback (built-in models are exact).
    """
    if id(obj) in _USER_CACHE:
        return _USER_CACHE[id(obj)][1]

    def own(attr):
        return _inline(getattr(obj, attr)) if hasattr(obj, attr) else None

    u_grad, u_nv, u_nvd = own("gradient"), own("noise_var"), own("noise_var_derivative")
    u_loss, u_hess = own("loss"), own("second_derivative")
    u_sg, u_sh = own("per_sample_gradient"), own("per_sample_second_derivative")
    n = int(getattr(obj, "n_samples", 1))

    @_inline
    def grad(x, p):
        return u_grad(x)

    @_inline
    def zero(x, p):
        return 0.0 * x

    @_inline
    def nan(x, p):
        return np.nan + 0.0 * x

    if u_nv is None:
        std = zero
    else:
        @_inline
        def std(x, p):
            return np.sqrt(u_nv(x))

    if u_nvd is None:
        var_deriv = zero
    else:
        @_inline
        def var_deriv(x, p):
            return u_nvd(x)

    if u_loss is None:
        loss = nan
    else:
        @_inline
        def loss(x, p):
            return u_loss(x)

    if u_hess is None:
        @_inline
        def hess(x, p):
            h = FD_STEP * (1.0 + abs(x))
            return (u_grad(x + h) - u_grad(x - h)) / (2.0 * h)
    else:
        @_inline
        def hess(x, p):
            return u_hess(x)

    @_inline
    def n_samples(p):
        return n

    if u_sg is None:
        @_inline
        def sample_grad(x, i, p):
            return u_grad(x)
    else:
        @_inline
        def sample_grad(x, i, p):
            return u_sg(x, i)

    if u_sh is not None:
        @_inline
        def sample_hess(x, i, p):
            return u_sh(x, i)
    elif u_sg is not None:
        @_inline
        def sample_hess(x, i, p):
            h = FD_STEP * (1.0 + abs(x))
            return (u_sg(x + h, i) - u_sg(x - h, i)) / (2.0 * h)
    else:
        @_inline
        def sample_hess(x, i, p):
            return hess(x, p)

    model = _scalar_model(
        name, np.zeros(1), loss, grad, hess, std, var_deriv, n_samples, sample_grad,
        sample_hess, has_samples=u_sg is not None, has_loss=u_loss is not None,
        exact_hvp=u_hess is not None and (u_sg is None or u_sh is not None),
        fingerprint=_source_fingerprint(obj),
        user_functions=tuple(f for f in (u_grad, u_nv, u_nvd, u_loss, u_hess, u_sg, u_sh)
                             if f is not None))
    _USER_CACHE[id(obj)] = (obj, model)
    return model
