"""Reading, summary JSON/table, report and the command line on synthetic run files."""

import json
import math
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from sgdsim import analysis
from sgdsim.analysis import _estimators as est
from _runfiles import experiment_table, ou_run, write_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "sgdsim.analysis", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def ou_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "ou.h5"
    truth = ou_run(path, seed=3, temperatures=(0.5, 1.0), trajectories=800, steps=600, hazards=(0.004, 0.006))
    return path, truth


def test_import_loads_no_engine_or_numba():
    code = ("import sys, sgdsim.analysis, sgdsim.analysis._summary, sgdsim.analysis._theory; "
            "bad = [m for m in sys.modules if (m.split('.')[0] == 'numba' or m.split('.')[:2] in (['sgdsim', 'kernels'], ['sgdsim', 'sim']))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr



def test_format_constants_agree_with_sim():
    # analysis may not import sim, so it keeps its own copy of the run-file format.
    from sgdsim.analysis import _read
    from sgdsim.sim import _version
    assert (_read.FORMAT_NAME, _read.FORMAT_VERSION) == (_version.FORMAT, _version.FORMAT_VERSION)

def test_sweep_params_and_summary_values(ou_file):
    path, truth = ou_file
    run = analysis.open_run(path)
    assert run.points == 2
    assert run.params(1)["dynamics"]["temperature"] == 1.0
    summary = analysis.summarize(run)
    data = truth["datasets"]
    for p, point in enumerate(summary["points"]):
        tau = run.sweep["dynamics.temperature"][p]
        assert point["params"]["dynamics.temperature"] == tau
        # theory: Ornstein-Uhlenbeck variance tau / (2k), k = 1
        assert point["theory"]["stationary_var"] == pytest.approx(tau / 2.0, rel=1e-6)
        assert point["lyapunov"]["estimate"] == pytest.approx(
            np.mean(data["lyapunov/log_growth"][p] / data["lyapunov/steps"][p]), rel=1e-12)
        assert point["theory"]["lyapunov"] == pytest.approx(math.log(1 - 0.01), rel=1e-12)
        passage = data["first_passage/steps"][p]
        assert point["first_passage"]["events"] == int((passage >= 1).sum())
        direct = est.first_passage(passage, 600, censor_steps=data["divergence/steps"][p], dt=0.01)
        assert point["first_passage"]["rate_per_step"] == direct["rate_per_step"]
        assert point["first_passage"]["rate_per_time"] == pytest.approx(direct["rate_per_step"] / 0.01)
        assert point["divergence"]["events"] == int((data["divergence/steps"][p] >= 1).sum())
        assert point["histogram"]["visits"] == int(data["histogram/counts"][p].sum() + data["histogram/outside"][p].sum())
        assert 0 < point["theory"]["stationary_tv"] < 0.05
        assert point["final"]["mean"] == pytest.approx(data["final/theta"][p, :, 0].mean())


def test_summary_json_and_table(ou_file):
    path, _ = ou_file
    res = _cli("summary", str(path), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    point = doc["points"][0]
    for key in ("params", "lyapunov", "first_passage", "divergence", "occupancy", "histogram", "theory"):
        assert key in point
    assert set(point["lyapunov"]) >= {"estimate", "stderr", "ci95"}
    assert set(point["first_passage"]) >= {"events", "censored_fraction", "mean_steps", "mean_ci95", "restricted",
                                           "median_steps", "rate_per_step", "rate_ci95", "mean_time", "rate_per_time"}
    assert set(point["theory"]) >= {"lyapunov", "first_passage_mean_time", "first_passage_mean_steps",
                                    "stationary_tv", "stationary_mean", "stationary_var"}
    table = _cli("summary", str(path))
    assert table.returncode == 0 and "lyapunov.exponent per step" in table.stdout


def test_report_writes_index_and_figures(ou_file, tmp_path):
    path, _ = ou_file
    out = tmp_path / "report"
    res = _cli("report", str(path), "-o", str(out))
    assert res.returncode == 0, res.stderr
    names = set(os.listdir(out))
    assert {"index.html", "density.png", "survival.png", "divergence_lyapunov.png", "occupancy.png",
            "timeseries.png", "paths.png", "sweep_dynamics_temperature.png", "escape_arrhenius.png"} <= names
    html = (out / "index.html").read_text()
    for name in names - {"index.html"}:
        assert name in html and (out / name).read_bytes()[:4] == b"\x89PNG"
    again = _cli("report", str(path), "-o", str(out))
    assert again.returncode == 2 and again.stderr.startswith("error:")
    assert _cli("report", str(path), "-o", str(out), "--overwrite").returncode == 0


def _bad_files(tmp_path, ou_file):
    src, _ = ou_file
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    files = {"missing": tmp_path / "nope.h5", "text": text}
    for name, attr, value in (("format", "format", "other"), ("version", "format_version", 99),
                              ("incomplete", "complete", False)):
        path = tmp_path / f"{name}.h5"
        path.write_bytes(src.read_bytes())
        with h5py.File(path, "r+") as f:
            f.attrs[attr] = value
        files[name] = path
    return files


@pytest.mark.parametrize("case", ["missing", "text", "format", "version", "incomplete"])
def test_bad_run_files_exit_2_with_one_line(case, tmp_path, ou_file):
    path = _bad_files(tmp_path, ou_file)[case]
    with pytest.raises(analysis.RunFileError):
        analysis.open_run(path)
    res = _cli("summary", str(path))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:")
    out = tmp_path / f"rep_{case}"
    assert _cli("report", str(path), "-o", str(out)).returncode == 2
    assert not out.exists()  # bad input creates nothing


def test_summary_into_a_closed_pipe_is_quiet(ou_file):
    """`sgdsim-analysis summary OUT.h5 | head -2`: no error when the reader leaves.

    The reader here leaves before the first line is written, so the write must fail
    with a broken pipe whatever the size of the summary.
    """
    path, _ = ou_file
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "sgdsim.analysis", "summary", str(path)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                   # the reader leaves at once
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert stderr == ""


def test_usage_error_exits_2():
    res = _cli("summarise", "x.h5")
    assert res.returncode == 2 and res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1


def test_sgd_f2_file_summary(tmp_path):
    rng = np.random.default_rng(0)
    exp = experiment_table({"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0], "centers": [0.0, 0.0]},
                           {"name": "sgd", "lr": 0.15, "batch_size": 1, "noise": "finite_sum"},
                           trajectories=500, steps=200, init={"value": 1.0}, observables={"lyapunov": {}})
    from _runfiles import f2_log_growth
    growth = f2_log_growth(rng, (1, 500), 200)
    path = write_run(tmp_path / "f2.h5", exp, {"final/theta": np.zeros((1, 500, 1)),
                                               "lyapunov/log_growth": growth,
                                               "lyapunov/steps": np.full((1, 500), 200)})
    point = analysis.summarize(path)["points"][0]
    assert point["theory"]["lyapunov"] == pytest.approx(0.5 * math.log(1.19))
    assert abs(point["lyapunov"]["estimate"] - point["theory"]["lyapunov"]) < 5 * point["lyapunov"]["stderr"]


def test_end_to_end_engine_run_summarised(tmp_path):
    # The engine ships with analysis: a broken `sim` fails this test, it does not skip it.
    from sgdsim import sim
    assert callable(sim.load_experiment) and callable(sim.run_experiment)
    exp = tmp_path / "f2.toml"
    exp.write_text('[run]\nseed = 3\ntrajectories = 300\nsteps = 100\nbackend = "numpy"\n'
                   '[model]\nname = "quadratic_finite_sum"\ncurvatures = [18.0, 2.0]\n'
                   '[dynamics]\nname = "sgd"\nlr = 0.15\n[init]\nvalue = 1.0\n'
                   '[observables]\nlyapunov = {}\ndivergence = { threshold = 1e8 }\n')
    out = tmp_path / "f2.h5"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "sgdsim.sim", "run", str(exp), "-o", str(out), "--quiet"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = _cli("summary", str(out), "--json")
    assert summary.returncode == 0, summary.stderr
    point = json.loads(summary.stdout)["points"][0]
    exact = point["theory"]["lyapunov"]
    assert exact == pytest.approx(0.5 * math.log(1.19))
    assert abs(point["lyapunov"]["estimate"] - exact) < 5 * point["lyapunov"]["stderr"]
