"""Built-in 1-D models and the user-model adapter.

A model is a set of plain scalar functions of the state ``x`` (float64) and a
float64 parameter vector ``p`` built on the host by the model's ``params``
function. The same functions are compiled by numba for the CPU, by numba-cuda
as device functions, and called directly on numpy arrays by the numpy
backend, so they use only arithmetic, ``np.exp``/``np.sqrt`` and indexing.

Functions of every model (SPEC 3):

    loss(x, p)            L(x)
    grad(x, p)            L'(x)
    hess(x, p)            L''(x)
    noise_var(x, p)       Sigma(x), the per-sample gradient variance
    noise_std(x, p)       sqrt(Sigma(x)) (a stored constant when Sigma is constant)
    noise_var_deriv(x, p) Sigma'(x)
    n_samples(p)          n, the number of per-sample losses
    sample_grad(x, i, p)  l_i'(x) for an integer i in 0..n-1
    sample_hess(x, i, p)  l_i''(x)
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._jit import jitable

__all__ = ["Model", "builtin_model", "user_model", "MAX_COEFFICIENTS", "BUILTIN_MODELS"]

MAX_COEFFICIENTS = 12
_jitable = jitable


@dataclass(frozen=True)
class Model:
    """A compiled-for-every-target set of model functions plus its parameters."""

    name: str
    loss: Callable
    grad: Callable
    hess: Callable
    noise_var: Callable
    noise_std: Callable
    noise_var_deriv: Callable
    n_samples: Callable
    sample_grad: Callable
    sample_hess: Callable
    params: np.ndarray
    has_samples: bool = True
    has_hess: bool = True
    has_loss: bool = True
    fingerprint: str = ""     # what, besides the name, decides the compiled code (cache key)
    gathers: bool = False     # per-sample functions index the parameters by the sample
    user_functions: tuple = ()  # a user model's own functions (to locate compile errors)

    @property
    def specialisation(self):
        """The functions that decide the compiled kernel (params do not)."""
        return (self.loss, self.grad, self.hess, self.noise_var, self.noise_std,
                self.noise_var_deriv, self.n_samples, self.sample_grad, self.sample_hess)


# --- polynomial: L = sum_k c_k x**k; p = [c | c' | c'' | left, right, center, width] ---
_C, _D1, _D2, _NOISE = 0, MAX_COEFFICIENTS, 2 * MAX_COEFFICIENTS, 3 * MAX_COEFFICIENTS


_POLY_FUNCTIONS = {}
_HORNER = {}


def _horner(terms):
    """Straight-line Horner's rule for ``terms`` coefficients p[offset:offset+terms].

    Generated as unrolled source: a loop here, even of constant length, is not
    unrolled once the RNG is inlined beside it, and then the update does not
    vectorise.
    """
    if terms not in _HORNER:
        lines = [f"def horner_{terms}(x, p, offset):",
                 f"    acc = p[offset + {terms - 1}] + 0.0 * x"]
        lines += [f"    acc = acc * x + p[offset + {k}]" for k in range(terms - 2, -1, -1)]
        lines.append("    return acc")
        namespace = {}
        exec("\n".join(lines), namespace)  # noqa: S102 - source built above from an int
        _HORNER[terms] = _jitable(namespace[f"horner_{terms}"])
    return _HORNER[terms]


def _poly_functions(length):
    """loss, grad, hess of a polynomial with ``length`` coefficients.

    Horner's rule with a trip count fixed at compile time, so LLVM unrolls it
    and the update vectorises; one specialisation per distinct length.
    """
    if length not in _POLY_FUNCTIONS:
        loss_terms = _horner(length)
        grad_terms = _horner(max(length - 1, 1))
        hess_terms = _horner(max(length - 2, 1))

        @_jitable
        def loss(x, p):
            return loss_terms(x, p, _C)

        @_jitable
        def grad(x, p):
            return grad_terms(x, p, _D1)

        @_jitable
        def hess(x, p):
            return hess_terms(x, p, _D2)

        _POLY_FUNCTIONS[length] = (loss, grad, hess)
    return _POLY_FUNCTIONS[length]


@_jitable
def poly_const_noise_var(x, p):
    return p[_NOISE] + 0.0 * x


@_jitable
def poly_const_noise_std(x, p):
    return p[_NOISE + 4] + 0.0 * x


@_jitable
def poly_const_noise_var_deriv(x, p):
    return 0.0 * x


@_jitable
def _logistic(x, p):
    return 1.0 / (1.0 + np.exp(-(x - p[_NOISE + 2]) / p[_NOISE + 3]))


@_jitable
def poly_logistic_noise_var(x, p):
    """Sigma = left + (right - left) / (1 + exp(-(x - center) / width))."""
    return p[_NOISE] + (p[_NOISE + 1] - p[_NOISE]) * _logistic(x, p)


@_jitable
def poly_logistic_noise_std(x, p):
    return np.sqrt(poly_logistic_noise_var(x, p))


@_jitable
def poly_logistic_noise_var_deriv(x, p):
    s = _logistic(x, p)
    return (p[_NOISE + 1] - p[_NOISE]) * s * (1.0 - s) / p[_NOISE + 3]


@_jitable
def poly_n_samples(p):
    return 2


_SAMPLE_FUNCTIONS = {}


def _poly_samples(length, logistic):
    """Per-sample gradients L' +- sqrt(Sigma) of the two-sample finite sum (SPEC 3)."""
    key = (length, logistic)
    if key in _SAMPLE_FUNCTIONS:
        return _SAMPLE_FUNCTIONS[key]
    unused, poly_grad, poly_hess = _poly_functions(length)
    noise_std = poly_logistic_noise_std if logistic else poly_const_noise_std
    noise_var_deriv = poly_logistic_noise_var_deriv if logistic else poly_const_noise_var_deriv

    @_jitable
    def sample_grad(x, i, p):
        sign = 1.0 - 2.0 * np.float64(i)
        return poly_grad(x, p) + sign * noise_std(x, p)

    @_jitable
    def sample_hess(x, i, p):
        sign = 1.0 - 2.0 * np.float64(i)
        root = noise_std(x, p)
        # d sqrt(Sigma)/dx = Sigma' / (2 sqrt(Sigma)), taken as 0 where Sigma = 0.
        safe = root + np.float64(root == 0.0)
        return poly_hess(x, p) + sign * 0.5 * noise_var_deriv(x, p) / safe

    _SAMPLE_FUNCTIONS[key] = (sample_grad, sample_hess)
    return _SAMPLE_FUNCTIONS[key]


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


