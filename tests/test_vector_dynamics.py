"""d-dimensional states and two time scales against exact answers (issue 4)."""
import numpy as np
import pytest
from scipy import linalg

from sgdsim.kernels import linear_regression_data
from tests.conftest import cuda_simulator_subprocess, read_run, requires_cuda_sim, run_file


def coupled(dynamics, trajectories=20_000, steps=400, dim=1, **observables):
    return {
        "run": {"seed": 17, "trajectories": trajectories, "steps": steps, "backend": "cpu"},
        "model": {"name": "coupled_quadratic", "dim": dim, "kappa": 1.0, "mu": 1.0,
                  "w_star": [0.5]},
        "dynamics": dynamics,
        "init": {"value": 0.0},
        "observables": observables,
    }


def linear_map(a, b, eps, kappa=1.0, mu=1.0, w_star=0.5):
    """z' = A z + c (+ noise) for coupled_quadratic (dim 1) under two_time_scale."""
    A = np.array([[1 - a, a * kappa * eps],
                  [b * kappa, 1 - b * eps * (kappa**2 + mu)]])
    c = np.array([0.0, b * mu * w_star])
    return A, c


def linear_chain_moments(A, c, Q, steps, z0):
    """Exact mean and covariance after ``steps`` steps of z <- A z + c + noise (covariance Q).

    m <- A m + c and S <- A S A^T + Q from a deterministic start z0 (S = 0).
    """
    mean, cov = np.asarray(z0, float), np.zeros_like(Q)
    for _ in range(steps):
        mean, cov = A @ mean + c, A @ cov @ A.T + Q
    return mean, cov


def check_moments(samples, mean, cov, sigmas=5.0):
    """Sample mean and covariance of rows of ``samples`` within ``sigmas`` standard errors."""
    n = samples.shape[0]
    centred = samples - samples.mean(axis=0)
    assert np.all(np.abs(samples.mean(axis=0) - mean) < sigmas * np.sqrt(np.diag(cov) / n))
    for i in range(cov.shape[0]):
        for j in range(cov.shape[0]):
            products = centred[:, i] * centred[:, j]
            se = products.std(ddof=1) / np.sqrt(n)
            assert abs(products.mean() - cov[i, j]) < sigmas * se, (i, j)


def test_two_time_scale_matches_discrete_lyapunov_equation(tmp_path):
    a, eps, nx, ny = 0.2, 0.5, 1.0, 0.8
    b = eps * a
    data = run_file(tmp_path, coupled({"name": "two_time_scale", "a": a, "eps": eps,
                                       "noise_x": nx, "noise_y": ny}))
    assert data["final/theta"].shape == (1, 20_000, 2)
    theta = data["final/theta"][0]
    A, c = linear_map(a, b, eps)
    Q = np.diag([(a * nx) ** 2, (b * ny) ** 2])
    # The exact law after 400 steps from z = 0, and its stationary limit: the fixed point
    # (lambda(y*), y*) = (kappa eps y*, w_star / eps) = (0.5, 1.0), derived by hand, and the
    # discrete Lyapunov equation S = A S A^T + Q. After 400 steps (slowest factor 0.962) the
    # two differ by ~1e-7, far below the standard errors (~2e-3): both are checked.
    mean, cov = linear_chain_moments(A, c, Q, 400, [0.0, 0.0])
    check_moments(theta, mean, cov)
    check_moments(theta, np.array([0.5, 1.0]), linalg.solve_discrete_lyapunov(A, Q))


