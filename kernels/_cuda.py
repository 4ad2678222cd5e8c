"""The CUDA kernel template: numba-cuda, one thread per trajectory.

A thread's state, tangent vector and scratch are thread-local [rows, 1]
arrays (lane 0 of kernels._models' layout) whose sizes are compile-time
constants, so for a small state they live in registers for all T steps. The
kernel is generated per set of enabled observables: what a run does not ask
for is not compiled in (the Lyapunov tangent included). Before the step loop
every loop invariant is copied into registers: the dynamics parameters, the
model parameters (unless the model gathers from them at run time, as a
finite sum's sample does), the observables' configuration and the occupancy
boundaries; array arguments could alias the output stores, so a load of them
inside the loop would be repeated every step. Step arithmetic is 32-bit, the
occupancy counters are registers, and histograms are counted in a per-block
shared-memory copy, added to the global one once at the end of the block
(global atomics only for histograms too large for it).

A thread block is one reduction group (REDUCE_GROUP trajectories): the
timeseries sums are reduced column by column through one shared buffer in a
fixed tree order and written once per block and recorded step. The step is
arithmetic in the state's dtype (its parameters copied in that dtype; the
observables keep float64 ones); float32 runs draw their normals with the float32
transform. Runs on a GPU, or on the
CPU under ``NUMBA_ENABLE_CUDASIM=1`` for tests.
"""
import math

import numba
import numpy as np

try:  # numba-cuda is an extra; the simulator swaps this module-level name at launch.
    from numba import cuda
except ImportError:  # pragma: no cover - depends on the install
    cuda = None

from ._observe import (
    F_DIV_THRESHOLD, F_FP_LEVEL, F_HIST_HI, F_HIST_LO, FP_ABOVE, FP_BELOW, FP_NONE, I_COORD,
    I_FP_MODE, I_FP_STOP, I_HIST_BINS, I_HIST_BURN, I_HIST_GROUPS, I_HIST_ON, I_HIST_THIN,
    I_PATH_COUNT, I_PATH_EVERY, I_PER_POINT, OBSERVABLES, REDUCE_GROUP, TS_COUNT, TS_LOSS,
    N_CONF_F, TS_SLOW, TS_STATE, TS_TRACKING, make_tracker, no_error, series_rows,
    tracked_initial, tracked_layout, watched,
)

__all__ = ["make_cuda_kernel", "cuda_usable", "HIST_SHARED_SLOTS", "MAX_REGISTER_REGIONS"]

# Threads check every this many steps (a power of two) whether their block has finished.
_EXIT_MASK = 63
# Histogram slots a block counts in shared memory (int32, 16 KiB); larger histograms
# (groups x d x (bins + 2) above this) count with global atomics.
HIST_SHARED_SLOTS = 4096
# Occupancy regions counted in registers; more regions count in global memory.
MAX_REGISTER_REGIONS = 4


