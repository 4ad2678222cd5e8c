"""loss_min: the running minimum of the loss along each trajectory, and when it was reached.

    value = min { L(theta_t) : burn_in <= t <= T_end },   step = the first t attaining it

over the steps the trajectory ran (T_end: its last step, its divergence step excluded).
A trajectory with no step in range (it diverged before burn_in) keeps value = inf and
step = -1.
"""
import numpy as np

from sgdsim.kernels import jitable

from .._keys import Key
from . import Tracked


def make_update(model):
    loss = model.loss

    @jitable
    def update(acc, row, th, l, t, p, c, col):
        if t >= c[col]:
            value = loss(th, l, p)
            if value < acc[row, l]:
                acc[row, l] = value
                acc[row + 1, l] = t

    return update


def make_reference(model):
    def reference(acc, th, t, p, c, col, running):
        if t < c[col]:
            return
        value = np.broadcast_to(model.loss(th, slice(None), p), running.shape)
        lower = running & (value < acc[0])
        acc[0] = np.where(lower, value, acc[0])
        acc[1] = np.where(lower, t, acc[1])

    return reference


def validate(table, run):
    if table["burn_in"] > run["steps"]:
        return "burn_in", f"must be <= run.steps = {run['steps']} (got {table['burn_in']})"
    return None


OBSERVABLE = Tracked(
    name="loss_min",
    doc="running minimum of the loss L(theta_t) over steps t >= burn_in, and the first step "
        "attaining it",
    keys={"burn_in": Key("int", 0, "first step considered (0 = theta_0)", minimum=0)},
    outputs=(("value", np.float64, "min over burn_in <= t <= T of L(theta_t); inf if none"),
             ("step", np.int64, "first step t attaining it; -1 if none")),
    init=(np.inf, -1.0),
    config=lambda table, point: (table["burn_in"],),
    n_conf=1,
    make_update=make_update,
    make_reference=make_reference,
    validate=validate,
    needs=("loss",),
)
