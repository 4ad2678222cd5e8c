"""The numpy backend: a readable reference with the same random words.

It runs the very same model, dynamics, RNG and observable functions as the
compiled backends, applied to whole arrays of trajectories, one Python-level
loop iteration per step. Slow, and meant to be: it is what the fast kernels
are checked against.
"""
import numpy as np

from ._observe import (
    F_DIV_THRESHOLD, F_FP_LEVEL, F_HIST_HI, F_HIST_LO, FP_ABOVE, FP_BELOW, I_FP_MODE,
    I_FP_STOP, I_HIST_BINS, I_HIST_BURN, I_HIST_GROUPS, I_HIST_ON, I_HIST_THIN, I_LYAP_ON,
    I_PATH_COUNT, I_PATH_EVERY, I_PER_POINT, REDUCE_GROUP, TS_COUNT, TS_LOSS, TS_STATE,
)

__all__ = ["make_numpy_kernel", "trajectory_indices", "histogram_slots", "first_passage_hits"]


def trajectory_indices(n, g_first, i_first, conf_i):
    """(local, point-local, global index, reduction group, histogram batch) of a chunk."""
    local = np.arange(n)
    point_index = i_first + local
    g = np.uint64(g_first) + local.astype(np.uint64)
    batch = point_index * conf_i[I_HIST_GROUPS] // conf_i[I_PER_POINT]
    return local, point_index, g, local // REDUCE_GROUP, batch


def histogram_slots(value, t, conf_i, conf_f):
    """kernels._observe.histogram_bin on an array of states; None when step t is not sampled."""
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


def make_numpy_kernel(advance, loss):
    """Chunk kernel with the CPU kernel's signature, in plain numpy."""

    def kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
               boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
               lyap_steps, occupancy, hist, ts_partial, paths):
        n = x_init.shape[0]
        dtype = x_init.dtype
        x = x_init.copy()
        local, point_index, g, group, batch = trajectory_indices(n, g_first, i_first, conf_i)
        running = np.ones(n, dtype=bool)
        first = np.full(n, -1, dtype=np.int64)
        div = np.full(n, -1, dtype=np.int64)
        growth = np.zeros(n)
        grown = np.zeros(n, dtype=np.int64)
        ts_index = {int(s): k for k, s in enumerate(ts_steps)}
        path_rows = point_index < conf_i[I_PATH_COUNT]
        every = conf_i[I_PATH_EVERY]

        def record_ts(k, where):
            values = x[where].astype(np.float64)
            # Columns as kernels._observe: count, loss, (two-time-scale errors), x, x^2.
            for column, contrib in ((TS_COUNT, np.ones_like(values)), (TS_LOSS, loss(values, p)),
                                    (TS_STATE, values), (TS_STATE + 1, values * values)):
                np.add.at(ts_partial[:, k, column], group[where], contrib)

        if 0 in ts_index:
            record_ts(ts_index[0], running)
        paths[point_index[path_rows], 0] = x[path_rows]
        # Diverging and stopped trajectories make inf/NaN that are masked out below.
        with np.errstate(all="ignore"):
            for t in range(1, steps + 1):
                if not running.any():
                    break
                x_next, jac = advance(x, g, np.uint64(t), key_lo, key_hi, p, d)
                x_next = np.asarray(x_next).astype(dtype)
                x = np.where(running, x_next, x)
                value = x.astype(np.float64)
                bad = running & ~(np.abs(value) <= conf_f[F_DIV_THRESHOLD])
                div[bad] = t
                running &= ~bad
                if conf_i[I_LYAP_ON]:
                    growth[running] += np.log(np.abs(np.broadcast_to(jac, x.shape)[running]))
                    grown[running] += 1
                hit = first_passage_hits(value, running, first, conf_i, conf_f)
                first[hit] = t
                slot = histogram_slots(value, t, conf_i, conf_f)
                if slot is not None:
                    np.add.at(hist[0], (batch[running], slot[running]), 1)
                if occupancy.shape[0] > 0:
                    regions = np.searchsorted(boundaries, value, side="right")
                    np.add.at(occupancy, (local[running], regions[running]), 1)
                if t in ts_index:
                    record_ts(ts_index[t], running)
                if t % every == 0:
                    rows = path_rows & running
                    paths[point_index[rows], t // every] = x[rows]
                if conf_i[I_FP_STOP]:
                    running &= ~hit
        x_final[:] = x
        fp_steps[:] = first
        div_steps[:] = div
        log_growth[:] = growth
        lyap_steps[:] = grown

    return kernel
