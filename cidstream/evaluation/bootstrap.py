"""Bootstrap intervals for AP: images resampled with replacement, the same resample for every arm,
so a difference between arms gets an interval too and a reader sees whether a lead is noise.

Matching (which detection is a true positive) depends only on the detections of its own image, so
it is done once; a resample then only reweights images, which makes 1000 resamples cheap.
"""
from __future__ import annotations

import numpy as np

from .ap import Matched, weighted_ap


def resample_weights(n_images: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n_images) counts of each image in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(resamples, n_images))
    return np.stack([np.bincount(d, minlength=n_images) for d in draws]).astype(np.float64)


def interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return None
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return [round(float(lo), 4), round(float(hi), 4)]


def bootstrap(matched: dict[str, dict[str, Matched]], classes: list[str], vehicle: str, n_images: int,
              resamples: int = 1000, seed: int = 0, pairs: list[tuple[str, str]] | None = None) -> dict:
    """``matched``: arm -> class -> Matched (``classes`` plus the class-agnostic ``vehicle``). Returns
    per-arm 95 % intervals of vehicle AP50 and mAP50, and per pair of arms (``pairs`` of (earlier,
    later); default every pair in order) the interval of later - earlier and the share of resamples in
    which the later arm leads."""
    weights = resample_weights(n_images, resamples, seed)
    samples = {}
    for arm, per_class in matched.items():
        veh = np.array([weighted_ap(per_class[vehicle], w) for w in weights])
        aps = np.array([[weighted_ap(per_class[c], w) for c in classes] for w in weights])
        m = np.array([np.nanmean(r) if (~np.isnan(r)).any() else np.nan for r in aps.reshape(len(weights), -1)])
        samples[arm] = {"vehicle_ap50": veh, "map50": m}
    arms = list(matched)
    out = {"resamples": resamples, "seed": seed, "level": 0.95,
           "arms": {a: {k: interval(v) for k, v in samples[a].items()} for a in arms}, "differences": []}
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
    for a, b in pairs:
        row = {"a": b, "b": a}  # later arm minus earlier one: dehazed - raw reads naturally
        for key in ("vehicle_ap50", "map50"):
            d = samples[b][key] - samples[a][key]
            row[key] = interval(d)
            row[f"{key}_lead_share"] = round(float(np.mean(d[~np.isnan(d)] > 0)), 3) if (~np.isnan(d)).any() else None
        out["differences"].append(row)
    return out
