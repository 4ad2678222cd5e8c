"""Experiment files and the command line: bad input is exit 2, one line, no output file.

Every malformed experiment goes through the real command line, `sim._cli.main`, and a few
through `python -m sgdsim.sim` in a subprocess: exit code 2, exactly one stderr line starting
``error: `` that names the file and the key, the output path not created, and an existing
output file left byte for byte unchanged even with --overwrite. The positive tests check
that defaults are filled, overrides applied and sweeps parsed as docs/SPEC.md says.
"""
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from sgdsim.sim import ExperimentError, load_experiment, resolve_experiment  # noqa: E402
from sgdsim.sim._cli import main  # noqa: E402
from sgdsim.sim._config import dumps_experiment, loads_experiment  # noqa: E402

RUN = "[run]\ntrajectories = 10\nsteps = 20\n"
MODEL = '[model]\nname = "quadratic_finite_sum"\ncurvatures = [4.0, 1.0]\n'
DYNAMICS = '[dynamics]\nname = "sgd"\nlr = 0.1\n'
LANGEVIN = '[dynamics]\nname = "langevin"\ndt = 0.01\ntemperature = 0.5\n'
POLYNOMIAL = '[model]\nname = "polynomial"\ncoefficients = [0.0, 0.0, 1.0]\n'


def experiment(run=RUN, model=MODEL, dynamics=DYNAMICS, extra=""):
    return run + model + dynamics + extra


