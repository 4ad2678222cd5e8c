"""sharpness: the top eigenvalue of the loss' Hessian along each trajectory, in-kernel.

    lambda_t = the top eigenvalue of H(theta_t),  computed at t = 0, every, 2 every, ...
    and at the last step T;
    final = lambda at the last step it was computed (T, or the trajectory's last
    multiple of ``every`` before it stopped);  first_above = the first computed step
    with lambda_t >= level (default 2 / lr), -1 if none.

A model that knows its top eigenvalue exactly (``uv``: the 2x2 Hessian) gives it
directly. Otherwise ``iterations`` steps of power iteration on the model's Hessian-vector
products (exact for the built-in models; a central difference of the gradient for a user
model without a second derivative) from the previous eigenvector (warm start; the
first from (1, ..., 1) / sqrt(d)): q <- H q / |H q|, lambda the Rayleigh quotient q.Hq
of the last iterate. Power iteration finds the eigenvalue of largest magnitude: the top
eigenvalue wherever the Hessian is positive semi-definite or its negative eigenvalues
are smaller in magnitude (near minima, and for the edge-of-stability question); a
negative eigenvalue of larger magnitude would be reported instead. The eigenvector q and
H q live in 2 d scratch slots of the trajectory.

With the timeseries observable on, ``/timeseries/sharpness_mean`` and
``/timeseries/sharpness_var`` [P, T] are the ensemble mean and variance at the recorded
steps of the latest value (computed at that step when it is a multiple of ``every``, so
choose ``every`` to divide the recorded steps, or 1).
"""
import numpy as np

from sgdsim.kernels import jitable

from .._keys import Key
from . import Tracked


def _step_size(dynamics):
    """The step that the stability level 2 / step refers to (lr; dt; a)."""
    for key in ("lr", "dt", "a"):
        if key in dynamics:
            return float(dynamics[key])
    return 0.0


def _config(table, point):
    level = table.get("level")
    if level is None:
        step = _step_size(point.get("dynamics", {}))
        level = 2.0 / step if step > 0 else np.inf
    return (table["every"], table["iterations"], level,
            point.get("run", {}).get("steps", 0))


def make_update(model):
    dim, hvp, exact = model.dim, model.hvp, model.sharpness
    Q, W = 2, 2 + dim          # slot rows: final, first_above, q (d rows), H q (d rows)

    if exact is not None:
        @jitable
        def top(acc, row, th, l, p, iterations):
            return exact(th, l, p)
    else:
        @jitable
        def top(acc, row, th, l, p, iterations):
            norm = 0.0
            for k in range(dim):
                norm += acc[row + Q + k, l] * acc[row + Q + k, l]
            if not norm > 0.0:
                for k in range(dim):
                    acc[row + Q + k, l] = 1.0 / np.sqrt(dim)
            value = 0.0
            for _ in range(iterations):
                hvp(th, l, p, acc, row + Q, acc, row + W)
                value, norm = 0.0, 0.0
                for k in range(dim):
                    w = acc[row + W + k, l]
                    value += acc[row + Q + k, l] * w
                    norm += w * w
                norm = np.sqrt(norm)
                if norm > 0.0:
                    for k in range(dim):
                        acc[row + Q + k, l] = acc[row + W + k, l] / norm
            return value

    @jitable
    def update(acc, row, th, l, t, p, c, col):
        every, last = np.int64(c[col]), np.int64(c[col + 3])
        if t % every == 0 or t == last:
            value = top(acc, row, th, l, p, np.int64(c[col + 1]))
            acc[row, l] = value
            if acc[row + 1, l] < 0.0 and value >= c[col + 2]:
                acc[row + 1, l] = t

    return update


def make_reference(model):
    dim = model.dim

    def reference(acc, th, t, p, c, col, running):
        every, iterations, level, last = int(c[col]), int(c[col + 1]), c[col + 2], int(c[col + 3])
        if not (t % every == 0 or t == last):
            return
        if model.sharpness is not None:
            value = model.sharpness(th, slice(None), p)
        else:
            q, hq = acc[2:2 + dim].copy(), np.empty((dim, th.shape[1]))
            unset = ~((q * q).sum(axis=0) > 0.0)
            q[:, unset] = 1.0 / np.sqrt(dim)
            value = np.zeros(th.shape[1])
            for _ in range(iterations):
                model.hvp(th, slice(None), p, q, 0, hq, 0)
                value = (q * hq).sum(axis=0)
                norm = np.sqrt((hq * hq).sum(axis=0))
                q[:] = np.where(norm > 0.0, hq / np.where(norm > 0.0, norm, 1.0), q)
            acc[2:2 + dim] = np.where(running, q, acc[2:2 + dim])
        value = np.broadcast_to(value, running.shape)
        acc[0] = np.where(running, value, acc[0])
        above = running & (acc[1] < 0) & (value >= level)
        acc[1] = np.where(above, t, acc[1])

    return reference


def validate(table, run):
    if table["every"] > run["steps"]:
        return "every", f"must be <= run.steps = {run['steps']} (got {table['every']})"
    return None


OBSERVABLE = Tracked(
    name="sharpness",
    doc="top Hessian eigenvalue of the loss every `every` steps (exact for uv, else power "
        "iteration on Hessian-vector products): its last value and the first step at or "
        "above level",
    keys={"every": Key("int", 1, "compute at t = 0, every, 2 every, ... and at the last step",
                       minimum=1),
          "iterations": Key("int", 20, "power-iteration steps per computation (warm start)",
                            minimum=1, below=10001),
          "level": Key("float", None, "threshold of first_above", above=0,
                       default_doc="2 / lr (2 / dt for langevin)")},
    outputs=(("final", np.float64, "the top eigenvalue at the last step computed"),
             ("first_above", np.int64, "first computed step with eigenvalue >= level; "
                                       "-1 if none")),
    init=(np.nan, -1.0),
    config=_config,
    n_conf=4,
    make_update=make_update,
    make_reference=make_reference,
    validate=validate,
    scratch=lambda dim: 2 * dim,
    series=True,
)
