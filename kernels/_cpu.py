"""The fused CPU kernel: numba, parallel over groups of trajectories.

Each parallel task takes one reduction group (REDUCE_GROUP trajectories) and
walks it in blocks of LANES trajectories. A block's states live in small
lane arrays for all T steps. Every step runs one branch-free loop over the
lanes that LLVM vectorises: the update (Philox and the normal transform
included), the commit of running lanes and the flags of the rare events
(divergence, first passage). Only flagged lanes, and observables that are due
at this step (histogram, occupancy, timeseries, paths), take scalar loops. Nothing per step is stored in memory.

The tangent growth is kept as a running product of |d theta_t/d theta_{t-1}|
folded into the log sum whenever it leaves [2**-500, 2**500] (and at the
end), so no libm log is called per step; the sum equals the per-step sum of
logs up to rounding.
"""
import math

import numba
import numpy as np

from ._jit import jitable
from ._observe import (
    F_DIV_THRESHOLD, F_FP_LEVEL, FP_ABOVE, FP_BELOW, I_FP_MODE, I_FP_STOP,
    I_HIST_BURN, I_HIST_ON, I_HIST_THIN, I_LYAP_ON, I_PATH_COUNT, I_PATH_EVERY, REDUCE_GROUP,
    TS_COUNT, TS_LOSS, TS_STATE, batch_group, histogram_bin, region,
)

__all__ = ["make_cpu_kernel", "LANES"]

LANES = 64
_BLOCKS = REDUCE_GROUP // LANES
_FOLD_HI = 2.0**500
_FOLD_LO = 2.0**-500


@jitable(inline=True)
def _commit(lane, x, x_next, running, unpassed, flag, threshold, sign, signed_level):
    """Commit lane's update if it is running (rounded to the state dtype through
    x_next) and flag its events: 2 diverged, 1 first passage, 0 none. Branch-free,
    so the lane loops that call it vectorise."""
    r = running[lane]
    value = x_next[lane] if r != 0 else x[lane]
    x[lane] = value
    bad = np.int64(not (abs(value) <= threshold))
    hit = unpassed[lane] * np.int64(sign * value >= signed_level)
    f = r * (bad * 2 + hit)
    flag[lane] = f
    return f


def compile_cpu(kernel, name, cache):
    """Compile a parallel chunk kernel for the CPU under a name unique to its variant.

    numba names a compiled function by its qualname and a per-process counter,
    so two different kernels compiled in different processes could carry the
    same symbol; loaded together from the on-disk cache, one kernel then ran the
    other's code. A name derived from the kernel variant keeps them apart.
    """
    kernel.__name__ = kernel.__qualname__ = name
    return numba.njit(parallel=True, error_model="numpy", cache=cache)(kernel)


