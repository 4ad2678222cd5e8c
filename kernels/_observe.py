"""Per-step observable bookkeeping shared by the compiled backends.

Conventions (docs/SPEC.md): theta_0 is the initial state and step
t = 1..T produces theta_t. After each step a running trajectory is checked,
in this order: divergence (|theta_t| > threshold or non-finite: it stops at
once and step t adds nothing), the tangent growth log|d theta_t/d theta_{t-1}|,
the first passage (theta_t >= above, or <= below), then the histogram,
occupancy, timeseries and paths at step t; a first passage with ``stop``
ends the trajectory after step t has been recorded.

Configuration arrives as two small arrays indexed by the constants below so
that every backend's kernel has the same signature.
"""
import numpy as np

from ._jit import jitable

__all__ = [
    "I_FP_MODE", "I_FP_STOP", "I_HIST_ON", "I_HIST_BURN", "I_HIST_THIN", "I_HIST_GROUPS",
    "I_HIST_BINS", "I_LYAP_ON", "I_PATH_COUNT", "I_PATH_EVERY", "I_PER_POINT", "N_CONF_I",
    "I_COORD", "COORD_NORM", "TS_COUNT", "TS_LOSS", "TS_TRACKING", "TS_SLOW", "TS_STATE",
    "F_FP_LEVEL", "F_DIV_THRESHOLD", "F_HIST_LO", "F_HIST_HI", "N_CONF_F",
    "FP_NONE", "FP_ABOVE", "FP_BELOW", "OBSERVABLES", "diverged", "passed", "histogram_bin",
    "region",
    "batch_group", "REDUCE_GROUP", "watched", "no_error", "make_tracker", "tracked_layout",
    "tracked_initial", "slot_rows", "series_rows", "ts_columns",
]

# Integer configuration slots.
I_FP_MODE, I_FP_STOP, I_HIST_ON, I_HIST_BURN, I_HIST_THIN, I_HIST_GROUPS = 0, 1, 2, 3, 4, 5
I_HIST_BINS, I_LYAP_ON, I_PATH_COUNT, I_PATH_EVERY, I_PER_POINT = 6, 7, 8, 9, 10
# The coordinate that first passage, divergence and occupancy watch, or
# COORD_NORM for the Euclidean norm of the state.
I_COORD = 11
N_CONF_I = 12
COORD_NORM = -1
# Float configuration slots.
F_FP_LEVEL, F_DIV_THRESHOLD, F_HIST_LO, F_HIST_HI = 0, 1, 2, 3
N_CONF_F = 4

FP_NONE, FP_ABOVE, FP_BELOW = 0, 1, 2

# The observables a kernel can compile in; a kernel is specialised to the set a run
# enables (kernels.get_kernel), so what is off costs nothing per step.
OBSERVABLES = frozenset(("histogram", "first_passage", "divergence", "occupancy", "timeseries",
                         "paths", "lyapunov"))

# Trajectories per deterministic reduction group: timeseries sums are formed
# over each aligned group of this many trajectories in index order, then the
# groups are added in order, so float sums do not depend on chunks or threads.
REDUCE_GROUP = 256

# Columns of the kernels' timeseries sums: count, loss, |x - lambda(y)|^2,
# |y - y*|^2, then sum x_k and sum x_k^2 for each coordinate k at TS_STATE + 2k (+1).
TS_COUNT, TS_LOSS, TS_TRACKING, TS_SLOW, TS_STATE = 0, 1, 2, 3, 4

_jitable = jitable


@_jitable
def diverged(x, conf_f):
    """True where |x| exceeds the threshold or x is not finite."""
    return not (abs(x) <= conf_f[F_DIV_THRESHOLD])


@_jitable
def passed(x, conf_i, conf_f):
    """True where x lies in the first-passage target set."""
    mode = conf_i[I_FP_MODE]
    if mode == FP_ABOVE:
        return x >= conf_f[F_FP_LEVEL]
    if mode == FP_BELOW:
        return x <= conf_f[F_FP_LEVEL]
    return False


@_jitable
def histogram_bin(x, t, conf_i, conf_f):
    """Histogram slot of state x at step t.

    Returns the bin in 0..bins-1, ``bins`` for below ``lo``, ``bins + 1`` for at
    or above ``hi``, and -1 when step t is not sampled (before burn-in, off
    the thinning grid, or histogram off).
    """
    if conf_i[I_HIST_ON] == 0 or t < conf_i[I_HIST_BURN]:
        return -1
    if (t - conf_i[I_HIST_BURN]) % conf_i[I_HIST_THIN] != 0:
        return -1
    bins = conf_i[I_HIST_BINS]
    lo = conf_f[F_HIST_LO]
    hi = conf_f[F_HIST_HI]
    if x < lo:
        return bins
    if x >= hi:
        return bins + 1
    k = np.int64((x - lo) / (hi - lo) * bins)
    # Rounding can put x just below hi into bin `bins`; it belongs to the last bin.
    return min(k, bins - 1)


