"""Compiled inner loops of sgdsim: RNG, models, dynamics and fused chunk kernels.

Everything physical is written once as plain Python and compiled by numba for
the CPU, by numba-cuda for the GPU, and run as-is on numpy arrays for the
reference backend. Every model is d-dimensional (a 1-D model is d = 1); one
kernel template per backend is specialised for each (model, dynamics,
observables) combination.
"""
from ._cuda import cuda_usable
from ._dynamics import DYNAMICS, TWO_SCALE_DYNAMICS, dynamics_params, make_step
from ._jit import jitable
from ._launch import ChunkKernel, KernelCompileError, get_kernel, initial_state, seed_key
from ._models import (
    BUILTIN_MODELS, MAX_COEFFICIENTS, Model, builtin_model, linear_regression_data,
    linear_regression_teacher, two_layer_data, user_model,
)
from ._observe import REDUCE_GROUP
from ._philox import normal_pair, philox4x32, step_block, uniform01, uniform_index

__all__ = [
    "BUILTIN_MODELS", "ChunkKernel", "KernelCompileError", "DYNAMICS", "MAX_COEFFICIENTS",
    "Model", "REDUCE_GROUP", "TWO_SCALE_DYNAMICS", "builtin_model", "cuda_usable",
    "dynamics_params", "get_kernel", "initial_state", "jitable", "linear_regression_data",
    "linear_regression_teacher", "make_step",
    "normal_pair", "philox4x32", "seed_key", "step_block", "two_layer_data", "uniform01",
    "uniform_index", "user_model",
]