# --- quadratic_finite_sum: l_i = h_i (x - c_i)**2 / 2 ---
# p = [n, mean h, mean hc, mean hc^2, var h, cov(h, hc), var hc, 0, h_0.., c_0..]
_Q = 8


@_jitable
def quad_loss(x, p):
    return 0.5 * (p[1] * x * x - 2.0 * p[2] * x + p[3])


@_jitable
def quad_grad(x, p):
    return p[1] * x - p[2]


@_jitable
def quad_hess(x, p):
    return p[1] + 0.0 * x


@_jitable
def quad_noise_var(x, p):
    """Sigma = var_i[h_i (x - c_i)] = var(h) x^2 - 2 cov(h, hc) x + var(hc)."""
    s = p[4] * x * x - 2.0 * p[5] * x + p[6]
    return s * np.float64(s > 0.0)


@_jitable
def quad_noise_std(x, p):
    return np.sqrt(quad_noise_var(x, p))


@_jitable
def quad_noise_var_deriv(x, p):
    return 2.0 * p[4] * x - 2.0 * p[5]


@_jitable
def quad_n_samples(p):
    return np.int64(p[0])


@_jitable
def quad_sample_grad(x, i, p):
    h = p[_Q + i]
    return h * (x - p[_Q + np.int64(p[0]) + i])


@_jitable
def quad_sample_hess(x, i, p):
    return p[_Q + i] + 0.0 * x


def quadratic_params(curvatures, centers):
    """Parameter vector of quadratic_finite_sum with its sample moments precomputed."""
    h = np.asarray(curvatures, dtype=np.float64)
    c = np.zeros_like(h) if centers is None else np.asarray(centers, dtype=np.float64)
    hc = h * c
    head = [len(h), h.mean(), hc.mean(), (hc * c).mean(), h.var(),
            (h * hc).mean() - h.mean() * hc.mean(), hc.var(), 0.0]
    return np.concatenate([np.asarray(head, dtype=np.float64), h, c])


BUILTIN_MODELS = {
    "polynomial": "L = sum_k coefficients[k] x**k; two-sample finite sum L' +- sqrt(Sigma)",
    "quadratic_finite_sum": "l_i = h_i (x - c_i)**2 / 2, i < n",
}


