"""period: the period of each trajectory's orbit at the last step, from its last 2 max states.

    gap(p) = max_{0 <= j < p} |theta_{T-j} - theta_{T-j-p}|_inf / (1 + |theta_T|_inf)
    period = the smallest p in 1..max with gap(p) <= tol;  0 if none (no cycle of period
    <= max within tol: chaotic, quasi-periodic, or not settled yet);  -1 if the trajectory
    stopped before T (diverged, or a first passage stopped it);
    gap = gap(period), or min_p gap(p) when period = 0.

Every point of the last cycle must return within tol (j runs over a whole cycle), so
a near return of a chaotic orbit is not taken for a cycle. A converged run has period 1.
For deterministic dynamics (gd; sgd with noise = "none") tol can be small (the default
1e-8 is far above the rounding of a float64 orbit); with gradient noise an orbit returns
only to within the noise it amplifies, and tol must be set above that: the period is then
the period of the noisy orbit at that resolution. The last 2 max states live in
64 d scratch slots of the trajectory (max <= 32), a ring indexed by t mod 64.
"""
import numpy as np

from sgdsim.kernels import jitable

from .._keys import Key
from . import Tracked

RING = 2                       # slot rows before the ring: period, gap
LONGEST = 32                   # the largest ``max``; the ring holds the last 2 LONGEST states
LENGTH = 2 * LONGEST


def make_update(model):
    dim = model.dim

    @jitable
    def update(acc, row, th, l, t, p, c, col):
        cap, last = np.int64(c[col]), np.int64(c[col + 2])
        length = LENGTH
        base = row + RING
        at = base + (t % length) * dim
        for k in range(dim):
            acc[at + k, l] = th[k, l]
        if t != last:
            return
        scale = 0.0
        for k in range(dim):
            scale = max(scale, abs(acc[at + k, l]))
        scale = 1.0 + scale
        best, best_gap = 0, np.inf
        for q in range(1, cap + 1):
            gap = 0.0
            for j in range(q):
                a = base + ((t - j) % length) * dim
                b = base + ((t - j - q) % length) * dim
                for k in range(dim):
                    gap = max(gap, abs(acc[a + k, l] - acc[b + k, l]) / scale)
            if not gap <= c[col + 1]:
                best_gap = min(best_gap, gap)
                continue
            best, best_gap = q, gap
            break
        acc[row, l] = best
        acc[row + 1, l] = best_gap

    return update


def make_reference(model):
    dim = model.dim

    def reference(acc, th, t, p, c, col, running):
        cap, tol, last = int(c[col]), c[col + 1], int(c[col + 2])
        at = RING + (t % LENGTH) * dim
        acc[at:at + dim] = np.where(running, th, acc[at:at + dim])
        if t != last:
            return
        # states[s] = theta_{T - s}, s = 0 .. 2 cap - 1: [2 cap, d, n]
        states = np.stack([acc[RING + ((t - s) % LENGTH) * dim:][:dim]
                           for s in range(2 * cap)])
        scale = 1.0 + np.abs(states[0]).max(axis=0)
        gaps = np.stack([(np.abs(states[:q] - states[q:2 * q]).max(axis=(0, 1)) / scale)
                         for q in range(1, cap + 1)])           # [cap, n]
        within = gaps <= tol
        found = within.any(axis=0)
        first = np.argmax(within, axis=0)
        period = np.where(found, first + 1, 0)
        gap = np.where(found, gaps[first, np.arange(gaps.shape[1])], gaps.min(axis=0))
        acc[0] = np.where(running, period, acc[0])
        acc[1] = np.where(running, gap, acc[1])

    return reference


def validate(table, run):
    if run["steps"] < 2 * table["max"] - 1:
        return "max", (f"needs 2 max states: run.steps = {run['steps']} must be >= "
                       f"2 max - 1 = {2 * table['max'] - 1}")
    return None


OBSERVABLE = Tracked(
    name="period",
    doc="the period (1..max; 0 if none within tol) of the orbit at the last step, from the "
        "last 2 max states",
    keys={"max": Key("int", 16, "longest period looked for", minimum=1, below=LONGEST + 1),
          "tol": Key("float", 1e-8, "return distance |theta_t - theta_{t-p}|_inf / "
                                     "(1 + |theta_T|_inf) taken as a return", above=0)},
    outputs=(("period", np.int64, "smallest p <= max whose last cycle returns within tol; "
                                  "0 if none; -1 if the trajectory stopped before T"),
             ("gap", np.float64, "the return distance of that p (the smallest over p when "
                                 "period = 0); nan if stopped before T")),
    init=(-1.0, np.nan),
    config=lambda table, point: (table["max"], table["tol"],
                                 point.get("run", {}).get("steps", 0)),
    n_conf=3,
    make_update=make_update,
    make_reference=make_reference,
    validate=validate,
    scratch=lambda dim: LENGTH * dim,
)
