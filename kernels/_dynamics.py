"""Update rules (SPEC 4), each written once as one function that every backend calls.

``make_step(model, name, ...)`` returns

    step(th, aux, v, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, fresh) -> growth

which writes the next state of lane ``l`` (trajectory ``g``, uint64) after step
``t`` (uint64, 1-based) into ``out[k, l]`` (float64), and the next auxiliary
buffers (an optimiser's velocity or moments: ``aux_size`` rows) into
``out_aux``. With the tangent compiled in, it also replaces the tangent vector
``v`` by J v / |J v| (J = d theta_t / d theta_{t-1}, exact: the model's Hessian
and noise derivative) and returns |J v|; without it, it returns 1. ``buf`` is
[2 d, lanes] scratch: rows 0..d-1 the gradient, d..2d-1 H v; ``rnd`` [random_rows, lanes]
holds the random values of the current group of steps (below), kept from step to step.
``fresh`` is true on the first step a kernel runs (the group's values must be
drawn even mid-group). Arrays are laid out as in kernels._models (``th[k, l]``),
so the numpy reference calls the same function on all trajectories at once.

Arithmetic is float64; a float32 run rounds the state after every step and
draws its normals with the single-precision transform ``normal_pair32`` (same
words).

Counter layout (format version 2, docs/SPEC.md section 6): every word of a
Philox block is used. A dynamics draws ``per_step`` values a step (a normal per
coordinate; one sample index for SGD at batch size 1), and ``group`` =
4 // per_step consecutive steps share blocks (1 when per_step > 2): steps
t = group c + 1 .. group (c + 1) form group c, whose blocks 0, 1, ... have the
counter (block, c + 1, g_lo, g_hi) (c + 1 = t when group = 1; counter word c + 1 = 0
is left to the initial state). Value j of the group is word j % 4 of block j // 4 (an
index), or the j-th of the Box-Muller normals of the pairs (w0, w1), (w2, w3)
of blocks 0, 1, ...; step t takes values q .. q + per_step - 1 with
q = ((t - 1) mod group) per_step. SGD with batch size B > 1 uses blocks
0 .. ceil(B / 4) - 1 of counter (block, t, g), sample j from word j % 4 of block j // 4.

Optimisers (``optimiser``): sgd, adam and adamw share SGD's gradient estimate
(a finite-sum minibatch, ``noise = "gaussian"``, or the full gradient with
``noise = "none"``) and then take PyTorch's step. Plain SGD keeps no buffer; SGD
given momentum, nesterov or weight_decay keeps its velocity (``aux`` rows 0..d-1);
adam and adamw keep their moments m and v (rows 0..d-1 and d..2d-1). The buffers
start at zero, are float64 in every run, and have no tangent (the Lyapunov
observable is refused with them).

Parameter vectors ``d`` (``dynamics_params``): sgd [lr, B, 1/sqrt(B), momentum,
weight_decay, nesterov]; adam, adamw [lr, B, 1/sqrt(B), beta1, beta2, eps,
weight_decay]; gd [lr];
langevin [dt, temperature, sqrt(temperature dt)]; two_time_scale
[a, b, eps, noise_x, noise_y]; two_time_scale_sde [dt, eps, s, alpha,
s sqrt(dt), eps^(1+alpha) sqrt(dt)].
"""
import collections

import numpy as np

from ._jit import jitable
from ._philox import normal_pair, normal_pair32, step_block, uniform_index

__all__ = ["make_step", "make_rule", "Rule", "Layout", "layout", "buffer_rows", "random_rows",
           "random_dtype", "renormaliser", "dynamics_params", "aux_size", "optimiser", "DYNAMICS",
           "TWO_SCALE_DYNAMICS", "SGD_FAMILY", "BUFFERS", "HEAVY_BALL_KEYS"]

_inline = jitable(inline=True)
Rule = collections.namedtuple("Rule", "draw update tangent_map layout random_dtype")
_ZERO = np.uint64(0)
_ONE = np.uint64(1)

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
DYNAMICS.update({
    "adam": "m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, "
            "theta <- theta - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), g = SGD's "
            "estimate + weight_decay theta",
    "adamw": "theta <- theta (1 - lr weight_decay), then adam's step without weight decay in g",
})
TWO_SCALE_DYNAMICS = ("two_time_scale", "two_time_scale_sde")
# Dynamics with SGD's gradient estimate (batch_size, noise), each an optimiser's step.
SGD_FAMILY = ("sgd", "adam", "adamw")
# The run-file datasets (/final/NAME) of an optimiser's buffers, by kind: (NAME, b) each,
# the buffer in aux rows b d .. (b + 1) d - 1.
BUFFERS = {"momentum": (("momentum", 0),), "adam": (("adam_m", 0), ("adam_v", 1)),
           "adamw": (("adam_m", 0), ("adam_v", 1))}
