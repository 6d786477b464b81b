"""Does a dehazed frame still look natural? Reference-free figures of an (input, output) pair.

Dehazing should add contrast where there is structure and leave the rest of the picture alone: no
colour cast, no blotches or bands in a flat sky, no large change of overall brightness. Each figure
compares the output with its own input (no clear ground truth needed), in CIE Lab (D65, L* 0..100):

``chroma_shift``
    mean over pixels of |Δ(a*, b*)|, the per-pixel change of the chroma vector (colour change of
    any kind; dehazing legitimately restores some saturation, so a few units are expected).
``cast_a``, ``cast_b``, ``cast``
    the shift of the image-mean a* and b* (output - input) and its length: a global cast
    (+b* yellow, -b* blue, -a* green, +a* magenta).
``brightness_ratio``
    mean L* of the output ÷ mean L* of the input (< 1: the output is darker).
``flat_spread_ratio``
    in the flat regions of the INPUT (5x5 local std of L* below ``flat_std``), the mean local std
    of L* of the output ÷ that of the input, over a window of about 1/24 of the short side
    (blotches, noise and banding raise it; 1 = left as flat as it was).
``sky_spread_ratio``, ``sky_brightness_ratio``, ``sky_cast``
    in the sky (the largest connected flat region reaching into the top tenth of the rows), the std
    of L* of the output ÷ that of the input (a darker band at the horizon or large blotches raise
    it), the ratio of its mean L*, and the length of its mean Δ(a*, b*) (grey sky turned navy).
``flat_fraction``, ``sky_fraction``
    the share of pixels in flat regions and in the sky (their figures are NaN under ``min_flat``).

Sizes are pixels of the images given; the benchmark (benchmarks/naturalness.py) scales every
image to a 360 px short side first, so windows mean the same thing across sets.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import cv2
import numpy as np

FLAT_STD = 0.6      # L* units (about 1.5 levels of 8-bit grey)
MIN_FLAT = 0.02     # share of the image a flat region must cover to be measured
SKY_TOP = 0.1       # the sky region must reach into this top share of the rows
EPS = 0.25          # L* units added to both spreads, so near-zero input spread does not explode the ratio

METRICS = ("chroma_shift", "cast_a", "cast_b", "cast", "brightness_ratio", "flat_spread_ratio",
           "sky_spread_ratio", "sky_brightness_ratio", "sky_cast", "sky_fraction", "flat_fraction")


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 Lab (L* 0..100, a*, b* about -128..127)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def local_std(x: np.ndarray, size: int) -> np.ndarray:
    """Standard deviation over a size x size box around each pixel (reflected borders)."""
    x = x.astype(np.float64)
    m = cv2.blur(x, (size, size), borderType=cv2.BORDER_REFLECT)
    m2 = cv2.blur(x * x, (size, size), borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def flat_mask(L: np.ndarray, flat_std: float = FLAT_STD) -> np.ndarray:
    """Pixels whose 5x5 neighbourhood of L* varies less than ``flat_std``."""
    return local_std(L, 5) < flat_std


def sky_region(mask: np.ndarray, top: float = SKY_TOP) -> np.ndarray:
    """The largest 8-connected component of a boolean mask that reaches into the top ``top`` share
    of the rows: the sky where a flat one is visible (all False when none reaches there)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    rows = max(1, round(mask.shape[0] * top))
    candidates = [i for i in range(1, n) if stats[i, cv2.CC_STAT_TOP] < rows]
    if not candidates:
        return np.zeros_like(mask, dtype=bool)
    return labels == max(candidates, key=lambda i: stats[i, cv2.CC_STAT_AREA])


def naturalness(inp: np.ndarray, out: np.ndarray, flat_std: float = FLAT_STD,
                min_flat: float = MIN_FLAT) -> dict[str, float]:
    """The figures above for one input and its dehazed output (both RGB uint8, same size)."""
    inp, out = np.asarray(inp), np.asarray(out)
    if inp.shape != out.shape:
        raise ValueError(f"input {inp.shape} and output {out.shape} differ in size")
    lab_in, lab_out = to_lab(inp).astype(np.float64), to_lab(out).astype(np.float64)
    L_in, L_out = lab_in[..., 0], lab_out[..., 0]
    d_ab = lab_out[..., 1:] - lab_in[..., 1:]
    cast_a, cast_b = (lab_out[..., 1:].mean(axis=(0, 1)) - lab_in[..., 1:].mean(axis=(0, 1))).tolist()
    r = {
        "chroma_shift": float(np.sqrt((d_ab ** 2).sum(-1)).mean()),
        "cast_a": float(cast_a),
        "cast_b": float(cast_b),
        "cast": float(math.hypot(cast_a, cast_b)),
        "brightness_ratio": float(L_out.mean() / max(L_in.mean(), 1e-6)),
    }
    flat = flat_mask(L_in, flat_std)
    r["flat_fraction"] = float(flat.mean())
    r["sky_fraction"] = 0.0
    nan = float("nan")
    r.update(flat_spread_ratio=nan, sky_spread_ratio=nan, sky_brightness_ratio=nan, sky_cast=nan)
    if flat.mean() >= min_flat:
        win = max(5, round(min(L_in.shape) / 24) | 1)
        s_in, s_out = local_std(L_in, win)[flat].mean(), local_std(L_out, win)[flat].mean()
        r["flat_spread_ratio"] = float((s_out + EPS) / (s_in + EPS))
        sky = sky_region(flat)
        r["sky_fraction"] = float(sky.mean())
        if sky.mean() >= min_flat:
            r["sky_spread_ratio"] = float((L_out[sky].std() + EPS) / (L_in[sky].std() + EPS))
            r["sky_brightness_ratio"] = float(L_out[sky].mean() / max(L_in[sky].mean(), 1e-6))
            r["sky_cast"] = float(np.hypot(*d_ab[sky].mean(axis=0)))
    return r


def aggregate(results: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and median of each figure over a set (NaN entries, e.g. no flat region, left out);
    ``n`` is how many images had the figure."""
    results = list(results)
    keys = [k for k in METRICS if any(k in r for r in results)]
    keys += sorted({k for r in results for k in r} - set(keys))
    agg = {}
    for k in keys:
        v = np.array([r[k] for r in results if k in r and np.isfinite(r[k])], dtype=np.float64)
        agg[k] = {"mean": float(v.mean()) if v.size else float("nan"),
                  "median": float(np.median(v)) if v.size else float("nan"), "n": int(v.size)}
    return agg
