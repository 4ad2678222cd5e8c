"""The CUDA kernel template: numba-cuda, one thread per trajectory.

A thread's state, auxiliary buffers, tangent vector and scratch are
thread-local [rows, 1] arrays (lane 0 of kernels._models' layout) whose sizes
are compile-time constants, so for a small state they live in registers for
all T steps. A thread block is one reduction group (REDUCE_GROUP
trajectories): the timeseries sums are reduced column by column through one
shared buffer in a fixed tree order and written once per block and recorded
step. Histograms go to global memory with integer atomics (exact, so
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
    F_DIV_THRESHOLD, I_COORD, I_FP_STOP, I_PATH_COUNT, I_PATH_EVERY, REDUCE_GROUP, TS_COUNT,
    TS_LOSS, TS_SLOW, TS_STATE, TS_TRACKING, batch_group, histogram_bin, passed, region,
    no_error, watched,
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


def make_cuda_kernel(step, model, dtype, tangent=False):
    """Compile the chunk kernel (same signature as the CPU one) for CUDA."""
    dim, m = model.dim, model.x_dim
    loss = model.loss
    tracking_error = model.tracking_error or no_error
    slow_error = model.slow_error or no_error
    two_scale = m > 0
    state_type = numba.from_dtype(np.dtype(dtype))
    aux_rows = 1
    buf_rows = 3 * dim      # local array shapes must be compile-time constants

    @cuda.jit(device=True)
    def reduce_column(shared, lane, value, ts_partial, group, k, column):
        shared[lane] = value
        cuda.syncthreads()
        stride = REDUCE_GROUP // 2
        while stride > 0:
            if lane < stride:
                shared[lane] += shared[lane + stride]
            cuda.syncthreads()
            stride //= 2
        if lane == 0:
            ts_partial[group, k, column] = shared[0]
        cuda.syncthreads()

    @cuda.jit
    def kernel(x_init, g_first, i_first, steps, key_lo, key_hi, p, d, conf_i, conf_f,
               boundaries, ts_steps, x_final, fp_steps, div_steps, log_growth,
               lyap_steps, occupancy, hist, ts_partial, paths):
        n = x_init.shape[0]
        lane = cuda.threadIdx.x
        group = cuda.blockIdx.x
        j = group * REDUCE_GROUP + lane
        inside = j < n
        shared = cuda.shared.array(REDUCE_GROUP, numba.float64)
        th = cuda.local.array((dim, 1), state_type)
        nxt = cuda.local.array((dim, 1), numba.float64)
        aux = cuda.local.array((aux_rows, 1), numba.float64)
        nxt_aux = cuda.local.array((aux_rows, 1), numba.float64)
        v = cuda.local.array((dim, 1), numba.float64)
        buf = cuda.local.array((buf_rows, 1), numba.float64)
        n_ts = ts_steps.shape[0]
        occ_on = occupancy.shape[0] > 0
        stop_on_pass = conf_i[I_FP_STOP] != 0
        path_count = conf_i[I_PATH_COUNT]
        path_every = conf_i[I_PATH_EVERY]
        coord = conf_i[I_COORD]
        threshold = conf_f[F_DIV_THRESHOLD]
        eps = p[1] if two_scale else 1.0
        i = i_first + j
        g = np.uint64(g_first) + np.uint64(j)
        row = j if inside else 0
        for k in range(dim):
            th[k, 0] = x_init[row, k]
            v[k, 0] = 1.0 / math.sqrt(dim)
        aux[0, 0] = 0.0
        running = inside
        first = -1
        div = -1
        growth = 0.0
        grown = 0
        next_ts = 0
        if inside and i < path_count:
            for k in range(dim):
                paths[i, 0, k] = th[k, 0]
        for t in range(0, steps + 1):
            contributes = running
            if t > 0 and running:
                norm = step(th, aux, v, nxt, nxt_aux, buf, 0, g, np.uint64(t), key_lo, key_hi,
                            p, d)
                finite = True
                for k in range(dim):
                    th[k, 0] = nxt[k, 0]
                    finite = finite and math.isfinite(th[k, 0])
                for k in range(aux_rows):
                    aux[k, 0] = nxt_aux[k, 0]
                value = watched(th, 0, coord)
                if not (finite and abs(value) <= threshold):
                    div = t
                    running = False
                    contributes = False
                else:
                    if tangent:
                        growth += math.log(norm)
                        grown += 1
                    if first < 0 and passed(value, conf_i, conf_f):
                        first = t
                        if stop_on_pass:
                            running = False
                    batch = batch_group(i, conf_i)
                    for k in range(dim):
                        slot = histogram_bin(th[k, 0], t, conf_i, conf_f)
                        if slot >= 0:
                            cuda.atomic.add(hist, (0, batch, k, slot), 1)
                    if occ_on:
                        occupancy[j, region(value, boundaries)] += 1
                    if i < path_count and t % path_every == 0:
                        for k in range(dim):
                            paths[i, t // path_every, k] = th[k, 0]
            if next_ts < n_ts and ts_steps[next_ts] == t:
                # Column by column (kernels._observe TS_*), each value computed where it is
                # reduced: no per-thread array of columns, so the state stays in registers.
                count = 1.0 if contributes else 0.0
                reduce_column(shared, lane, count, ts_partial, group, next_ts, TS_COUNT)
                value = loss(th, 0, p) if contributes else 0.0
                reduce_column(shared, lane, value, ts_partial, group, next_ts, TS_LOSS)
                tracking = 0.0
                slow = 0.0
                if two_scale and contributes:
                    tracking = tracking_error(th, 0, p, eps)
                    slow = slow_error(th, 0, p, eps)
                reduce_column(shared, lane, tracking, ts_partial, group, next_ts, TS_TRACKING)
                reduce_column(shared, lane, slow, ts_partial, group, next_ts, TS_SLOW)
                for k in range(dim):
                    x = np.float64(th[k, 0]) if contributes else 0.0
                    reduce_column(shared, lane, x, ts_partial, group, next_ts, TS_STATE + 2 * k)
                    reduce_column(shared, lane, x * x, ts_partial, group, next_ts,
                                  TS_STATE + 2 * k + 1)
                next_ts += 1
            if t % _EXIT_CHECK == 0 and cuda.syncthreads_or(np.int32(running)) == 0:
                break
        if inside:
            for k in range(dim):
                x_final[j, k] = th[k, 0]
            fp_steps[j] = first
            div_steps[j] = div
            log_growth[j] = growth
            lyap_steps[j] = grown

    return kernel
