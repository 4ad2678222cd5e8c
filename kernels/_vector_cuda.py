"""The fused CUDA kernel for a d-dimensional state: one thread per trajectory.

The state, scratch buffers and tangent vector are thread-local arrays whose
size d is a compile-time constant of the kernel (one specialisation per d).
Timeseries sums are reduced column by column through one shared buffer in a
fixed tree order per block (a block is one reduction group), so shared memory
stays at REDUCE_GROUP doubles for any d. Same conventions as
kernels._vector_cpu, whose docstring describes the tangent dynamics.
"""
import math

import numba
import numpy as np

from ._cuda import cuda
from ._observe import (
    I_COORD, I_FP_STOP, I_LYAP_ON, I_PATH_COUNT, I_PATH_EVERY, REDUCE_GROUP, TS_COUNT, TS_LOSS,
    TS_SLOW, TS_STATE, TS_TRACKING, batch_group, diverged, histogram_bin, passed, region,
)
from ._vector_cpu import _watched
from ._vector_dynamics import make_tangent_step

__all__ = ["make_vector_cuda_kernel"]

_EXIT_CHECK = 64


def make_vector_cuda_kernel(advance, model, dtype):
    """Compile the vector chunk kernel (same signature as the CPU one) for CUDA."""
    dim, m = model.dim, model.x_dim
    tangent_step = make_tangent_step(advance, dim)
    loss, tracking_error, slow_error = model.loss, model.tracking_error, model.slow_error
    two_scale = m > 0
    state_type = numba.from_dtype(np.dtype(dtype))

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
        th = cuda.local.array(dim, state_type)
        nxt = cuda.local.array(dim, numba.float64)
        grad_buf = cuda.local.array(dim, numba.float64)
        noise_buf = cuda.local.array(dim, numba.float64)
        tangent = cuda.local.array(dim, numba.float64)
        scratch = cuda.local.array((4, dim), numba.float64)
        n_ts = ts_steps.shape[0]
        occ_on = occupancy.shape[0] > 0
        lyap_on = conf_i[I_LYAP_ON] != 0
        stop_on_pass = conf_i[I_FP_STOP] != 0
        path_count = conf_i[I_PATH_COUNT]
        path_every = conf_i[I_PATH_EVERY]
        coord = conf_i[I_COORD]
        i = i_first + j
        g = np.uint64(g_first) + np.uint64(j)
        row = j if inside else 0
        for k in range(dim):
            th[k] = x_init[row, k]
            tangent[k] = 1.0 / math.sqrt(dim)
        running = inside
        first = -1
        div = -1
        growth = 0.0
        grown = 0
        next_ts = 0
        if inside and i < path_count:
            for k in range(dim):
                paths[i, 0, k] = th[k]
        for t in range(0, steps + 1):
            contributes = running
            if t > 0 and running:
                tu = np.uint64(t)
                advance(th, nxt, g, tu, key_lo, key_hi, p, d, grad_buf, noise_buf)
                norm = 1.0
                if lyap_on:
                    norm = tangent_step(th, tangent, scratch, g, tu, key_lo, key_hi, p, d,
                                        grad_buf, noise_buf)
                finite = True
                for k in range(dim):
                    th[k] = nxt[k]
                    finite = finite and math.isfinite(th[k])
                value = _watched(th, coord)
                if not finite or diverged(value, conf_f):
                    div = t
                    running = False
                    contributes = False
                else:
                    if lyap_on:
                        growth += math.log(norm)
                        grown += 1
                    if first < 0 and passed(value, conf_i, conf_f):
                        first = t
                        if stop_on_pass:
                            running = False
                    batch = batch_group(i, conf_i)
                    for k in range(dim):
                        slot = histogram_bin(th[k], t, conf_i, conf_f)
                        if slot >= 0:
                            cuda.atomic.add(hist, (0, batch, k, slot), 1)
                    if occ_on:
                        occupancy[j, region(value, boundaries)] += 1
                    if i < path_count and t % path_every == 0:
                        for k in range(dim):
                            paths[i, t // path_every, k] = th[k]
            if next_ts < n_ts and ts_steps[next_ts] == t:
                # Column by column (kernels._observe TS_*), each value computed where it is
                # reduced: no per-thread array of columns, so the state stays in registers.
                count = 1.0 if contributes else 0.0
                reduce_column(shared, lane, count, ts_partial, group, next_ts, TS_COUNT)
                value = loss(th, p) if contributes else 0.0
                reduce_column(shared, lane, value, ts_partial, group, next_ts, TS_LOSS)
                tracking = 0.0
                slow = 0.0
                if two_scale and contributes:
                    tracking = tracking_error(th[:m], th[m:], p[1], p)
                    slow = slow_error(th[m:], p[1], p)
                reduce_column(shared, lane, tracking, ts_partial, group, next_ts, TS_TRACKING)
                reduce_column(shared, lane, slow, ts_partial, group, next_ts, TS_SLOW)
                for k in range(dim):
                    v = np.float64(th[k]) if contributes else 0.0
                    reduce_column(shared, lane, v, ts_partial, group, next_ts, TS_STATE + 2 * k)
                    reduce_column(shared, lane, v * v, ts_partial, group, next_ts,
                                  TS_STATE + 2 * k + 1)
                next_ts += 1
            if t % _EXIT_CHECK == 0 and cuda.syncthreads_or(np.int32(running)) == 0:
                break
        if inside:
            for k in range(dim):
                x_final[j, k] = th[k]
            fp_steps[j] = first
            div_steps[j] = div
            log_growth[j] = growth
            lyap_steps[j] = grown

    return kernel
