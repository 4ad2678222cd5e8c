"""Trajectory-steps actually run, for throughput figures (no kernels, no numba: `info` uses it)."""
import numpy as np

__all__ = ["steps_run"]


def steps_run(steps, first_passage=None, divergence=None, stop=False):
    """Total steps the trajectories ran: ``steps`` each, fewer for those that diverged or,
    with ``stop``, reached their first passage (step arrays with -1 for never)."""
    shape = np.shape(divergence if divergence is not None else first_passage)
    ran = np.full(shape, steps, dtype=np.int64)
    if stop and first_passage is not None:
        ran = np.where(first_passage >= 0, first_passage, ran)
    if divergence is not None:
        ran = np.where(divergence >= 0, np.minimum(divergence, ran), ran)
    return int(ran.sum())