# (id, experiment text, fragments the error line must contain besides the file name)
MALFORMED = [
    ("toml-missing-value", experiment(extra="[init]\nvalue =\n"), ["line 11", "invalid TOML"]),
    ("toml-unclosed-list", experiment(model='[model]\nname = "polynomial"\n'
                                            "coefficients = [1.0, 2.0\n"), ["line 7", "Unclosed"]),
    ("toml-duplicate-key", experiment(run=RUN + "steps = 30\n"), ["line 4", "invalid TOML"]),
    ("unknown-table", experiment(extra='[output]\npath = "x.h5"\n'), ["[output]", "known"]),
    ("top-level-key", "seed = 3\n" + experiment(), ["[seed]", "table"]),
    ("unknown-run-key", experiment(run=RUN + "trajectorys = 5\n"),
     ["[run] trajectorys", "did you mean trajectories"]),
    ("unknown-dynamics-key", experiment(dynamics=DYNAMICS + "momentun = 0.9\n"),
     ["[dynamics] momentun", 'dynamics "sgd"', "did you mean momentum"]),
    ("nesterov-without-momentum", experiment(dynamics=DYNAMICS + "nesterov = true\n"),
     ["[dynamics] nesterov", "momentum > 0"]),
    ("momentum-one", experiment(dynamics=DYNAMICS + "momentum = 1.0\n"),
     ["[dynamics] momentum", "in [0, 1)"]),
    ("record-without-buffers", experiment(dynamics=DYNAMICS + "record_buffers = true\n"),
     ["[dynamics] record_buffers", "no buffer"]),
    ("lyapunov-with-adam",
     experiment(dynamics='[dynamics]\nname = "adam"\nlr = 0.1\n',
                extra="[observables.lyapunov]\n"),
     ["[observables] lyapunov", "adam", "theta only"]),
    ("beta-one", experiment(dynamics='[dynamics]\nname = "adamw"\nlr = 0.1\nbeta2 = 1.0\n'),
     ["[dynamics] beta2", "in [0, 1)"]),
    ("unknown-model-key", experiment(model=MODEL + "noise_var = 1.0\n"), ["[model] noise_var"]),
    ("unknown-model", experiment(model='[model]\nname = "quadratic"\ncurvatures = [1.0]\n'),
     ["[model] name", '"quadratic"', "quadratic_finite_sum"]),
    ("unknown-dynamics", experiment(dynamics='[dynamics]\nname = "rmsprop"\nlr = 0.1\n'),
     ["[dynamics] name", '"rmsprop"']),
    ("string-for-int", experiment(run='[run]\nsteps = "20"\n'), ["[run] steps", "integer"]),
    ("bool-for-int", experiment(run="[run]\ntrajectories = true\n"),
     ["[run] trajectories", "boolean"]),
    ("float-for-int", experiment(run="[run]\nsteps = 20.5\n"), ["[run] steps", "20.5"]),
    ("negative-checkpoint-seconds", experiment(run=RUN + "checkpoint_seconds = -1\n"),
     ["[run] checkpoint_seconds must be >= 0 (got -1.0)"]),
    ("string-for-checkpoint-seconds", experiment(run=RUN + 'checkpoint_seconds = "60"\n'),
     ["[run] checkpoint_seconds", "number"]),
    ("bool-for-float", experiment(dynamics='[dynamics]\nname = "gd"\nlr = true\n'),
     ["[dynamics] lr", "boolean"]),
    ("string-for-list", experiment(model='[model]\nname = "quadratic_finite_sum"\n'
                                         'curvatures = "4, 1"\n'), ["[model] curvatures"]),
    ("nan-lr", experiment(dynamics='[dynamics]\nname = "sgd"\nlr = nan\n'),
     ["[dynamics] lr", "finite", "nan"]),
    ("inf-curvature", experiment(model='[model]\nname = "quadratic_finite_sum"\n'
                                       "curvatures = [inf, 1.0]\n"),
     ["[model] curvatures[0]", "inf"]),
    ("negative-lr", experiment(dynamics='[dynamics]\nname = "sgd"\nlr = -0.1\n'),
     ["[dynamics] lr must be > 0 (got -0.1)"]),
    ("zero-dt", experiment(dynamics='[dynamics]\nname = "langevin"\ndt = 0\n'
                                    "temperature = 1.0\n"), ["[dynamics] dt", "> 0"]),
    ("negative-temperature", experiment(dynamics='[dynamics]\nname = "langevin"\ndt = 0.1\n'
                                                 "temperature = -1\n"),
     ["[dynamics] temperature"]),
    ("negative-seed", experiment(run="[run]\nseed = -1\n"), ["[run] seed", "2**64"]),
    ("zero-steps", experiment(run="[run]\nsteps = 0\n"), ["[run] steps"]),
    ("zero-trajectories", experiment(run="[run]\ntrajectories = 0\n"), ["[run] trajectories"]),
    ("negative-chunk", experiment(run="[run]\nchunk = -1\n"), ["[run] chunk"]),
    ("bad-dtype", experiment(run='[run]\ndtype = "float16"\n'), ["[run] dtype", '"float16"']),
    ("bad-backend", experiment(run='[run]\nbackend = "gpu"\n'), ["[run] backend", '"gpu"']),
    ("missing-model-name", experiment(model="[model]\ncurvatures = [1.0]\n"),
     ["[model] name", "required"]),
    ("missing-model-table", RUN + DYNAMICS, ["[model] name", "required"]),
    ("missing-dynamics-table", RUN + MODEL, ["[dynamics] name", "required"]),
    ("missing-lr", experiment(dynamics='[dynamics]\nname = "sgd"\nbatch_size = 2\n'),
     ["[dynamics] lr", "required"]),
    ("missing-temperature", experiment(dynamics='[dynamics]\nname = "langevin"\ndt = 0.1\n'),
     ["[dynamics] temperature", "required"]),
    ("missing-curvatures", experiment(model='[model]\nname = "quadratic_finite_sum"\n'),
     ["[model] curvatures", "required"]),
    ("empty-curvatures", experiment(model='[model]\nname = "quadratic_finite_sum"\n'
                                          "curvatures = []\n"), ["[model] curvatures", "empty"]),
    ("centers-length", experiment(model=MODEL + "centers = [0.0]\n"),
     ["[model] centers", "curvatures"]),
    ("missing-coefficients", experiment(model='[model]\nname = "polynomial"\n'),
     ["[model] coefficients", "required"]),
    ("too-many-coefficients", experiment(model='[model]\nname = "polynomial"\ncoefficients = ['
                                               + ", ".join(["1.0"] * 13) + "]\n"),
     ["[model] coefficients", "12"]),
    ("negative-noise-var", experiment(model=POLYNOMIAL + "noise_var = -1.0\n"),
     ["[model] noise_var", ">= 0"]),
    ("logistic-zero-width", experiment(model=POLYNOMIAL + "noise_var = { left = 0.5, "
                                                          "right = 1.0, width = 0.0 }\n"),
     ["[model] noise_var.width", "> 0"]),
    ("logistic-unknown-key", experiment(model=POLYNOMIAL + "noise_var = { left = 0.5, "
                                                           "right = 1.0, width = 1.0, "
                                                           "slope = 2.0 }\n"),
     ["[model] noise_var.slope"]),
    ("bad-noise", experiment(dynamics=DYNAMICS + 'noise = "laplace"\n'),
     ["[dynamics] noise", '"laplace"']),
    ("zero-batch", experiment(dynamics=DYNAMICS + "batch_size = 0\n"),
     ["[dynamics] batch_size", ">= 1"]),
    ("init-value-and-normal", experiment(extra="[init]\nvalue = 1.0\n"
                                               "normal = { mean = 0.0, std = 1.0 }\n"),
     ["[init] normal", "value"]),
    ("init-empty", experiment(extra="[init]\n"), ["[init]", "exactly one"]),
    ("init-negative-std", experiment(extra="[init]\nnormal = { mean = 0.0, std = -1.0 }\n"),
     ["[init] normal.std", ">= 0"]),
    ("init-uniform-order", experiment(extra="[init]\nuniform = { low = 1.0, high = 1.0 }\n"),
     ["[init] uniform", "low must be < high"]),
    ("histogram-lo-hi", experiment(extra="[observables]\nhistogram = { lo = 1.0, hi = -1.0 }\n"),
     ["[observables] histogram", "lo must be < hi"]),
    ("histogram-bins", experiment(extra="[observables]\nhistogram = { lo = 0, hi = 1, "
                                        "bins = 0 }\n"), ["[observables] histogram.bins"]),
    ("histogram-burn-in", experiment(extra="[observables]\nhistogram = { lo = 0, hi = 1, "
                                           "burn_in = 21 }\n"),
     ["[observables] histogram.burn_in", "steps"]),
    ("histogram-missing-hi", experiment(extra="[observables]\nhistogram = { lo = 0 }\n"),
     ["[observables] histogram.hi", "required"]),
    ("first-passage-both", experiment(extra="[observables]\n"
                                            "first_passage = { above = 1.0, below = -1.0 }\n"),
     ["[observables] first_passage.below", "above"]),
    ("first-passage-neither", experiment(extra="[observables]\nfirst_passage = { stop = true }\n"),
     ["[observables] first_passage", "exactly one"]),
    ("first-passage-stop-type", experiment(extra="[observables]\n"
                                                 "first_passage = { above = 1.0, stop = 1 }\n"),
     ["[observables] first_passage.stop", "true or false"]),
    ("occupancy-not-increasing", experiment(extra="[observables]\n"
                                                  "occupancy = { boundaries = [0.0, 0.0] }\n"),
     ["[observables] occupancy.boundaries", "increasing"]),
    ("period-longer-than-run", experiment(extra="[observables]\nperiod = { max = 16 }\n"),
     ["[observables] period.max", "2 max - 1 = 31"]),
    ("period-max-too-large", experiment(run="[run]\ntrajectories = 10\nsteps = 200\n",
                                        extra="[observables]\nperiod = { max = 33 }\n"),
     ["[observables] period.max"]),
    ("splitting-b-below-a", experiment(run="[run]\nsteps = 100\n", model=POLYNOMIAL,
                                       dynamics=LANGEVIN,
                                       extra="[init]\nvalue = 0.0\n[splitting]\na = 1.0\n"
                                             "b = 0.5\n"), ["[splitting] b", "> splitting.a"]),
    ("splitting-kill-all", experiment(run="[run]\nsteps = 100\n", model=POLYNOMIAL,
                                      dynamics=LANGEVIN,
                                      extra="[splitting]\na = -1.0\nb = 1.0\nreplicas = 10\n"
                                            "kill = 10\n"), ["[splitting] kill", "< splitting.replicas"]),
    ("splitting-with-observables", experiment(run="[run]\nsteps = 100\n", model=POLYNOMIAL,
                                              dynamics=LANGEVIN,
                                              extra="[observables]\nlyapunov = {}\n"
                                                    "[splitting]\na = -1.0\nb = 1.0\n"),
     ["[observables]", "splitting"]),
    ("splitting-trajectories", experiment(model=POLYNOMIAL, dynamics=LANGEVIN,
                                          extra="[splitting]\na = -1.0\nb = 1.0\n"),
     ["[run] trajectories", "not used"]),
    ("splitting-score", experiment(run="[run]\nsteps = 100\n", model=POLYNOMIAL,
                                   dynamics=LANGEVIN,
                                   extra='[splitting]\na = -1.0\nb = 1.0\nscore = "coordinate:3"\n'),
     ["[splitting] score", "0 <= K < 1"]),
    ("splitting-score-negated", experiment(run="[run]\nsteps = 100\n", model=POLYNOMIAL,
                                           dynamics=LANGEVIN,
                                           extra='[splitting]\na = -1.0\nb = 1.0\n'
                                                 'score = "-os:getcwd"\n'),
     ["[splitting] score", 'a leading "-" negates']),
    ("splitting-start-outside", experiment(run="[run]\nsteps = 100\n", model=POLYNOMIAL,
                                           dynamics=LANGEVIN,
                                           extra="[init]\nvalue = 2.0\n[splitting]\n"
                                                 "a = -1.0\nb = 1.0\n"),
     ["[splitting] a", "theta_0 must start between A and B"]),
    ("unknown-observable", experiment(extra="[observables]\nhisto = { lo = 0, hi = 1 }\n"),
     ["[observables] histo", "did you mean histogram"]),
    ("lyapunov-key", experiment(extra="[observables]\nlyapunov = { every = 2 }\n"),
     ["[observables] lyapunov.every"]),
    ("observable-not-table", experiment(extra="[observables]\nlyapunov = true\n"),
     ["[observables] lyapunov", "table"]),
    ("divergence-threshold", experiment(extra="[observables]\ndivergence = { threshold = 0 }\n"),
     ["[observables] divergence.threshold"]),
    ("timeseries-spacing", experiment(extra='[observables]\ntimeseries = { spacing = "geo" }\n'),
     ["[observables] timeseries.spacing"]),
    ("paths-count", experiment(extra="[observables]\npaths = { count = 0 }\n"),
     ["[observables] paths.count"]),
    ("sweep-empty-list", experiment(extra='[sweep]\n"dynamics.lr" = []\n'),
     ['[sweep] "dynamics.lr"', "non-empty"]),
    ("sweep-not-list", experiment(extra='[sweep]\n"dynamics.lr" = 0.1\n'),
     ['[sweep] "dynamics.lr"', "list"]),
    ("sweep-unknown-key", experiment(extra='[sweep]\n"dynamics.beta1" = [0.1]\n'),
     ['[sweep] "dynamics.beta1"', "sgd"]),
    ("sweep-unknown-table", experiment(extra='[sweep]\n"optimizer.lr" = [0.1]\n'),
     ['[sweep] "optimizer.lr"']),
    ("sweep-seed", experiment(extra='[sweep]\n"run.seed" = [1, 2]\n'),
     ['[sweep] "run.seed"', "cannot be swept"]),
    ("sweep-steps", experiment(extra='[sweep]\n"run.steps" = [10, 20]\n'),
     ['[sweep] "run.steps"', "cannot be swept"]),
    ("sweep-string-key", experiment(extra='[sweep]\n"dynamics.noise" = ["gaussian"]\n'),
     ['[sweep] "dynamics.noise"', "numeric"]),
    ("sweep-wrong-type", experiment(extra='[sweep]\n"dynamics.batch_size" = [1, 2.5]\n'),
     ['[sweep] "dynamics.batch_size"[1]', "integer"]),
    ("sweep-out-of-range", experiment(extra='[sweep]\n"dynamics.lr" = [0.1, -0.1]\n'),
     ['[sweep] "dynamics.lr"[1]', "> 0"]),
    ("sweep-init-value-with-normal",
     experiment(extra='[init]\nnormal = { mean = 0.0, std = 1.0 }\n'
                      '[sweep]\n"init.value" = [0.0, 1.0]\n'),
     ['[sweep] "init.value"', "normal"]),
    ("user-model-missing-module", experiment(model='[model]\n'
                                                   'name = "no_such_package_xyz.models:Well"\n'),
     ["[model] name", "no_such_package_xyz"]),
    ("user-model-no-gradient", experiment(model='[model]\nname = "json:JSONDecoder"\n'),
     ["[model] name", "gradient"]),
    ("user-model-missing-object", experiment(model='[model]\nname = "json:NoSuchModel"\n'),
     ["[model] name", "NoSuchModel"]),
    ("user-model-empty-object", experiment(model='[model]\nname = "json:"\n'), ["[model] name"]),
]


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "exp.toml", tmp_path / "out.h5"


