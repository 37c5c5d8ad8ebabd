"""From wire charge to the stored image: electronic noise, zero suppression, units and dtype.

The charge images of :meth:`cohep.lartpc.detector.Readout.charge_images` (electrons per pixel) get
Gaussian noise of the per-pixel width :meth:`DetectorConfig.pixel_noise` (the ENC scaled to the
pixel's wires and time span), then every pixel under ``threshold_sigma`` noise widths is set to 0.

Noise is added exactly as if every one of the 3 x H x W pixels had drawn a Gaussian, but without
drawing 120,000 numbers per event: pixels carrying signal get their Gaussian draw; among the empty
pixels, the number that fluctuate over threshold is binomial and their values follow the Gaussian
tail above the threshold (Marsaglia's tail method).  The result has the same distribution and
costs microseconds.

Stored images are in thousands of electrons (ke-), float16 by default: a minimum-ionising track
crossing a 6 mm pixel leaves about 25-40 ke-, the noise per pixel is about 0.4 ke-.
"""
from __future__ import annotations

import math

import numpy as np
from cohep.lartpc.jit import cached_njit

#: Unit of the stored pixel values.
IMAGE_UNIT = "ke-"
#: Electrons per stored unit.
ELECTRONS_PER_UNIT = 1000.0


@cached_njit
def _tail_value(z, s, rng):
    """A Gaussian value of width ``s`` conditioned to exceed ``z * s`` (Marsaglia's tail method)."""
    if z <= 0.0:
        return abs(rng.standard_normal()) * s
    while True:
        xx = -math.log(1.0 - rng.random()) / z
        yy = -math.log(1.0 - rng.random())
        if 2.0 * yy > xx * xx:
            return (z + xx) * s


@cached_njit
def _noise_hits(plane, n_signal, s, a, rng, scale, signed):
    """The empty pixels that noise lifts over threshold ``a``: Binomial(n_empty, P(tail)) of them at
    random empty places, values from the tail (``signed``: both tails, a random sign each)."""
    h, w = plane.shape
    z = a / s
    p_tail = math.erfc(z / math.sqrt(2.0)) * (1.0 if signed else 0.5)
    n_empty = h * w - n_signal
    k = rng.binomial(n_empty, p_tail) if n_empty > 0 and p_tail > 0.0 else 0
    placed = 0
    tries = 0
    while placed < k and tries < 100 * k + 100:
        tries += 1
        i = int(rng.random() * h)
        j = int(rng.random() * w)
        if plane[i, j] != 0.0:
            continue
        val = _tail_value(z, s, rng)
        if signed and rng.random() >= 0.5:
            val = -val
        plane[i, j] = val * scale
        placed += 1


@cached_njit
def _noise_threshold(img, sigma, thr, rng, scale):
    """In place: noise on signal pixels, binomial noise hits elsewhere, zero suppression, scaling."""
    n_planes, h, w = img.shape
    for p in range(n_planes):
        s = sigma[p]
        a = thr[p]
        plane = img[p]
        if s <= 0.0:
            for i in range(h):
                for j in range(w):
                    v = plane[i, j]
                    plane[i, j] = v * scale if v >= a and v > 0.0 else 0.0
            continue
        n_signal = 0
        for i in range(h):
            for j in range(w):
                v = plane[i, j]
                if v != 0.0:
                    n_signal += 1
                    v = v + s * rng.standard_normal()
                    plane[i, j] = v * scale if v >= a else -1.0  # -1 marks "signal pixel, suppressed"
        _noise_hits(plane, n_signal, s, a, rng, scale, False)
        for i in range(h):
            for j in range(w):
                if plane[i, j] < 0.0:
                    plane[i, j] = 0.0


@cached_njit
def _noise_threshold_signed(img, sigma, thr, rng, scale):
    """As :func:`_noise_threshold` for signed (bipolar) signals: a pixel is kept when |value| is
    over threshold; noise hits are drawn from both tails."""
    n_planes, h, w = img.shape
    for p in range(n_planes):
        s = sigma[p]
        a = thr[p]
        plane = img[p]
        n_signal = 0
        for i in range(h):
            for j in range(w):
                v = plane[i, j]
                if v != 0.0:
                    n_signal += 1
                    if s > 0.0:
                        v = v + s * rng.standard_normal()
                    plane[i, j] = v * scale if abs(v) >= a and v != 0.0 else np.nan
        if s > 0.0:
            _noise_hits(plane, n_signal, s, a, rng, scale, True)
        for i in range(h):
            for j in range(w):
                if np.isnan(plane[i, j]):
                    plane[i, j] = 0.0