HEAVY_BALL_KEYS = ("momentum", "nesterov", "weight_decay")


def dynamics_params(spec):
    """Parameter vector ``d`` for a resolved ``[dynamics]`` table."""
    name = spec["name"]
    if name in SGD_FAMILY:
        batch = spec.get("batch_size", 1)
        head = [spec["lr"], batch, 1.0 / np.sqrt(batch)]
        if name == "sgd":
            tail = [spec.get("momentum") or 0.0, spec.get("weight_decay") or 0.0,
                    float(bool(spec.get("nesterov")))]
        else:
            tail = [spec.get("beta1", 0.9), spec.get("beta2", 0.999), spec.get("eps", 1e-8),
                    spec.get("weight_decay", 0.0)]
        return np.array(head + tail, dtype=np.float64)
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


def optimiser(spec):
    """The optimiser kind of a resolved ``[dynamics]`` table: "plain" (SGD, no buffer),
    "momentum" (SGD given any of momentum, nesterov, weight_decay: a velocity buffer,
    also at momentum 0), "adam", "adamw", or None (not of the SGD family)."""
    name = spec["name"]
    if name == "sgd":
        given = any(spec.get(key) is not None for key in HEAVY_BALL_KEYS)
        return "momentum" if given else "plain"
    return name if name in SGD_FAMILY else None


def aux_size(kind, dim):
    """Rows of auxiliary state (beyond theta) that optimiser ``kind`` keeps per trajectory."""
    return {"momentum": dim, "adam": 2 * dim, "adamw": 2 * dim}.get(kind, 0)


class Layout:
    """How a dynamics draws its random values (the counter layout of the module docstring).

    ``kind`` is "normal", "index" (SGD at batch size 1), "batch" (SGD at B > 1, drawn
    inside the update) or "none"; ``per_step`` values a step, ``group`` steps per group,
    ``slots`` the random values a group holds in ``rnd`` (4 per block).
    """

    def __init__(self, kind, per_step=0, group=1):
        self.kind, self.per_step, self.group = kind, per_step, group
        self.blocks = (per_step * group + 3) // 4
        self.slots = 4 * self.blocks

    def __repr__(self):
        return f"Layout({self.kind!r}, per_step={self.per_step}, group={self.group})"