def run_cli(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err, *fragments):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in err


@pytest.mark.parametrize("text, fragments", [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_experiment_exits_2_and_writes_nothing(capsys, paths, text, fragments):
    exp, out = paths
    exp.write_text(text)
    code, stdout, err = run_cli(capsys, ["run", str(exp), "-o", str(out)])
    assert code == 2
    assert_one_error_line(err, f"error: {exp}: ", *fragments)
    assert not out.exists()
    assert list(exp.parent.iterdir()) == [exp]

    # An existing output file survives bad input byte for byte, --overwrite or not.
    sentinel = b"\x89HDF\r\n\x1a\n not really a run file"
    out.write_bytes(sentinel)
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out), "--overwrite"])
    assert code == 2
    assert_one_error_line(err, str(exp))
    assert out.read_bytes() == sentinel


def test_enough_malformed_cases():
    assert len(MALFORMED) >= 25
    assert len({case[0] for case in MALFORMED}) == len(MALFORMED)


def test_message_format_matches_the_contract(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("exp.toml").write_text(experiment(dynamics='[dynamics]\nname = "sgd"\nlr = -0.1\n'))
    code, _, err = run_cli(capsys, ["run", "exp.toml", "-o", "out.h5"])
    assert code == 2
    assert err == "error: exp.toml: [dynamics] lr must be > 0 (got -0.1)\n"
    error = ExperimentError("exp.toml", "dynamics.lr", "must be > 0 (got -0.1)")
    assert str(error) == "exp.toml: [dynamics] lr must be > 0 (got -0.1)"
    assert (error.file, error.key, error.message) == ("exp.toml", "dynamics.lr",
                                                      "must be > 0 (got -0.1)")


def test_non_utf8_file(capsys, paths):
    exp, out = paths
    exp.write_bytes(experiment().encode() + b'[init]\nvalue = "\xff"\n')
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out)])
    assert code == 2
    assert_one_error_line(err, str(exp), "line 11")
    assert not out.exists()


