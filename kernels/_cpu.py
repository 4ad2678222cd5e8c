"""The fused CPU kernel: numba, parallel over groups of trajectories.

Each parallel task takes one reduction group (REDUCE_GROUP trajectories) and
walks it in blocks of LANES trajectories. A block's states live in small
lane arrays for all T steps; within a step the update of all lanes is one
branch-free loop that LLVM vectorises (Philox and the normal transform
included), and the observable bookkeeping is a second, scalar loop. Nothing
per step is stored in memory.
"""
import math

import numba
import numpy as np

from ._observe import (
    I_FP_STOP, I_HIST_BINS, I_LYAP_ON, I_PATH_COUNT, I_PATH_EVERY, REDUCE_GROUP,
    batch_group, diverged, histogram_bin, passed, region,
)

__all__ = ["make_cpu_kernel", "LANES"]

LANES = 16
_BLOCKS = REDUCE_GROUP // LANES


def make_cpu_kernel(advance, loss, cache=False):
    """Compile the chunk kernel for one (model, dynamics) pair on the CPU.

    Signature of the returned function (all outputs preallocated; see
    kernels.launch_cpu for shapes):
    kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
           boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
           lyap_steps, occupancy, hist, ts_partial, paths)
    """

    @numba.njit(parallel=True, error_model="numpy", cache=cache)
    def kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
               boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
               lyap_steps, occupancy, hist, ts_partial, paths):
        n = x_init.shape[0]
        n_groups = (n + REDUCE_GROUP - 1) // REDUCE_GROUP
        n_ts = ts_steps.shape[0]
        occ_on = occupancy.shape[0] > 0
        n_regions = occupancy.shape[1]
        lyap_on = conf_i[I_LYAP_ON] != 0
        stop_on_pass = conf_i[I_FP_STOP] != 0
        path_count = conf_i[I_PATH_COUNT]
        path_every = conf_i[I_PATH_EVERY]
        bins = conf_i[I_HIST_BINS]
        for group in numba.prange(n_groups):
            thread = numba.get_thread_id()
            for block in range(_BLOCKS):
                base = group * REDUCE_GROUP + block * LANES
                if base >= n:
                    break
                lanes = min(LANES, n - base)
                x = np.zeros(LANES, dtype=x_init.dtype)
                x_next = np.zeros(LANES, dtype=x_init.dtype)
                jac = np.zeros(LANES)
                running = np.zeros(LANES, dtype=np.bool_)
                first = np.full(LANES, -1, dtype=np.int64)
                div = np.full(LANES, -1, dtype=np.int64)
                growth = np.zeros(LANES)
                grown = np.zeros(LANES, dtype=np.int64)
                occ = np.zeros((LANES, max(n_regions, 1)), dtype=np.int64)
                for lane in range(lanes):
                    x[lane] = x_init[base + lane]
                    running[lane] = True
                g0 = np.uint64(g_first + base)
                next_ts = 0
                if n_ts > 0 and ts_steps[0] == 0:
                    for lane in range(lanes):
                        value = np.float64(x[lane])
                        ts_partial[group, 0, 0] += value
                        ts_partial[group, 0, 1] += value * value
                        ts_partial[group, 0, 2] += loss(value, p)
                        ts_partial[group, 0, 3] += 1.0
                    next_ts = 1
                for lane in range(lanes):
                    i = i_first + base + lane
                    if i < path_count:
                        paths[i, 0] = x[lane]
                for t in range(1, steps + 1):
                    tu = np.uint64(t)
                    # Vectorised update of every lane (finished lanes are computed and discarded).
                    for lane in range(LANES):
                        xn, jn = advance(x[lane], g0 + np.uint64(lane), tu, key_lo, key_hi, p, d)
                        x_next[lane] = xn
                        jac[lane] = jn
                    record_ts = next_ts < n_ts and ts_steps[next_ts] == t
                    any_running = False
                    for lane in range(lanes):
                        if not running[lane]:
                            continue
                        value = x_next[lane]
                        x[lane] = value
                        if diverged(value, conf_f):
                            div[lane] = t
                            running[lane] = False
                            continue
                        if lyap_on:
                            growth[lane] += math.log(abs(jac[lane]))
                            grown[lane] += 1
                        stop = False
                        if first[lane] < 0 and passed(value, conf_i, conf_f):
                            first[lane] = t
                            stop = stop_on_pass
                        i = i_first + base + lane
                        slot = histogram_bin(value, t, conf_i, conf_f)
                        if slot >= 0:
                            hist[thread, batch_group(i, conf_i), slot] += 1
                        if occ_on:
                            occ[lane, region(value, boundaries)] += 1
                        if record_ts:
                            v = np.float64(value)
                            ts_partial[group, next_ts, 0] += v
                            ts_partial[group, next_ts, 1] += v * v
                            ts_partial[group, next_ts, 2] += loss(v, p)
                            ts_partial[group, next_ts, 3] += 1.0
                        if i < path_count and t % path_every == 0:
                            paths[i, t // path_every] = value
                        if stop:
                            running[lane] = False
                        else:
                            any_running = True
                    if record_ts:
                        next_ts += 1
                    if not any_running:
                        break
                for lane in range(lanes):
                    j = base + lane
                    x_final[j] = x[lane]
                    fp_steps[j] = first[lane]
                    div_steps[j] = div[lane]
                    log_growth[j] = growth[lane]
                    lyap_steps[j] = grown[lane]
                    if occ_on:
                        for k in range(n_regions):
                            occupancy[j, k] = occ[lane, k]

    return kernel