@_jitable
def region(x, boundaries):
    """Occupancy region of x: the number of boundaries b with b <= x."""
    k = 0
    for b in boundaries:
        if b <= x:
            k += 1
    return k


@_jitable
def batch_group(i, conf_i):
    """Histogram batch of point-local trajectory i: floor(i * G / N)."""
    return (i * conf_i[I_HIST_GROUPS]) // conf_i[I_PER_POINT]


@jitable(inline=True)
def watched(th, l, coord):
    """The watched scalar of lane l: coordinate ``coord`` of the state, or its norm.

    A 1-D state's norm is its absolute value (no square root: the shape is a
    compile-time constant, so the other branch is not compiled in)."""
    if th.shape[0] == 1:
        x = np.float64(th[0, l])
        return abs(x) if coord == COORD_NORM else x
    if coord == COORD_NORM:
        total = 0.0
        for k in range(th.shape[0]):
            total += np.float64(th[k, l]) * np.float64(th[k, l])
        return np.sqrt(total)
    # A weighted sum over every coordinate rather than th[coord, l]: the index is not known
    # at compile time, and an indexed read (which a compare-and-select loop is folded back
    # into) would force the GPU kernel to keep the state in local memory instead of
    # registers. A non-finite coordinate makes the sum non-finite, which is a divergence
    # in every kernel anyway (any non-finite coordinate is).
    value = 0.0
    for k in range(th.shape[0]):
        value += np.float64(th[k, l]) * np.float64(k == coord)
    return value


@jitable
def no_error(th, l, p, eps):
    """Stands in for a two-time-scale error of a model that has none."""
    return 0.0


@jitable
def _untracked(acc, th, l, t, p, c):
    return None


def _chain(first, update, row, col):
    @jitable
    def track(acc, th, l, t, p, c):
        first(acc, th, l, t, p, c)
        update(acc, row, th, l, t, p, c, col)

    return track


def slot_rows(obs, dim):
    """Rows of a plug-in's slots on a ``dim``-dimensional state: one per output, then its
    scratch rows (``obs.scratch(dim)``, kept between steps, not written out)."""
    return len(obs.init) + (obs.scratch(dim) if obs.scratch else 0)


def tracked_layout(tracked, dim):
    """(rows, conf) of tracked observables: their slot rows and configuration floats,
    the latter read after the built-in ones (from N_CONF_F on)."""
    return sum(slot_rows(obs, dim) for obs in tracked), sum(obs.n_conf for obs in tracked)


def make_tracker(model, tracked):
    """track(acc, th, l, t, p, c): the update of every tracked observable, in order.

    ``tracked`` are plug-in observables (sim.observables): each has ``init`` (its
    slot values before step 0), ``n_conf`` and ``make_update(model)``, whose update
    ``(acc, row, th, l, t, p, c, col)`` keeps its slots in rows row.. of ``acc`` and
    reads its configuration at c[col..]. Slots are float64.
    """
    track, row, col = _untracked, 0, N_CONF_F
    for obs in tracked:
        track = _chain(track, obs.make_update(model), row, col)
        row, col = row + slot_rows(obs, model.dim), col + obs.n_conf
    return track


def series_rows(tracked, dim):
    """The slot rows whose ensemble moments the timeseries records (plug-ins with
    ``series``: their first output), in order; their sums are columns TS_STATE + 2 d + 2 j
    (and + 1) of ``ts_partial``."""
    rows, row = [], 0
    for obs in tracked:
        if obs.series:
            rows.append(row)
        row += slot_rows(obs, dim)
    return tuple(rows)


def ts_columns(dim, n_series=0):
    """Columns of the timeseries sums on a ``dim``-dimensional state with ``n_series``
    recorded plug-in slots (TS_* above, then series_rows)."""
    return TS_STATE + 2 * (dim + n_series)


def tracked_initial(tracked, dim):
    """The slots' values before step 0 (scratch rows 0), as one float64 vector (at least
    one entry)."""
    values = [float(v) for obs in tracked
              for v in tuple(obs.init) + (0.0,) * (slot_rows(obs, dim) - len(obs.init))]
    return np.array(values or [0.0], dtype=np.float64)
