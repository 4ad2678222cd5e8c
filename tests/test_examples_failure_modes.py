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

import pytest

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


def assert_f1(result):
    s = result["summary"]
    # log(mean escape time) rises with 1/eta at the Kramers slope 2 dU = 2 dV / Sigma_B = 0.05.
    assert s["2dU (dV/Sigma_B)"] == pytest.approx(0.05)
    assert s["2dU (exact Phi)"] == pytest.approx(0.05, rel=1e-3)
    assert abs(s["slope"] - s["2dU (exact Phi)"]) <= 3 * s["slope_se"] + abs(s["slope_chain"] - s["2dU (exact Phi)"])
    assert s["slope_se"] < 0.1 * s["slope"]  # the fit resolves the slope to better than 10 %
    rows = _rows(result)
    means = [r["mean_steps"] for r in rows]
    assert means == sorted(means)  # escapes take longer as eta falls ...
    # ... by about exp(2 dU / eta): each mean within 3 SE of the exact SGD chain's value
    assert all(abs(r["z_chain"]) <= 3 for r in rows)
    assert all(r["censored"] < 0.01 for r in rows)  # the horizon covers (almost) every escape
    _assert_checks(result)


def assert_f2(result):
    by_lr = {r["lr"]: r for r in result["rows"]}
    unstable, stable = by_lr[0.15], by_lr[0.1]
    assert unstable["mean_curv"] == 10 and unstable["2/lr"] == pytest.approx(13.333, rel=1e-4)
    exact = 0.5 * math.log(1.7 * 0.7)
    assert unstable["lambda_exact"] == pytest.approx(exact, rel=1e-12)
    assert abs(unstable["lambda"] - exact) <= 3 * unstable["lambda_se"]
    assert unstable["lambda"] - 3 * unstable["lambda_se"] > 0  # positive, significantly
    assert stable["lambda"] == pytest.approx(math.log(0.8), rel=1e-9)
    assert unstable["div_ci95_low"] > 0.99 and stable["diverged"] == 0
    b = math.log(1e8)
    assert b / exact - 3 * unstable["se_div_step"] <= unstable["mean_div_step"] <= \
        (b + math.log(1.7)) / exact + 3 * unstable["se_div_step"]
    assert unstable["frac |theta_T|>thr"] > 0.99 and stable["frac |theta_T|>thr"] == 0
    _assert_checks(result)


def assert_f3(result):
    for r in result["rows"]:
        assert abs(r["pi_B(final)"] - 0.5) <= 3 * r["se"]
        assert r["T/relax"] >= 5
    _assert_checks(result)


def assert_f4(result):
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
    ASSERTS[mode](result)


@pytest.mark.slow
@pytest.mark.parametrize("mode", check.MODES)
def test_failure_mode_full(mode, tmp_path):
    result = check.run_mode(mode, tmp_path, quick=False)
    ASSERTS[mode](result)


def test_check_script_prints_table_and_verdict(tmp_path, capsys):
    assert check.main(["F2", "--quick", "--outdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lambda_exact" in out and "F2: PASS" in out
    assert (tmp_path / "f2_lyapunov_quick.h5").exists()


def test_experiment_files_resolve():
    import sim

    for names in check.FILES.values():
        for name in names:
            experiment = sim.load_experiment(check.HERE / f"{name}.toml")
            assert experiment["model"]["name"] in ("polynomial", "quadratic_finite_sum")
