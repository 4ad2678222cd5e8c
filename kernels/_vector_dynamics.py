"""Update rules for a d-dimensional state, written once for every backend.

``make_vector_advance(model, name)`` returns
``advance(th, out, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf)``, which
writes the next state of trajectory ``g`` after step ``t`` into ``out``
(float64). ``grad_buf`` and ``noise_buf`` are caller-provided scratch
buffers of the state's shape. Coordinates are looped explicitly so that the
same source runs on one trajectory (length-d arrays) or, in the numpy
backend, on all of them at once ([d, n] arrays).

Random words: the d normals of step t are the Box-Muller pairs of Philox
blocks 0, 1, ... (four normals a block, coordinate k from block k // 4); the
B sample indices of SGD are words j % 4 of blocks j // 4, as in 1-D.

Dynamics parameter vectors ``d``:
    sgd [lr, B]; gd [lr]; langevin [dt, temperature];
    two_time_scale [a, b, eps, noise_x, noise_y];
    two_time_scale_sde [dt, eps, s, alpha].
"""
import numpy as np

from ._jit import jitable
from ._philox import normal_pair, step_block, uniform_index

__all__ = ["make_vector_advance", "make_tangent_step", "vector_dynamics_params",
           "VECTOR_DYNAMICS"]

_jitable = jitable

VECTOR_DYNAMICS = {
    "two_time_scale": "x <- x + a (-grad_x f(x, eps y) + noise_x xi), "
                      "y <- y + b (-grad_w f(x, eps y) + noise_y zeta), b = eps a unless given",
    "two_time_scale_sde": "Euler-Maruyama for dx = -grad_x f dt + s dW, "
                          "dy = -eps grad_w f dt + eps^(1+alpha) dB",
}