def test_two_time_scale_sde_matches_ornstein_uhlenbeck(tmp_path):
    dt, eps, s, alpha = 0.02, 0.5, 0.7, 0.5
    data = run_file(tmp_path, coupled({"name": "two_time_scale_sde", "dt": dt, "eps": eps,
                                       "s": s, "alpha": alpha}, steps=3000))
    # With kappa = mu = 1: dx = -(x - eps y) dt + s dW and
    # dy = -eps (-(x - eps y) + (eps y - w*)) dt + eps^(1+alpha) dB, i.e. dz = (c - K z) dt + ...
    K = np.array([[1.0, -eps], [-eps, 2.0 * eps * eps]])
    Q = np.diag([s**2, eps ** (2 * (1 + alpha))])
    continuous = linalg.solve_continuous_lyapunov(K, Q)         # K S + S K^T = Q
    # Euler-Maruyama is the chain z <- A z + c dt + noise (covariance Q dt), A = I - K dt, whose
    # stationary covariance solves K S + S K^T - dt K S K^T = Q: an O(dt) bias from the SDE's.
    # Its exact law after 3000 steps from z = 0:
    A = np.eye(2) - K * dt
    mean, discrete = linear_chain_moments(A, np.array([0.0, eps * 0.5]) * dt, Q * dt, 3000,
                                          [0.0, 0.0])
    theta = data["final/theta"][0]
    check_moments(theta, mean, discrete)
    # Against the SDE's stationary law: the mean at the fixed point x = eps y, eps y = w*,
    # i.e. (0.5, 1.0) by hand, and the covariance within the chain's bias plus 5 SE.
    n = theta.shape[0]
    fixed_point = np.array([0.5, 1.0])
    assert np.all(np.abs(theta.mean(axis=0) - fixed_point)
                  < np.abs(mean - fixed_point) + 5 * theta.std(axis=0, ddof=1) / np.sqrt(n))
    sample = np.cov(theta.T)
    for i in range(2):
        for j in range(2):
            se = np.std((theta[:, i] - theta[:, i].mean()) * (theta[:, j] - theta[:, j].mean()),
                        ddof=1) / np.sqrt(n)
            assert abs(sample[i, j] - continuous[i, j]) < abs(discrete[i, j] - continuous[i, j]) \
                + 5 * se


def test_two_time_scale_timeseries_of_tracking_and_slow_errors(tmp_path):
    data = run_file(tmp_path, coupled({"name": "two_time_scale", "a": 0.2, "eps": 0.1},
                                      trajectories=256, steps=3000,
                                      timeseries={"points": 30}))
    assert data["attrs"]["x_dim"] == 1
    tracking = data["timeseries/tracking_error"][0]
    slow = data["timeseries/slow_error"][0]
    # Noiseless: x tracks lambda(y) within a few fast steps, y then creeps to y* = 5.
    assert tracking[-1] < 1e-6
    assert slow[0] == pytest.approx(25.0)
    assert slow[-1] < 1e-3 * slow[0]


def regression(lr, batch, steps=4000, trajectories=4000):
    return {
        "run": {"seed": 5, "trajectories": trajectories, "steps": steps, "backend": "cpu"},
        "model": {"name": "linear_regression", "samples": 64, "features": 8,
                  "eigenvalues": [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.1, 0.1],
                  "label_noise": 0.5, "data_seed": 2},
        "dynamics": {"name": "sgd", "lr": lr, "batch_size": batch},
        "init": {"value": 0.0},
        "observables": {"timeseries": {"points": 20}},
    }


def regression_data(model):
    """(A [n, d], b [n]) of a ``linear_regression`` model table: the engine's synthetic data."""
    a, b, _, _ = linear_regression_data(model["samples"], model["features"],
                                        model["eigenvalues"], model["label_noise"],
                                        model["data_seed"])
    return a, b


def sgd_regression_excess_loss(a, b, lr, batch, steps):
    """Exact E[L(theta_T)] - min L of SGD on least squares from theta_0 = 0 (batches drawn
    with replacement).

    With e = theta - w (w the least-squares minimum), residuals r_i = b_i - a_i.w (so that
    mean_i a_i r_i = 0), G = (1/B) sum_j a_zj a_zj^T and u = (1/B) sum_j a_zj r_zj, one step is
    e <- (I - lr G) e + lr u. Its mean m and second moment S follow exactly:
      m <- (I - lr H) m,
      S <- S - lr (H S + S H) + lr^2 [F(S) / B + (1 - 1/B) H S H] - 2 lr^2 C(m) / B + lr^2 R / B,
    with H = E a a^T, F(S) = E (a^T S a) a a^T, C(m) = E (a.m) r a a^T, R = E r^2 a a^T over
    the samples; the excess loss is tr(H S) / 2.
    """
    n = a.shape[0]
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    r = b - a @ w
    hessian = a.T @ a / n
    noise = a.T @ (r[:, None] ** 2 * a) / n
    m, second = -w, np.outer(w, w)
    for _ in range(steps):
        quad = np.einsum("ij,jk,ik->i", a, second, a)
        fourth = a.T @ (quad[:, None] * a) / n
        cross = a.T @ (((a @ m) * r)[:, None] * a) / n
        hs = hessian @ second
        second = (second - lr * (hs + second @ hessian)
                  + lr**2 * (fourth / batch + (1 - 1 / batch) * hs @ hessian)
                  - 2 * lr**2 * cross / batch + lr**2 * noise / batch)
        m = m - lr * hessian @ m
    return 0.5 * np.trace(hessian @ second)


