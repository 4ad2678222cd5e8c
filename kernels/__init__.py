"""Compiled inner loops of sgdsim: RNG, models, dynamics and fused chunk kernels.

Everything physical is written once as plain Python and compiled by numba for
the CPU, by numba-cuda for the GPU, and run as-is on numpy arrays for the
reference backend.
"""
from ._cuda import cuda_usable
from ._dynamics import DYNAMICS, dynamics_params, make_advance
from ._launch import ChunkKernel, KernelCompileError, compiled_count, get_kernel, initial_state, seed_key
from ._models import BUILTIN_MODELS, MAX_COEFFICIENTS, Model, builtin_model, user_model
from ._observe import REDUCE_GROUP
from ._vector_dynamics import VECTOR_DYNAMICS, vector_dynamics_params
from ._vector_models import VECTOR_MODELS, VectorModel, linear_regression_data, vector_model
from ._philox import normal_pair, philox4x32, step_block, uniform01, uniform_index

__all__ = [
    "BUILTIN_MODELS", "ChunkKernel", "KernelCompileError", "DYNAMICS", "MAX_COEFFICIENTS", "Model", "REDUCE_GROUP",
    "builtin_model", "compiled_count", "cuda_usable", "dynamics_params", "get_kernel",
    "initial_state", "make_advance", "normal_pair", "philox4x32", "seed_key", "step_block",
    "uniform01", "uniform_index", "user_model", "VECTOR_DYNAMICS", "VECTOR_MODELS",
    "VectorModel", "linear_regression_data", "vector_dynamics_params", "vector_model",
]
