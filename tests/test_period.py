"""The period plug-in observable against GD's orbits on uv iterated here in plain float64.

Beyond 2 / lr = 2 (lr > 1) GD on uv has no stable minimum and, from (0.6, 1.6), settles on
orbits of period 2, 4, 16 before it turns chaotic near lr = 1.31 and diverges beyond 1.35:
the period the kernels report is compared with the period of the orbit computed here, by
the observable's definition, on the cpu and numpy backends; the ring of the last states is
carried across slices; the CUDA simulator and chunking are covered by
tests/test_engine_backends.py (period is among its ALL_OBSERVABLES).
"""
import numpy as np
import pytest

from tests.conftest import run_file
from tests.test_slices import assert_same, sliced_outputs

LRS = [0.9, 1.1, 1.24, 1.3, 1.33, 1.36]
STEPS = 6000


def gd_uv(lr, steps=STEPS, start=(0.6, 1.6)):
    """The last 64 states of GD on (u v - 1)^2 / 2, or None if it leaves |theta| < 1e6."""
    u, v = start
    states = []
    for t in range(steps + 1):
        if t:
            r = u * v - 1.0
            u, v = u - lr * r * v, v - lr * r * u
        if not max(abs(u), abs(v)) < 1e6:
            return None
        states.append((u, v))
    return np.array(states[-64:])


def period_of(states, longest, tol):
    """The observable's definition: smallest p whose last cycle returns within tol."""
    latest = states[::-1]                               # latest[s] = theta_{T - s}
    scale = 1.0 + np.abs(latest[0]).max()
    gaps = [np.abs(latest[:p] - latest[p:2 * p]).max() / scale for p in range(1, longest + 1)]
    for p, gap in enumerate(gaps, start=1):
        if gap <= tol:
            return p, gap
    return 0, min(gaps)


def orbits(backend, lrs=LRS, steps=STEPS, longest=32, tol=1e-8):
    return {
        "run": {"seed": 1, "trajectories": 2, "steps": steps, "backend": backend},
        "model": {"name": "uv", "target": 1.0},
        "dynamics": {"name": "gd", "lr": 0.5},
        "init": {"vector": [0.6, 1.6]},
        "observables": {"period": {"max": longest, "tol": tol},
                        "divergence": {"threshold": 1e6}},
        "sweep": {"dynamics.lr": lrs},
    }


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_period_of_gd_on_uv_is_the_period_of_its_orbit(tmp_path, backend):
    out = run_file(tmp_path, orbits(backend))
    period, gap = out["period/period"], out["period/gap"]
    expected = []
    for k, lr in enumerate(LRS):
        states = gd_uv(lr)
        if states is None:                              # diverged: no period
            assert np.all(period[k] == -1) and np.all(np.isnan(gap[k])), lr
            expected.append(-1)
            continue
        want, want_gap = period_of(states, 32, 1e-8)
        expected.append(want)
        assert np.all(period[k] == want), (lr, period[k], want)
        if want:
            assert np.all(gap[k] <= 1e-8), lr
        else:                                           # chaotic: far from any return
            assert np.all(gap[k] > 1e-3) and want_gap > 1e-3, lr
    # The cascade itself: 1, 2, 4, 16, chaos, divergence.
    assert expected == [1, 2, 4, 16, 0, -1]


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_period_ring_carries_across_slices(backend):
    raw = orbits(backend, lrs=[1.24, 1.33], steps=200, longest=8, tol=1e-6)
    raw["dynamics"] = {"name": "sgd", "lr": 0.5, "noise": "gaussian"}
    raw["model"]["noise_std"] = 1e-7
    raw["run"]["trajectories"] = 70
    whole, sliced, _, _ = sliced_outputs(raw, backend, [1, 50, 63, 64, 130])
    assert (whole["tracked"][0] > 0).any()
    assert_same(whole, sliced)


def test_period_agrees_between_cpu_and_numpy_under_noise(tmp_path):
    # Gradient noise of 1e-4 blurs the orbits: at tol 1e-3 some returns are found, some not.
    raw = orbits("cpu", lrs=[1.1, 1.28, 1.3], steps=400, longest=16, tol=1e-3)
    raw["dynamics"] = {"name": "sgd", "lr": 0.5, "noise": "gaussian"}
    raw["model"]["noise_std"] = 1e-4
    raw["run"]["trajectories"] = 64
    cpu = run_file(tmp_path, raw, "cpu.h5")
    ref = run_file(tmp_path, raw, "np.h5", backend="numpy")
    np.testing.assert_array_equal(cpu["period/period"], ref["period/period"])
    np.testing.assert_allclose(cpu["period/gap"], ref["period/gap"], rtol=1e-9)
    assert len(np.unique(cpu["period/period"])) >= 3
