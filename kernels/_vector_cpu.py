"""Fused kernels for a d-dimensional state: CPU (numba) and numpy reference.

One trajectory at a time per parallel task; its state, the scratch buffers of
its update and its tangent vector live in small thread-local arrays for all
T steps (d up to 64 and beyond; nothing per step is stored).

The tangent dynamics (kernels._vector_dynamics.make_tangent_step) use a
central difference of the update with the same random words, so any model and
dynamics have a Lyapunov exponent without second derivatives; the tangent
vector is renormalised every step.
"""
import math

import numba
import numpy as np

from ._jit import jitable
from ._observe import (
    COORD_NORM, F_DIV_THRESHOLD, I_COORD, I_FP_STOP, I_LYAP_ON, I_PATH_COUNT, I_PATH_EVERY,
    REDUCE_GROUP, TS_COUNT, TS_LOSS, TS_SLOW, TS_STATE, TS_TRACKING, batch_group, histogram_bin,
    passed, region, diverged,
)

from ._cpu import compile_cpu
from ._reference import first_passage_hits, histogram_slots, trajectory_indices
from ._vector_dynamics import make_tangent_step

__all__ = ["make_vector_cpu_kernel", "make_vector_numpy_kernel", "FD_STEP"]

FD_STEP = 1e-7