def stationary_excess_loss(tmp_path, lr, batch, name):
    experiment = regression(lr, batch)
    data = run_file(tmp_path, experiment, name)
    a, b = regression_data(experiment["model"])
    theta = data["final/theta"][0]                 # [N, 8]
    # The least-squares minimum from the data itself (not the model's own w_min, loss_min).
    w_min = np.linalg.lstsq(a, b, rcond=None)[0]
    loss_min = 0.5 * np.mean((a @ w_min - b) ** 2)
    residual = theta @ a.T - b                     # [N, 64]
    excess = 0.5 * (residual**2).mean(axis=1) - loss_min
    mean, se = excess.mean(), excess.std(ddof=1) / np.sqrt(excess.size)
    exact = sgd_regression_excess_loss(a, b, lr, batch, experiment["run"]["steps"])
    assert abs(mean - exact) < 5 * se, (lr, batch, mean, exact, se)
    return mean, se


def test_linear_regression_noise_scale_lr_over_batch(tmp_path):
    small = [stationary_excess_loss(tmp_path, lr, batch, f"s{batch}.h5")
             for lr, batch in ((0.02, 1), (0.04, 2), (0.08, 4))]
    values = np.array([m for m, _ in small])
    # Small steps: only lr/B matters (to within 10 %).
    assert values.max() / values.min() < 1.10
    # Large steps at the same lr/B = 0.15: it no longer does (terms of order lr^2 H; at
    # lr = 1.0, B = 4 the iteration is already unstable).
    large = [stationary_excess_loss(tmp_path, lr, batch, f"l{batch}.h5")
             for lr, batch in ((0.15, 1), (0.6, 4))]
    (m1, se1), (m4, se4) = large
    assert abs(m4 - m1) / min(m1, m4) > 0.10
    assert abs(m4 - m1) > 5 * np.hypot(se1, se4)


def vector_case(backend, trajectories=300, steps=25):
    return {
        "run": {"seed": 8, "trajectories": trajectories, "steps": steps, "backend": backend},
        "model": {"name": "grooves", "dim": 2, "kappa": 1.0, "mu": 2.0},
        "dynamics": {"name": "two_time_scale_sde", "dt": 0.05, "eps": 0.3, "s": 0.6,
                     "alpha": 0.5},
        "init": {"normal": {"mean": 0.5, "std": 1.0}},
        "observables": {
            "histogram": {"lo": -3.0, "hi": 3.0, "bins": 30, "burn_in": 5},
            "first_passage": {"above": 2.0, "coordinate": "norm"},
            "divergence": {"threshold": 100.0, "coordinate": "norm"},
            "lyapunov": {},
            "occupancy": {"boundaries": [1.0], "coordinate": "norm"},
            "timeseries": {"points": 6},
            "paths": {"count": 3, "every": 5},
        },
    }


def datasets(data):
    return {k: v for k, v in data.items() if k != "attrs"}


def test_vector_kernels_cpu_and_numpy_agree_and_chunks_do_not_matter(tmp_path):
    cpu = run_file(tmp_path, vector_case("cpu"), "cpu.h5")
    ref = run_file(tmp_path, vector_case("numpy"), "np.h5")
    chunked = run_file(tmp_path, vector_case("cpu") | {"run": {
        **vector_case("cpu")["run"], "chunk": 256}}, "chunked.h5")
    assert cpu["final/theta"].shape == (1, 300, 4)
    assert cpu["histogram/counts"].shape == (1, 4, 30)
    for key in datasets(cpu):
        np.testing.assert_array_equal(cpu[key], chunked[key], err_msg=key)
        if cpu[key].dtype.kind in "iub":
            np.testing.assert_array_equal(cpu[key], ref[key], err_msg=key)
        else:
            np.testing.assert_allclose(cpu[key], ref[key], rtol=1e-9, atol=1e-10,
                                       equal_nan=True, err_msg=key)


@requires_cuda_sim
def test_vector_kernel_cuda_simulator_agrees_with_cpu(tmp_path):
    code = f"""
import pathlib
from tests.test_vector_dynamics import vector_case
from tests.conftest import run_file
run_file(pathlib.Path({str(tmp_path)!r}), vector_case("cuda", 64, 6), "cuda.h5")
print("ok")
"""
    result = cuda_simulator_subprocess(code)
    assert result.returncode == 0, result.stderr[-3000:]
    cuda = read_run(tmp_path / "cuda.h5")
    cpu = run_file(tmp_path, vector_case("cpu", 64, 6), "cpu.h5")
    for key in datasets(cpu):
        if cpu[key].dtype.kind in "iub":
            np.testing.assert_array_equal(cpu[key], cuda[key], err_msg=key)
        else:
            np.testing.assert_allclose(cpu[key], cuda[key], rtol=1e-9, atol=1e-10,
                                       equal_nan=True, err_msg=key)


