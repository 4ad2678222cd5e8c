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
import math

import numba
import numpy as np

from ._cpu import compile_cpu
from ._cuda import cuda          # None without numba-cuda; the simulator swaps it at launch
from ._dynamics import (aux_size, buffer_rows, make_rule, make_step, optimiser, random_dtype,
                        random_rows)
from ._jit import jitable
from ._reference import _ALL

__all__ = ["make_driver", "make_cuda_driver", "make_numpy_driver", "make_score", "MODE_FORWARD",
           "MODE_REPLAY", "MODE_LOOP", "IN_A", "IN_B", "REPLAYED", "LOOPED", "TIMEOUT",
           "NON_FINITE"]

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
            return math.sqrt(total)
    else:
        k = 0 if spec == "theta" else int(spec.split(":", 1)[1])

        @jitable
        def score(th, l):
            return np.float64(th[k, l])
    return score


CUDA_BLOCK = 128      # threads a block of the CUDA replica kernel


def _shapes(model, dynamics, dtype):
    """The dynamics' layout (noise, precision, single, kind, lay: kernels._launch.layout_of)
    and the array shapes of one replica: (aux rows, buffer rows, random rows), and the
    random values' dtype."""
    from ._launch import layout_of

    noise, precision, single, kind, lay = layout = layout_of(dynamics, dtype, model.dim)
    rows = (max(aux_size(kind, model.dim), 1), buffer_rows(model.dim, lay), random_rows(lay))
    return layout, rows, random_dtype(precision, lay)


def _pieces(model, dynamics, dtype, registers):
    """The dynamics' rule and the array shapes of one replica."""
    (noise, precision, single, kind, lay), rows, rnd_dtype = _shapes(model, dynamics, dtype)
    draw, update, _, lay, _ = make_rule(model, dynamics["name"], noise, precision, single,
                                        inline=False, registers=registers, kind=kind)
    return draw, update, lay, rows, rnd_dtype


def _make_walk(draw, update, score, dim, aux_rows, lay):
    """walk(r, th, nxt, ax, nxt_ax, buf, rnd, x, aux, t, ids, point, mode, level, a, b,
    t_max, key_lo, key_hi, p, d, top, flag): replica r from x[r] until its mode's stop
    (the module docstring), in the work arrays th .. rnd; one body for every backend."""
    GROUP, PER_STEP = lay.group, lay.per_step
    GROUPED = GROUP > 1

    @jitable
    def walk(r, th, nxt, ax, nxt_ax, buf, rnd, x, aux, t, ids, point, mode, level, a, b,
             t_max, key_lo, key_hi, p, d, top, flag):
        for k in range(dim):
            th[k, 0] = x[r, k]
        for k in range(aux_rows):
            ax[k, 0] = aux[r, k] if k < aux.shape[1] else 0.0
        pr, dr = p[point[r]], d[point[r]]
        g = ids[r]
        step = t[r]
        s = score(th, 0)
        best = s
        below = False                 # MODE_LOOP: the score has been <= a
        outcome = 0
        fresh = True
        while True:
            if not math.isfinite(s):
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

    return walk


def make_driver(model, dynamics, dtype, score, cache=False, name="sgdsim_splitting"):
    """The compiled ``advance`` of one model, resolved ``[dynamics]`` table, state dtype
    and score function (the module docstring) for the CPU, a replica per thread; ``name``
    and ``cache`` as for the chunk kernels (kernels._cpu.compile_cpu)."""
    draw, update, lay, (aux_rows, buf_rows, rnd_rows), rnd_dtype = _pieces(
        model, dynamics, dtype, False)
    dim = model.dim
    walk = _make_walk(draw, update, score, dim, aux_rows, lay)

    def advance(x, aux, t, ids, point, mode, level, a, b, t_max, key_lo, key_hi, p, d, top,
                flag):
        for r in numba.prange(x.shape[0]):
            walk(r, np.zeros((dim, 1), dtype=x.dtype), np.zeros((dim, 1), dtype=x.dtype),
                 np.zeros((aux_rows, 1)), np.zeros((aux_rows, 1)),
                 np.zeros((buf_rows, 1), dtype=x.dtype),
                 np.zeros((rnd_rows, 1), dtype=rnd_dtype), x, aux, t, ids, point, mode, level,
                 a, b, t_max, key_lo, key_hi, p, d, top, flag)

    return compile_cpu(advance, name, cache)


