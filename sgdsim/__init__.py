"""sgdsim: batched Monte Carlo for stochastic optimisation dynamics.

The repository's folders ``kernels/``, ``sim/`` and ``analysis/`` are this package's
``sgdsim.kernels`` (compiled inner loops), ``sgdsim.sim`` (the driver and command line)
and ``sgdsim.analysis`` (estimates and figures; it imports neither of the others). An
installed copy maps them with setuptools' ``package_dir``; in a source tree the
repository root is added to this package's path, so the same names import from there.

``sgdsim.run`` and ``sgdsim.open`` are the Python API (``sgdsim.sim._api``); nothing
heavy is imported until they are used, so ``sgdsim.analysis`` runs without numba.
"""
import os as _os

_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "sim")) and all(
        _os.path.isfile(_os.path.join(_ROOT, name, "__init__.py"))
        for name in ("kernels", "sim", "analysis")):
    __path__.append(_ROOT)

__all__ = ["run", "ExperimentError", "__version__"]   # and open, kept out of `import *`


def __getattr__(name):
    # The same objects as sgdsim.sim's, loaded on first use (sgdsim.sim loads them lazily too).
    if name in ("run", "open", "ExperimentError", "__version__"):
        from . import sim
        return getattr(sim, name)
    raise AttributeError(f"module 'sgdsim' has no attribute {name!r}")
