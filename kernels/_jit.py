"""``jitable``: one plain Python function, callable from CPU and CUDA kernels.

The RNG, the models, the update rules and the observables are plain Python
functions that the numpy backend calls as they are. ``jitable`` registers such
a function twice:

* for numba's CPU target, as an ordinary call, or inlined into the caller at
  the IR level (``inline=True``) for the RNG and the other pieces of the CPU
  lane loops, which vectorise only when the whole step is one function body;
* for numba-cuda, as an ordinary device function. numba core's IR inliner
  cannot be used there: since numba-cuda 0.21 the CUDA target lowers its own
  IR classes, and core's inliner leaves core's ``ir.UNDEFINED`` markers behind
  (``No implementation of function and_(omitted(default=Undefined), ...)``).
  NVVM inlines device functions at -O3 anyway, so the GPU code loses nothing.

The CUDA registration also teaches numba-cuda the scalar numpy math that the
CPU target and the numpy backend accept: numba-cuda has ``math.sqrt`` but no
scalar ``np.sqrt`` (``KeyError: <ufunc 'sqrt'>`` while lowering, with no
source line). ``np.sqrt``, ``np.exp``, ``np.log`` and the other functions in
``CUDA_SCALAR_UFUNCS`` are mapped to their ``math`` counterparts for scalar
arguments, so user models written with numpy functions compile for the GPU.
"""
import math
import os

import numpy as np
from numba.extending import overload

__all__ = ["jitable", "CUDA_SCALAR_UFUNCS", "cuda_extending"]


def _cuda_extending():
    """numba-cuda's extension API, or None (not installed, or the CUDA simulator)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return None        # the simulator runs device code as Python: nothing to register
    try:
        from numba.cuda import extending
    except ImportError:
        return None
    return extending if hasattr(extending, "register_jitable") else None


cuda_extending = _cuda_extending()


def jitable(fn=None, *, inline=False):
    """Register ``fn`` for numba's CPU target and for numba-cuda (a device function).

    ``inline=True`` inlines it into its CPU callers at the IR level; that is for the
    few small functions inside the CPU lane loops (the RNG, the commit of a step),
    which vectorise only as one function body. Everything else is an ordinary call
    that LLVM inlines or not as it sees fit: IR inlining of every helper multiplies
    compile times (seen: 17 s to 120 s for a two-time-scale kernel).
    """
    if fn is None:
        return lambda f: jitable(f, inline=inline)
    overload(fn, target="cpu", inline="always" if inline else "never",
             strict=False)(lambda *args, **kwargs: fn)
    if cuda_extending is not None:
        cuda_extending.register_jitable(fn)
    return fn


# Scalar numpy functions mapped to math for CUDA device code: numpy name -> implementation.
CUDA_SCALAR_UFUNCS = {
    "sqrt": lambda x: math.sqrt(x), "exp": lambda x: math.exp(x),
    "expm1": lambda x: math.expm1(x), "log": lambda x: math.log(x),
    "log1p": lambda x: math.log1p(x), "log2": lambda x: math.log2(x),
    "log10": lambda x: math.log10(x), "sin": lambda x: math.sin(x),
    "cos": lambda x: math.cos(x), "tan": lambda x: math.tan(x),
    "arcsin": lambda x: math.asin(x), "arccos": lambda x: math.acos(x),
    "arctan": lambda x: math.atan(x), "sinh": lambda x: math.sinh(x),
    "cosh": lambda x: math.cosh(x), "tanh": lambda x: math.tanh(x),
    "arcsinh": lambda x: math.asinh(x), "arccosh": lambda x: math.acosh(x),
    "arctanh": lambda x: math.atanh(x), "floor": lambda x: math.floor(x),
    "ceil": lambda x: math.ceil(x), "trunc": lambda x: math.trunc(x),
    "fabs": lambda x: math.fabs(x), "absolute": lambda x: abs(x),
    "isfinite": lambda x: math.isfinite(x), "isnan": lambda x: math.isnan(x),
    "isinf": lambda x: math.isinf(x),
    "arctan2": lambda y, x: math.atan2(y, x), "hypot": lambda x, y: math.hypot(x, y),
    "power": lambda x, y: x ** y, "copysign": lambda x, y: math.copysign(x, y),
    "fmod": lambda x, y: math.fmod(x, y),
}


def _register_cuda_ufuncs(extending):
    from numba import types

    scalar = (types.Float, types.Integer, types.Boolean)

    def register(ufunc, impl):
        if impl.__code__.co_argcount == 1:
            @extending.overload(ufunc, target="cuda")
            def _scalar(x):
                if isinstance(x, scalar):
                    return impl
        else:
            @extending.overload(ufunc, target="cuda")
            def _scalar(x, y):
                if isinstance(x, scalar) and isinstance(y, scalar):
                    return impl

    for name, impl in CUDA_SCALAR_UFUNCS.items():
        register(getattr(np, name), impl)


if cuda_extending is not None:
    _register_cuda_ufuncs(cuda_extending)
