"""The F1-F4 failure-mode examples (examples/failure_modes, docs/failure_modes.md).

Default run: reduced sizes (``check.py --quick``: a few seconds each once the kernels are
compiled; the first run of each model/dynamics compiles for ~10-20 s). ``pytest -m slow``: the
full-size examples, as run by ``python examples/failure_modes/check.py``. Every tolerance is in
standard errors of the quantity tested (3 SE), plus, for F1's slope, the computed finite-eta
bias of the exact SGD chain.
"""
import importlib.util
import math
import pathlib

import numpy as np
import pytest
from scipy import integrate

from tests.conftest import read_run, run_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECK = ROOT / "examples" / "failure_modes" / "check.py"


def _load_check():
    spec = importlib.util.spec_from_file_location("failure_modes_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_check()


def _rows(result, key="eta"):
    return sorted(result["rows"], key=lambda r: -r[key])


def _assert_checks(result):
    failed = [f"{c['check']}: {c['detail']}" for c in result["checks"] if not c["passed"]]
    assert not failed, failed
    assert result["passed"]


def kramers_slope(name="f1_escape"):
    """2 dU = 2 * integral of L'/Sigma from the start (well B) to the barrier top, by quadrature.

    Computed here from the experiment file alone (the top is the root of L' between the
    start and the first-passage level), independently of check.py and analysis.
    """
    from sgdsim import sim

    experiment = sim.load_experiment(check.HERE / f"{name}.toml")
    model = experiment["model"]
    start = experiment["init"]["value"]
    level = experiment["observables"]["first_passage"]["below"]
    slope = np.polynomial.polynomial.polyder(np.asarray(model["coefficients"], float))
    roots = np.polynomial.polynomial.polyroots(slope)
    (top,) = [r.real for r in roots if abs(r.imag) < 1e-12 and level < r.real < start]
    noise = model["noise_var"]
    sigma = lambda x: noise["left"] + (noise["right"] - noise["left"]) / (
        1.0 + math.exp(-(x - noise["center"]) / noise["width"]))
    grad = lambda x: np.polynomial.polynomial.polyval(x, slope)
    # The logistic step is narrow (width 0.005): give quad its scale.
    integral, _ = integrate.quad(lambda x: grad(x) / sigma(x), top, start, epsabs=0,
                                 epsrel=1e-12, limit=200,
                                 points=[noise["center"] + k * noise["width"] for k in (1, 4, 20)])
    return -2.0 * integral


def assert_f1(result, outdir, quick):
    s = result["summary"]
    # log(mean escape time) rises with 1/eta at the Kramers slope 2 dU (SCIENCE: about
    # 2 dV / Sigma_B = 0.05): the measured slope against the quadrature, allowing the exact SGD
    # chain's own finite-eta departure from it, and against the exact chain's slope itself.
    two_du = kramers_slope()
    assert abs(s["slope"] - two_du) <= 3 * s["slope_se"] + abs(s["slope_chain"] - two_du)
    assert abs(s["slope"] - s["slope_chain"]) <= 3 * s["slope_se"]
    assert s["2dU (exact Phi)"] == pytest.approx(two_du, rel=1e-3)   # check.py's own theory
    assert s["slope_se"] < 0.1 * s["slope"]  # the fit resolves the slope to better than 10 %
    rows = _rows(result)
    means = [r["mean_steps"] for r in rows]
    assert means == sorted(means)  # escapes take longer as eta falls ...
    # ... by about exp(2 dU / eta): each mean within 3 SE of the exact SGD chain's value
    assert all(abs(r["z_chain"]) <= 3 for r in rows)
    assert all(r["censored"] < 0.01 for r in rows)  # the horizon covers (almost) every escape
    _assert_checks(result)


def assert_f2(result, outdir, quick):
    by_lr = {r["lr"]: r for r in result["rows"]}
    unstable, stable = by_lr[0.15], by_lr[0.1]
    exact = 0.5 * math.log(1.7 * 0.7)
    # The engine's trajectories at lr 0.15 themselves: with K picks of sample 0 in T steps,
    # log_growth = K ln 1.7 + (T - K) ln 0.7 and theta_T = (-1.7)^K 0.7^(T - K) exactly; the
    # mean of K ~ Binomial(T, 1/2) is what the exponent's check below tests.
    data = read_run(pathlib.Path(outdir) / f"f2_lyapunov{'_quick' if quick else ''}.h5")
    point = list(data["sweep/dynamics.lr"]).index(0.15)
    growth, steps = data["lyapunov/log_growth"][point], data["lyapunov/steps"][point]
    horizon = int(data["attrs"]["steps"])
    assert (steps == horizon).all()
    up, down = math.log(1.7), math.log(0.7)
    picks = (growth - horizon * down) / (up - down)
    k = np.round(picks)
    np.testing.assert_allclose(picks, k, rtol=0, atol=1e-8)
    np.testing.assert_allclose(data["final/theta"][point, :, 0],
                               (-1.7) ** k * 0.7 ** (horizon - k), rtol=1e-9)
    assert abs(unstable["lambda"] - exact) <= 3 * unstable["lambda_se"]
    assert unstable["lambda"] - 3 * unstable["lambda_se"] > 0  # positive, significantly
    assert stable["lambda"] == pytest.approx(math.log(0.8), rel=1e-9)
    assert unstable["div_ci95_low"] > 0.99 and stable["diverged"] == 0
    b = math.log(1e8)
    assert b / exact - 3 * unstable["se_div_step"] <= unstable["mean_div_step"] <= \
        (b + math.log(1.7)) / exact + 3 * unstable["se_div_step"]
    assert unstable["frac |theta_T|>thr"] > 0.99 and stable["frac |theta_T|>thr"] == 0
    _assert_checks(result)


def assert_f3(result, outdir, quick):
    for r in result["rows"]:
        assert abs(r["pi_B(final)"] - 0.5) <= 3 * r["se"]
        assert r["T/relax"] >= 5
    _assert_checks(result)


def assert_f4(result, outdir, quick):
    rows = _rows(result)
    for r in rows:
        assert r["pi_B"] - 0.5 > 3 * r["se"]
        assert abs(r["z_chain"]) <= 3
    for hi, lo in zip(rows, rows[1:]):  # eta falling: pi_A falling, pi_B rising toward 1
        assert hi["pi_A"] - lo["pi_A"] > 3 * math.hypot(hi["se"], lo["se"])
        assert lo["diffusion pi_A"] < hi["diffusion pi_A"]
    assert rows[-1]["pi_B"] > 0.99
    _assert_checks(result)


ASSERTS = {"F1": assert_f1, "F2": assert_f2, "F3": assert_f3, "F4": assert_f4}


@pytest.mark.parametrize("mode", check.MODES)
def test_failure_mode_quick(mode, tmp_path):
    result = check.run_mode(mode, tmp_path, quick=True)
    ASSERTS[mode](result, tmp_path, quick=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", check.MODES)
def test_failure_mode_full(mode, tmp_path):
    result = check.run_mode(mode, tmp_path, quick=False)
    ASSERTS[mode](result, tmp_path, quick=False)


def test_f2_mean_loss_is_stable_under_gradient_descent(tmp_path):
    # F2's premise, run by the engine: on the example's model the mean loss has curvature
    # 10 < 2/lr, so GD at lr 0.15 multiplies theta by exactly 1 - 0.15 * 10 = -0.5 per step
    # (while SGD at that lr diverges, above).
    from sgdsim import sim

    experiment = sim.load_experiment(check.HERE / "f2_lyapunov.toml")
    assert 0.15 in experiment["sweep"]["dynamics.lr"]
    steps = 60
    data = run_file(tmp_path, {
        "run": {"trajectories": 8, "steps": steps, "backend": "cpu"},
        "model": experiment["model"],
        "dynamics": {"name": "gd", "lr": 0.15},
        "init": {"uniform": {"low": -1.0, "high": 1.0}},
        "observables": {"paths": {"count": 8, "every": 1}},
    })
    np.testing.assert_array_equal(data["paths/steps"], np.arange(steps + 1))
    paths = data["paths/theta"][0, :, :, 0]                     # [8, steps + 1]
    np.testing.assert_allclose(paths[:, 1:], -0.5 * paths[:, :-1], rtol=1e-14, atol=0)
    np.testing.assert_allclose(data["final/theta"][0, :, 0], (-0.5) ** steps * paths[:, 0],
                               rtol=1e-12)


def test_check_script_prints_table_and_verdict(tmp_path, capsys):
    assert check.main(["F2", "--quick", "--outdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lambda_exact" in out and "F2: PASS" in out
    assert (tmp_path / "f2_lyapunov_quick.h5").exists()


def test_experiment_files_resolve():
    from sgdsim import sim

    for names in check.FILES.values():
        for name in names:
            experiment = sim.load_experiment(check.HERE / f"{name}.toml")
            assert experiment["model"]["name"] in ("polynomial", "quadratic_finite_sum")


@pytest.mark.slow  # about 60 s: AMS at three step sizes and the quick brute-force F1
def test_f1_at_the_paper_scale_quick(tmp_path):
    """f1_paper_scale.py --quick: AMS agrees with brute force and with the exact chain (or
    the diffusion) at every step size, its slope with 2 dU, and the extrapolation to
    SCIENCE's dV = 100 lands within 3 of its standard errors of the exact line's."""
    import sys
    sys.path.insert(0, str(CHECK.parent))
    try:
        import f1_paper_scale as example
    finally:
        sys.path.remove(str(CHECK.parent))
    result = example.measure(tmp_path, quick=True)
    failed = [f"{c['check']}: {c['detail']}" for c in result["checks"] if not c["passed"]]
    assert not failed, failed
    summary = result["summary"]
    assert abs(summary["paper_log10_steps"] - summary["paper_log10_exact_line"]) \
        <= 3 * summary["paper_log10_se"]
    assert max(r["mfpt"] for r in result["rows"]) > 1e13     # beyond brute force
    example.figure(result, tmp_path / "f1.png")
    assert (tmp_path / "f1.png").stat().st_size > 10_000
