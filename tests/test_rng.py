"""Philox4x32 known answers on every backend, and the uniform/normal transforms."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sgdsim.kernels import normal_pair, philox4x32, step_block, uniform01, uniform_index
from tests.conftest import KAT_FILE, cuda_simulator_subprocess, requires_cuda_sim


def test_kat_file_has_both_round_counts(kat_vectors):
    assert sorted({rounds for rounds, _ in kat_vectors}) == [7, 10]
    assert len(kat_vectors) == 6


def test_known_answers_numpy(kat_vectors):
    for rounds, v in kat_vectors:
        arrays = [np.array([x, x], dtype=np.uint64) for x in v[:6]]
        out = philox4x32(*arrays, rounds)
        assert [int(w[0]) for w in out] == [int(x) for x in v[6:]]
        assert [int(w[1]) for w in out] == [int(x) for x in v[6:]]


def test_known_answers_cpu(kat_vectors):
    compiled = numba.njit(lambda c0, c1, c2, c3, k0, k1, r: philox4x32(c0, c1, c2, c3, k0, k1, r))
    for rounds, v in kat_vectors:
        out = compiled(*v[:6], rounds)
        assert [int(w) for w in out] == [int(x) for x in v[6:]]


@requires_cuda_sim
def test_known_answers_cuda_simulator():
    code = f"""
import numpy as np
from numba import cuda
from sgdsim.kernels import philox4x32
rows = [l.split() for l in open({str(KAT_FILE)!r}) if l.strip() and not l.startswith('#')]
vec = np.array([[int(x, 16) for x in r[1:7]] for r in rows], dtype=np.uint64)
rounds = np.array([int(r[0]) for r in rows], dtype=np.int64)
out = np.zeros((len(rows), 4), dtype=np.uint64)