def layout(name, noise, dim, single_sample):
    """The random-value Layout of dynamics ``name`` on a ``dim``-dimensional state."""
    if name == "gd" or (name in SGD_FAMILY and noise == "none"):
        return Layout("none")
    if name in SGD_FAMILY and noise != "gaussian":
        return Layout("index", 1, 4) if single_sample else Layout("batch")
    # A normal per coordinate (two-time-scale states hold x and y: dim = 2 m).
    return Layout("normal", dim, 4 // dim if dim <= 4 else 1)


def buffer_rows(dim, lay):
    """Rows of a step's scratch buffer: gradient, H v."""
    return 2 * dim


def random_rows(lay):
    """Rows of the random values of a group of steps (``rnd``)."""
    return max(lay.slots, 1)


def random_dtype(precision, lay):
    """dtype of ``rnd``: float32 normals in a float32 run (they are float32 values), so that
    the CPU lane loop that draws them runs 16 lanes a vector on AVX-512, not 8; float64
    otherwise (sample indices are exact in it)."""
    return np.float32 if precision == "float32" and lay.kind == "normal" else np.float64


def _drawer(precision, lay, dim, n_samples):
    """draw(rnd, l, g, t, key_lo, key_hi, p): the random values of the group of step t into
    rnd[:, l] (see the module docstring)."""
    pair = normal_pair32 if precision == "float32" else normal_pair
    cast = random_dtype(precision, lay)
    group, blocks = np.uint64(lay.group), lay.blocks
    used = lay.per_step * lay.group          # values of a group that its steps read

    if lay.kind == "normal":
        @_inline
        def draw(rnd, l, g, t, key_lo, key_hi, p):
            c = (t - _ONE) // group + _ONE
            for block in range(blocks):
                w0, w1, w2, w3 = step_block(key_lo, key_hi, g, c, np.uint64(block))
                k = 4 * block
                z0, z1 = pair(w0, w1)
                rnd[k, l] = z0
                rnd[k + 1, l] = z1
                if 4 * block + 2 < used:
                    z2, z3 = pair(w2, w3)
                    rnd[k + 2, l] = z2
                    rnd[k + 3, l] = z3
    elif lay.kind == "index":
        @_inline
        def draw(rnd, l, g, t, key_lo, key_hi, p):
            c = (t - _ONE) // group + _ONE
            n = n_samples(p)
            w0, w1, w2, w3 = step_block(key_lo, key_hi, g, c, _ZERO)
            rnd[0, l] = cast(uniform_index(w0, n))
            rnd[1, l] = cast(uniform_index(w1, n))
            rnd[2, l] = cast(uniform_index(w2, n))
            rnd[3, l] = cast(uniform_index(w3, n))
    else:
        @_inline
        def draw(rnd, l, g, t, key_lo, key_hi, p):
            pass
    return draw


def _picker(dim, lay, registers):
    """pick(rnd, l, j): random value j of the group, as float64 (with ``registers``, a
    select over the four constant rows of a shared block, so that a CUDA thread keeps them
    in registers: a local array indexed at run time would live in local memory)."""
    if registers and lay.group > 1:
        # group > 1 only when a group uses at most the four values of one block.
        @_inline
        def pick(rnd, l, j):
            # Three selects on j's two bits: branch-free, so no per-step branches.
            odd, high = (j & 1) != 0, (j & 2) != 0
            low_pair = rnd[1, l] if odd else rnd[0, l]
            high_pair = rnd[3, l] if odd else rnd[2, l]
            return high_pair if high else low_pair
    else:
        @_inline
        def pick(rnd, l, j):
            return rnd[j, l]
    return pick


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
              tangent=False, inline=True, registers=False, kind="plain"):
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
    if tangent and aux_size(kind, model.dim):
        raise ValueError(f"no tangent map for the buffers of optimiser {kind!r}")
    rule = make_rule(model, name, noise, precision, single_sample, inline, registers, kind)
    draw, update, tangent_map = rule.draw, rule.update, rule.tangent_map
    group, per_step = np.uint64(rule.layout.group), rule.layout.per_step

    if not tangent:
        @inline_
        def step(th, aux, v, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, fresh):
            sub = (t - _ONE) % group
            if fresh or sub == _ZERO:
                draw(rnd, l, g, t, key_lo, key_hi, p)
            update(th, aux, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d,
                   np.int64(sub) * per_step)
            return 1.0
        return step
    renormalise = renormaliser(model.dim)

    @inline_
    def step(th, aux, v, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, fresh):
        sub = (t - _ONE) % group
        if fresh or sub == _ZERO:
            draw(rnd, l, g, t, key_lo, key_hi, p)
        q = np.int64(sub) * per_step
        extra = update(th, aux, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, q)
        tangent_map(th, aux, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, extra, q)
        return renormalise(v, l)

    return step


