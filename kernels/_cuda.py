"""The fused CUDA kernel: numba-cuda, one thread per trajectory.

A thread block is one reduction group (REDUCE_GROUP trajectories), so the
timeseries sums are reduced in shared memory in a fixed tree order and
written once per block and recorded step. State stays in registers for all
T steps; histograms go to global memory with integer atomics (exact, so
order-independent). Runs on a GPU, or on the CPU under
``NUMBA_ENABLE_CUDASIM=1`` for tests.
"""
import math

import numba
import numpy as np

try:  # numba-cuda is an extra; the simulator swaps this module-level name at launch.
    from numba import cuda
except ImportError:  # pragma: no cover - depends on the install
    cuda = None

from ._observe import (
    I_FP_STOP, I_LYAP_ON, I_PATH_COUNT, I_PATH_EVERY, REDUCE_GROUP, TS_COUNT,
    TS_LOSS, TS_STATE, batch_group, diverged, histogram_bin, passed, region,
)

__all__ = ["make_cuda_kernel", "cuda_usable"]

# Threads check every this many steps whether their whole block has finished.
_EXIT_CHECK = 64


def cuda_usable():
    """True when numba-cuda is importable and sees a GPU (or the simulator)."""
    if cuda is None:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def make_cuda_kernel(advance, loss, dtype):
    """Compile the chunk kernel (same signature as the CPU one) for CUDA."""
    state_type = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
               boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
               lyap_steps, occupancy, hist, ts_partial, paths):
        n = x_init.shape[0]
        lane = cuda.threadIdx.x
        group = cuda.blockIdx.x
        j = group * REDUCE_GROUP + lane
        inside = j < n
        partial = cuda.shared.array((REDUCE_GROUP, 6), numba.float64)
        rounded = cuda.local.array(1, state_type)
        n_ts = ts_steps.shape[0]
        occ_on = occupancy.shape[0] > 0
        lyap_on = conf_i[I_LYAP_ON] != 0
        stop_on_pass = conf_i[I_FP_STOP] != 0
        path_count = conf_i[I_PATH_COUNT]
        path_every = conf_i[I_PATH_EVERY]
        i = i_first + j
        g = np.uint64(g_first) + np.uint64(j)
        x = x_init[j] if inside else x_init[0]
        running = inside
        first = -1
        div = -1
        growth = 0.0
        grown = 0
        if inside and i < path_count:
            paths[i, 0] = x
        next_ts = 0
        if n_ts > 0 and ts_steps[0] == 0:
            _stage(partial, lane, np.float64(x), p, inside)
            _reduce(partial, lane, ts_partial, group, 0)
            next_ts = 1
        for t in range(1, steps + 1):
            record_ts = next_ts < n_ts and ts_steps[next_ts] == t
            contributes = False
            if running:
                xn, jn = advance(x, g, np.uint64(t), key_lo, key_hi, p, d)
                rounded[0] = xn
                x = rounded[0]
                if diverged(x, conf_f):
                    div = t
                    running = False
                else:
                    if lyap_on:
                        growth += math.log(abs(jn))
                        grown += 1
                    stop = False
                    if first < 0 and passed(x, conf_i, conf_f):
                        first = t
                        stop = stop_on_pass
                    slot = histogram_bin(x, t, conf_i, conf_f)
                    if slot >= 0:
                        cuda.atomic.add(hist, (0, batch_group(i, conf_i), slot), 1)
                    if occ_on:
                        occupancy[j, region(x, boundaries)] += 1
                    if i < path_count and t % path_every == 0:
                        paths[i, t // path_every] = x
                    contributes = True
                    if stop:
                        running = False
            if record_ts:
                _stage(partial, lane, np.float64(x), p, contributes)
                _reduce(partial, lane, ts_partial, group, next_ts)
                next_ts += 1
            if t % _EXIT_CHECK == 0 and cuda.syncthreads_or(np.int32(running)) == 0:
                break
        if inside:
            x_final[j] = x
            fp_steps[j] = first
            div_steps[j] = div
            log_growth[j] = growth
            lyap_steps[j] = grown

    @cuda.jit(device=True)
    def _stage(partial, lane, v, p, counts):
        # Columns as kernels._observe: count, loss, (two-time-scale errors: 0), x, x^2.
        for c in range(6):
            partial[lane, c] = 0.0
        if counts:
            partial[lane, TS_COUNT] = 1.0
            partial[lane, TS_LOSS] = loss(v, p)
            partial[lane, TS_STATE] = v
            partial[lane, TS_STATE + 1] = v * v

    @cuda.jit(device=True)
    def _reduce(partial, lane, ts_partial, group, k):
        cuda.syncthreads()
        stride = REDUCE_GROUP // 2
        while stride > 0:
            if lane < stride:
                for c in range(6):
                    partial[lane, c] += partial[lane + stride, c]
            cuda.syncthreads()
            stride //= 2
        if lane == 0:
            for c in range(6):
                ts_partial[group, k, c] = partial[0, c]
        cuda.syncthreads()

    return kernel
