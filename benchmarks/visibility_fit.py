"""Calibrate the per-frame haze level to metres of visibility on highway_fog_cam.

Candidate measures (cidstream/engine/haze.py: transmission, dark, contrast) are computed on every
frame; the measure is chosen and log(visibility) = a + b * level fitted on the days of the select
half only; Spearman rank correlation and the fit error are reported on the report half (days never
fitted on), with a per-visibility-band summary. Writes benchmarks/results/visibility_fit.json.

    python benchmarks/visibility_fit.py [--data $CIDSTREAM_DATA/highway_fog_cam]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.config import data_root  # noqa: E402
from cidstream.evaluation.splits import split_of  # noqa: E402
from cidstream.engine.haze import LEVEL_MEASURES as MEASURES, VIS_MAX_M, VIS_MIN_M, haze_measures  # noqa: E402

BANDS = [(0, 500, "<500 m"), (500, 1000, "500-1000 m"), (1000, 5000, "1-5 km"), (5000, 1e9, ">=5 km (clear)")]


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as scipy.stats.rankdata)."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def spearman(x, y) -> float:
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / math.sqrt((rx * rx).sum() * (ry * ry).sum()))


def read_table(data: Path) -> list[tuple[str, float]]:
    rows = []
    for line in (data / "visibility.tsv").read_text().splitlines()[1:]:
        if line.strip():
            name, vis = line.split("\t")
            rows.append((name, float(vis)))
    return rows


def compute_measures(data: Path, rows, batch: int = 8) -> dict[str, np.ndarray]:
    out: dict[str, list] = {m: [] for m in MEASURES}
    for i in range(0, len(rows), batch):
        imgs = []
        for name, _ in rows[i:i + batch]:
            bgr = cv2.imread(str(data / "frames" / name), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"error: cannot read {data / 'frames' / name}")
            imgs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        with torch.inference_mode():
            m = haze_measures(torch.from_numpy(np.stack(imgs)))
        for k in MEASURES:
            out[k].extend(m[k].tolist())
    return {k: np.asarray(v) for k, v in out.items()}


def fit(level: np.ndarray, vis: np.ndarray) -> tuple[float, float]:
    """Least squares of log(visibility) on the level."""
    b, a = np.polyfit(level, np.log(vis), 1)
    return float(a), float(b)


def predict(level, a, b) -> np.ndarray:
    return np.clip(np.exp(a + b * np.asarray(level)), VIS_MIN_M, VIS_MAX_M)


def errors(pred: np.ndarray, vis: np.ndarray) -> dict:
    e = np.abs(np.log10(pred / vis))
    return {"median_abs_log10": round(float(np.median(e)), 3), "mean_abs_log10": round(float(e.mean()), 3),
            "within_factor_2": round(float((e <= math.log10(2)).mean()), 3)}


def bands(level, pred, vis) -> list[dict]:
    res = []
    for lo, hi, label in BANDS:
        m = (vis >= lo) & (vis < hi)
        if not m.any():
            continue
        res.append({"band": label, "n": int(m.sum()), "median_true_m": float(np.median(vis[m])),
                    "median_pred_m": round(float(np.median(pred[m])), 1),
                    "median_level": round(float(np.median(level[m])), 4), **errors(pred[m], vis[m])})
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(data_root() / "highway_fog_cam"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "visibility_fit.json"))
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / "visibility.tsv").is_file():
        print(f"error: {data}/visibility.tsv not found", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    rows = read_table(data)
    t0 = time.perf_counter()
    measures = compute_measures(data, rows)
    seconds = time.perf_counter() - t0
    vis = np.array([v for _, v in rows])
    split = np.array([split_of(n.split("/")[0]) for n, _ in rows])
    sel, rep = split == "select", split == "report"

    candidates = {}
    for name, level in measures.items():
        a, b = fit(level[sel], vis[sel])
        pred = predict(level, a, b)
        candidates[name] = {
            "a": round(a, 4), "b": round(b, 4),
            "spearman_select": round(-spearman(level[sel], vis[sel]), 4),   # + = hazier ranks lower visibility
            "spearman_report": round(-spearman(level[rep], vis[rep]), 4),
            "fit_select": errors(pred[sel], vis[sel]), "fit_report": errors(pred[rep], vis[rep]),
        }
    best = max(candidates, key=lambda k: candidates[k]["spearman_select"])
    a, b = candidates[best]["a"], candidates[best]["b"]
    pred = predict(measures[best], a, b)
    result = {
        "data": str(data), "frames": len(rows), "select_frames": int(sel.sum()), "report_frames": int(rep.sum()),
        "select_days": sorted({n.split("/")[0] for (n, _), s in zip(rows, sel) if s}),
        "report_days": sorted({n.split("/")[0] for (n, _), s in zip(rows, rep) if s}),
        "chosen_on": "spearman_select", "measure": best, "calib_a": a, "calib_b": b,
        "spearman_select": candidates[best]["spearman_select"],
        "spearman_report": candidates[best]["spearman_report"],
        "fit_report": candidates[best]["fit_report"],
        "bands_report": bands(measures[best][rep], pred[rep], vis[rep]),
        "candidates": candidates, "measure_seconds_per_frame_incl_jpeg": round(seconds / len(rows), 4),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{'measure':<14}{'rho select':>11}{'rho report':>11}{'med|log10| rep':>16}{'x2 rep':>8}")
    for name, c in candidates.items():
        print(f"{name:<14}{c['spearman_select']:>11.3f}{c['spearman_report']:>11.3f}"
              f"{c['fit_report']['median_abs_log10']:>16.3f}{c['fit_report']['within_factor_2']:>8.2f}")
    print(f"chosen (best Spearman on select days): {best}  log(vis) = {a:.4f} + {b:.4f} * level")
    print("report days by band:")
    for r in result["bands_report"]:
        print(f"  {r['band']:<16} n={r['n']:<4} true {r['median_true_m']:>7.0f} m  pred {r['median_pred_m']:>7.0f} m"
              f"  level {r['median_level']:.3f}  med|log10| {r['median_abs_log10']:.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