# --------------------------------------------------------------------------- command line

@pytest.mark.parametrize("flags, fragments", [
    (["--seed", str(2**64)], ["[run] seed", "command line"]),
    (["--seed", "-1"], ["[run] seed"]),
    (["--steps", "0"], ["[run] steps", "command line"]),
    (["--steps", str(2**32)], ["[run] steps"]),
    (["--trajectories", "0"], ["[run] trajectories"]),
    (["--chunk", "-5"], ["[run] chunk"]),
    (["--checkpoint-seconds", "-1"], ["--checkpoint-seconds", "must be a number >= 0"]),
    (["--checkpoint-seconds", "soon"], ["--checkpoint-seconds", "soon"]),
    (["--checkpoint-seconds", "nan"], ["--checkpoint-seconds"]),
    (["--trajectories", "ten"], ["--trajectories", "ten"]),
    (["--backend", "gpu"], ["--backend", "gpu"]),
    (["--shard", "2/2"], ["--shard"]),
    (["--shard", "one/two"], ["--shard"]),
    (["--shard", "0/11"], ["--shard", "trajectories"]),
    (["--bogus"], ["--bogus"]),
], ids=lambda value: " ".join(value) if isinstance(value, list) and value[0].startswith("-")
   else None)
def test_bad_flags_exit_2(capsys, paths, flags, fragments):
    exp, out = paths
    exp.write_text(experiment())
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out)] + flags)
    assert code == 2
    assert_one_error_line(err, *fragments)
    assert not out.exists()


