"""Philox4x32-10 counter-based generator and its uniform/normal transforms.

Every function here is plain Python written so that the same source runs
three ways: compiled by numba for the CPU, compiled by numba-cuda as a device
function, and called directly on numpy ``uint64`` arrays (the numpy backend).
Words are carried in ``uint64`` holding 32-bit values, so 32x32->64 products
need no special intrinsic on any target.

Counter layout (SPEC 6): the random words of trajectory ``g`` at step ``t``
come from the Philox block with counter ``(block, t, g_lo, g_hi)`` and key
``(seed_lo, seed_hi)``; ``block`` numbers the 4-word blocks one step uses.
The words therefore depend only on (seed, g, t, draw).
"""
import math

import numpy as np

from ._jit import jitable

__all__ = [
    "philox4x32",
    "step_block",
    "normal_pair",
    "uniform_index",
    "uniform01",
]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ZERO = np.uint64(0)

# Constants of the uniform -> normal transform (see normal_pair).
_ONE = np.uint64(1)
_S1 = np.uint64(1)
_S2 = np.uint64(2)
_S4 = np.uint64(4)
_S8 = np.uint64(8)
_S16 = np.uint64(16)
_S30 = np.uint64(30)
_HALF_QUARTER = np.uint64(1 << 29)
_QUARTER_MASK = np.uint64((1 << 30) - 1)
_Q3 = np.uint64(3)
_LN2 = 0.6931471805599453
_SQRT2 = 1.4142135623730951
_TWO_PI_OVER_2_32 = 2.0 * math.pi / 4294967296.0


@jitable(inline=True)
def philox4x32(c0, c1, c2, c3, k0, k1, rounds):
    """Return the Philox4x32-``rounds`` block for counter (c0..c3) and key (k0, k1).

    All arguments and results are uint64 holding 32-bit words. With
    ``rounds = 10`` this is Random123's philox4x32_10.
    """
    for _ in range(rounds):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0 = p0 >> _S32
        lo0 = p0 & _MASK32
        hi1 = p1 >> _S32
        lo1 = p1 & _MASK32
        c0, c1, c2, c3 = (hi1 ^ c1 ^ k0) & _MASK32, lo1, (hi0 ^ c3 ^ k1) & _MASK32, lo0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


@jitable(inline=True)
def step_block(key_lo, key_hi, g, t, block):
    """Return the four random words of ``block`` at step ``t`` of trajectory ``g``.

    ``g`` is the global trajectory index (uint64), ``t`` the step (< 2**32).
    """
    return philox4x32(block, t, g & _MASK32, g >> _S32, key_lo, key_hi, 10)


@jitable(inline=True)
def _log_odd(odd):
    """Natural log of ``v / 2**33`` for an odd integer 1 <= v < 2**33 (float64).

    Written without libm calls or branches so that LLVM vectorises it across
    trajectories: the exponent comes from a branch-free binary search on the
    integer, the mantissa f in [sqrt(1/2), sqrt(2)) goes through the series
    log f = 2 atanh(s), s = (f-1)/(f+1), |s| <= 0.172, truncated after s**21
    (relative error below 1e-17).
    """
    # Binary search for the exponent, one unrolled stage per power of two.
    a32 = np.float64((odd >> _S32) != _ZERO)
    v = odd >> (_S32 * np.uint64(a32))
    a16 = np.float64((v >> _S16) != _ZERO)
    v = v >> (_S16 * np.uint64(a16))
    a8 = np.float64((v >> _S8) != _ZERO)
    v = v >> (_S8 * np.uint64(a8))
    a4 = np.float64((v >> _S4) != _ZERO)
    v = v >> (_S4 * np.uint64(a4))
    a2 = np.float64((v >> _S2) != _ZERO)
    v = v >> (_S2 * np.uint64(a2))
    a1 = np.float64((v >> _S1) != _ZERO)
    exponent = 32.0 * a32 + 16.0 * a16 + 8.0 * a8 + 4.0 * a4 + 2.0 * a2 + a1
    scale = ((1.0 - a32 * (1.0 - 2.0**-32)) * (1.0 - a16 * (1.0 - 2.0**-16))
             * (1.0 - a8 * (1.0 - 2.0**-8)) * (1.0 - a4 * (1.0 - 2.0**-4))
             * (1.0 - a2 * (1.0 - 2.0**-2)) * (1.0 - a1 * 0.5))
    f = np.float64(odd) * scale                     # in [1, 2)
    big = np.float64(f > _SQRT2)
    f = f * (1.0 - 0.5 * big)
    exponent = exponent + big
    s = (f - 1.0) / (f + 1.0)
    s2 = s * s
    series = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (
        1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 * (1.0 / 17.0 + s2 * (
            1.0 / 19.0 + s2 * (1.0 / 21.0))))))))))
    return 2.0 * s * series + (exponent - 33.0) * _LN2


