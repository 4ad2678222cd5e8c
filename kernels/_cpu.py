"""The CPU kernel template: numba, parallel over groups of trajectories.

Each parallel task takes one reduction group (REDUCE_GROUP trajectories) and
walks it in blocks of ``lanes`` trajectories whose states live in small
[d, lanes] arrays for all T steps. For a small state (d <= LANE_DIM) a block
is 64 lanes, and every step runs one branch-free loop over the lanes that LLVM
vectorises: the update (Philox and the normal transform included), the commit
of running lanes, the flags of the rare events (divergence, first passage) and
the tangent growth. Only flagged lanes, and observables that are due at this
step (histogram, occupancy, timeseries, paths), take scalar loops. A larger
state takes one trajectory at a time (lanes = 1), the same template. Nothing
per step is stored in memory.

The tangent growth is kept as a running product of |J v| folded into the log
sum whenever it leaves [2**-500, 2**500] (and at the end), so no libm log is
called per step; the sum equals the per-step sum of logs up to rounding.
"""
import itertools
import math
import os

import numba
import numpy as np
from numba.core.bytecode import FunctionIdentity

from ._dynamics import buffer_rows, random_rows, renormaliser
from ._jit import jitable
from ._observe import (
    COORD_NORM, FP_ABOVE, FP_BELOW, FP_NONE, F_DIV_THRESHOLD, F_FP_LEVEL, I_COORD, I_FP_MODE,
    I_FP_STOP, I_HIST_BURN, I_HIST_ON, I_HIST_THIN, I_PATH_COUNT, I_PATH_EVERY, OBSERVABLES,
    REDUCE_GROUP, TS_COUNT, TS_LOSS, TS_SLOW, TS_STATE, TS_TRACKING, batch_group,
    histogram_bin, make_tracker, no_error, region, series_rows, tracked_initial, tracked_layout,
    watched,
)

__all__ = ["make_cpu_kernel", "LANES", "LANE_DIM"]

LANES = 64
LANE_DIM = 1           # states up to this dimension run 64 lanes at a time
_FOLD_HI = 2.0**500
_FOLD_LO = 2.0**-500
_LARGEST = float(np.finfo(np.float64).max)


def _distinct_symbols():
    """Start numba's per-process function counter at a random point.

    numba names every compiled function by its qualname and a counter that
    starts at 1 in every process, and a cached kernel carries the functions it
    calls under those names. Two processes that compiled different closures of
    one definition (the update of gd and of sgd, say) thus gave them the same
    symbol, and a third process that loaded both kernels from the cache ran one
    closure's code for both. A random start per process keeps the names apart.
    """
    start = int.from_bytes(os.urandom(6), "little") << 8
    FunctionIdentity._unique_ids = itertools.count(start)


_distinct_symbols()


def compile_cpu(kernel, name, cache):
    """Compile a parallel chunk kernel for the CPU under a name unique to its variant.

    numba names a compiled function by its qualname and a per-process counter,
    so two different kernels compiled in different processes could carry the
    same symbol; loaded together from the on-disk cache, one kernel then ran the
    other's code. A name derived from the kernel variant keeps them apart.
    """
    kernel.__name__ = kernel.__qualname__ = name
    return numba.njit(parallel=True, error_model="numpy", cache=cache)(kernel)