def test_existing_output_needs_overwrite(capsys, paths):
    exp, out = paths
    exp.write_text(experiment())
    out.write_bytes(b"previous results")
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out)])
    assert code == 2
    assert_one_error_line(err, str(out), "--overwrite")
    assert out.read_bytes() == b"previous results"


@pytest.mark.parametrize("output, fragment", [
    ("missing_dir/out.h5", "does not exist"),
    (".", "directory"),
])
def test_bad_output_path(capsys, paths, output, fragment):
    exp, _ = paths
    exp.write_text(experiment())
    target = exp.parent / output
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(target)])
    assert code == 2
    assert_one_error_line(err, str(target), fragment)
    assert not (exp.parent / "missing_dir").exists()


def test_output_may_not_replace_the_experiment(capsys, paths):
    exp, _ = paths
    exp.write_text(experiment())
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(exp), "--overwrite"])
    assert code == 2
    assert_one_error_line(err, str(exp))
    assert exp.read_text() == experiment()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can write to read-only directories")
def test_unwritable_output_directory(capsys, tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(experiment())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(locked / "out.h5")])
    finally:
        locked.chmod(0o700)
    assert code == 2
    assert_one_error_line(err, "not writable")


@pytest.mark.parametrize("argv, fragment", [
    (["run", "{tmp}/absent.toml", "-o", "{tmp}/out.h5"], "absent.toml: no such experiment"),
    (["run", "{tmp}", "-o", "{tmp}/out.h5"], "is a directory"),
    (["run", "{tmp}/exp.toml"], "-o/--output"),
    ([], "COMMAND"),
    (["frobnicate"], "frobnicate"),
    (["info", "{tmp}/absent.h5"], "absent.h5: no such file"),
    (["info", "{tmp}/exp.toml"], "exp.toml: not a readable HDF5"),
    (["merge", "{tmp}/absent_0.h5", "-o", "{tmp}/out.h5"], "absent_0.h5: no such shard"),
    (["resume", "{tmp}/out.h5", "--checkpoint-seconds", "-5"], "--checkpoint-seconds"),
    (["merge", "{tmp}/exp.toml", "{tmp}/exp.toml", "-o", "{tmp}/out.h5"], "given twice"),
])
def test_bad_usage_exit_2(capsys, paths, argv, fragment):
    exp, out = paths
    exp.write_text(experiment())
    argv = [arg.format(tmp=exp.parent) for arg in argv]
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert not out.exists()


