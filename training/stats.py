"""Haze statistics of image sets, and how far a synthetic set is from the real ones (the paper's
analysis step: tune the recipe until synthetic haze looks, statistically, like real haze)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .inputs import iter_frames

STATS = ("dark_channel", "contrast", "saturation", "brightness", "colour_cast", "noise")
DESCRIPTIONS = {
    "dark_channel": "mean dark channel (15 px at 360p): rises with haze",
    "contrast": "RMS contrast of luminance: falls with haze",
    "saturation": "mean HSV saturation: falls with haze",
    "brightness": "mean luminance",
    "colour_cast": "chroma of the mean colour in Lab: tinted airlight, dust",
    "noise": "noise sigma (Immerkaer), 0-255 scale",
}
NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def image_stats(rgb: np.ndarray) -> dict[str, float]:
    h, w = rgb.shape[:2]
    scale = 256 / min(h, w)
    img = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    f = img.astype(np.float32) / 255.0
    dark = cv2.erode(f.min(axis=2), np.ones((11, 11), np.uint8))
    lum = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    a, b = lab[..., 1].mean() - 128, lab[..., 2].mean() - 128
    # Immerkaer's fast noise estimate on the full-resolution luminance.
    full = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    conv = np.abs(cv2.filter2D(full, -1, NOISE_MASK))[1:-1, 1:-1]
    sigma = float(np.sqrt(np.pi / 2) * conv.sum() / (6 * conv.shape[0] * conv.shape[1]))
    return {"dark_channel": float(dark.mean()), "contrast": float(lum.std() / 255.0),
            "saturation": float(hsv[..., 1].mean() / 255.0), "brightness": float(lum.mean() / 255.0),
            "colour_cast": float(np.hypot(a, b)), "noise": sigma}


def set_images(spec: str, stride: int, max_images: int | None):
    """A generated folder (uses hazy/), image folder, glob, or video (every ``stride``-th frame)."""
    p = Path(spec)
    if p.is_dir() and (p / "hazy").is_dir() and (p / "metadata.jsonl").is_file():
        spec = str(p / "hazy")
    for k, (rgb, _, _) in enumerate(iter_frames(spec, stride=stride)):
        if max_images is not None and k >= max_images:
            return
        yield rgb


def collect(specs: list[str], stride: int = 10, max_images: int | None = 300, progress=None) -> dict[str, np.ndarray]:
    """Per-statistic arrays over all images of the given specs."""
    values = {s: [] for s in STATS}
    for spec in specs:
        for rgb in set_images(spec, stride, max_images):
            for k, v in image_stats(rgb).items():
                values[k].append(v)
            if progress is not None:
                progress()
    return {k: np.asarray(v, np.float64) for k, v in values.items()}


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two empirical 1-D distributions (area between their quantile functions)."""
    q = np.linspace(0, 1, 201)
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def distances(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray]) -> dict[str, float]:
    """W1 per statistic in units of the real set's standard deviation, plus their mean."""
    d = {k: round(wasserstein1(real[k], synthetic[k]) / max(float(real[k].std()), 1e-6), 4) for k in STATS}
    d["mean"] = round(float(np.mean([d[k] for k in STATS])), 4)
    return d


def summary(values: dict[str, np.ndarray]) -> dict:
    n = len(values[STATS[0]])
    return {"images": n, **{k: {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4)}
                            for k, v in values.items()}}


def plot(sets: dict[str, dict[str, np.ndarray]], path: Path, dist: dict[str, dict]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, stat in zip(axes.flat, STATS):
        lo = min(float(v[stat].min()) for v in sets.values())
        hi = max(float(v[stat].max()) for v in sets.values())
        bins = np.linspace(lo, hi + 1e-9, 30)
        for name, v in sets.items():
            ax.hist(v[stat], bins=bins, density=True, histtype="step", lw=1.6, label=name)
        title = stat
        for syn, d in dist.items():
            title += f"\nW1/σ {syn}: {d[stat]:.2f}"
        ax.set_title(title, fontsize=9)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare_sets(real: list[str], synthetic: dict[str, list[str]], out: Path, stride: int = 10,
                 max_images: int | None = 300, progress=None) -> dict:
    """Statistics of the pooled real set and each synthetic set; writes stats.json and stats.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sets = {"real": collect(real, stride, max_images, progress)}
    for name, specs in synthetic.items():
        sets[name] = collect(specs, stride, max_images, progress)
    dist = {name: distances(sets["real"], sets[name]) for name in synthetic}
    result = {"statistics": DESCRIPTIONS, "real_sources": real, "synthetic_sources": synthetic,
              "sets": {k: summary(v) for k, v in sets.items()}, "distances": dist,
              "distance": "1-D Wasserstein distance in units of the real set's standard deviation"}
    (out / "stats.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    plot(sets, out / "stats.png", dist)
    return result