def _committer(dim, aux_size, first_passage):
    """(commit, events) of the CPU lanes; see their docstrings."""
    @jitable(inline=True)
    def events(th, lane, running, unpassed, limits, limits_1d, coord):
        """The events of lane's committed state: 2 diverged, 1 first passage, 0 none (or not
        running). Branch-free, so the lane loops that call it vectorise. ``limits`` are
        (threshold, sign, signed level) in float64, ``limits_1d`` the same rounded outward
        to the state's dtype (``state_limits``). The threshold is finite (at most the
        largest float), so |x| <= threshold fails for inf and NaN too."""
        if dim == 1:
            # One coordinate: it is the watched value, or its absolute value is (the norm),
            # compared in the state's dtype with limits that give the float64 comparisons'
            # answers (twice as many lanes a vector in float32).
            threshold_1d, sign_1d, level_1d = limits_1d
            y = th[0, lane]
            x1 = abs(y) if coord == COORD_NORM else y
            bad = np.int64(not (abs(y) <= threshold_1d))
            hit = unpassed[lane] * np.int64(sign_1d * x1 >= level_1d) if first_passage else 0
        else:
            threshold, sign, signed_level = limits
            finite = True
            for k in range(dim):
                finite = finite and math.isfinite(th[k, lane])
            x = watched(th, lane, coord)
            bad = np.int64(not (finite and abs(x) <= threshold))
            hit = unpassed[lane] * np.int64(sign * x >= signed_level) if first_passage else 0
        return running[lane] * (bad * 2 + hit)

    @jitable(inline=True)
    def commit(th, nxt, aux, nxt_aux, lane, running, unpassed, limits, limits_1d, coord):
        """Commit lane's update if it is running (rounded to the state dtype); return its
        events. No flag is stored: the rare lanes' events are found again (``events``)."""
        r = running[lane]
        for k in range(aux_size):
            aux[k, lane] = nxt_aux[k, lane] if r != 0 else aux[k, lane]
        for k in range(dim):
            th[k, lane] = nxt[k, lane] if r != 0 else th[k, lane]
        return events(th, lane, running, unpassed, limits, limits_1d, coord)

    return commit, events


@jitable
def _rounded(like, value, up):
    """``value`` rounded up (``up``) or down to the dtype of array ``like``: for every v of
    that dtype, v >= result exactly when v >= value (up), v <= result when v <= value."""
    r = np.empty(2, dtype=like.dtype)
    r[0] = value
    r[1] = np.inf if up else -np.inf
    if (r[0] < value) if up else (r[0] > value):
        r[0] = np.nextafter(r[0], r[1])
    return r[0]


@jitable
def state_limits(like, threshold, sign, signed_level):
    """(threshold, sign, signed level) in the dtype of ``like``, rounded outward so that
    |y| <= threshold and sign y >= signed level answer as in float64 for every y of it."""
    return (_rounded(like, threshold, False), _rounded(like, sign, True),
            _rounded(like, signed_level, True))


def make_recorder(model, series=()):
    """record(ts_partial, group, k, th, lane, p, eps, acc): add lane's state at recorded
    step k to its group's timeseries sums (columns as kernels._observe TS_*), and the
    plug-in slots ``series`` (rows of acc) after them."""
    loss = model.loss
    tracking_error = model.tracking_error or no_error
    slow_error = model.slow_error or no_error
    two_scale = model.x_dim > 0
    dim = model.dim
    n_series = len(series)
    series = np.array(series or (0,), dtype=np.int64)

    @jitable
    def record(ts_partial, group, k, th, lane, p, eps, acc):
        ts_partial[group, k, TS_COUNT] += 1.0
        ts_partial[group, k, TS_LOSS] += loss(th, lane, p)
        if two_scale:
            ts_partial[group, k, TS_TRACKING] += tracking_error(th, lane, p, eps)
            ts_partial[group, k, TS_SLOW] += slow_error(th, lane, p, eps)
        for c in range(th.shape[0]):
            value = np.float64(th[c, lane])
            ts_partial[group, k, TS_STATE + 2 * c] += value
            ts_partial[group, k, TS_STATE + 2 * c + 1] += value * value
        for j in range(n_series):
            value = acc[series[j], lane]
            ts_partial[group, k, TS_STATE + 2 * dim + 2 * j] += value
            ts_partial[group, k, TS_STATE + 2 * dim + 2 * j + 1] += value * value

    return record