@cached_njit
def _half_bits(v):
    """IEEE binary16 bits of a non-negative float (round to nearest even; clipped to 65504)."""
    if v <= 0.0:
        return 0
    if v >= 65504.0:
        return 0x7BFF
    if v < 6.103515625e-05:  # subnormal: multiples of 2^-24
        q = v * 16777216.0
        n = int(math.floor(q))
        r = q - n
        if r > 0.5 or (r == 0.5 and (n & 1) == 1):
            n += 1
        return n
    m, e = math.frexp(v)  # v = m 2^e, 0.5 <= m < 1
    mant = (2.0 * m - 1.0) * 1024.0
    n = int(math.floor(mant))
    r = mant - n
    if r > 0.5 or (r == 0.5 and (n & 1) == 1):
        n += 1
    exp = e + 14
    if n == 1024:
        n = 0
        exp += 1
    if exp >= 31:
        return 0x7BFF
    return (exp << 10) | n


@cached_njit
def _to_half(img, out):
    flat = img.ravel()
    res = out.ravel()
    for i in range(flat.shape[0]):
        v = flat[i]
        if v != 0.0:
            res[i] = _half_bits(v)


@cached_njit
def _to_half_signed(img, bits, out):
    """Any-sign float32 to binary16 bits as ``clip(+-65504).astype(float16)``; ``bits`` is ``img``
    viewed as uint32 (its sign bit: -0.0 stays -0.0)."""
    flat = img.ravel()
    sign = bits.ravel()
    res = out.ravel()
    for i in range(flat.shape[0]):
        b = sign[i]
        if b == 0:  # +0.0, most pixels (``out`` starts at zero)
            continue
        neg = (b >> 31) != 0
        v = flat[i]
        h = _half_bits(-v if neg else v)
        res[i] = (h | 0x8000) if neg else h


def to_float16(img: np.ndarray) -> np.ndarray:
    """Non-negative float32 image to float16, equal to ``astype(float16)`` below 65504 (larger
    values are clipped to 65504 instead of becoming infinite); fast for sparse images."""
    src = np.ascontiguousarray(img, dtype=np.float32)
    bits = np.zeros(src.shape, dtype=np.uint16)
    _to_half(src, bits)
    return bits.view(np.float16)


def digitise(charge: np.ndarray, noise: np.ndarray, threshold_sigma: float, rng: np.random.Generator,
             *, dtype: str | np.dtype = "float16", signed_planes: int = 0) -> np.ndarray:
    """Add noise to charge images [3, H, W] (electrons), zero-suppress, convert to ke- and dtype.

    ``noise``: per-plane pixel noise in electrons; ``threshold_sigma``: threshold in noise widths
    (with zero noise, nothing is suppressed below a strictly positive charge).  ``signed_planes``:
    the first so many planes hold bipolar signals (induction); their suppression keeps |value|
    over threshold.
    """
    img = np.array(charge, dtype=np.float32, copy=True)
    sigma = np.asarray(noise, dtype=np.float64)
    thr = threshold_sigma * sigma
    k = int(signed_planes)
    if k:  # planes in order, as in one call: the random stream is the same either way
        _noise_threshold_signed(img[:k], sigma[:k], thr[:k], rng, 1.0 / ELECTRONS_PER_UNIT)
        if k < img.shape[0]:
            _noise_threshold(img[k:], sigma[k:], thr[k:], rng, 1.0 / ELECTRONS_PER_UNIT)
    else:
        _noise_threshold(img, sigma, thr, rng, 1.0 / ELECTRONS_PER_UNIT)
    return store(img, dtype)


def store(img: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """A float32 image in the stored dtype (float16 clipped to +-65504 rather than infinite)."""
    if np.dtype(dtype) == np.float16:
        if img.size and img.min() < 0:  # bipolar planes: clip(+-65504).astype(float16), in one pass
            src = np.ascontiguousarray(img, dtype=np.float32)
            bits = np.zeros(src.shape, dtype=np.uint16)
            _to_half_signed(src, src.view(np.uint32), bits)
            return bits.view(np.float16)
        return to_float16(img)
    return img.astype(dtype, copy=False)
