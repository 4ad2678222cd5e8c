"""A learning-rate sweep of failure mode F2 in one run file (issue 5, item 1)."""
import math

import numpy as np

from tests._campaign import F2_LRS, f2_sweep
from tests.conftest import run_file


def exact_lyapunov(lr, curvatures=(18.0, 2.0)):
    """E ln|1 - lr h| with h uniform on the curvatures (SGD, batch 1, tangent map 1 - lr h)."""
    return float(np.mean([math.log(abs(1.0 - lr * h)) for h in curvatures]))


def test_f2_lr_sweep_lyapunov_exponents_are_exact(tmp_path):
    data = run_file(tmp_path, f2_sweep(trajectories=3000, steps=300, observables={"lyapunov": {}}))
    np.testing.assert_array_equal(data["sweep/dynamics.lr"], F2_LRS)
    growth, steps = data["lyapunov/log_growth"], data["lyapunov/steps"]
    assert growth.shape == (len(F2_LRS), 3000)
    assert (steps == 300).all()
    estimates, standard_errors = [], []
    for point, lr in enumerate(F2_LRS):
        per_trajectory = growth[point] / steps[point]
        estimate = per_trajectory.mean()
        standard_error = per_trajectory.std(ddof=1) / math.sqrt(per_trajectory.size)
        exact = exact_lyapunov(lr)
        assert abs(estimate - exact) < 5 * standard_error, (lr, estimate, exact, standard_error)
        estimates.append(estimate)
        standard_errors.append(standard_error)
    # The measured exponents cross the F2 stability edge: significantly negative at the
    # first point, significantly positive at the last.
    assert estimates[0] + 5 * standard_errors[0] < 0 < estimates[-1] - 5 * standard_errors[-1]


def test_sweep_point_equals_its_own_run(tmp_path):
    # Point k of a sweep is the run of that point alone with trajectories offset by k * N.
    sweep = run_file(tmp_path, f2_sweep(trajectories=600, steps=40), "sweep.h5")
    assert sweep["final/theta"].shape == (4, 600, 1)
    assert sweep["timeseries/mean"].shape[0] == 4
    assert sweep["histogram/batch_counts"].shape[0] == 4
    first = f2_sweep(trajectories=600, steps=40, lrs=F2_LRS[:1])
    single = run_file(tmp_path, first, "single.h5")
    for key in ("final/theta", "lyapunov/log_growth", "timeseries/mean", "histogram/counts",
                "paths/theta", "occupancy/counts"):
        np.testing.assert_array_equal(sweep[key][:1], single[key], err_msg=key)


PER_TRAJECTORY = ("final/theta", "lyapunov/log_growth", "lyapunov/steps", "first_passage/steps",
                  "occupancy/counts")


def test_sweep_point_offset_rule_away_from_point_0(tmp_path):
    # A trajectory's global index is point * N + i (SPEC 5), and its initial state and random
    # words depend only on (seed, global index, step). So trajectory i of point k of a sweep is
    # trajectory k * N + i of a plain run at point k's parameters with (k + 1) * N trajectories.
    n, point = 200, 2
    sweep = run_file(tmp_path, f2_sweep(trajectories=n, steps=40), "sweep.h5")
    lr = F2_LRS[point]
    alone = f2_sweep(trajectories=(point + 1) * n, steps=40, lrs=[lr])
    del alone["sweep"]
    alone["dynamics"]["lr"] = lr
    single = run_file(tmp_path, alone, "single.h5")
    for key in PER_TRAJECTORY:
        np.testing.assert_array_equal(sweep[key][point], single[key][0, point * n:], err_msg=key)
    # The offset matters: the same parameters at trajectories 0..N-1 give other numbers.
    assert not np.array_equal(sweep["final/theta"][point], single["final/theta"][0, :n])