def make_vector_cpu_kernel(advance, model, cache=False, name="sgdsim_vector_kernel"):
    """Chunk kernel for a VectorModel on the CPU; arrays as in kernels._launch."""
    dim, m = model.dim, model.x_dim
    tangent_step = make_tangent_step(advance, dim)
    loss, tracking_error, slow_error = model.loss, model.tracking_error, model.slow_error
    two_scale = m > 0

    def kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
               boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
               lyap_steps, occupancy, hist, ts_partial, paths):
        n = x_init.shape[0]
        n_groups = (n + REDUCE_GROUP - 1) // REDUCE_GROUP
        n_ts = ts_steps.shape[0]
        occ_on = occupancy.shape[0] > 0
        lyap_on = conf_i[I_LYAP_ON] != 0
        stop_on_pass = conf_i[I_FP_STOP] != 0
        path_count = conf_i[I_PATH_COUNT]
        path_every = conf_i[I_PATH_EVERY]
        coord = conf_i[I_COORD]
        for group in numba.prange(n_groups):
            thread = numba.get_thread_id()
            th = np.empty(dim, dtype=x_init.dtype)
            nxt = np.empty(dim)
            grad_buf = np.empty(dim)
            noise_buf = np.empty(dim)
            tangent = np.empty(dim)
            scratch = np.empty((4, dim))
            for j in range(group * REDUCE_GROUP, min(n, (group + 1) * REDUCE_GROUP)):
                i = i_first + j
                g = np.uint64(g_first + j)
                for k in range(dim):
                    th[k] = x_init[j, k]
                    tangent[k] = 1.0 / math.sqrt(dim)
                first = -1
                div = -1
                growth = 0.0
                grown = 0
                next_ts = 0
                if i < path_count:
                    for k in range(dim):
                        paths[i, 0, k] = th[k]
                for t in range(0, steps + 1):
                    norm = 1.0
                    if t > 0:
                        tu = np.uint64(t)
                        advance(th, nxt, g, tu, key_lo, key_hi, p, d, grad_buf, noise_buf)
                        if lyap_on:
                            norm = tangent_step(th, tangent, scratch, g, tu, key_lo, key_hi, p,
                                                d, grad_buf, noise_buf)
                        finite = True
                        for k in range(dim):
                            th[k] = nxt[k]
                            finite = finite and math.isfinite(th[k])
                        value = _watched(th, coord)
                        if not finite or diverged(value, conf_f):
                            div = t
                            break
                        if lyap_on:
                            growth += math.log(norm)
                            grown += 1
                    value = _watched(th, coord)
                    stop = False
                    if t > 0:
                        if first < 0 and passed(value, conf_i, conf_f):
                            first = t
                            stop = stop_on_pass
                        batch = batch_group(i, conf_i)
                        for k in range(dim):
                            slot = histogram_bin(th[k], t, conf_i, conf_f)
                            if slot >= 0:
                                hist[thread, batch, k, slot] += 1
                        if occ_on:
                            occupancy[j, region(value, boundaries)] += 1
                        if i < path_count and t % path_every == 0:
                            for k in range(dim):
                                paths[i, t // path_every, k] = th[k]
                    if next_ts < n_ts and ts_steps[next_ts] == t:
                        ts_partial[group, next_ts, TS_COUNT] += 1.0
                        ts_partial[group, next_ts, TS_LOSS] += loss(th, p)
                        if two_scale:
                            ts_partial[group, next_ts, TS_TRACKING] += tracking_error(
                                th[:m], th[m:], p[1], p)
                            ts_partial[group, next_ts, TS_SLOW] += slow_error(th[m:], p[1], p)
                        for k in range(dim):
                            v = np.float64(th[k])
                            ts_partial[group, next_ts, TS_STATE + 2 * k] += v
                            ts_partial[group, next_ts, TS_STATE + 2 * k + 1] += v * v
                        next_ts += 1
                    if stop:
                        break
                for k in range(dim):
                    x_final[j, k] = th[k]
                fp_steps[j] = first
                div_steps[j] = div
                log_growth[j] = growth
                lyap_steps[j] = grown

    return compile_cpu(kernel, name, cache)


@jitable(inline=True)
def _watched(th, coord):
    """The watched scalar: coordinate ``coord`` of the state, or its norm."""
    if coord == COORD_NORM:
        total = 0.0
        for k in range(th.shape[0]):
            total += np.float64(th[k]) * np.float64(th[k])
        return math.sqrt(total)
    # A weighted sum over every coordinate rather than th[coord]: the index is not known at
    # compile time, and an indexed read (which a compare-and-select loop is folded back
    # into) would force the GPU kernel to keep the state in local memory instead of
    # registers. A non-finite coordinate makes the sum non-finite, which is a divergence
    # in every kernel anyway (any non-finite coordinate is).
    value = 0.0
    for k in range(th.shape[0]):
        value += np.float64(th[k]) * np.float64(k == coord)
    return value


def make_vector_numpy_kernel(advance, model):
    """The numpy reference for vector states: the same functions on [d, n] arrays."""
    dim, m = model.dim, model.x_dim
    loss, tracking_error, slow_error = model.loss, model.tracking_error, model.slow_error

    def watched(th, coord):
        return np.sqrt((th * th).sum(axis=0)) if coord == COORD_NORM else th[coord]

    def kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
               boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
               lyap_steps, occupancy, hist, ts_partial, paths):
        n = x_init.shape[0]
        th = x_init.T.astype(x_init.dtype, copy=True)          # [d, n]
        local, point_index, g, group, batch = trajectory_indices(n, g_first, i_first, conf_i)
        running = np.ones(n, dtype=bool)
        first = np.full(n, -1, dtype=np.int64)
        div = np.full(n, -1, dtype=np.int64)
        growth = np.zeros(n)
        grown = np.zeros(n, dtype=np.int64)
        tangent = np.full((dim, n), 1.0 / np.sqrt(dim))
        coord = conf_i[I_COORD]
        ts_index = {int(s): k for k, s in enumerate(ts_steps)}
        rows = point_index < conf_i[I_PATH_COUNT]
        every = conf_i[I_PATH_EVERY]
        buffers = lambda: (np.empty((dim, n)), np.empty((dim, n)))

        def record(k, where):
            sums = [np.ones(n), loss(th, p)]
            if m > 0:
                sums += [tracking_error(th[:m], th[m:], p[1], p), slow_error(th[m:], p[1], p)]
            else:
                sums += [np.zeros(n), np.zeros(n)]
            for c in range(dim):
                v = th[c].astype(np.float64)
                sums += [v, v * v]
            for column, contrib in enumerate(sums):
                np.add.at(ts_partial[:, k, column], group[where],
                          np.broadcast_to(contrib, (n,))[where])

        if 0 in ts_index:
            record(ts_index[0], running)
        paths[point_index[rows], 0, :] = th[:, rows].T
        with np.errstate(all="ignore"):
            for t in range(1, steps + 1):
                if not running.any():
                    break
                tu = np.uint64(t)
                nxt = np.empty((dim, n))
                advance(th, nxt, g, tu, key_lo, key_hi, p, d, *buffers())
                if conf_i[I_LYAP_ON]:
                    h = 1e-7 * (1.0 + np.abs(th.astype(np.float64)).max(axis=0))
                    plus_next, minus_next = np.empty((dim, n)), np.empty((dim, n))
                    advance(th + h * tangent, plus_next, g, tu, key_lo, key_hi, p, d, *buffers())
                    advance(th - h * tangent, minus_next, g, tu, key_lo, key_hi, p, d, *buffers())
                    jv = (plus_next - minus_next) / (2.0 * h)
                    norm = np.sqrt((jv * jv).sum(axis=0))
                    tangent = np.where(running, jv / norm, tangent)
                th = np.where(running, nxt.astype(x_init.dtype), th)
                value = watched(th.astype(np.float64), coord)
                bad = running & (~np.isfinite(th).all(axis=0)
                                 | ~(np.abs(value) <= conf_f[F_DIV_THRESHOLD]))
                div[bad] = t
                running &= ~bad
                if conf_i[I_LYAP_ON]:
                    growth[running] += np.log(norm[running])
                    grown[running] += 1
                hit = first_passage_hits(value, running, first, conf_i, conf_f)
                first[hit] = t
                for c in range(dim):
                    slots = histogram_slots(th[c].astype(np.float64), t, conf_i, conf_f)
                    if slots is not None:
                        np.add.at(hist[0], (batch[running], c, slots[running]), 1)
                if occupancy.shape[0] > 0:
                    regions = np.searchsorted(boundaries, value, side="right")
                    np.add.at(occupancy, (local[running], regions[running]), 1)
                if t in ts_index:
                    record(ts_index[t], running)
                if t % every == 0:
                    take = rows & running
                    paths[point_index[take], t // every, :] = th[:, take].T
                if conf_i[I_FP_STOP]:
                    running &= ~hit
        x_final[:] = th.T
        fp_steps[:] = first
        div_steps[:] = div
        log_growth[:] = growth
        lyap_steps[:] = grown

    return kernel