@jitable(inline=True)
def normal_pair(w0, w1):
    """Two independent standard normals from two 32-bit words (Box-Muller, float64).

    z0 = r cos(phi), z1 = r sin(phi) with r = sqrt(-2 ln u), u = (2 w0 + 1) / 2**33
    in (0, 1) and phi = 2 pi w1 / 2**32. The sine and cosine come from Taylor
    polynomials on [-pi/4, pi/4) after an exact quadrant reduction done on the
    integer word, so no libm call is needed (vectorisable, and identical on
    every backend up to rounding). |z| is at most sqrt(66 ln 2) = 6.76.
    """
    r = np.sqrt(-2.0 * _log_odd(w0 + w0 + _ONE))
    shifted = w1 + _HALF_QUARTER
    quadrant = (shifted >> _S30) & _Q3
    a = (np.float64(shifted & _QUARTER_MASK) - 536870912.0) * _TWO_PI_OVER_2_32
    a2 = a * a
    sin_a = a * (1.0 + a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (
        1.0 / 362880.0 + a2 * (-1.0 / 39916800.0 + a2 * (1.0 / 6227020800.0 + a2 * (
            -1.0 / 1307674368000.0))))))))
    cos_a = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40320.0 + a2 * (
        -1.0 / 3628800.0 + a2 * (1.0 / 479001600.0 + a2 * (-1.0 / 87178291200.0 + a2 * (
            1.0 / 20922789888000.0))))))))
    # Rotate (cos a, sin a) by quadrant quarter turns, branch-free.
    swap = np.float64(quadrant & _ONE)
    c = cos_a + swap * (sin_a - cos_a)
    s = sin_a + swap * (cos_a - sin_a)
    cos_sign = 1.0 - 2.0 * np.float64((quadrant ^ (quadrant >> _ONE)) & _ONE)
    sin_sign = 1.0 - 2.0 * np.float64(quadrant >> _ONE)
    return r * cos_sign * c, r * sin_sign * s


@jitable(inline=True)
def uniform01(w):
    """Uniform on [0, 1) from one 32-bit word: w / 2**32 (float64)."""
    return np.float64(w) * 2.3283064365386963e-10


@jitable(inline=True)
def uniform_index(w, n):
    """Index uniform on {0..n-1} from one 32-bit word: floor(w * n / 2**32).

    The multiply-shift map has bias at most n / 2**32, far below what any
    simulation can resolve.
    """
    return (w * np.uint64(n)) >> _S32


_F32_LN2 = np.float32(_LN2)
_F32_SQRT2 = np.float32(_SQRT2)
_F32_ONE = np.float32(1.0)
_F32_HALF = np.float32(0.5)
_F32_TWO = np.float32(2.0)
_F32_MINUS_TWO = np.float32(-2.0)
_F32_TWO_PI_OVER_2_32 = np.float32(_TWO_PI_OVER_2_32)
_F32_HALF_QUARTER = np.float32(536870912.0)
_S24 = np.uint64(24)
_S9 = np.uint64(9)
_MASK24 = np.uint64((1 << 24) - 1)