def builtin_model(spec):
    """Model for a resolved ``[model]`` table naming a built-in model."""
    name = spec["name"]
    if name == "polynomial":
        noise = spec.get("noise_var", 1.0)
        coefficients = list(spec["coefficients"])
        while len(coefficients) > 1 and coefficients[-1] == 0:
            coefficients.pop()              # trailing zeros cost Horner steps, nothing else
        params = polynomial_params(coefficients, noise)
        loss, grad, hess = _poly_functions(len(coefficients))
        logistic = isinstance(noise, dict)
        sg, sh = _poly_samples(len(coefficients), logistic)
        if logistic:
            nv, ns, nvd = (poly_logistic_noise_var, poly_logistic_noise_std,
                           poly_logistic_noise_var_deriv)
        else:
            nv, ns, nvd = poly_const_noise_var, poly_const_noise_std, poly_const_noise_var_deriv
        return Model(name, loss, grad, hess, nv, ns, nvd, poly_n_samples, sg, sh, params,
                     fingerprint=f"length={len(coefficients)} logistic={logistic}")
    if name == "quadratic_finite_sum":
        params = quadratic_params(spec["curvatures"], spec.get("centers"))
        return Model(name, quad_loss, quad_grad, quad_hess, quad_noise_var, quad_noise_std,
                     quad_noise_var_deriv, quad_n_samples, quad_sample_grad, quad_sample_hess,
                     params, gathers=True)
    raise KeyError(name)


_USER_CACHE = {}


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
    """Adapt a user object with plain scalar functions into a Model.

    Required: ``gradient(theta)``. Optional: ``noise_var(theta)`` (default 0),
    ``noise_var_derivative(theta)`` (default 0), ``loss(theta)`` (default NaN),
    ``second_derivative(theta)`` (needed by ``lyapunov``), and for finite-sum SGD
    ``n_samples`` (an int) with ``per_sample_gradient(theta, i)`` and optionally
    ``per_sample_second_derivative(theta, i)``. Write them with numpy functions
    (``np.exp``, ``np.sqrt``) so that they compile for every backend.
    """
    if id(obj) in _USER_CACHE:
        return _USER_CACHE[id(obj)][1]

    def jit(fn):
        return jitable(fn)

    u_grad = jit(obj.gradient)
    u_nv = jit(obj.noise_var) if hasattr(obj, "noise_var") else None
    u_nvd = jit(obj.noise_var_derivative) if hasattr(obj, "noise_var_derivative") else None
    u_loss = jit(obj.loss) if hasattr(obj, "loss") else None
    u_hess = jit(obj.second_derivative) if hasattr(obj, "second_derivative") else None
    u_sg = jit(obj.per_sample_gradient) if hasattr(obj, "per_sample_gradient") else None
    u_sh = (jit(obj.per_sample_second_derivative)
            if hasattr(obj, "per_sample_second_derivative") else None)
    n = int(getattr(obj, "n_samples", 1))

    @_jitable
    def grad(x, p):
        return u_grad(x)

    if u_nv is None:
        @_jitable
        def noise_var(x, p):
            return 0.0 * x
    else:
        @_jitable
        def noise_var(x, p):
            return u_nv(x)

    @_jitable
    def noise_std(x, p):
        return np.sqrt(noise_var(x, p))

    if u_nvd is None:
        @_jitable
        def noise_var_deriv(x, p):
            return 0.0 * x
    else:
        @_jitable
        def noise_var_deriv(x, p):
            return u_nvd(x)

    if u_loss is None:
        @_jitable
        def loss(x, p):
            return np.nan + 0.0 * x
    else:
        @_jitable
        def loss(x, p):
            return u_loss(x)

    if u_hess is None:
        @_jitable
        def hess(x, p):
            return np.nan + 0.0 * x
    else:
        @_jitable
        def hess(x, p):
            return u_hess(x)

    @_jitable
    def n_samples(p):
        return n

    if u_sg is None:
        @_jitable
        def sample_grad(x, i, p):
            return u_grad(x)
    else:
        @_jitable
        def sample_grad(x, i, p):
            return u_sg(x, i)

    if u_sh is None:
        @_jitable
        def sample_hess(x, i, p):
            return hess(x, p)
    else:
        @_jitable
        def sample_hess(x, i, p):
            return u_sh(x, i)

    model = Model(name, loss, grad, hess, noise_var, noise_std, noise_var_deriv, n_samples,
                  sample_grad,
                  sample_hess, np.zeros(1), has_samples=u_sg is not None,
                  has_hess=u_hess is not None, has_loss=u_loss is not None,
                  fingerprint=_source_fingerprint(obj),
                  user_functions=tuple(f for f in (u_grad, u_nv, u_nvd, u_loss, u_hess, u_sg, u_sh)
                                       if f is not None))
    _USER_CACHE[id(obj)] = (obj, model)
    return model
