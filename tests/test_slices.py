"""A chunk run in slices of steps, its state carried between launches, equals the chunk
run in one launch bit for bit, on every backend (the basis of checkpoints and signals
inside long chunks)."""
import copy

import numpy as np
import pytest

from tests.conftest import cuda_simulator_subprocess, requires_cuda_sim
from tests.test_engine_backends import langevin, sgd_unstable


def _chunk(raw, backend):
    from sgdsim import kernels
    from sgdsim.sim._config import resolve_experiment
    from sgdsim.sim._engine import Points
    from sgdsim.sim._plan import make_plan

    raw = copy.deepcopy(raw)
    raw["run"]["backend"] = backend
    experiment = resolve_experiment(raw, "test.toml")
    plan = make_plan(experiment, backend)
    points = Points(plan, "test.toml")
    kernel, d, conf_i, conf_f, paths = points.get(0)
    n = plan.per_point
    x0 = kernels.initial_state(plan.points[0][1]["init"], 0, n, plan.seed, plan.dtype, plan.dim)
    return kernel, (x0, 0, 0, plan.steps, plan.seed, points.models[0].params, d, conf_i,
                    conf_f, plan.boundaries, plan.ts_steps, paths)


def sliced_outputs(raw, backend, cuts):
    """Outputs of one launch and of launches ending at each step in ``cuts``."""
    kernel, inputs = _chunk(raw, backend)
    whole, _ = kernel.run(*inputs[:-1], inputs[-1].copy())
    state = kernel.start(*inputs[:-1], inputs[-1].copy())
    for t in list(cuts) + [state.steps]:
        kernel.advance(state, t)
    assert state.done
    return whole, kernel.outputs(state), state.paths, inputs[-1]


def assert_same(whole, sliced):
    for key in whole:
        np.testing.assert_array_equal(whole[key], sliced[key], err_msg=key)


def stopping(**run):
    raw = langevin(**run)
    raw["observables"] = dict(raw["observables"], first_passage={"above": 0.5, "stop": True})
    return raw


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("make", [langevin, sgd_unstable, stopping])
def test_slices_are_bit_identical_to_one_launch(backend, make):
    raw = make(trajectories=700, steps=90)
    # Cuts on and off the recorded steps of the timeseries (every 8) and the paths (7).
    whole, sliced, _, _ = sliced_outputs(raw, backend, [1, 7, 8, 40, 41, 89])
    assert (whole["lyap_steps"] > 0).any()
    assert_same(whole, sliced)


def test_slices_carry_the_paths_and_a_float32_state():
    raw = langevin(trajectories=300, steps=50, dtype="float32")
    kernel, inputs = _chunk(raw, "cpu")
    one = inputs[-1].copy()
    whole, _ = kernel.run(*inputs[:-1], one)
    state = kernel.start(*inputs[:-1], inputs[-1].copy())
    for t in (3, 21, 50):
        kernel.advance(state, t)
    assert state.out["x_final"].dtype == np.float32
    np.testing.assert_array_equal(one, state.paths)
    assert_same(whole, kernel.outputs(state))


@requires_cuda_sim
def test_slices_on_the_cuda_simulator():
    code = """
import numpy as np
from tests.test_slices import sliced_outputs, assert_same
from tests.test_slices import stopping
# One experiment, small: the simulator runs every thread in Python (about 60 s).
whole, sliced, _, _ = sliced_outputs(stopping(trajectories=128, steps=24), "cuda", [1, 8, 9])
assert_same(whole, sliced)
print("ok")
"""
    result = cuda_simulator_subprocess(code)
    assert result.returncode == 0, result.stderr[-3000:]
