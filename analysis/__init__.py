"""Post-processing of sgdsim run files: estimates with honest uncertainty, theory, reports.

Imports only numpy, scipy, h5py and matplotlib (never ``kernels``, ``sim`` or numba), so run
files can be analysed on a laptop. Command line: ``sgdsim-analysis summary|report``.
"""

from ._estimators import (
    divergence,
    divergence_curve,
    final_moments,
    first_passage,
    lyapunov,
    occupancy_fractions,
    poisson_rate_interval,
    region_fractions,
    restricted_mean,
    splitting,
    stationary_density,
    survival_curve,
    timeseries,
    wilson_interval,
)
from ._read import FORMAT_VERSION, RunFile, RunFileError, open_run
from ._regimes import fit_steady_state, regime_boundaries, regimes, slow_optimum, steady_state_error
from ._summary import format_table, regimes_summary, replicate_groups, steady_state_summary, summarize, to_json
from ._theory import (
    StationaryDensity,
    TheoryUnavailable,
    heavy_ball_stability_boundary,
    heavy_ball_stationary_moments,
    langevin_mfpt,
    langevin_splitting_probability,
    model_functions,
    point_theory,
    sgd_lyapunov,
    sgd_stationary_moments,
    total_variation,
)
from ._theory import stationary_density as theory_stationary_density


def summary(run):
    """The summary of a run as a dict: every sweep point's estimates with standard errors,
    95 % intervals and theory (``summarize``). ``run`` is a path, a ``RunFile``, or the
    ``xarray.Dataset`` of ``sgdsim.run`` / ``sgdsim.open`` (written to a temporary run file
    for the purpose)."""
    if isinstance(run, RunFile):
        return summarize(run)
    if hasattr(run, "data_vars"):
        import os
        import tempfile

        from ._xarray import write_dataset

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "run.h5")
            write_dataset(run, path)
            result = summarize(open_run(path))
        result["file"] = "<dataset>"
        return result
    return summarize(open_run(run))


def to_dataset(run):
    """A run file (a path or an open h5py.File) as an ``xarray.Dataset`` (see sgdsim.open)."""
    from ._xarray import to_dataset as _to_dataset

    return _to_dataset(run)


def write_report(run, out_dir):
    """Write ``index.html`` and PNG figures for a run file into ``out_dir``; returns the index path.

    Imported lazily so that ``import analysis`` does not load matplotlib.
    """
    from ._report import write_report as _write_report

    return _write_report(run, out_dir)


__all__ = [
    "FORMAT_VERSION",
    "RunFile",
    "RunFileError",
    "StationaryDensity",
    "TheoryUnavailable",
    "divergence",
    "divergence_curve",
    "final_moments",
    "first_passage",
    "fit_steady_state",
    "format_table",
    "heavy_ball_stability_boundary",
    "heavy_ball_stationary_moments",
    "summary",
    "to_dataset",
    "langevin_mfpt",
    "langevin_splitting_probability",
    "lyapunov",
    "model_functions",
    "occupancy_fractions",
    "open_run",
    "point_theory",
    "poisson_rate_interval",
    "regime_boundaries",
    "regimes",
    "regimes_summary",
    "region_fractions",
    "replicate_groups",
    "restricted_mean",
    "splitting",
    "sgd_lyapunov",
    "sgd_stationary_moments",
    "slow_optimum",
    "stationary_density",
    "steady_state_error",
    "steady_state_summary",
    "summarize",
    "survival_curve",
    "theory_stationary_density",
    "timeseries",
    "to_json",
    "total_variation",
    "wilson_interval",
    "write_report",
]