def make_cpu_kernel(advance, loss, cache=False, split_update=False, name="sgdsim_kernel"):
    """Compile the chunk kernel for one (model, dynamics) pair on the CPU.

    ``split_update`` puts the update in a loop of its own, apart from the
    bookkeeping: an update that gathers from the parameter vector (a random
    sample's curvature) next to the bookkeeping's stores does not vectorise
    fused, and does split (1.7x on SGD over quadratic_finite_sum); a fused
    loop is 2-3x faster for every other update.

    Signature of the returned function (all outputs preallocated; see
    kernels.ChunkKernel.run for shapes):
    kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
           boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
           lyap_steps, occupancy, hist, ts_partial, paths)
    """

    def kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
               boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
               lyap_steps, occupancy, hist, ts_partial, paths):
        n = x_init.shape[0]
        n_groups = (n + REDUCE_GROUP - 1) // REDUCE_GROUP
        n_ts = ts_steps.shape[0]
        occ_on = occupancy.shape[0] > 0
        n_regions = max(occupancy.shape[1], 1)
        lyap_on = conf_i[I_LYAP_ON] != 0
        stop_on_pass = conf_i[I_FP_STOP] != 0
        path_count = conf_i[I_PATH_COUNT]
        path_every = conf_i[I_PATH_EVERY]
        hist_on = conf_i[I_HIST_ON] != 0
        burn_in = conf_i[I_HIST_BURN]
        thin = conf_i[I_HIST_THIN]
        threshold = conf_f[F_DIV_THRESHOLD]
        # First passage as one comparison: sign * x >= sign * level (never true when off).
        mode = conf_i[I_FP_MODE]
        sign = 1.0 if mode == FP_ABOVE else (-1.0 if mode == FP_BELOW else 0.0)
        signed_level = sign * conf_f[F_FP_LEVEL] if mode != 0 else 1.0
        for group in numba.prange(n_groups):
            thread = numba.get_thread_id()
            for block in range(_BLOCKS):
                base = group * REDUCE_GROUP + block * LANES
                if base >= n:
                    break
                lanes = min(LANES, n - base)
                paths_here = i_first + base < path_count
                x = np.zeros(LANES, dtype=x_init.dtype)
                x_next = np.zeros(LANES, dtype=x_init.dtype)
                running = np.zeros(LANES, dtype=np.int64)
                unpassed = np.ones(LANES, dtype=np.int64)
                flag = np.zeros(LANES, dtype=np.int64)
                first = np.full(LANES, -1, dtype=np.int64)
                div = np.full(LANES, -1, dtype=np.int64)
                growth = np.zeros(LANES)
                product = np.ones(LANES)
                grown = np.zeros(LANES, dtype=np.int64)
                occ = np.zeros((LANES, n_regions), dtype=np.int64)
                for lane in range(lanes):
                    x[lane] = x_init[base + lane]
                    running[lane] = 1
                g0 = np.uint64(g_first + base)
                next_ts = 0
                if n_ts > 0 and ts_steps[0] == 0:
                    for lane in range(lanes):
                        value = np.float64(x[lane])
                        ts_partial[group, 0, TS_COUNT] += 1.0
                        ts_partial[group, 0, TS_LOSS] += loss(value, p)
                        ts_partial[group, 0, TS_STATE] += value
                        ts_partial[group, 0, TS_STATE + 1] += value * value
                    next_ts = 1
                if paths_here:
                    for lane in range(lanes):
                        if i_first + base + lane < path_count:
                            paths[i_first + base + lane, 0] = x[lane]
                for t in range(1, steps + 1):
                    tu = np.uint64(t)
                    # 1. One vectorised, branch-free loop over all lanes: the update (finished
                    #    lanes are computed and discarded), the commit of running lanes
                    #    (rounded to the state dtype through x_next), the event flags
                    #    (2: diverged, 1: first passage) and the tangent product. Two variants
                    #    so that the loop without the tangent carries no test of lyap_on.
                    events = 0
                    folds = 0
                    if lyap_on:
                        for lane in range(LANES):
                            xn, jn = advance(x[lane], g0 + np.uint64(lane), tu, key_lo, key_hi,
                                             p, d)
                            x_next[lane] = xn
                            f = _commit(lane, x, x_next, running, unpassed, flag, threshold,
                                        sign, signed_level)
                            events |= f
                            counts = running[lane] * np.int64(f < 2)
                            product[lane] *= abs(jn) if counts != 0 else 1.0
                            grown[lane] += counts
                            folds |= np.int64(not (_FOLD_LO <= product[lane] <= _FOLD_HI))
                    elif split_update:
                        for lane in range(LANES):
                            xn, jn = advance(x[lane], g0 + np.uint64(lane), tu, key_lo, key_hi,
                                             p, d)
                            x_next[lane] = xn
                        for lane in range(LANES):
                            f = _commit(lane, x, x_next, running, unpassed, flag, threshold,
                                        sign, signed_level)
                            events |= f
                    else:
                        for lane in range(LANES):
                            xn, jn = advance(x[lane], g0 + np.uint64(lane), tu, key_lo, key_hi,
                                             p, d)
                            x_next[lane] = xn
                            f = _commit(lane, x, x_next, running, unpassed, flag, threshold,
                                        sign, signed_level)
                            events |= f
                    if folds != 0:
                        for lane in range(LANES):
                            if not (_FOLD_LO <= product[lane] <= _FOLD_HI):
                                growth[lane] += math.log(product[lane])
                                product[lane] = 1.0
                    # 3. Rare events, scalar: divergence stops at once, first passage is noted.
                    stopping = False
                    if events != 0:
                        for lane in range(lanes):
                            if flag[lane] >= 2:
                                div[lane] = t
                                running[lane] = 0
                            elif flag[lane] == 1:
                                first[lane] = t
                                unpassed[lane] = 0
                                stopping = stopping or stop_on_pass
                    # 4. Observables due at this step, for lanes still running.
                    if hist_on and t >= burn_in and (t - burn_in) % thin == 0:
                        for lane in range(lanes):
                            if running[lane] != 0:
                                slot = histogram_bin(x[lane], t, conf_i, conf_f)
                                batch = batch_group(i_first + base + lane, conf_i)
                                hist[thread, batch, slot] += 1
                    if occ_on:
                        for lane in range(lanes):
                            if running[lane] != 0:
                                occ[lane, region(x[lane], boundaries)] += 1
                    if next_ts < n_ts and ts_steps[next_ts] == t:
                        for lane in range(lanes):
                            if running[lane] != 0:
                                value = np.float64(x[lane])
                                ts_partial[group, next_ts, TS_COUNT] += 1.0
                                ts_partial[group, next_ts, TS_LOSS] += loss(value, p)
                                ts_partial[group, next_ts, TS_STATE] += value
                                ts_partial[group, next_ts, TS_STATE + 1] += value * value
                        next_ts += 1
                    if paths_here and t % path_every == 0:
                        for lane in range(lanes):
                            i = i_first + base + lane
                            if running[lane] != 0 and i < path_count:
                                paths[i, t // path_every] = x[lane]
                    # 5. A first passage with stop ends the trajectory after step t is recorded.
                    if stopping:
                        for lane in range(lanes):
                            if flag[lane] == 1:
                                running[lane] = 0
                    if events != 0:
                        alive = 0
                        for lane in range(lanes):
                            alive += running[lane]
                        if alive == 0:
                            break
                for lane in range(lanes):
                    j = base + lane
                    x_final[j] = x[lane]
                    fp_steps[j] = first[lane]
                    div_steps[j] = div[lane]
                    log_growth[j] = growth[lane] + math.log(product[lane])
                    lyap_steps[j] = grown[lane]
                    if occ_on:
                        for k in range(occupancy.shape[1]):
                            occupancy[j, k] = occ[lane, k]

    return compile_cpu(kernel, name, cache)
