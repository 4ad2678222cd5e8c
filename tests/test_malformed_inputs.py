"""Malformed and oversized experiments: each is one line on stderr naming the file and the
key, exit 2, and no output file; none is an internal error (exit 1)."""
import pytest

from sgdsim.sim._cli import main

RUN = '[run]\ntrajectories = 300\nsteps = 20\nbackend = "cpu"\n'
MODEL = '[model]\nname = "polynomial"\ncoefficients = [0.0, 0.0, 1.0]\nnoise_var = 0.5\n'
LANGEVIN = '[dynamics]\nname = "langevin"\ndt = 0.01\ntemperature = 0.5\n'
SGD = '[dynamics]\nname = "sgd"\nlr = 0.1\n'
LINREG = ('[model]\nname = "linear_regression"\nsamples = 8\nfeatures = 3\n')


def _run(run=RUN, model=MODEL, dynamics=LANGEVIN, extra=""):
    return run + model + dynamics + extra


CASES = {
    "seed negative": (_run(run=RUN + "seed = -1\n"), "[run] seed"),
    "seed too large": (_run(run=RUN + "seed = 18446744073709551616\n"), "[run] seed"),
    "no trajectories": (_run(run='[run]\ntrajectories = 0\nsteps = 5\n'), "[run] trajectories"),
    "trajectories a string": (_run(run='[run]\ntrajectories = "many"\n'), "[run] trajectories"),
    "steps too many": (_run(run='[run]\nsteps = 4294967296\n'), "[run] steps"),
    "dtype float16": (_run(run=RUN + 'dtype = "float16"\n'), "[run] dtype"),
    "backend tpu": (_run(run='[run]\nbackend = "tpu"\n'), "[run] backend"),
    "chunk negative": (_run(run=RUN + "chunk = -5\n"), "[run] chunk"),
    "checkpoint negative": (_run(run=RUN + "checkpoint_seconds = -1.0\n"),
                            "[run] checkpoint_seconds"),
    "run key misspelt": (_run(run=RUN + "sed = 3\n"), "[run] sed"),
    "unknown table": (_run(extra="[extras]\nx = 1\n"), "extras"),
    "model without name": (_run(model="[model]\ncoefficients = [1.0]\n"), "[model] name"),
    "unknown model": (_run(model='[model]\nname = "no_such_model"\n'), "[model] name"),
    "no coefficients": (_run(model='[model]\nname = "polynomial"\ncoefficients = []\n'),
                        "[model] coefficients"),
    "13 coefficients": (_run(model='[model]\nname = "polynomial"\ncoefficients = ['
                              + ", ".join(["1.0"] * 13) + "]\n"), "[model] coefficients"),
    "negative noise": (_run(model='[model]\nname = "polynomial"\ncoefficients = [0.0, 1.0]\n'
                                  "noise_var = -1.0\n"), "[model] noise_var"),
    "logistic width 0": (_run(model='[model]\nname = "polynomial"\ncoefficients = [0.0, 1.0]\n'
                                    "noise_var = { left = 1.0, right = 2.0, width = 0.0 }\n"),
                         "noise_var"),
    "centers length": (_run(model='[model]\nname = "quadratic_finite_sum"\n'
                                  "curvatures = [1.0, 2.0]\ncenters = [0.0]\n"), "centers"),
    "features 0": (_run(model='[model]\nname = "linear_regression"\nsamples = 4\nfeatures = 0\n'),
                   "[model] features"),
    "eigenvalues length": (_run(model=LINREG + "eigenvalues = [1.0, 2.0]\n"), "eigenvalues"),
    "dynamics without name": (_run(dynamics="[dynamics]\nlr = 0.1\n"), "[dynamics] name"),
    "lr zero": (_run(dynamics='[dynamics]\nname = "sgd"\nlr = 0.0\n'), "[dynamics] lr"),
    "batch zero": (_run(dynamics=SGD + "batch_size = 0\n"), "[dynamics] batch_size"),
    "noise kind": (_run(dynamics=SGD + 'noise = "poisson"\n'), "[dynamics] noise"),
    "langevin without dt": (_run(dynamics='[dynamics]\nname = "langevin"\ntemperature = 0.5\n'),
                            "[dynamics] dt"),
    "negative temperature": (_run(dynamics='[dynamics]\nname = "langevin"\ndt = 0.01\n'
                                          "temperature = -1.0\n"), "[dynamics] temperature"),
    "two time scales on a polynomial": (_run(dynamics='[dynamics]\nname = "two_time_scale"\n'
                                                     "a = 0.1\neps = 0.1\n"), "two_time_scale"),
    "init value and normal": (_run(extra="[init]\nvalue = 1.0\nnormal = { mean = 0.0, std = 1.0 }\n"),
                              "[init]"),
    "init uniform empty": (_run(extra="[init]\nuniform = { low = 1.0, high = 1.0 }\n"),
                           "[init] uniform"),
    "init std negative": (_run(extra="[init]\nnormal = { mean = 0.0, std = -1.0 }\n"),
                          "[init] normal"),
    "init vector length": (_run(model=LINREG, dynamics=SGD, extra="[init]\nvector = [1.0, 2.0]\n"),
                           "[init] vector"),
    "histogram lo above hi": (_run(extra="[observables]\nhistogram = { lo = 1.0, hi = 0.0 }\n"),
                              "[observables] histogram"),
    "histogram no bins": (_run(extra="[observables]\nhistogram = { lo = 0.0, hi = 1.0, bins = 0 }\n"),
                          "[observables] histogram.bins"),
    "histogram burn-in": (_run(extra="[observables]\nhistogram = { lo = 0.0, hi = 1.0, "
                                     "burn_in = 50 }\n"), "[observables] histogram.burn_in"),
    "first passage both": (_run(extra="[observables]\nfirst_passage = { above = 1.0, "
                                      "below = -1.0 }\n"), "[observables] first_passage"),
    "first passage neither": (_run(extra="[observables]\nfirst_passage = {}\n"),
                              "[observables] first_passage"),
    "boundaries decreasing": (_run(extra="[observables]\noccupancy = { boundaries = [1.0, 0.0] }\n"),
                              "[observables] occupancy.boundaries"),
    "timeseries spacing": (_run(extra='[observables]\ntimeseries = { spacing = "cubic" }\n'),
                           "[observables] timeseries.spacing"),
    "paths every 0": (_run(extra="[observables]\npaths = { every = 0 }\n"),
                      "[observables] paths.every"),
    "observable misspelt": (_run(extra="[observables]\nhistgram = { lo = 0.0, hi = 1.0 }\n"),
                            "[observables] histgram"),
    "loss_min burn-in negative": (_run(extra="[observables]\nloss_min = { burn_in = -1 }\n"),
                                  "[observables] loss_min.burn_in"),
    "divergence threshold 0": (_run(extra="[observables]\ndivergence = { threshold = 0.0 }\n"),
                               "[observables] divergence.threshold"),
    "sweep the seed": (_run(extra='[sweep]\n"run.seed" = [1, 2]\n'), "run.seed"),
    "sweep an empty list": (_run(extra='[sweep]\n"dynamics.dt" = []\n'), "dynamics.dt"),
    "sweep a negative dt": (_run(extra='[sweep]\n"dynamics.dt" = [0.01, -0.01]\n'),
                            "dynamics.dt"),
    "not TOML": ("[run\ntrajectories = 3\n", "invalid TOML"),
    "timeseries too fine": (_run(extra="[observables]\ntimeseries = { points = 200000000 }\n"),
                            "[observables] timeseries.points"),
    "paths more than trajectories": (_run(extra="[observables]\npaths = { count = 301 }\n"),
                                     "[observables] paths.count"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_experiment_is_one_line_exit_2_and_no_file(tmp_path, capsys, name):
    text, key = CASES[name]
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    out = tmp_path / "out.h5"
    code = main(["run", str(exp), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (name, err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {exp}"), (name, err)
    assert key in lines[0], (name, key, lines[0])
    assert not out.exists() and not list(tmp_path.glob(".out.h5*"))


@pytest.mark.parametrize("flags, key", [
    (["--trajectories", "1000000000000"], "[run] trajectories is too large"),
    (["--steps", "0"], "[run] steps"),
    (["--chunk", "-1"], "[run] chunk"),
    (["--seed", "-3"], "[run] seed"),
])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, flags, key):
    exp = tmp_path / "exp.toml"
    exp.write_text(_run())
    code = main(["run", str(exp), "-o", str(tmp_path / "out.h5"), "--quiet", *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and key in err, err
    assert not (tmp_path / "out.h5").exists()