def test_info_rejects_foreign_hdf5(capsys, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = [1, 2, 3]
    code, _, err = run_cli(capsys, ["info", str(path)])
    assert code == 2
    assert_one_error_line(err, str(path), "not an sgdsim run file")


def test_info_describes_a_run_file(capsys, tmp_path):
    h5py = pytest.importorskip("h5py")
    import numpy as np

    resolved = loads_experiment(experiment(extra='[sweep]\n"dynamics.lr" = [0.1, 0.2]\n'))
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs.update({
            "format": "sgdsim-run", "format_version": 2, "package_version": "0.1.0",
            "experiment": dumps_experiment(resolved), "seed": 0, "trajectories": 10,
            "steps": 20, "dtype": "float64", "backend": "cpu", "device": "test cpu",
            "rng": "philox4x32-10", "complete": True, "kernel_seconds": 0.5,
            "compile_seconds": 1.25, "wall_seconds": 2.0, "created": "2024-01-01T00:00:00",
        })
        handle["final/theta"] = np.zeros((2, 10, 1))
        handle["sweep/dynamics.lr"] = np.array([0.1, 0.2])
    code, out, err = run_cli(capsys, ["info", str(path)])
    assert code == 0, err
    assert "complete: yes" in out
    assert "/final/theta" in out and "[2, 10, 1]" in out
    assert "kernel 0.500 s" in out and "compile 1.250 s" in out and "wall 2.000 s" in out
    assert '"dynamics.lr" = [0.1, 0.2]' in out
    assert "throughput" in out


def test_models_lists_every_builtin(capsys):
    code, out, _ = run_cli(capsys, ["models"])
    assert code == 0
    for name in ("quadratic_finite_sum", "polynomial", "sgd", "gd", "langevin", "histogram",
                 "first_passage", "divergence", "lyapunov", "occupancy", "timeseries", "paths",
                 "batch_size", "noise_var", "package.module:object", "[sweep]",
                 "coupled_quadratic", "grooves", "linear_regression", "two_time_scale",
                 "two_time_scale_sde", "coordinate"):
        assert name in out


# --------------------------------------------------------------------------- subprocess

def run_module(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-m", "sgdsim.sim", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["toml-missing-value", "bool-for-int", "nan-lr",
                                  "first-passage-both", "sweep-seed",
                                  "user-model-missing-module"])
def test_python_m_sim_malformed(tmp_path, name):
    text, fragments = next(case[1:] for case in MALFORMED if case[0] == name)
    (tmp_path / "exp.toml").write_text(text)
    (tmp_path / "out.h5").write_bytes(b"keep me")
    result = run_module(["run", "exp.toml", "-o", "out.h5", "--overwrite"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, "error: exp.toml: ", *fragments)
    assert result.stdout == ""
    assert (tmp_path / "out.h5").read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml", "out.h5"]


def test_python_m_sim_usage_error(tmp_path):
    result = run_module(["run"], tmp_path)
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "EXP.toml")


# --------------------------------------------------------------------------- positive

def test_defaults_filled(paths):
    exp, _ = paths
    exp.write_text(MODEL + DYNAMICS)
    assert load_experiment(exp) == {
        "run": {"seed": 0, "trajectories": 1000, "steps": 1000, "dtype": "float64",
                "backend": "auto", "chunk": 0, "checkpoint_seconds": 60.0},
        "model": {"name": "quadratic_finite_sum", "curvatures": [4.0, 1.0],
                  "centers": [0.0, 0.0]},
        "dynamics": {"name": "sgd", "lr": 0.1, "batch_size": 1, "noise": "finite_sum",
                     "record_buffers": False},
        "init": {"value": 0.0},
        "observables": {},
        "sweep": {},
    }


