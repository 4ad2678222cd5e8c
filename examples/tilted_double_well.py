"""A user model: the tilted double well L = (x^2 - 1)^2 / 4 + tilt x.

Name it in an experiment as ``model.name = "tilted_double_well:model"`` (with
this folder on PYTHONPATH, or run sgdsim from it). Functions are plain scalar
Python using numpy functions, so the same source compiles for the CPU, for
CUDA, and runs on numpy arrays for the reference backend.

Its gradient noise is a two-sample finite sum, per-sample gradients
L'(x) +- sqrt(Sigma(x)) with Sigma(x) = s0 (1 + x^2 / 2) growing away from 0.
"""
import numpy as np

TILT = 0.1
NOISE = 0.5


class TiltedDoubleWell:
    """Tilted double well with state-dependent gradient noise."""

    n_samples = 2

    @staticmethod
    def loss(x):
        return 0.25 * (x * x - 1.0) ** 2 + TILT * x

    @staticmethod
    def gradient(x):
        return x * (x * x - 1.0) + TILT

    @staticmethod
    def second_derivative(x):
        return 3.0 * x * x - 1.0

    @staticmethod
    def noise_var(x):
        return NOISE * (1.0 + 0.5 * x * x)

    @staticmethod
    def noise_var_derivative(x):
        return NOISE * x

    @staticmethod
    def per_sample_gradient(x, i):
        sign = 1.0 - 2.0 * i
        return x * (x * x - 1.0) + TILT + sign * np.sqrt(NOISE * (1.0 + 0.5 * x * x))

    @staticmethod
    def per_sample_second_derivative(x, i):
        sign = 1.0 - 2.0 * i
        return 3.0 * x * x - 1.0 + sign * 0.5 * NOISE * x / np.sqrt(NOISE * (1.0 + 0.5 * x * x))


model = TiltedDoubleWell()
