"""One-step update rules of SPEC 4, written once for every backend.

``make_advance(model, name)`` returns ``advance(x, g, t, key_lo, key_hi, p, d)``
giving ``(x_next, jacobian)``: the next state of trajectory ``g`` (uint64)
after step ``t`` (uint64, 1-based) and d x_next / d x, the tangent map used by
the Lyapunov observable. ``p`` is the model's parameter vector, ``d`` the
dynamics' (below). Arithmetic is float64 whatever the state dtype; the caller
rounds the state to its dtype after every step.

Parameter vectors ``d``: sgd [lr, B, 1/sqrt(B)]; gd [lr];
langevin [dt, temperature, sqrt(temperature dt)].

Random words: step ``t`` of trajectory ``g`` uses Philox blocks 0, 1, ... of
counter (block, t, g); a normal takes two words, a sample index one.
"""
import numpy as np

from ._jit import jitable
from ._philox import normal_pair, normal_pair32, step_block, uniform_index

__all__ = ["make_advance", "dynamics_params", "DYNAMICS"]

_jitable = jitable(inline=True)
_ZERO = np.uint64(0)

DYNAMICS = {
    "sgd": "theta <- theta - lr (1/B) sum_j l'_{z_j}(theta); noise = 'gaussian': "
           "theta <- theta - lr (L' + sqrt(Sigma/B) xi)",
    "gd": "theta <- theta - lr L'(theta)",
    "langevin": "theta <- theta - L' dt + sqrt(temperature Sigma dt) xi (Euler-Maruyama, Ito)",
}


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
    raise KeyError(name)


def make_advance(model, name, noise="finite_sum", precision="float64", single_sample=False):
    """The step function of dynamics ``name`` on ``model`` (see module docstring).

    ``precision = "float32"`` (runs with a float32 state) draws normals with the
    single-precision transform ``normal_pair32`` (same words, 2.4x faster);
    ``single_sample`` builds SGD's batch-size-1 update without the batch loop,
    so that it vectorises.
    """
    normals = normal_pair32 if precision == "float32" else normal_pair
    grad, hess = model.grad, model.hess
    noise_std, noise_var_deriv = model.noise_std, model.noise_var_deriv
    n_samples, sample_grad, sample_hess = model.n_samples, model.sample_grad, model.sample_hess

    if name == "gd":
        @_jitable
        def advance(x, g, t, key_lo, key_hi, p, d):
            x = np.float64(x)
            lr = d[0]
            return x - lr * grad(x, p), 1.0 - lr * hess(x, p)

    elif name == "langevin":
        @_jitable
        def advance(x, g, t, key_lo, key_hi, p, d):
            x = np.float64(x)
            w0, w1, w2, w3 = step_block(key_lo, key_hi, g, t, _ZERO)
            xi, unused = normals(w0, w1)
            dt, temperature = d[0], d[1]
            amplitude = d[2] * noise_std(x, p)        # d[2] = sqrt(temperature dt)
            # d amplitude / dx = temperature dt Sigma' / (2 amplitude); 0 where Sigma = 0.
            safe = amplitude + np.float64(amplitude == 0.0)
            slope = 0.5 * temperature * dt * noise_var_deriv(x, p) / safe
            x_next = x - grad(x, p) * dt + amplitude * xi
            return x_next, 1.0 - hess(x, p) * dt + slope * xi

    elif name == "sgd" and noise == "gaussian":
        @_jitable
        def advance(x, g, t, key_lo, key_hi, p, d):
            x = np.float64(x)
            w0, w1, w2, w3 = step_block(key_lo, key_hi, g, t, _ZERO)
            xi, unused = normals(w0, w1)
            lr, batch = d[0], d[1]
            root = noise_std(x, p) * d[2]             # d[2] = 1 / sqrt(B)
            safe = root + np.float64(root == 0.0)
            slope = 0.5 * noise_var_deriv(x, p) / (batch * safe)
            x_next = x - lr * (grad(x, p) + root * xi)
            return x_next, 1.0 - lr * (hess(x, p) + slope * xi)

    elif name == "sgd" and single_sample:
        @_jitable
        def advance(x, g, t, key_lo, key_hi, p, d):
            # B = 1: word 0 of block 0 picks the sample, as in the general rule below.
            x = np.float64(x)
            w0, w1, w2, w3 = step_block(key_lo, key_hi, g, t, _ZERO)
            i = np.int64(uniform_index(w0, n_samples(p)))
            return x - d[0] * sample_grad(x, i, p), 1.0 - d[0] * sample_hess(x, i, p)

    elif name == "sgd":
        @_jitable
        def advance(x, g, t, key_lo, key_hi, p, d):
            x = np.float64(x)
            lr = d[0]
            batch = np.int64(d[1])
            n = n_samples(p)
            grad_sum = 0.0 * x
            hess_sum = 0.0 * x
            # Sample j of the batch uses word j % 4 of Philox block j // 4.
            for block in range((batch + 3) // 4):
                words = step_block(key_lo, key_hi, g, t, np.uint64(block))
                for k in range(4):
                    if 4 * block + k < batch:
                        i = np.int64(uniform_index(words[k], n))
                        grad_sum = grad_sum + sample_grad(x, i, p)
                        hess_sum = hess_sum + sample_hess(x, i, p)
            return x - lr * grad_sum / batch, 1.0 - lr * hess_sum / batch

    else:
        raise KeyError(name)
    return advance