def regression_64(dynamics, steps, trajectories, init, observables):
    """Least squares in d = 64 (128 samples): the state and tangent in thread-local memory."""
    exp = regression(0.01, 1, steps=steps, trajectories=trajectories)
    exp["model"].update(features=64, samples=128, eigenvalues=[1.0] * 64)
    exp["dynamics"] = dynamics
    exp["init"] = init
    exp["observables"] = observables
    return exp


def test_dimension_64_gradient_descent_follows_its_closed_form(tmp_path):
    # GD on L = |A theta - b|^2 / (2n): theta_t = w + U diag((1 - lr h_k)^t) U^T (theta_0 - w),
    # with H = A^T A / n = U diag(h) U^T and w = H^-1 A^T b / n. Every path, final state and
    # ensemble moment is checked against it; theta_0 is read from the paths at step 0.
    lr, steps, n = 0.2, 200, 64
    exp = regression_64({"name": "gd", "lr": lr}, steps, n, {"normal": {"mean": 0.0, "std": 1.0}},
                        {"paths": {"count": n, "every": 20}, "timeseries": {"points": 5},
                         "lyapunov": {}})
    data = run_file(tmp_path, exp)
    a, b = regression_data(exp["model"])
    hessian = a.T @ a / a.shape[0]
    curvatures, basis = np.linalg.eigh(hessian)
    w = np.linalg.solve(hessian, a.T @ b / a.shape[0])

    def exact(theta_0, t):
        return w + ((theta_0 - w) @ basis * (1.0 - lr * curvatures) ** t) @ basis.T

    path_steps, paths = data["paths/steps"], data["paths/theta"][0]       # [n, K, 64]
    assert path_steps[0] == 0 and path_steps[-1] == steps
    theta_0 = paths[:, 0]
    assert abs(theta_0.mean()) < 5 / np.sqrt(theta_0.size)                # N(0, 1) draws
    assert abs(theta_0.var() - 1.0) < 5 * np.sqrt(2.0 / theta_0.size)
    for k, t in enumerate(path_steps):
        np.testing.assert_allclose(paths[:, k], exact(theta_0, t), rtol=1e-9, atol=1e-11,
                                   err_msg=f"step {t}")
    np.testing.assert_allclose(data["final/theta"][0], exact(theta_0, steps), rtol=1e-9,
                               atol=1e-11)
    assert np.abs(data["final/theta"][0] - w).max() > 0.01    # still on the way: not just w
    for k, t in enumerate(data["timeseries/steps"]):
        ensemble = exact(theta_0, t)
        np.testing.assert_allclose(data["timeseries/mean"][0, k], ensemble.mean(axis=0),
                                   rtol=1e-9, atol=1e-11, err_msg=f"step {t}")
        np.testing.assert_allclose(data["timeseries/var"][0, k], ensemble.var(axis=0),
                                   rtol=1e-8, atol=1e-11, err_msg=f"step {t}")
    # The tangent map is I - lr H at every step: |J v| / |v| lies between its smallest and
    # largest singular values (to the central difference's rounding).
    factors = np.abs(1.0 - lr * curvatures)
    rate = data["lyapunov/log_growth"][0] / data["lyapunov/steps"][0]
    assert np.all(rate <= np.log(factors.max()) + 1e-6)
    assert np.all(rate >= np.log(factors.min()) - 1e-6)


