"""Update rules (SPEC 4), each written once as one function that every backend calls.

``make_step(model, name, ...)`` returns

    step(th, aux, v, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d) -> growth

which writes the next state of lane ``l`` (trajectory ``g``, uint64) after step
``t`` (uint64, 1-based) into ``out[k, l]`` (float64), and the next auxiliary
buffers (an optimiser's velocity or moments: ``aux_size`` rows) into
``out_aux``. With the tangent compiled in, it also replaces the tangent vector
``v`` by J v / |J v| (J = d theta_t / d theta_{t-1}, exact: the model's Hessian
and noise derivative) and returns |J v|; without it, it returns 1. ``buf`` is
[3 d, lanes] scratch: rows 0..d-1 the gradient, d..2d-1 H v, 2d..3d-1 the
normals. Arrays are laid out as in kernels._models (``th[k, l]``), so the
numpy reference calls the same function on all trajectories at once.

Arithmetic is float64; a float32 run rounds the state after every step and
draws its normals with the single-precision transform ``normal_pair32`` (same
words). Random words: step ``t`` of trajectory ``g`` uses Philox blocks
0, 1, ... of counter (block, t, g); normal k of a step is the k-th of the
Box-Muller pairs of blocks 0, 1, ... (four a block); the B sample indices of
SGD are words j % 4 of blocks j // 4.

Parameter vectors ``d`` (``dynamics_params``): sgd [lr, B, 1/sqrt(B)]; gd [lr];
langevin [dt, temperature, sqrt(temperature dt)]; two_time_scale
[a, b, eps, noise_x, noise_y]; two_time_scale_sde [dt, eps, s, alpha,
s sqrt(dt), eps^(1+alpha) sqrt(dt)].
"""
import numpy as np

from ._jit import jitable
from ._philox import normal_pair, normal_pair32, step_block, uniform_index

__all__ = ["make_step", "make_rule", "renormaliser", "dynamics_params", "aux_size", "DYNAMICS",
           "TWO_SCALE_DYNAMICS"]

_inline = jitable(inline=True)
_ZERO = np.uint64(0)

DYNAMICS = {
    "sgd": "theta <- theta - lr (1/B) sum_j grad l_{z_j}(theta); noise = 'gaussian': "
           "theta <- theta - lr (grad L + sqrt(Sigma/B) xi)",
    "gd": "theta <- theta - lr grad L(theta)",
    "langevin": "theta <- theta - grad L dt + sqrt(temperature Sigma dt) xi (Euler-Maruyama, Ito)",
    "two_time_scale": "x <- x + a (-grad_x f(x, eps y) + noise_x xi), "
                      "y <- y + b (-grad_w f(x, eps y) + noise_y zeta), b = eps a unless given",
    "two_time_scale_sde": "Euler-Maruyama for dx = -grad_x f dt + s dW, "
                          "dy = -eps grad_w f dt + eps^(1+alpha) dB",
}
TWO_SCALE_DYNAMICS = ("two_time_scale", "two_time_scale_sde")


def dynamics_params(spec):
    """Parameter vector ``d`` for a resolved ``[dynamics]`` table."""
    name = spec["name"]
    if name == "sgd":
        batch = spec.get("batch_size", 1)
        return np.array([spec["lr"], batch, 1.0 / np.sqrt(batch)], dtype=np.float64)
    if name == "gd":
        return np.array([spec["lr"]], dtype=np.float64)
    if name == "langevin":
        return np.array([spec["dt"], spec["temperature"],
                         np.sqrt(spec["temperature"] * spec["dt"])], dtype=np.float64)
    if name == "two_time_scale":
        a, eps = spec["a"], spec["eps"]
        b = spec.get("b")
        b = eps * a if b is None else b
        return np.array([a, b, eps, spec.get("noise_x", 0.0), spec.get("noise_y", 0.0)])
    if name == "two_time_scale_sde":
        dt, eps, s, alpha = spec["dt"], spec["eps"], spec["s"], spec["alpha"]
        root = np.sqrt(dt)
        return np.array([dt, eps, s, alpha, s * root, eps ** (1.0 + alpha) * root])
    raise KeyError(name)


def aux_size(name, dim):
    """Rows of auxiliary state (beyond theta) that dynamics ``name`` keeps per trajectory."""
    return 0


_NORMALS = {}