def test_observable_and_model_defaults():
    resolved = loads_experiment(POLYNOMIAL + LANGEVIN + """
[init]
uniform = { low = -1, high = 1 }
[observables]
histogram = { lo = -2, hi = 2 }
first_passage = { below = -1 }
divergence = {}
lyapunov = {}
occupancy = { boundaries = [-1, 0, 1] }
timeseries = {}
paths = {}
""")
    assert resolved["model"] == {"name": "polynomial", "coefficients": [0.0, 0.0, 1.0],
                                 "noise_var": 1.0}
    assert resolved["dynamics"] == {"name": "langevin", "dt": 0.01, "temperature": 0.5}
    assert resolved["init"] == {"uniform": {"low": -1.0, "high": 1.0}}
    assert resolved["observables"] == {
        "histogram": {"lo": -2.0, "hi": 2.0, "bins": 100, "burn_in": 0, "thin": 1},
        "first_passage": {"below": -1.0, "stop": False, "coordinate": 0},
        "divergence": {"threshold": 1e8, "coordinate": 0},
        "lyapunov": {},
        "occupancy": {"boundaries": [-1.0, 0.0, 1.0], "coordinate": 0},
        "timeseries": {"points": 100, "spacing": "linear"},
        "paths": {"count": 8, "every": 1},
    }
    # ints are accepted where floats are expected, and stored as floats
    assert all(type(x) is float for x in resolved["observables"]["occupancy"]["boundaries"])
    logistic = loads_experiment('[model]\nname = "polynomial"\ncoefficients = [1]\n'
                                "noise_var = { left = 0.5, right = 2, width = 1 }\n" + LANGEVIN)
    assert logistic["model"]["noise_var"] == {"left": 0.5, "right": 2.0, "center": 0.0,
                                              "width": 1.0}


def test_overrides_applied(paths):
    exp, _ = paths
    exp.write_text(experiment())
    resolved = load_experiment(exp, {"run.trajectories": 7, "run.seed": 2**64 - 1,
                                     "run.backend": "numpy"})
    assert resolved["run"]["trajectories"] == 7
    assert resolved["run"]["seed"] == 2**64 - 1
    assert resolved["run"]["backend"] == "numpy"
    assert resolved["run"]["steps"] == 20
    with pytest.raises(ExperimentError) as caught:
        load_experiment(exp, {"run.trajectories": True})
    assert caught.value.key == "run.trajectories"
    assert "command line" in str(caught.value)


def test_sweep_parsed():
    text = experiment(dynamics='[dynamics]\nname = "sgd"\nbatch_size = 2\n', extra="""
[sweep]
"dynamics.lr" = [0.05, 0.1, 1]
dynamics.batch_size = [1, 4]
"init.value" = [-1, 1]
""")
    resolved = loads_experiment(text)
    assert resolved["sweep"] == {"dynamics.lr": [0.05, 0.1, 1.0],
                                 "dynamics.batch_size": [1, 4],
                                 "init.value": [-1.0, 1.0]}
    assert list(resolved["sweep"]) == ["dynamics.lr", "dynamics.batch_size", "init.value"]
    assert type(resolved["sweep"]["dynamics.lr"][2]) is float
    # the required lr was left to the sweep: its first value stands in [dynamics]
    assert resolved["dynamics"]["lr"] == 0.05
    assert resolved["dynamics"]["batch_size"] == 2
    assert resolved["init"] == {"value": -1.0}
    noise = loads_experiment(POLYNOMIAL + LANGEVIN + '[sweep]\n"model.noise_var" = [0.5, 2]\n')
    assert noise["sweep"] == {"model.noise_var": [0.5, 2.0]}


def test_dumps_round_trip():
    text = experiment(extra="""
[init]
normal = { mean = -1.0, std = 0.1 }
[observables]
histogram = { lo = -2.5, hi = 2.5, bins = 250 }
first_passage = { above = 1.0, stop = true }
lyapunov = {}
[sweep]
"dynamics.lr" = [0.05, 0.1]
""")
    resolved = loads_experiment(text)
    assert loads_experiment(dumps_experiment(resolved)) == resolved
    assert resolve_experiment(resolved, "again") == resolved