def make_cuda_driver(model, dynamics, dtype, score):
    """The same ``advance`` for CUDA, a replica per thread: a host function that copies
    the arrays to the device, launches the kernel (``.kernel``) and copies them back."""
    draw, update, lay, (aux_rows, buf_rows, rnd_rows), rnd_dtype = _pieces(
        model, dynamics, dtype, True)
    dim = model.dim
    walk = _make_walk(draw, update, score, dim, aux_rows, lay)
    state_type = numba.from_dtype(np.dtype(dtype))
    rnd_type = numba.from_dtype(np.dtype(rnd_dtype))

    @cuda.jit
    def kernel(x, aux, t, ids, point, mode, level, a, b, t_max, key_lo, key_hi, p, d, top,
               flag):
        r = cuda.grid(1)
        if r < x.shape[0]:
            walk(r, cuda.local.array((dim, 1), state_type),
                 cuda.local.array((dim, 1), state_type),
                 cuda.local.array((aux_rows, 1), numba.float64),
                 cuda.local.array((aux_rows, 1), numba.float64),
                 cuda.local.array((buf_rows, 1), state_type),
                 cuda.local.array((rnd_rows, 1), rnd_type), x, aux, t, ids, point, mode, level,
                 a, b, t_max, key_lo, key_hi, p, d, top, flag)

    def advance(x, aux, t, ids, point, mode, level, a, b, t_max, key_lo, key_hi, p, d, top,
                flag):
        n = x.shape[0]
        if n == 0:
            return
        changed = [cuda.to_device(v) for v in (x, aux, t, top, flag)]
        dx, daux, dt, dtop, dflag = changed
        kernel[(n + CUDA_BLOCK - 1) // CUDA_BLOCK, CUDA_BLOCK](dx, daux, dt, cuda.to_device(ids),
                                      cuda.to_device(point), mode, cuda.to_device(level), a, b,
                                      t_max, key_lo, key_hi, cuda.to_device(p),
                                      cuda.to_device(d), dtop, dflag)
        for host, device in zip((x, aux, t, top, flag), changed):
            device.copy_to_host(host)

    advance.kernel = kernel
    return advance


def make_numpy_driver(model, dynamics, dtype, score):
    """The same ``advance`` in plain numpy, the reference of the compiled drivers: the
    dynamics' step on [d, n] arrays (lane ``slice(None)``, as kernels._reference runs
    it), the replicas at the same step taking it together, and the stopping rules
    written again here in array form from the module docstring. ``score(x)`` is the host
    score of the rows of x [n, d] (float64)."""
    (noise, precision, single, kind, _), (aux_rows, buf_rows, rnd_rows), rnd_dtype = _shapes(
        model, dynamics, dtype)
    step = make_step(model, dynamics["name"], noise, precision, single, kind=kind)
    dim = model.dim

    def outcomes(mode, s, level, below, a, b):
        """Where each replica stops at score s (0: it walks on); the later rules win."""
        out = np.zeros(s.shape, dtype=np.int64)
        if mode == MODE_FORWARD:
            out[s >= b] = IN_B
            out[s <= a] = IN_A
        elif mode == MODE_REPLAY:
            out[s > level] = REPLAYED
        else:
            out[below & (s >= level)] = LOOPED
            out[s >= b] = IN_B
        out[~np.isfinite(s)] = NON_FINITE
        return out

    def advance(x, aux, t, ids, point, mode, level, a, b, t_max, key_lo, key_hi, p, d, top,
                flag):
        n = x.shape[0]
        th = x.T.copy()                                    # [d, n], the state's dtype
        ax = np.zeros((aux_rows, n))
        ax[:aux.shape[1]] = aux.T
        rnd = np.zeros((rnd_rows, n), dtype=rnd_dtype)     # a group's values stay in it
        steps, level = t.copy(), np.broadcast_to(level, (n,))
        s = score(x)
        best = s.copy()
        below = np.zeros(n, dtype=bool)                    # MODE_LOOP: been <= a
        outcome = np.zeros(n, dtype=np.int64)
        fresh = np.ones(n, dtype=bool)                     # no step taken since the start
        with np.errstate(all="ignore"):
            while True:
                walking = outcome == 0
                outcome[walking] = outcomes(mode, s, level, below, a, b)[walking]
                below |= walking & (s <= a)
                outcome[(outcome == 0) & (steps >= t_max)] = TIMEOUT
                walking = np.flatnonzero(outcome == 0)
                if not walking.size:
                    break
                # The replicas at the earliest step, of one sweep point and freshness.
                first = walking[np.argmin(steps[walking])]
                group = walking[(steps[walking] == steps[first])
                                & (point[walking] == point[first])
                                & (fresh[walking] == fresh[first])]
                m = group.size
                nxt, nxt_aux, r = (np.empty((dim, m), dtype=th.dtype), ax[:, group].copy(),
                                   rnd[:, group])
                step(th[:, group], ax[:, group], np.zeros((dim, m)), nxt,
                     nxt_aux, np.empty((buf_rows, m), dtype=th.dtype), r, _ALL, ids[group],
                     np.uint64(steps[first] + 1), key_lo, key_hi, p[point[first]],
                     d[point[first]], bool(fresh[first]))
                th[:, group], ax[:, group], rnd[:, group] = nxt, nxt_aux, r
                steps[group] += 1
                fresh[group] = False
                s[group] = score(th[:, group].T)
                best[group] = np.fmax(best[group], s[group])
        x[:] = th.T
        aux[:] = ax[:aux.shape[1]].T
        t[:], top[:], flag[:] = steps, best, outcome

    return advance


def aux_columns(dynamics, dim):
    """Columns of a replica's aux buffer array (at least one)."""
    return max(aux_size(optimiser(dynamics) or "plain", dim), 1)