def _normals(precision, count):
    """fill(buf, row, l, g, t, key_lo, key_hi): buf[row + k, l] <- normal k of the step."""
    key = (precision, count)
    if key in _NORMALS:
        return _NORMALS[key]
    pair = normal_pair32 if precision == "float32" else normal_pair

    if count == 1:
        # One normal (every 1-D dynamics): the first of block 0's pairs, so the kernel
        # carries one Box-Muller transform, not four.
        @_inline
        def fill(buf, row, l, g, t, key_lo, key_hi):
            w0, w1, w2, w3 = step_block(key_lo, key_hi, g, t, _ZERO)
            z0, z1 = pair(w0, w1)
            buf[row, l] = z0
    else:
        @jitable
        def fill(buf, row, l, g, t, key_lo, key_hi):
            for block in range((count + 3) // 4):
                w0, w1, w2, w3 = step_block(key_lo, key_hi, g, t, np.uint64(block))
                k = 4 * block
                z0, z1 = pair(w0, w1)
                buf[row + k, l] = z0
                if k + 1 < count:
                    buf[row + k + 1, l] = z1
                if k + 2 < count:
                    z2, z3 = pair(w2, w3)
                    buf[row + k + 2, l] = z2
                    if k + 3 < count:
                        buf[row + k + 3, l] = z3

    _NORMALS[key] = fill
    return fill


_RENORMALISE = {}


def renormaliser(dim):
    if dim not in _RENORMALISE:
        @_inline
        def renormalise(v, l):
            """v <- v / |v| (left as is where |v| = 0); returns |v|."""
            total = 0.0 * v[0, l]
            for k in range(dim):
                total = total + v[k, l] * v[k, l]
            norm = np.sqrt(total)
            safe = norm + np.float64(norm == 0.0)
            for k in range(dim):
                v[k, l] = v[k, l] / safe
            return norm

        _RENORMALISE[dim] = renormalise
    return _RENORMALISE[dim]


def make_step(model, name, noise="finite_sum", precision="float64", single_sample=False,
              tangent=False, inline=True):
    """The step function of dynamics ``name`` on ``model`` (see the module docstring).

    A dynamics is two functions: ``update``, which writes the next state into
    ``out`` (and returns a value its tangent map needs: an amplitude, a sample
    index), and ``tangent_map``, which replaces v by J v with the same draws.
    ``tangent`` composes them (the Lyapunov observable); without it the step is
    the update alone, so no code of the tangent is compiled in.
    ``single_sample`` builds SGD's batch-size-1 update without the batch loop,
    so that it vectorises. ``inline`` inlines the step into its CPU caller at the IR
    level: for the 64-lane kernels, whose lane loop vectorises only as one function body;
    a larger state's step is an ordinary call (IR inlining it multiplies compile times).
    """
    inline_ = jitable(inline=inline)
    update, tangent_map = make_rule(model, name, noise, precision, single_sample, inline)
    if not tangent:
        @inline_
        def step(th, aux, v, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d)
            return 1.0
        return step
    renormalise = renormaliser(model.dim)

    @inline_
    def step(th, aux, v, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
        extra = update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d)
        tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, extra)
        return renormalise(v, l)

    return step