def cuda_usable():
    """True when numba-cuda is importable and sees a GPU (or the simulator)."""
    if cuda is None:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def make_cuda_kernel(step, model, dtype, observables=OBSERVABLES, n_dynamics=1, aux_size=0,
                     tracked=(), buf_rows=None, rnd_rows=1, rnd_dtype=np.float64):
    """Compile the chunk kernel (same signature as the CPU one) for CUDA.

    ``n_dynamics`` is the length of the dynamics parameter vector; ``tracked`` are the
    enabled plug-in observables (kernels._observe.make_tracker), whose slots and
    configuration live in registers.
    """
    dim, m = model.dim, model.x_dim
    loss = model.loss
    tracking_error = model.tracking_error or no_error
    slow_error = model.slow_error or no_error
    two_scale = m > 0
    state_type = numba.from_dtype(np.dtype(dtype))
    aux_rows = max(aux_size, 1)      # the dynamics' auxiliary buffers (zero at the start)
    buf_rows = buf_rows or 2 * dim  # local array shapes must be compile-time constants
    rnd_type = numba.from_dtype(np.dtype(rnd_dtype))
    n_d = max(n_dynamics, 1)
    # A model that indexes its parameters at run time keeps them in global memory (a
    # local array indexed at run time would live in local memory, not registers).
    n_p = 0 if model.gathers else len(model.params)
    copy_p = n_p > 0
    n_pl = max(n_p, 1)
    tangent = "lyapunov" in observables
    HIST, OCC, TS, PATHS, FP = (name in observables for name in
                                ("histogram", "occupancy", "timeseries", "paths", "first_passage"))
    n_bounds = MAX_REGISTER_REGIONS - 1
    hist_slots = HIST_SHARED_SLOTS if HIST else 1
    ts_shared = REDUCE_GROUP if TS else 1
    TRACK = len(tracked) > 0
    track = make_tracker(model, tracked)
    n_track, n_track_conf = tracked_layout(tracked, model.dim)
    track_rows = max(n_track, 1)
    track_init = tracked_initial(tracked, model.dim)
    n_cf = N_CONF_F + n_track_conf
    series = series_rows(tracked, model.dim)
    n_series = len(series)
    series = np.array(series or (0,), dtype=np.int64)

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
    def kernel(chunk, params, conf, out):
        g_first, i_first, t_first, t_last, final, key_lo, key_hi = chunk
        p, d = params
        conf_i, conf_f, boundaries, ts_steps = conf
        (x_final, fp_steps, div_steps, log_growth, lyap_steps, occupancy, hist, ts_partial,
         tracked_slots, aux_state, tangent_state, product_state, paths) = out
        n = x_final.shape[0]
        lane = cuda.threadIdx.x
        group = cuda.blockIdx.x
        j = group * REDUCE_GROUP + lane
        inside = j < n
        th = cuda.local.array((dim, 1), state_type)
        nxt = cuda.local.array((dim, 1), state_type)
        aux = cuda.local.array((aux_rows, 1), numba.float64)
        nxt_aux = cuda.local.array((aux_rows, 1), numba.float64)
        v = cuda.local.array((dim, 1), numba.float64)
        buf = cuda.local.array((buf_rows, 1), state_type)
        rnd = cuda.local.array((rnd_rows, 1), rnd_type)      # a group's random values
        # Loop invariants, in registers.
        dl = cuda.local.array(n_d, state_type)
        for k in range(n_d):
            dl[k] = d[k] if k < d.shape[0] else 0.0
        pl = cuda.local.array(n_pl, numba.float64)      # for the observables
        pu = cuda.local.array(n_pl, state_type)         # for the step: the state's dtype
        if copy_p:
            for k in range(n_pl):
                pl[k] = p[k]
                pu[k] = p[k]
        threshold = conf_f[F_DIV_THRESHOLD]
        coord = conf_i[I_COORD]
        eps = p[1] if two_scale else 1.0
        mode = conf_i[I_FP_MODE] if FP else FP_NONE
        sign = 1.0 if mode == FP_ABOVE else (-1.0 if mode == FP_BELOW else 0.0)
        signed_level = sign * conf_f[F_FP_LEVEL] if mode != FP_NONE else 1.0
        stop_on_pass = conf_i[I_FP_STOP] != 0
        i = i_first + j
        g = np.uint64(g_first) + np.uint64(j)
        row = j if inside else 0
        # Histogram: sampled steps t >= burn, (t - burn) % thin == 0; slots as
        # kernels._observe.histogram_bin.
        hist_on = HIST and conf_i[I_HIST_ON] != 0
        burn = np.int32(conf_i[I_HIST_BURN])
        thin = np.int32(conf_i[I_HIST_THIN])
        bins = np.int32(conf_i[I_HIST_BINS])
        lo = conf_f[F_HIST_LO]
        hi = conf_f[F_HIST_HI]
        width = hi - lo
        n_slots = conf_i[I_HIST_GROUPS] * dim * (bins + 2)
        in_shared = n_slots <= hist_slots
        batch = (i * conf_i[I_HIST_GROUPS]) // conf_i[I_PER_POINT]
        counts = cuda.shared.array(hist_slots, numba.int32)
        if hist_on and in_shared:
            for s in range(lane, n_slots, REDUCE_GROUP):
                counts[s] = 0
            cuda.syncthreads()
        # Occupancy: counters and boundaries in registers (up to MAX_REGISTER_REGIONS).
        occ_on = OCC and occupancy.shape[0] > 0
        n_regions = occupancy.shape[1]
        in_registers = n_regions <= MAX_REGISTER_REGIONS
        bounds = cuda.local.array(n_bounds, numba.float64)
        occ = cuda.local.array(MAX_REGISTER_REGIONS, numba.int32)
        for r in range(n_bounds):
            bounds[r] = boundaries[r] if OCC and r < boundaries.shape[0] else math.inf
        for r in range(MAX_REGISTER_REGIONS):
            occ[r] = occupancy[row, r] if occ_on and in_registers and r < n_regions else 0
        path_count = conf_i[I_PATH_COUNT] if PATHS else 0
        path_every = np.int32(conf_i[I_PATH_EVERY])
        n_ts = ts_steps.shape[0] if TS else 0
        shared = cuda.shared.array(ts_shared, numba.float64)
        # The state after step t_first (kernels._launch: a chunk runs in slices of steps,
        # its state carried in the output arrays).
        start = np.int32(t_first)
        for k in range(dim):
            th[k, 0] = x_final[row, k]
            v[k, 0] = tangent_state[row, k]
        for k in range(aux_rows):
            aux[k, 0] = aux_state[row, k] if k < aux_size else 0.0
        # Tracked observables: slots and configuration in registers.
        acc = cuda.local.array((track_rows, 1), numba.float64)
        cf = cuda.local.array(n_cf, numba.float64)
        for k in range(track_rows):
            acc[k, 0] = tracked_slots[row, k] if start > 0 else track_init[k]
        if TRACK:
            for k in range(n_cf):
                cf[k] = conf_f[k]
            if inside and start == 0:
                track(acc, th, 0, 0, pl if copy_p else p, cf)
        first = np.int32(fp_steps[row])
        div = np.int32(div_steps[row])
        running = inside and div < 0 and not (stop_on_pass and first >= 0)
        growth = log_growth[row]
        grown = np.int32(lyap_steps[row])
        # Recorded steps up to t_first were recorded by earlier slices (step 0 is
        # recorded below, at t = t_first = 0).
        next_ts = 0
        while start > 0 and next_ts < n_ts and ts_steps[next_ts] <= start:
            next_ts += 1
        if PATHS and inside and i < path_count and start == 0:
            for k in range(dim):
                paths[i, 0, k] = th[k, 0]
        end = np.int32(t_last + 1)
        first_step = np.int32(start + 1)    # the slice's first step draws its group
        for t in range(start, end):
            contributes = running
            if t > start and running:
                norm = step(th, aux, v, nxt, nxt_aux, buf, rnd, 0, g, np.uint64(t), key_lo, key_hi,
                            pu if copy_p else p, dl, t == first_step)
                finite = True
                for k in range(dim):
                    th[k, 0] = nxt[k, 0]
                    finite = finite and math.isfinite(th[k, 0])
                for k in range(aux_size):
                    aux[k, 0] = nxt_aux[k, 0]
                value = watched(th, 0, coord)
                if not (finite and abs(value) <= threshold):
                    div = t
                    running = False
                    contributes = False
                else:
                    if tangent:
                        growth += math.log(norm)
                        grown += np.int32(1)
                    if FP and first < 0 and sign * value >= signed_level:
                        first = t
                        if stop_on_pass:
                            running = False
                    if hist_on and t >= burn and (t - burn) % thin == 0:
                        for k in range(dim):
                            x = np.float64(th[k, 0])
                            if x < lo:
                                slot = bins
                            elif x >= hi:
                                slot = bins + np.int32(1)
                            else:
                                # Rounding can put x just below hi into bin `bins`.
                                slot = min(np.int32((x - lo) / width * bins), bins - np.int32(1))
                            if in_shared:
                                cuda.atomic.add(counts, (batch * dim + k) * (bins + 2) + slot, 1)
                            else:
                                cuda.atomic.add(hist, (0, batch, k, slot), 1)
                    if occ_on:
                        if in_registers:
                            reg = np.int32(0)
                            for r in range(n_bounds):
                                reg += np.int32(bounds[r] <= value)
                            for r in range(MAX_REGISTER_REGIONS):
                                occ[r] += np.int32(reg == r)
                        else:
                            reg = 0
                            for b in boundaries:
                                reg += np.int64(b <= value)
                            occupancy[j, reg] += 1
                    if PATHS and i < path_count and t % path_every == 0:
                        for k in range(dim):
                            paths[i, t // path_every, k] = th[k, 0]
                    if TRACK:
                        track(acc, th, 0, t, pl if copy_p else p, cf)
            if TS and next_ts < n_ts and ts_steps[next_ts] == t:
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
                for s in range(n_series):
                    x = acc[series[s], 0] if contributes else 0.0
                    reduce_column(shared, lane, x, ts_partial, group, next_ts,
                                  TS_STATE + 2 * dim + 2 * s)
                    reduce_column(shared, lane, x * x, ts_partial, group, next_ts,
                                  TS_STATE + 2 * dim + 2 * s + 1)
                next_ts += 1
            if (t & _EXIT_MASK) == 0 and cuda.syncthreads_or(np.int32(running)) == 0:
                break
        if hist_on and in_shared:
            cuda.syncthreads()
            per_batch = dim * (bins + 2)
            for s in range(lane, n_slots, REDUCE_GROUP):
                if counts[s] != 0:
                    b = s // per_batch
                    rest = s - b * per_batch
                    k = rest // (bins + 2)
                    cuda.atomic.add(hist, (0, b, k, rest - k * (bins + 2)), np.int64(counts[s]))
        if inside:
            for k in range(dim):
                x_final[j, k] = th[k, 0]
            fp_steps[j] = first
            div_steps[j] = div
            log_growth[j] = growth
            lyap_steps[j] = grown
            for k in range(aux_size):
                aux_state[j, k] = aux[k, 0]
            for k in range(dim if tangent else 0):
                tangent_state[j, k] = v[k, 0]
            if occ_on and in_registers:
                for r in range(MAX_REGISTER_REGIONS):
                    if r < n_regions:
                        occupancy[j, r] = occ[r]
            for k in range(n_track):
                tracked_slots[j, k] = acc[k, 0]

    return kernel