def test_toml_writer_reads_back_what_tomllib_reads():
    import datetime
    import math
    import tomllib

    from sgdsim.sim import _toml

    tables = {
        "strings": {"quote": 'say "hi"\\', "controls": "tab\tnew\nline\x00\x7f",
                    "unicode": "caf\u00e9 \U0001f600", "bare-key_1": "x",
                    "dotted.key": "y", "sp ace": "z", "caf\u00e9": "w"},
        "numbers": {"int": -3, "big": 2**63 - 1, "float": 1e-05, "tiny": 5e-324,
                    "inf": math.inf, "minus_inf": -math.inf, "true": True, "false": False},
        "nested": {"empty": {}, "list": [[1, 2], [], [0.5]], "inline": {"a": 1, "b": [1.0]},
                   "when": datetime.date(2026, 1, 2), "dropped": None,
                   "half_dropped": {"kept": 1, "gone": None}},
    }
    back = tomllib.loads(_toml.dumps(tables))
    assert back["strings"] == tables["strings"]
    assert back["numbers"] == tables["numbers"]
    assert math.isnan(tomllib.loads("x = " + _toml.value(math.nan))["x"])
    assert back["nested"] == {"empty": {}, "list": [[1, 2], [], [0.5]],
                              "inline": {"a": 1, "b": [1.0]}, "when": datetime.date(2026, 1, 2),
                              "half_dropped": {"kept": 1}}
    with pytest.raises(TypeError):
        _toml.value(object())

def test_user_model_keys_pass_through(tmp_path, monkeypatch):
    (tmp_path / "my_wells.py").write_text(
        "class TiltedWell:\n"
        "    @staticmethod\n"
        "    def gradient(theta):\n"
        "        return 4.0 * theta * (theta * theta - 1.0) + 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    resolved = loads_experiment(RUN + '[model]\nname = "my_wells:TiltedWell"\ntilt = 0.1\n'
                                'shape = { depth = 2 }\n' + LANGEVIN)
    assert resolved["model"] == {"name": "my_wells:TiltedWell", "tilt": 0.1,
                                 "shape": {"depth": 2}}
    # The object's functions see only theta, so a swept key could not reach them: refused.
    with pytest.raises(ExperimentError) as error:
        loads_experiment(RUN + '[model]\nname = "my_wells:TiltedWell"\ntilt = 0.1\n' + LANGEVIN +
                         '[sweep]\n"model.tilt" = [0.0, 0.2]\n')
    assert "model.tilt" in str(error.value) and "cannot be swept" in str(error.value)


def test_run_calls_the_runner(capsys, paths, monkeypatch):
    exp, out = paths
    exp.write_text(experiment())
    calls = []
    fake = types.ModuleType("sgdsim.sim._runner")
    fake.run_experiment = lambda *args, **kwargs: calls.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "sgdsim.sim._runner", fake)
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out), "--trajectories", "40",
                                    "--seed", "9", "--backend", "numpy", "--shard", "1/4",
                                    "--quiet"])
    assert code == 0, err
    (resolved, out_path), kwargs = calls[0]
    assert out_path == str(out)
    assert resolved["run"]["trajectories"] == 40 and resolved["run"]["seed"] == 9
    assert resolved["run"]["backend"] == "numpy" and resolved["run"]["steps"] == 20
    assert kwargs == {"overwrite": False, "quiet": True, "shard": (1, 4), "source": str(exp),
                      "force": False}



def test_checkpoint_seconds_flag_reaches_the_runner(capsys, paths, monkeypatch):
    exp, out = paths
    exp.write_text(experiment(run=RUN + "checkpoint_seconds = 300\n"))
    calls = []
    fake = types.ModuleType("sgdsim.sim._runner")
    fake.run_experiment = lambda *args, **kwargs: calls.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "sgdsim.sim._runner", fake)
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out), "--quiet"])
    assert code == 0, err
    (resolved, _), kwargs = calls[-1]
    assert resolved["run"]["checkpoint_seconds"] == 300.0 and "checkpoint_seconds" not in kwargs
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out), "--quiet",
                                    "--checkpoint-seconds", "0.5"])
    assert code == 0, err
    (resolved, _), kwargs = calls[-1]
    # The flag is stored like any [run] flag, and passed on so that it beats the environment.
    assert resolved["run"]["checkpoint_seconds"] == 0.5 and kwargs["checkpoint_seconds"] == 0.5

def test_runner_failure_is_internal(capsys, paths, monkeypatch):
    exp, out = paths
    exp.write_text(experiment())
    fake = types.ModuleType("sgdsim.sim._runner")

    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    fake.run_experiment = broken
    monkeypatch.setitem(sys.modules, "sgdsim.sim._runner", fake)
    code, _, err = run_cli(capsys, ["run", str(exp), "-o", str(out)])
    assert code == 1
    assert_one_error_line(err, "error: internal: RuntimeError: kernel exploded")