@jitable(inline=True)
def normal_pair32(w0, w1):
    """Two standard normals from two 32-bit words, in float32 (for float32 runs).

    Box-Muller as ``normal_pair``, from the top 24 bits of each word and with
    polynomials sized for single precision: u = (2 (w0 >> 8) + 1) / 2**25,
    r = sqrt(-2 ln u) (|z| <= sqrt(50 ln 2) = 5.9), phi = 2 pi w1 / 2**32.
    Relative error about 1e-7; the same words as the float64 transform.
    """
    odd = ((w0 >> np.uint64(8)) << _S1) + _ONE          # < 2**25
    a16 = (odd >> _S16) != _ZERO
    v = odd >> (_S16 * np.uint64(a16))
    a8 = (v >> _S8) != _ZERO
    v = v >> (_S8 * np.uint64(a8))
    a4 = (v >> _S4) != _ZERO
    v = v >> (_S4 * np.uint64(a4))
    a2 = (v >> _S2) != _ZERO
    v = v >> (_S2 * np.uint64(a2))
    a1 = (v >> _S1) != _ZERO
    exponent = (np.float32(16.0) * np.float32(a16) + np.float32(8.0) * np.float32(a8)
                + np.float32(4.0) * np.float32(a4) + np.float32(2.0) * np.float32(a2)
                + np.float32(a1))
    scale = ((_F32_ONE - np.float32(a16) * np.float32(1.0 - 2.0**-16))
             * (_F32_ONE - np.float32(a8) * np.float32(1.0 - 2.0**-8))
             * (_F32_ONE - np.float32(a4) * np.float32(1.0 - 2.0**-4))
             * (_F32_ONE - np.float32(a2) * np.float32(1.0 - 2.0**-2))
             * (_F32_ONE - np.float32(a1) * _F32_HALF))
    f = np.float32(odd) * scale                         # in [1, 2)
    big = np.float32(f > _F32_SQRT2)
    f = f * (_F32_ONE - _F32_HALF * big)
    exponent = exponent + big
    s = (f - _F32_ONE) / (f + _F32_ONE)
    s2 = s * s
    series = _F32_ONE + s2 * (np.float32(1.0 / 3.0) + s2 * (np.float32(0.2) + s2 * (
        np.float32(1.0 / 7.0) + s2 * np.float32(1.0 / 9.0))))
    log_u = _F32_TWO * s * series + (exponent - np.float32(25.0)) * _F32_LN2
    r = np.sqrt(_F32_MINUS_TWO * log_u)
    shifted = w1 + _HALF_QUARTER
    quadrant = (shifted >> _S30) & _Q3
    a = (np.float32((shifted & _QUARTER_MASK) >> _S9) * np.float32(512.0)
         - _F32_HALF_QUARTER) * _F32_TWO_PI_OVER_2_32
    a2_ = a * a
    sin_a = a * (_F32_ONE + a2_ * (np.float32(-1.0 / 6.0) + a2_ * (np.float32(1.0 / 120.0) + a2_ * (
        np.float32(-1.0 / 5040.0) + a2_ * np.float32(1.0 / 362880.0)))))
    cos_a = _F32_ONE + a2_ * (np.float32(-0.5) + a2_ * (np.float32(1.0 / 24.0) + a2_ * (
        np.float32(-1.0 / 720.0) + a2_ * (np.float32(1.0 / 40320.0) + a2_ * np.float32(
            -1.0 / 3628800.0)))))
    swap = np.float32(quadrant & _ONE)
    c = cos_a + swap * (sin_a - cos_a)
    s_ = sin_a + swap * (cos_a - sin_a)
    cos_sign = _F32_ONE - _F32_TWO * np.float32((quadrant ^ (quadrant >> _ONE)) & _ONE)
    sin_sign = _F32_ONE - _F32_TWO * np.float32(quadrant >> _ONE)
    return r * cos_sign * c, r * sin_sign * s_