def make_cpu_kernel(rule, model, cache=False, split_update=False, observables=OBSERVABLES,
                    name="sgdsim_kernel", aux_size=0, tracked=()):
    """Compile the chunk kernel of one model and dynamics rule for the CPU.

    ``rule`` is the Rule (draw, update, tangent_map, layout, random_dtype) of kernels._dynamics.make_rule.
    A dynamics that shares Philox blocks between steps draws a group's random values in a
    lane loop of its own at the group's first step (and at a slice's first step); one that
    draws per step does so in the update's loop.

    ``split_update`` puts the update in a loop of its own, apart from the
    commit: an update that gathers from the parameter vector (a random
    sample's curvature) next to the commit's stores does not vectorise fused,
    and does split (1.7x on SGD over quadratic_finite_sum); a fused loop is
    2-3x faster for every other update. Only the ``observables`` named are
    compiled in (the Lyapunov tangent with "lyapunov"); the others' outputs stay
    as allocated (-1 steps, zero counts). ``tracked`` are the enabled plug-in
    observables (kernels._observe.make_tracker), updated at step 0 and after every
    step a lane runs.

    Signature: ``kernel(chunk, params, conf, out)``, four bundles (tuples) described
    in kernels._launch (``ChunkKernel.arguments``); the outputs are preallocated.
    """
    dim, m = model.dim, model.x_dim
    lanes_per_block = LANES if dim <= LANE_DIM else 1
    # The vectorised lane loops run over one idle lane more: LLVM peels their first
    # iteration and vectorises the rest eight lanes at a time, so 64 lanes left lanes
    # 57-63 to a scalar remainder (seen in the optimised IR); 65 leave 64 to the vector
    # loop (measured +5-14 % on the benchmark workloads). The idle lane never runs.
    padded_lanes = lanes_per_block + 1 if lanes_per_block > 1 else 1
    blocks = REDUCE_GROUP // lanes_per_block
    aux_rows = max(aux_size, 1)      # the dynamics' auxiliary buffers (zero at the start)
    two_scale = m > 0
    # Plain booleans, so numba prunes the branch not taken before it inlines the step:
    # one copy of the step in the kernel, not one per variant (compile time).
    tangent = "lyapunov" in observables
    split = bool(split_update and not tangent)
    HIST, OCC, TS, PATHS, FP = (name in observables for name in
                                ("histogram", "occupancy", "timeseries", "paths", "first_passage"))
    commit, lane_events = _committer(dim, aux_size, FP)
    draw, update, tangent_map, lay, rnd_dtype = rule
    rnd_rows = random_rows(lay)
    GROUP, PER_STEP = lay.group, lay.per_step
    GROUPED = GROUP > 1
    buf_rows = buffer_rows(dim, lay)
    renormalise = renormaliser(dim)
    _record = make_recorder(model, series_rows(tracked, dim))
    TRACK = len(tracked) > 0
    track = make_tracker(model, tracked)
    n_track = tracked_layout(tracked, dim)[0]
    track_rows = max(n_track, 1)
    track_init = tracked_initial(tracked, dim)

    def kernel(chunk, params, conf, out):
        g_first, i_first, t_first, t_last, final, key_lo, key_hi = chunk
        p, d = params
        conf_i, conf_f, boundaries, ts_steps = conf
        (x_final, fp_steps, div_steps, log_growth, lyap_steps, occupancy, hist, ts_partial,
         tracked_slots, aux_state, tangent_state, product_state, paths) = out
        # The step takes the parameters in the state's dtype (a float32 run updates in
        # float32: README, Reproducibility); the observables take them as given (float64).
        pu, du = p.astype(x_final.dtype), d.astype(x_final.dtype)
        L = lanes_per_block
        LP = padded_lanes
        n = x_final.shape[0]
        n_groups = (n + REDUCE_GROUP - 1) // REDUCE_GROUP
        n_ts = ts_steps.shape[0] if TS else 0
        occ_on = OCC and occupancy.shape[0] > 0
        n_regions = max(occupancy.shape[1], 1)
        stop_on_pass = conf_i[I_FP_STOP] != 0
        path_count = conf_i[I_PATH_COUNT] if PATHS else 0
        path_every = conf_i[I_PATH_EVERY]
        hist_on = HIST and conf_i[I_HIST_ON] != 0
        burn_in = conf_i[I_HIST_BURN]
        thin = conf_i[I_HIST_THIN]
        coord = conf_i[I_COORD]
        threshold = min(conf_f[F_DIV_THRESHOLD], _LARGEST)
        eps = p[1] if two_scale else 1.0
        # First passage as one comparison: sign * x >= sign * level (never true when off).
        mode = conf_i[I_FP_MODE] if FP else FP_NONE
        sign = 1.0 if mode == FP_ABOVE else (-1.0 if mode == FP_BELOW else 0.0)
        signed_level = sign * conf_f[F_FP_LEVEL] if mode != 0 else 1.0
        limits = (threshold, sign, signed_level)
        limits_1d = state_limits(x_final, threshold, sign, signed_level)
        for group in numba.prange(n_groups):
            thread = numba.get_thread_id()
            th = np.zeros((dim, LP), dtype=x_final.dtype)
            nxt = np.zeros((dim, LP), dtype=x_final.dtype)
            aux = np.zeros((aux_rows, LP))
            nxt_aux = np.zeros((aux_rows, LP))
            v = np.zeros((dim, LP))
            buf = np.zeros((buf_rows, LP), dtype=x_final.dtype)
            rnd = np.zeros((rnd_rows, LP), dtype=rnd_dtype)
            running = np.zeros(LP, dtype=np.int64)
            unpassed = np.ones(LP, dtype=np.int64)
            flag = np.zeros(LP, dtype=np.int64)
            first = np.full(LP, -1, dtype=np.int64)
            div = np.full(LP, -1, dtype=np.int64)
            growth = np.zeros(LP)
            product = np.ones(LP)
            grown = np.zeros(LP, dtype=np.int64)
            occ = np.zeros((LP, n_regions), dtype=np.int64)
            acc = np.zeros((track_rows, LP))
            for block in range(blocks):
                base = group * REDUCE_GROUP + block * L
                if base >= n:
                    break
                lanes = min(L, n - base)
                paths_here = i_first + base < path_count
                # The state of each lane after step t_first (kernels._launch: a chunk runs
                # in slices of steps, its state carried in the output arrays).
                for lane in range(L):
                    j = min(base + lane, n - 1)
                    inside = lane < lanes
                    first[lane] = fp_steps[j]
                    div[lane] = div_steps[j]
                    stopped = div[lane] >= 0 or (stop_on_pass and first[lane] >= 0)
                    running[lane] = 1 if inside and not stopped else 0
                    unpassed[lane] = 1 if first[lane] < 0 else 0
                    growth[lane] = log_growth[j]
                    product[lane] = product_state[j]
                    grown[lane] = lyap_steps[j]
                    for k in range(aux_rows):
                        aux[k, lane] = aux_state[j, k] if inside else 0.0
                    for k in range(dim):
                        th[k, lane] = x_final[j, k] if inside else 0.0
                        v[k, lane] = tangent_state[j, k]
                    for r in range(n_regions):
                        occ[lane, r] = occupancy[j, r] if occ_on else 0
                    for k in range(track_rows):
                        acc[k, lane] = tracked_slots[j, k] if t_first > 0 else track_init[k]
                alive = 0
                for lane in range(L):
                    alive += running[lane]
                t_end = t_last if alive > 0 else t_first     # every lane stopped earlier
                g0 = np.uint64(g_first + base)
                next_ts = 0
                while next_ts < n_ts and ts_steps[next_ts] < t_first:
                    next_ts += 1
                # The plug-ins before the timeseries, which may record their slots.
                if TRACK and t_first == 0:
                    for lane in range(lanes):
                        track(acc, th, lane, 0, p, conf_f)
                if t_first == 0 and n_ts > 0 and ts_steps[0] == 0:
                    for lane in range(lanes):
                        _record(ts_partial, group, 0, th, lane, p, eps, acc)
                    next_ts = 1
                elif next_ts < n_ts and ts_steps[next_ts] == t_first:
                    next_ts += 1              # recorded by the slice that ended at t_first
                if paths_here and t_first == 0:
                    for lane in range(lanes):
                        if i_first + base + lane < path_count:
                            for k in range(dim):
                                paths[i_first + base + lane, 0, k] = th[k, lane]
                for t in range(t_first + 1, t_end + 1):
                    tu = np.uint64(t)
                    q = ((t - 1) % GROUP) * PER_STEP
                    if GROUPED and (q == 0 or t == t_first + 1):
                        # The real lanes only: the idle lane never runs, and a 64-lane loop
                        # vectorises whole (65 left one lane's Philox block to scalar code).
                        for lane in range(L):
                            draw(rnd, lane, g0 + np.uint64(lane), tu, key_lo, key_hi, pu)
                    # 1. One vectorised, branch-free loop over all lanes: the update (finished
                    #    lanes are computed and discarded), the commit of running lanes,
                    #    the event flags and the tangent product.
                    events = 0
                    folds = 0
                    if split:
                        for lane in range(LP):
                            g = g0 + np.uint64(lane)
                            if not GROUPED:
                                draw(rnd, lane, g, tu, key_lo, key_hi, pu)
                            update(th, aux, nxt, nxt_aux, buf, rnd, lane, g, tu, key_lo, key_hi,
                                   pu, du, q)
                        for lane in range(LP):
                            f = commit(th, nxt, aux, nxt_aux, lane, running, unpassed,
                                       limits, limits_1d, coord)
                            events |= f
                    elif tangent:
                        for lane in range(LP):
                            g = g0 + np.uint64(lane)
                            if not GROUPED:
                                draw(rnd, lane, g, tu, key_lo, key_hi, pu)
                            extra = update(th, aux, nxt, nxt_aux, buf, rnd, lane, g, tu, key_lo,
                                           key_hi, pu, du, q)
                            tangent_map(th, aux, v, buf, rnd, lane, g, tu, key_lo, key_hi, pu,
                                        du, extra, q)
                            norm = renormalise(v, lane)
                            f = commit(th, nxt, aux, nxt_aux, lane, running, unpassed,
                                       limits, limits_1d, coord)
                            events |= f
                            counts = running[lane] * np.int64(f < 2)
                            product[lane] *= norm if counts != 0 else 1.0
                            grown[lane] += counts
                            folds |= np.int64(not (_FOLD_LO <= product[lane] <= _FOLD_HI))
                    else:
                        for lane in range(LP):
                            g = g0 + np.uint64(lane)
                            if not GROUPED:
                                draw(rnd, lane, g, tu, key_lo, key_hi, pu)
                            update(th, aux, nxt, nxt_aux, buf, rnd, lane, g, tu, key_lo, key_hi,
                                   pu, du, q)
                            f = commit(th, nxt, aux, nxt_aux, lane, running, unpassed,
                                       limits, limits_1d, coord)
                            events |= f
                    if folds != 0:
                        for lane in range(LP):
                            if not (_FOLD_LO <= product[lane] <= _FOLD_HI):
                                growth[lane] += math.log(product[lane])
                                product[lane] = 1.0
                    # 2. Rare events, scalar: divergence stops at once, first passage is noted.
                    stopping = False
                    if events != 0:
                        for lane in range(lanes):
                            flag[lane] = lane_events(th, lane, running, unpassed, limits,
                                                     limits_1d, coord)
                            if flag[lane] >= 2:
                                div[lane] = t
                                running[lane] = 0
                            elif flag[lane] == 1:
                                first[lane] = t
                                unpassed[lane] = 0
                                stopping = stopping or stop_on_pass
                    # 3. Observables due at this step, for lanes still running.
                    if hist_on and t >= burn_in and (t - burn_in) % thin == 0:
                        for lane in range(lanes):
                            if running[lane] != 0:
                                batch = batch_group(i_first + base + lane, conf_i)
                                for k in range(dim):
                                    slot = histogram_bin(th[k, lane], t, conf_i, conf_f)
                                    hist[thread, batch, k, slot] += 1
                    if occ_on:
                        for lane in range(lanes):
                            if running[lane] != 0:
                                occ[lane, region(watched(th, lane, coord), boundaries)] += 1
                    if TRACK:
                        for lane in range(lanes):
                            if running[lane] != 0:
                                track(acc, th, lane, t, p, conf_f)
                    if next_ts < n_ts and ts_steps[next_ts] == t:
                        for lane in range(lanes):
                            if running[lane] != 0:
                                _record(ts_partial, group, next_ts, th, lane, p, eps, acc)
                        next_ts += 1
                    if paths_here and t % path_every == 0:
                        for lane in range(lanes):
                            i = i_first + base + lane
                            if running[lane] != 0 and i < path_count:
                                for k in range(dim):
                                    paths[i, t // path_every, k] = th[k, lane]
                    # 4. A first passage with stop ends the trajectory after step t is recorded.
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
                    for k in range(dim):
                        x_final[j, k] = th[k, lane]
                    fp_steps[j] = first[lane]
                    div_steps[j] = div[lane]
                    # The tangent product is folded into the log sum after the last step.
                    if final:
                        log_growth[j] = growth[lane] + math.log(product[lane])
                        product_state[j] = 1.0
                    else:
                        log_growth[j] = growth[lane]
                        product_state[j] = product[lane]
                    lyap_steps[j] = grown[lane]
                    for k in range(aux_size):
                        aux_state[j, k] = aux[k, lane]
                    for k in range(dim if tangent else 0):
                        tangent_state[j, k] = v[k, lane]
                    if occ_on:
                        for r in range(occupancy.shape[1]):
                            occupancy[j, r] = occ[lane, r]
                    for k in range(n_track):
                        tracked_slots[j, k] = acc[k, lane]

    return compile_cpu(kernel, name, cache)