@_jitable
def fill_normals(out, count, g, t, key_lo, key_hi):
    """out[k] <- the k-th standard normal of step t of trajectory g, k < count."""
    for block in range((count + 3) // 4):
        w0, w1, w2, w3 = step_block(key_lo, key_hi, g, t, np.uint64(block))
        z0, z1 = normal_pair(w0, w1)
        z2, z3 = normal_pair(w2, w3)
        k = 4 * block
        out[k] = z0
        if k + 1 < count:
            out[k + 1] = z1
        if k + 2 < count:
            out[k + 2] = z2
        if k + 3 < count:
            out[k + 3] = z3


def vector_dynamics_params(spec):
    """Parameter vector ``d`` for a resolved ``[dynamics]`` table on a vector state."""
    name = spec["name"]
    if name == "sgd":
        return np.array([spec["lr"], spec.get("batch_size", 1)], dtype=np.float64)
    if name == "gd":
        return np.array([spec["lr"]], dtype=np.float64)
    if name == "langevin":
        return np.array([spec["dt"], spec["temperature"]], dtype=np.float64)
    if name == "two_time_scale":
        a, eps = spec["a"], spec["eps"]
        b = spec.get("b")
        b = eps * a if b is None else b
        return np.array([a, b, eps, spec.get("noise_x", 0.0), spec.get("noise_y", 0.0)])
    if name == "two_time_scale_sde":
        return np.array([spec["dt"], spec["eps"], spec["s"], spec["alpha"]])
    raise KeyError(name)


def make_vector_advance(model, name):
    """The step function of dynamics ``name`` on a VectorModel (see module docstring)."""
    dim, m = model.dim, model.x_dim
    grad, noise_var = model.grad, model.noise_var
    n_samples, add_sample_grad = model.n_samples, model.add_sample_grad
    f_grad_x, f_grad_w = model.f_grad_x, model.f_grad_w

    if name == "gd":
        @_jitable
        def advance(th, out, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf):
            grad(th, grad_buf, p)
            for k in range(dim):
                out[k] = th[k] - d[0] * grad_buf[k]

    elif name == "sgd":
        @_jitable
        def advance(th, out, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf):
            batch = np.int64(d[1])
            n = n_samples(p)
            for k in range(dim):
                grad_buf[k] = 0.0 * th[k]
            for block in range((batch + 3) // 4):
                words = step_block(key_lo, key_hi, g, t, np.uint64(block))
                for j in range(4):
                    if 4 * block + j < batch:
                        i = np.int64(uniform_index(words[j], n))
                        add_sample_grad(th, i, 1.0 / batch, grad_buf, p)
            for k in range(dim):
                out[k] = th[k] - d[0] * grad_buf[k]

    elif name == "langevin":
        @_jitable
        def advance(th, out, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf):
            grad(th, grad_buf, p)
            fill_normals(noise_buf, dim, g, t, key_lo, key_hi)
            amplitude = np.sqrt(d[1] * d[0] * noise_var(th, p))
            for k in range(dim):
                out[k] = th[k] - grad_buf[k] * d[0] + amplitude * noise_buf[k]

    elif name == "two_time_scale":
        @_jitable
        def advance(th, out, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf):
            a, b, eps = d[0], d[1], d[2]
            f_grad_x(th[:m], th[m:], grad_buf[:m], p, eps)
            f_grad_w(th[:m], th[m:], grad_buf[m:], p, eps)
            fill_normals(noise_buf, dim, g, t, key_lo, key_hi)
            for k in range(m):
                out[k] = th[k] + a * (-grad_buf[k] + d[3] * noise_buf[k])
                out[m + k] = th[m + k] + b * (-grad_buf[m + k] + d[4] * noise_buf[m + k])

    elif name == "two_time_scale_sde":
        @_jitable
        def advance(th, out, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf):
            dt, eps, s, alpha = d[0], d[1], d[2], d[3]
            f_grad_x(th[:m], th[m:], grad_buf[:m], p, eps)
            f_grad_w(th[:m], th[m:], grad_buf[m:], p, eps)
            fill_normals(noise_buf, dim, g, t, key_lo, key_hi)
            root_dt = np.sqrt(dt)
            slow_noise = eps ** (1.0 + alpha)
            for k in range(m):
                out[k] = th[k] - grad_buf[k] * dt + s * root_dt * noise_buf[k]
                out[m + k] = (th[m + k] - eps * grad_buf[m + k] * dt
                              + slow_noise * root_dt * noise_buf[m + k])

    else:
        raise KeyError(name)
    return advance


def make_tangent_step(advance, dim):
    """One step of the tangent dynamics of ``advance``, for the CPU and CUDA kernels.

    ``tangent_step(th, tangent, scratch, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf)``
    replaces the unit vector ``tangent`` by J v / |J v| and returns |J v|, where
    J v = (F(theta + h v) - F(theta - h v)) / (2h), h = 1e-7 (1 + max|theta|), uses the
    same random words as the step itself: exact for linear updates up to rounding,
    O(h^2) otherwise. ``scratch`` is a [4, d] buffer.
    """

    @_jitable
    def tangent_step(th, tangent, scratch, g, t, key_lo, key_hi, p, d, grad_buf, noise_buf):
        big = 0.0
        for k in range(dim):
            big = max(big, abs(np.float64(th[k])))
        h = 1e-7 * (1.0 + big)
        for k in range(dim):
            scratch[0, k] = th[k] + h * tangent[k]
            scratch[1, k] = th[k] - h * tangent[k]
        advance(scratch[0], scratch[2], g, t, key_lo, key_hi, p, d, grad_buf, noise_buf)
        advance(scratch[1], scratch[3], g, t, key_lo, key_hi, p, d, grad_buf, noise_buf)
        norm = 0.0
        for k in range(dim):
            tangent[k] = (scratch[2, k] - scratch[3, k]) / (2.0 * h)
            norm += tangent[k] * tangent[k]
        norm = np.sqrt(norm)
        for k in range(dim):
            tangent[k] /= norm
        return norm

    return tangent_step