def make_rule(model, name, noise="finite_sum", precision="float64", single_sample=False,
              inline=True):
    """(update, tangent_map) of dynamics ``name`` (see ``make_step``): the rules of SPEC 4.

    The CPU template calls the two itself, so that each is inlined into the lane
    loop once, without the step around them (every level of IR inlining is typed
    anew: compile time).
    """
    _inline = jitable(inline=inline)
    dim, m = model.dim, model.x_dim
    grad, hvp, noise_std, noise_var_dir = model.grad, model.hvp, model.noise_std, \
        model.noise_var_dir
    n_samples, add_sample_grad, add_sample_hvp = model.n_samples, model.add_sample_grad, \
        model.add_sample_hvp
    f_grad, f_hvp = model.f_grad, model.f_hvp
    fill = _normals(precision, dim)
    G, H, Z = 0, dim, 2 * dim           # rows of buf: gradient, H v, normals

    if name == "gd":
        @_inline
        def update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            lr = d[0]
            grad(th, l, p, buf, G)
            for k in range(dim):
                out[k, l] = th[k, l] - lr * buf[G + k, l]
            return 0.0

        @_inline
        def tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, extra):
            hvp(th, l, p, v, 0, buf, H)
            for k in range(dim):
                v[k, l] = v[k, l] - d[0] * buf[H + k, l]

    elif name == "langevin":
        @_inline
        def update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            dt = d[0]
            grad(th, l, p, buf, G)
            fill(buf, Z, l, g, t, key_lo, key_hi)
            amplitude = d[2] * noise_std(th, l, p)          # d[2] = sqrt(temperature dt)
            for k in range(dim):
                out[k, l] = th[k, l] - buf[G + k, l] * dt + amplitude * buf[Z + k, l]
            return amplitude

        @_inline
        def tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, amplitude):
            # d amplitude = temperature dt (grad Sigma . v) / (2 amplitude); 0 where Sigma = 0.
            dt = d[0]
            safe = amplitude + np.float64(amplitude == 0.0)
            slope = 0.5 * d[1] * dt * noise_var_dir(th, l, p, v, 0) / safe
            hvp(th, l, p, v, 0, buf, H)
            for k in range(dim):
                v[k, l] = v[k, l] - dt * buf[H + k, l] + slope * buf[Z + k, l]

    elif name == "sgd" and noise == "gaussian":
        @_inline
        def update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            lr = d[0]
            grad(th, l, p, buf, G)
            fill(buf, Z, l, g, t, key_lo, key_hi)
            root = noise_std(th, l, p) * d[2]               # d[2] = 1 / sqrt(B)
            for k in range(dim):
                out[k, l] = th[k, l] - lr * (buf[G + k, l] + root * buf[Z + k, l])
            return root

        @_inline
        def tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, root):
            safe = root + np.float64(root == 0.0)
            slope = 0.5 * noise_var_dir(th, l, p, v, 0) / (d[1] * safe)
            hvp(th, l, p, v, 0, buf, H)
            for k in range(dim):
                v[k, l] = v[k, l] - d[0] * (buf[H + k, l] + slope * buf[Z + k, l])

    elif name == "sgd" and single_sample:
        @_inline
        def update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            # B = 1: word 0 of block 0 picks the sample, as in the general rule below.
            lr = d[0]
            w0, w1, w2, w3 = step_block(key_lo, key_hi, g, t, _ZERO)
            i = np.int64(uniform_index(w0, n_samples(p)))
            for k in range(dim):
                buf[G + k, l] = 0.0
            add_sample_grad(th, l, p, i, 1.0, buf, G)
            for k in range(dim):
                out[k, l] = th[k, l] - lr * buf[G + k, l]
            return i

        @_inline
        def tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, i):
            for k in range(dim):
                buf[H + k, l] = 0.0
            add_sample_hvp(th, l, p, i, v, 0, 1.0, buf, H)
            for k in range(dim):
                v[k, l] = v[k, l] - d[0] * buf[H + k, l]

    elif name == "sgd":
        @_inline
        def update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            lr = d[0]
            batch = np.int64(d[1])
            n = n_samples(p)
            for k in range(dim):
                buf[G + k, l] = 0.0
            # Sample j of the batch uses word j % 4 of Philox block j // 4.
            for block in range((batch + 3) // 4):
                words = step_block(key_lo, key_hi, g, t, np.uint64(block))
                for j in range(4):
                    if 4 * block + j < batch:
                        i = np.int64(uniform_index(words[j], n))
                        add_sample_grad(th, l, p, i, 1.0 / batch, buf, G)
            for k in range(dim):
                out[k, l] = th[k, l] - lr * buf[G + k, l]
            return 0.0

        @_inline
        def tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, extra):
            # The same samples as the update: the same words, drawn again.
            batch = np.int64(d[1])
            n = n_samples(p)
            for k in range(dim):
                buf[H + k, l] = 0.0
            for block in range((batch + 3) // 4):
                words = step_block(key_lo, key_hi, g, t, np.uint64(block))
                for j in range(4):
                    if 4 * block + j < batch:
                        i = np.int64(uniform_index(words[j], n))
                        add_sample_hvp(th, l, p, i, v, 0, 1.0 / batch, buf, H)
            for k in range(dim):
                v[k, l] = v[k, l] - d[0] * buf[H + k, l]

    elif name == "two_time_scale":
        @_inline
        def update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            a, b, eps = d[0], d[1], d[2]
            f_grad(th, l, p, eps, buf, G)
            fill(buf, Z, l, g, t, key_lo, key_hi)
            for k in range(m):
                out[k, l] = th[k, l] + a * (-buf[G + k, l] + d[3] * buf[Z + k, l])
                out[m + k, l] = th[m + k, l] + b * (-buf[G + m + k, l] + d[4] * buf[Z + m + k, l])
            return 0.0

        @_inline
        def tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, extra):
            f_hvp(th, l, p, d[2], v, 0, buf, H)
            for k in range(m):
                v[k, l] = v[k, l] - d[0] * buf[H + k, l]
                v[m + k, l] = v[m + k, l] - d[1] * buf[H + m + k, l]

    elif name == "two_time_scale_sde":
        @_inline
        def update(th, aux, out, out_aux, buf, l, g, t, key_lo, key_hi, p, d):
            dt, eps = d[0], d[1]
            f_grad(th, l, p, eps, buf, G)
            fill(buf, Z, l, g, t, key_lo, key_hi)
            for k in range(m):
                out[k, l] = th[k, l] - buf[G + k, l] * dt + d[4] * buf[Z + k, l]
                out[m + k, l] = (th[m + k, l] - eps * buf[G + m + k, l] * dt
                                 + d[5] * buf[Z + m + k, l])
            return 0.0

        @_inline
        def tangent_map(th, aux, v, buf, l, g, t, key_lo, key_hi, p, d, extra):
            dt, eps = d[0], d[1]
            f_hvp(th, l, p, eps, v, 0, buf, H)
            for k in range(m):
                v[k, l] = v[k, l] - dt * buf[H + k, l]
                v[m + k, l] = v[m + k, l] - eps * dt * buf[H + m + k, l]

    else:
        raise KeyError(name)
    return update, tangent_map