def make_rule(model, name, noise="finite_sum", precision="float64", single_sample=False,
              inline=True, registers=False, kind="plain"):
    """The Rule (draw, update, tangent_map, layout, random_dtype) of dynamics ``name`` (see ``make_step``):
    the rules of SPEC 4.

    ``draw`` puts the random values of a group of steps in ``rnd``; ``update`` and
    ``tangent_map`` of step t read values q.. of it. The CPU template calls the three
    itself, so that each is inlined into its lane loop once, without the step around
    them (every level of IR inlining is typed anew: compile time). ``registers`` picks
    the values by selects over constant rows (the CUDA template). ``kind`` is the
    optimiser of the SGD family (``optimiser``).
    """
    _inline = jitable(inline=inline)
    dim, m = model.dim, model.x_dim
    grad, hvp, noise_std, noise_var_dir = model.grad, model.hvp, model.noise_std, \
        model.noise_var_dir
    f_grad, f_hvp = model.f_grad, model.f_hvp
    lay = layout(name, noise, dim, single_sample)
    draw = _drawer(precision, lay, dim, model.n_samples)
    pick = _picker(dim, lay, registers)
    G, H = 0, dim           # rows of buf: gradient, H v

    if name == "langevin":
        @_inline
        def update(th, aux, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
            dt = d[0]
            grad(th, l, p, buf, G)
            amplitude = d[2] * noise_std(th, l, p)          # d[2] = sqrt(temperature dt)
            for k in range(dim):
                out[k, l] = th[k, l] - buf[G + k, l] * dt + amplitude * pick(rnd, l, q + k)
            return amplitude

        @_inline
        def tangent_map(th, aux, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, amplitude, q):
            # d amplitude = temperature dt (grad Sigma . v) / (2 amplitude); 0 where Sigma = 0.
            dt = d[0]
            safe = amplitude + np.float64(amplitude == 0.0)
            slope = 0.5 * d[1] * dt * noise_var_dir(th, l, p, v, 0) / safe
            hvp(th, l, p, v, 0, buf, H)
            for k in range(dim):
                v[k, l] = v[k, l] - dt * buf[H + k, l] + slope * pick(rnd, l, q + k)

    elif name in SGD_FAMILY or name == "gd":
        # gd is plain SGD on the full gradient (d = [lr]).
        if name == "gd":
            noise, kind = "none", "plain"
        estimate, estimate_tangent = _estimator(model, noise, single_sample, lay, pick,
                                                _inline)
        apply = _optimiser_step(kind, dim, _inline)

        @_inline
        def update(th, aux, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
            extra = estimate(th, buf, rnd, l, g, t, key_lo, key_hi, p, d, q)
            apply(th, aux, out, out_aux, buf, l, t, d)
            return extra

        @_inline
        def tangent_map(th, aux, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, extra, q):
            # Plain SGD only (the buffers have no tangent): v <- v - lr (J_g v).
            estimate_tangent(th, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, extra, q)
            for k in range(dim):
                v[k, l] = v[k, l] - d[0] * buf[H + k, l]

    elif name == "two_time_scale":
        @_inline
        def update(th, aux, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
            a, b, eps = d[0], d[1], d[2]
            f_grad(th, l, p, eps, buf, G)
            for k in range(m):
                out[k, l] = th[k, l] + a * (-buf[G + k, l] + d[3] * pick(rnd, l, q + k))
                out[m + k, l] = th[m + k, l] + b * (-buf[G + m + k, l] + d[4] * pick(rnd, l, q + m + k))
            return 0.0

        @_inline
        def tangent_map(th, aux, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, extra, q):
            f_hvp(th, l, p, d[2], v, 0, buf, H)
            for k in range(m):
                v[k, l] = v[k, l] - d[0] * buf[H + k, l]
                v[m + k, l] = v[m + k, l] - d[1] * buf[H + m + k, l]

    elif name == "two_time_scale_sde":
        @_inline
        def update(th, aux, out, out_aux, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
            dt, eps = d[0], d[1]
            f_grad(th, l, p, eps, buf, G)
            for k in range(m):
                out[k, l] = th[k, l] - buf[G + k, l] * dt + d[4] * pick(rnd, l, q + k)
                out[m + k, l] = (th[m + k, l] - eps * buf[G + m + k, l] * dt
                                 + d[5] * pick(rnd, l, q + m + k))
            return 0.0

        @_inline
        def tangent_map(th, aux, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, extra, q):
            dt, eps = d[0], d[1]
            f_hvp(th, l, p, eps, v, 0, buf, H)
            for k in range(m):
                v[k, l] = v[k, l] - dt * buf[H + k, l]
                v[m + k, l] = v[m + k, l] - eps * dt * buf[H + m + k, l]

    else:
        raise KeyError(name)
    return Rule(draw, update, tangent_map, lay, random_dtype(precision, lay))


def _estimator(model, noise, single_sample, lay, pick, inline):
    """SGD's gradient estimate g, written into buf rows 0..d-1 (and returning what its
    tangent needs), and that tangent: J_g v into rows d..2d-1 with the same draws.

    ``noise`` "finite_sum": (1/B) sum_j grad l_{z_j} (B = 1: the index drawn for the
    step); "gaussian": grad L + sqrt(Sigma / B) xi; "none": grad L.
    """
    dim = model.dim
    grad, hvp, noise_std, noise_var_dir = model.grad, model.hvp, model.noise_std, \
        model.noise_var_dir
    n_samples, add_sample_grad, add_sample_hvp = model.n_samples, model.add_sample_grad, \
        model.add_sample_hvp
    G, H = 0, dim

    if noise == "none":
        @inline
        def estimate(th, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
            grad(th, l, p, buf, G)
            return 0.0

        @inline
        def estimate_tangent(th, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, extra, q):
            hvp(th, l, p, v, 0, buf, H)

    elif noise == "gaussian":
        @inline
        def estimate(th, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
            grad(th, l, p, buf, G)
            root = noise_std(th, l, p) * d[2]               # d[2] = 1 / sqrt(B)
            for k in range(dim):
                buf[G + k, l] = buf[G + k, l] + root * pick(rnd, l, q + k)
            return root

        @inline
        def estimate_tangent(th, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, root, q):
            safe = root + np.float64(root == 0.0)
            slope = 0.5 * noise_var_dir(th, l, p, v, 0) / (d[1] * safe)
            hvp(th, l, p, v, 0, buf, H)
            for k in range(dim):
                buf[H + k, l] = buf[H + k, l] + slope * pick(rnd, l, q + k)

    elif single_sample:
        @inline
        def estimate(th, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
            # B = 1: the sample index drawn for this step of the group.
            i = np.int64(pick(rnd, l, q))
            for k in range(dim):
                buf[G + k, l] = 0.0
            add_sample_grad(th, l, p, i, 1.0, buf, G)
            return i

        @inline
        def estimate_tangent(th, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, i, q):
            for k in range(dim):
                buf[H + k, l] = 0.0
            add_sample_hvp(th, l, p, i, v, 0, 1.0, buf, H)

    else:
        @inline
        def estimate(th, buf, rnd, l, g, t, key_lo, key_hi, p, d, q):
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
            return 0.0

        @inline
        def estimate_tangent(th, v, buf, rnd, l, g, t, key_lo, key_hi, p, d, extra, q):
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

    return estimate, estimate_tangent


def _optimiser_step(kind, dim, inline):
    """apply(th, aux, out, out_aux, buf, l, t, d): the optimiser's step from the gradient
    estimate g in buf rows 0..d-1, in PyTorch's conventions (torch.optim.SGD, Adam, AdamW
    with their defaults otherwise: no dampening, no amsgrad, no maximize).

    momentum: g <- g + wd theta; v <- mu v + g (v starts at 0, so v_1 = g as in PyTorch);
    theta <- theta - lr (g + mu v) with Nesterov, theta - lr v without.
    adam: g <- g + wd theta; adamw: theta <- theta (1 - lr wd) first. Then
    m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    theta <- theta - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps),
    PyTorch's order of operations (its step count is sgdsim's t).
    """
    G = 0
    if kind == "plain":
        @inline
        def apply(th, aux, out, out_aux, buf, l, t, d):
            lr = d[0]
            for k in range(dim):
                out[k, l] = th[k, l] - lr * buf[G + k, l]
    elif kind == "momentum":
        @inline
        def apply(th, aux, out, out_aux, buf, l, t, d):
            lr, mu, decay, nesterov = d[0], d[3], d[4], d[5] != 0.0
            for k in range(dim):
                x = th[k, l]
                grad = buf[G + k, l] + decay * x
                velocity = mu * aux[k, l] + grad
                out_aux[k, l] = velocity
                out[k, l] = x - lr * ((grad + mu * velocity) if nesterov else velocity)
    elif kind in ("adam", "adamw"):
        decoupled = kind == "adamw"

        @inline
        def apply(th, aux, out, out_aux, buf, l, t, d):
            lr, beta1, beta2, eps, decay = d[0], d[3], d[4], d[5], d[6]
            step = np.float64(t)
            size = lr / (1.0 - beta1 ** step)
            root = np.sqrt(1.0 - beta2 ** step)
            for k in range(dim):
                x = th[k, l]
                if decoupled:
                    x = x * (1.0 - lr * decay)
                    grad = buf[G + k, l]
                else:
                    grad = buf[G + k, l] + decay * x
                m = beta1 * aux[k, l] + (1.0 - beta1) * grad
                v = beta2 * aux[dim + k, l] + (1.0 - beta2) * grad * grad
                out_aux[k, l] = m
                out_aux[dim + k, l] = v
                out[k, l] = x - size * m / (np.sqrt(v) / root + eps)
    else:
        raise KeyError(kind)
    return apply
