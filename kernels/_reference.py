"""The numpy backend: a readable reference with the same random words.

It runs the very same model, dynamics and RNG functions as the compiled
backends, on [d, n] arrays of all trajectories at once (lane ``slice(None)``),
one Python-level loop iteration per step. Its bookkeeping of the observables
is written here independently, in array form, from their definitions in
kernels._observe (docs/SPEC.md). Slow, and meant to be: it is what the
fast kernels are checked against.
"""
import numpy as np

from ._observe import (
    COORD_NORM, F_DIV_THRESHOLD, F_FP_LEVEL, F_HIST_HI, F_HIST_LO, FP_ABOVE, FP_BELOW, I_COORD,
    I_FP_MODE, I_FP_STOP, I_HIST_BINS, I_HIST_BURN, I_HIST_GROUPS, I_HIST_ON, I_HIST_THIN,
    I_PATH_COUNT, I_PATH_EVERY, I_PER_POINT, N_CONF_F, REDUCE_GROUP, series_rows, slot_rows,
    tracked_initial,
)

__all__ = ["make_numpy_kernel"]

_ALL = slice(None)


def histogram_slots(value, t, conf_i, conf_f):
    """The histogram slot of each state (see kernels._observe.histogram_bin); None when
    step t is not sampled."""
    burn, thin = conf_i[I_HIST_BURN], conf_i[I_HIST_THIN]
    if not conf_i[I_HIST_ON] or t < burn or (t - burn) % thin != 0:
        return None
    bins, lo, hi = conf_i[I_HIST_BINS], conf_f[F_HIST_LO], conf_f[F_HIST_HI]
    scaled = np.nan_to_num((value - lo) / (hi - lo) * bins, posinf=0, neginf=0)
    slot = np.minimum(scaled.astype(np.int64), bins - 1)
    return np.where(value < lo, bins, np.where(value >= hi, bins + 1, slot))


def first_passage_hits(value, running, first, conf_i, conf_f):
    """Running trajectories that reach the first-passage target set for the first time."""
    mode = conf_i[I_FP_MODE]
    if mode == FP_ABOVE:
        return running & (first < 0) & (value >= conf_f[F_FP_LEVEL])
    if mode == FP_BELOW:
        return running & (first < 0) & (value <= conf_f[F_FP_LEVEL])
    return np.zeros(value.shape, dtype=bool)


def make_numpy_kernel(step, model, aux_rows=0, tangent=False, tracked=(), buf_rows=None,
                      rnd_rows=1, rnd_dtype=np.float64):
    """Chunk kernel with the CPU kernel's signature, in plain numpy.

    ``tracked`` plug-in observables run their array-form ``make_reference`` here, not
    the compiled update.
    """
    dim, m = model.dim, model.x_dim
    references = [obs.make_reference(model) for obs in tracked]
    rows_of = [slot_rows(obs, model.dim) for obs in tracked]
    conf_cols = [obs.n_conf for obs in tracked]
    init = tracked_initial(tracked, model.dim)[:sum(rows_of)]
    series = series_rows(tracked, model.dim)

    def kernel(chunk, params, conf, out):
        g_first, i_first, t_first, t_last, final, key_lo, key_hi = chunk
        p, d = params
        conf_i, conf_f, boundaries, ts_steps = conf
        (x_final, fp_steps, div_steps, log_growth, lyap_steps, occupancy, hist, ts_partial,
         tracked_slots, aux_state, tangent_state, product_state, paths) = out
        # The state after step t_first, carried in the outputs from slice to slice.
        n = x_final.shape[0]
        dtype = x_final.dtype
        th = x_final.T.copy()                                  # [d, n], the state's dtype
        pu, du = p.astype(dtype), d.astype(dtype)              # the step's parameters
        aux = aux_state.T.copy()
        v = tangent_state.T.copy()
        local = np.arange(n)
        point_index = i_first + local
        g = np.uint64(g_first) + local.astype(np.uint64)
        group = local // REDUCE_GROUP
        batch = point_index * conf_i[I_HIST_GROUPS] // conf_i[I_PER_POINT]
        first = fp_steps.copy()
        div = div_steps.copy()
        running = (div < 0) & ~((first >= 0) & bool(conf_i[I_FP_STOP]))
        growth = log_growth.copy()
        grown = lyap_steps.copy()
        coord = conf_i[I_COORD]
        ts_index = {int(s): k for k, s in enumerate(ts_steps)}
        rows = point_index < conf_i[I_PATH_COUNT]
        every = conf_i[I_PATH_EVERY]
        eps = p[1] if m > 0 else 1.0

        def watched(state):
            return np.sqrt((state * state).sum(axis=0)) if coord == COORD_NORM else state[coord]

        acc = (np.repeat(init[:, None], n, axis=1) if t_first == 0
               else tracked_slots[:, :len(init)].T.copy())

        def track(t, where):
            row, col = 0, N_CONF_F
            for reference, rows, cols in zip(references, rows_of, conf_cols):
                reference(acc[row:row + rows], th.astype(np.float64), t, p, conf_f, col, where)
                row, col = row + rows, col + cols

        def record(k, where):
            state = th.astype(np.float64)
            sums = [np.ones(n), model.loss(state, _ALL, p)]
            if m > 0:
                sums += [model.tracking_error(state, _ALL, p, eps),
                         model.slow_error(state, _ALL, p, eps)]
            else:
                sums += [np.zeros(n), np.zeros(n)]
            for c in range(dim):
                sums += [state[c], state[c] * state[c]]
            for row in series:                     # plug-in slots, as they are at step k
                sums += [acc[row], acc[row] * acc[row]]
            for column, contrib in enumerate(sums):
                np.add.at(ts_partial[:, k, column], group[where],
                          np.broadcast_to(contrib, (n,))[where])

        if t_first == 0:
            track(0, running)
            if 0 in ts_index:
                record(ts_index[0], running)
            paths[point_index[rows], 0, :] = th[:, rows].T
        # Diverging and stopped trajectories make inf/NaN that are masked out below.
        buf = np.empty((buf_rows or 2 * dim, n), dtype=dtype)
        rnd = np.empty((rnd_rows, n), dtype=rnd_dtype)      # a group's random values stay in it
        with np.errstate(all="ignore"):
            for t in range(t_first + 1, t_last + 1):
                if not running.any():
                    break
                nxt, nxt_aux = np.empty((dim, n), dtype=dtype), aux.copy()
                before = v.copy()
                norm = step(th, aux, v, nxt, nxt_aux, buf, rnd, _ALL, g,
                            np.uint64(t), key_lo, key_hi, pu, du, t == t_first + 1)
                v = np.where(running, v, before)
                th = np.where(running, nxt, th)
                aux = np.where(running, nxt_aux, aux)
                value = watched(th.astype(np.float64))
                bad = running & (~np.isfinite(th).all(axis=0)
                                 | ~(np.abs(value) <= conf_f[F_DIV_THRESHOLD]))
                div[bad] = t
                running &= ~bad
                if tangent:
                    growth[running] += np.log(np.broadcast_to(norm, (n,))[running])
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
                track(t, running)
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
        aux_state[:] = aux[:aux_state.shape[1]].T
        tangent_state[:] = v.T
        tracked_slots[:, :len(init)] = acc.T

    return kernel