def test_dimension_64_sgd_mean_follows_gradient_descent(tmp_path):
    # E theta_t of SGD is the GD iterate: E[a_z a_z^T] = H and E[a_z b_z] = A^T b / n, and z_t
    # is independent of theta_t, so E theta_t = w - (I - lr H)^t w from theta_0 = 0.
    # Each coordinate's ensemble mean is within 5 standard errors of it.
    lr, steps, n = 0.01, 2000, 512
    exp = regression_64({"name": "sgd", "lr": lr, "batch_size": 1}, steps, n, {"value": 0.0},
                        {"lyapunov": {}, "timeseries": {"points": 5}})
    data = run_file(tmp_path, exp)
    assert data["final/theta"].shape == (1, n, 64)
    a, b = regression_data(exp["model"])
    hessian = a.T @ a / a.shape[0]
    curvatures, basis = np.linalg.eigh(hessian)
    w = np.linalg.solve(hessian, a.T @ b / a.shape[0])
    recorded = data["timeseries/steps"]
    assert recorded[0] == 0 and np.all(data["timeseries/mean"][0, 0] == 0.0)
    assert np.all(data["timeseries/var"][0, 1:] > 0)     # the sampled batches spread the ensemble
    for k, t in enumerate(recorded[1:], start=1):
        expected = w - basis @ ((1.0 - lr * curvatures) ** t * (basis.T @ w))
        se = np.sqrt(data["timeseries/var"][0, k] / n)
        z = (data["timeseries/mean"][0, k] - expected) / se
        assert np.all(np.abs(z) < 5), (t, np.abs(z).max())
    # Each step's tangent map I - lr a_z a_z^T has singular values 1 and |1 - lr |a_z|^2| <= 1:
    # the exponent is at most 0, and below it on average (the steps contract).
    rate = data["lyapunov/log_growth"][0] / data["lyapunov/steps"][0]
    assert np.all(np.abs(1.0 - lr * (a * a).sum(axis=1)) <= 1.0)     # the bound's premise
    assert np.all(rate <= 1e-6)
    assert rate.mean() + 5 * rate.std(ddof=1) / np.sqrt(n) < 0


@pytest.mark.slow  # about 90 s: four cold compiles; the dynamics variant below stays default
def test_disk_cache_keeps_kernels_of_different_shapes_apart(tmp_path):
    # Regressions: numba's on-disk cache once handed a d = 2 kernel to a d = 4 model (its
    # closure hash does not tell them apart), and two cached kernels loaded into one
    # process once ran each other's code (same symbol names); sgdsim keys a folder and a
    # function name per kernel.
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    code = f"""
import pathlib, numpy as np
from tests.test_vector_dynamics import coupled, vector_case
from tests.conftest import run_file
out = pathlib.Path({str(tmp_path)!r})
a = run_file(out, coupled({{"name": "two_time_scale", "a": 0.2, "eps": 0.5}}, 256, 20), "a.h5")
b = run_file(out, vector_case("cpu", 256, 20), "b.h5")
from tests.test_vector_dynamics import regression
c = run_file(out, regression(0.02, 1, steps=200, trajectories=256), "c.h5")
print(np.isfinite(a["final/theta"]).all() and np.isfinite(b["final/theta"]).all()
      and b["final/theta"].shape == (1, 256, 4) and np.abs(c["final/theta"]).max() < 10)
np.save(out / ("b_" + __import__("os").environ["SGDSIM_CACHE_DIR"].replace("/", "_") + ".npy"),
        b["final/theta"])
"""
    finals = []
    for cache in (str(tmp_path / "cache"), str(tmp_path / "cache"), "off"):
        env = dict(os.environ, SGDSIM_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=600, cwd=str(ROOT))
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "True"
        finals.append(np.load(tmp_path / ("b_" + cache.replace("/", "_") + ".npy")))
    # Cold cache, warm cache and no cache give the same bits.
    np.testing.assert_array_equal(finals[0], finals[1])
    np.testing.assert_array_equal(finals[0], finals[2])


def test_disk_cache_keeps_kernels_of_different_dynamics_apart(tmp_path):
    # The same model under gd and sgd, each compiled and cached by a process of its own,
    # then both loaded from the cache into a third: each must give its own bits.
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    code = f"""
import pathlib, sys, numpy as np
from tests.test_vector_dynamics import regression
from tests.conftest import run_file
out = pathlib.Path({str(tmp_path)!r})
for name in sys.argv[1:]:
    exp = regression(0.02, 1, steps=20, trajectories=64)
    exp["dynamics"] = {{"gd": {{"name": "gd", "lr": 0.02}}, "sgd": exp["dynamics"]}}[name]
    exp["observables"] = {{}}
    final = run_file(out, exp, name + ".h5")["final/theta"]
    np.save(out / f"{{name}}_{{len(sys.argv)}}.npy", final)
"""
    env = dict(os.environ, SGDSIM_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    for names in (["sgd"], ["gd"], ["gd", "sgd"]):
        result = subprocess.run([sys.executable, "-c", code, *names], env=env,
                                capture_output=True, text=True, timeout=600, cwd=str(ROOT))
        assert result.returncode == 0, result.stderr[-2000:]
    for name in ("gd", "sgd"):
        alone, together = (np.load(tmp_path / f"{name}_{k}.npy") for k in (2, 3))
        np.testing.assert_array_equal(alone, together, err_msg=name)
    assert np.load(tmp_path / "sgd_2.npy")[0].std(axis=0).max() > 0    # sgd is not gd