@cuda.jit
def kat(vec, rounds, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        w = philox4x32(vec[i, 0], vec[i, 1], vec[i, 2], vec[i, 3], vec[i, 4], vec[i, 5], rounds[i])
        for k in range(4):
            out[i, k] = w[k]

kat[1, 32](vec, rounds, out)
expected = [[int(x, 16) for x in r[7:11]] for r in rows]
assert out.tolist() == expected, (out.tolist(), expected)
print("ok")
"""
    result = cuda_simulator_subprocess(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _words(n, seed=11):
    g = np.arange(n, dtype=np.uint64)
    return step_block(np.uint64(seed), np.uint64(0), g, np.uint64(3), np.uint64(0))


def test_counter_layout_depends_only_on_seed_trajectory_step_block():
    g = np.arange(1000, dtype=np.uint64)
    full = step_block(np.uint64(5), np.uint64(1), g, np.uint64(7), np.uint64(2))
    # The same words come back one trajectory at a time, in any order.
    for i in (999, 0, 517):
        single = step_block(np.uint64(5), np.uint64(1), np.uint64(i), np.uint64(7), np.uint64(2))
        assert [int(w) for w in single] == [int(w[i]) for w in full]
    # And they differ for another step, block, trajectory or key half.
    for other in (step_block(np.uint64(5), np.uint64(1), g, np.uint64(8), np.uint64(2)),
                  step_block(np.uint64(5), np.uint64(1), g, np.uint64(7), np.uint64(3)),
                  step_block(np.uint64(5), np.uint64(1), g + np.uint64(1 << 32), np.uint64(7),
                             np.uint64(2)),
                  step_block(np.uint64(5), np.uint64(2), g, np.uint64(7), np.uint64(2))):
        assert np.mean(other[0] == full[0]) < 0.01


def test_normal_pair_matches_libm_box_muller():
    w0, w1, _, _ = _words(200_000)
    z0, z1 = normal_pair(w0, w1)
    u = (2.0 * w0.astype(np.float64) + 1.0) / 2.0**33
    r = np.sqrt(-2.0 * np.log(u))
    phi = 2.0 * np.pi * w1.astype(np.float64) / 2.0**32
    np.testing.assert_allclose(z0, r * np.cos(phi), rtol=0, atol=1e-13)
    np.testing.assert_allclose(z1, r * np.sin(phi), rtol=0, atol=1e-13)


def test_normal_pair_is_standard_normal():
    w0, w1, w2, w3 = _words(400_000)
    z0, z1 = normal_pair(w0, w1)
    z = np.concatenate([z0, z1])
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # The two halves of a pair are uncorrelated.
    assert abs(np.corrcoef(z0, z1)[0, 1]) < 5 / np.sqrt(z0.size)


def test_normal_pair_compiled_equals_numpy():
    w0, w1, _, _ = _words(1000)
    compiled = numba.njit(lambda a, b: normal_pair(a, b))
    z0, z1 = normal_pair(w0, w1)
    for i in range(0, 1000, 97):
        c0, c1 = compiled(w0[i], w1[i])
        assert abs(c0 - z0[i]) <= 1e-15 * max(1.0, abs(z0[i]))
        assert abs(c1 - z1[i]) <= 1e-15 * max(1.0, abs(z1[i]))


def test_uniform01_is_uniform():
    w0, _, _, _ = _words(200_000)
    u = uniform01(w0)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("n", [2, 3, 7])
def test_uniform_index_is_uniform(n):
    w0, _, _, _ = _words(300_000)
    counts = np.bincount(uniform_index(w0, n).astype(np.int64), minlength=n)
    assert counts.size == n
    assert stats.chisquare(counts).pvalue > 1e-3


def test_float32_normal_pair_is_standard_normal_and_tracks_float64():
    from sgdsim.kernels._philox import normal_pair32
    w0, w1, _, _ = _words(400_000)
    z0, z1 = normal_pair32(w0, w1)
    assert z0.dtype == np.float32
    z = np.concatenate([z0, z1]).astype(np.float64)
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # Same words as the float64 transform: equal to single precision in the body; in the
    # tails, dropping the low 8 bits of w0 moves u (relative 2**-25 / u) and so z a little.
    r0, r1 = normal_pair(w0, w1)
    radius = np.hypot(r0, r1)                    # sqrt(-2 ln u): large where u is small
    for single, double in ((z0, r0), (z1, r1)):
        body = radius < 2.5
        np.testing.assert_allclose(single[body], double[body], rtol=0, atol=2e-5)
        tail = ~body & (radius < 4.5)
        np.testing.assert_allclose(single[tail], double[tail], rtol=0, atol=2e-4)
    compiled = numba.njit(lambda a, b: normal_pair32(a, b))
    for i in range(0, 400_000, 40_009):
        c0, c1 = compiled(w0[i], w1[i])
        assert abs(c0 - z0[i]) <= 2e-6 * max(1.0, abs(z0[i]))


_U64 = 2**64 - 1
_compiled_block = numba.njit(lambda k0, k1, g, t, b: step_block(k0, k1, g, t, b))
_compiled_index = numba.njit(lambda w, n: uniform_index(w, n))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, _U64), g=st.integers(0, _U64), t=st.integers(0, 2**32 - 1),
       block=st.integers(0, 15))
def test_words_are_a_function_of_seed_trajectory_step_block_only(seed, g, t, block):
    key = (np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32))
    scalar = _compiled_block(*key, np.uint64(g), np.uint64(t), np.uint64(block))
    # The same words from a batch of trajectories that contains g anywhere.
    batch = np.array([g ^ 1, g, (g + 12345) & _U64], dtype=np.uint64)
    vector = step_block(*key, batch, np.uint64(t), np.uint64(block))
    assert [int(w) for w in scalar] == [int(w[1]) for w in vector]
    assert all(0 <= int(w) < 2**32 for w in scalar)


@settings(max_examples=200, deadline=None)
@given(word=st.integers(0, 2**32 - 1), n=st.integers(1, 10**6))
def test_uniform_maps_stay_in_range(word, n):
    index = int(_compiled_index(np.uint64(word), n))
    assert 0 <= index < n
    assert index == int(uniform_index(np.array([word], dtype=np.uint64), n)[0])
    assert 0.0 <= float(uniform01(np.uint64(word))) < 1.0


def _group_values(seed, g, c, kind, n=None):
    """The four values of counter word c (block 0) of trajectory g, by the documented layout
    (docs/SPEC.md section 6), from the generator directly."""
    key = (np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32))
    words = philox4x32(np.uint64(0), np.uint64(c), g & np.uint64(0xFFFFFFFF),
                       g >> np.uint64(32), *key, 10)
    if kind == "index":
        return [(w * np.uint64(n)) >> np.uint64(32) for w in words]
    z0, z1 = normal_pair(words[0], words[1])
    z2, z3 = normal_pair(words[2], words[3])
    return [z0, z1, z2, z3]


def _paths(experiment, backend):
    from sgdsim.sim._api import run

    ds = run(experiment, **{"run.backend": backend})
    return ds["paths_theta"].values.reshape(ds["paths_theta"].shape[-3:])[..., 0]            # [trajectory, step]


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_one_block_serves_four_steps_of_a_langevin_and_a_batch_one_sgd_run(backend):
    steps, n = 11, 6
    run = {"seed": 2**40 + 9, "trajectories": n, "steps": steps, "dtype": "float64"}
    # L = 0 (a constant): theta_t - theta_{t-1} = sqrt(temperature dt) z_t exactly.
    free = {"run": run, "model": {"name": "polynomial", "coefficients": [1.0], "noise_var": 1.0},
            "dynamics": {"name": "langevin", "dt": 0.25, "temperature": 1.0},
            "init": {"value": 0.0}, "observables": {"paths": {"count": n, "every": 1}}}
    theta = _paths(free, backend)
    # Three samples with centres 0, 10, 20 and curvature 1: the centre is read off a step.
    centres = [0.0, 10.0, 20.0]
    sgd = {"run": run, "model": {"name": "quadratic_finite_sum", "curvatures": [1.0] * 3,
                                 "centers": centres},
           "dynamics": {"name": "sgd", "lr": 0.5, "batch_size": 1},
           "init": {"value": 0.0}, "observables": {"paths": {"count": n, "every": 1}}}
    x = _paths(sgd, backend)
    for g in range(n):
        for t in range(1, steps + 1):
            c, j = (t - 1) // 4 + 1, (t - 1) % 4
            z = _group_values(run["seed"], np.uint64(g), c, "normal")[j]
            assert theta[g, t] - theta[g, t - 1] == pytest.approx(0.5 * z, abs=1e-12)
            i = int(_group_values(run["seed"], np.uint64(g), c, "index", 3)[j])
            # theta_t = theta_{t-1} - lr (theta_{t-1} - c_i)
            assert x[g, t] == pytest.approx(0.5 * x[g, t - 1] + 0.5 * centres[i], abs=1e-12)
