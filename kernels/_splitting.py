"""The replica driver of adaptive multilevel splitting (sim._splitting): a dynamics' own
update rule stepping replicas until a score condition, each replica on its own Philox
stream.

A replica is (state, aux buffers, step t, stream id g). Its step t + 1 draws the random
words of trajectory g at step t + 1, exactly as the chunk kernels do (kernels._dynamics,
counter layout of docs/SPEC.md section 6): a replica started at t = 0 with id g follows
trajectory g of an ordinary run bit for bit, and a replica rebuilt at step tau with a
new id follows its ancestor up to tau and its own stream after (the random words
depend on (seed, g, t, draw) only).

``advance(x, aux, t, ids, point, mode, level, a, b, t_max, key_lo, key_hi, p, d, top,
flag)`` runs every replica r (in parallel) from its state ``x[r]`` at step ``t[r]``
and leaves its state, step and outcome in place:

- ``MODE_FORWARD``: until the score is <= a (``flag`` = IN_A) or >= b (IN_B), the
  start included; ``top[r]``, the largest score along the way, the start included.
- ``MODE_REPLAY``: until the score is > level[r] (REPLAYED), the start included: the
  state at the first step that exceeds it (a branch point).
- ``MODE_LOOP``: until the score has been <= a and is then >= level[r] again
  (LOOPED: a loop from the start through A and back), or is >= b first (IN_B).

Every mode stops at t_max (TIMEOUT) and on a non-finite score (NON_FINITE). ``point[r]``
selects the row of ``p`` and ``d`` (the sweep point's model and dynamics parameters).
"""
import numba
import numpy as np

from ._cpu import compile_cpu
from ._dynamics import aux_size, buffer_rows, make_rule, optimiser, random_dtype, random_rows
from ._jit import jitable

__all__ = ["make_driver", "make_score", "MODE_FORWARD", "MODE_REPLAY", "MODE_LOOP", "IN_A",
           "IN_B", "REPLAYED", "LOOPED", "TIMEOUT", "NON_FINITE"]

MODE_FORWARD, MODE_REPLAY, MODE_LOOP = 0, 1, 2
IN_A, IN_B, REPLAYED, LOOPED, TIMEOUT, NON_FINITE = 1, 2, 3, 4, 5, 6


def make_score(spec, dim, user=None):
    """score(th, l) of a score spec: "theta" (d = 1), "coordinate:K", "norm", any of these
    negated by a leading "-", or a user function (``user``: a jitable f(theta) of the state
    vector, for "module:object")."""
    if spec.startswith("-"):
        plain = make_score(spec[1:], dim)

        @jitable
        def score(th, l):
            return -plain(th, l)
    elif user is not None:
        @jitable
        def score(th, l):
            return user(th[:, l])
    elif spec == "norm":
        @jitable
        def score(th, l):
            total = 0.0
            for k in range(dim):
                total += np.float64(th[k, l]) * np.float64(th[k, l])
            return np.sqrt(total)
    else:
        k = 0 if spec == "theta" else int(spec.split(":", 1)[1])

        @jitable
        def score(th, l):
            return np.float64(th[k, l])
    return score


def make_driver(model, dynamics, dtype, score, cache=False, name="sgdsim_splitting"):
    """The compiled ``advance`` of one model, resolved ``[dynamics]`` table, state dtype
    and score function (the module docstring); ``name`` and ``cache`` as for the chunk
    kernels (kernels._cpu.compile_cpu)."""
    from ._launch import layout_of

    name = dynamics["name"]
    noise, precision, single, kind, lay = layout_of(dynamics, dtype, model.dim)
    rule = make_rule(model, name, noise, precision, single, inline=False, kind=kind)
    draw, update, _, lay, rnd_dtype = rule
    dim = model.dim
    aux_rows = max(aux_size(kind, dim), 1)
    buf_rows = buffer_rows(dim, lay)
    rnd_rows = random_rows(lay)
    rnd_dtype = random_dtype(precision, lay)
    GROUP, PER_STEP = lay.group, lay.per_step
    GROUPED = GROUP > 1

    def advance(x, aux, t, ids, point, mode, level, a, b, t_max, key_lo, key_hi, p, d, top,
                flag):
        n = x.shape[0]
        for r in numba.prange(n):
            th = np.zeros((dim, 1), dtype=x.dtype)
            nxt = np.zeros((dim, 1))
            ax = np.zeros((aux_rows, 1))
            nxt_ax = np.zeros((aux_rows, 1))
            buf = np.zeros((buf_rows, 1))
            rnd = np.zeros((rnd_rows, 1), dtype=rnd_dtype)
            for k in range(dim):
                th[k, 0] = x[r, k]
            for k in range(aux.shape[1]):
                ax[k, 0] = aux[r, k]
            pr, dr = p[point[r]], d[point[r]]
            g = ids[r]
            step = t[r]
            s = score(th, 0)
            best = s
            below = False                 # MODE_LOOP: the score has been <= a
            outcome = 0
            fresh = True
            while True:
                if not np.isfinite(s):
                    outcome = NON_FINITE
                elif mode == MODE_FORWARD:
                    if s <= a:
                        outcome = IN_A
                    elif s >= b:
                        outcome = IN_B
                elif mode == MODE_REPLAY:
                    if s > level[r]:
                        outcome = REPLAYED
                else:
                    if s >= b:
                        outcome = IN_B
                    elif below and s >= level[r]:
                        outcome = LOOPED
                    below = below or s <= a
                if outcome == 0 and step >= t_max:
                    outcome = TIMEOUT
                if outcome != 0:
                    break
                step += 1
                tu = np.uint64(step)
                q = ((step - 1) % GROUP) * PER_STEP
                if not GROUPED or q == 0 or fresh:
                    draw(rnd, 0, g, tu, key_lo, key_hi, pr)
                fresh = False
                update(th, ax, nxt, nxt_ax, buf, rnd, 0, g, tu, key_lo, key_hi, pr, dr, q)
                for k in range(dim):
                    th[k, 0] = nxt[k, 0]
                for k in range(aux_rows):
                    ax[k, 0] = nxt_ax[k, 0]
                s = score(th, 0)
                best = max(best, s)
            for k in range(dim):
                x[r, k] = th[k, 0]
            for k in range(aux.shape[1]):
                aux[r, k] = ax[k, 0]
            t[r] = step
            top[r] = best
            flag[r] = outcome

    return compile_cpu(advance, name, cache)


def aux_columns(dynamics, dim):
    """Columns of a replica's aux buffer array (at least one)."""
    return max(aux_size(optimiser(dynamics) or "plain", dim), 1)
