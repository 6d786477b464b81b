"""Temporal stability of raw / dcp / cid-lite output, with and without temporal smoothing.

Prints the flicker and warping-error ratios (output vs input; cidstream/evaluation/stability.py) per clip and
writes benchmarks/results/stability.json. Run from the repository root:

    python benchmarks/stability.py                      # the three clips of docs/benchmarking.md
    python benchmarks/stability.py --alpha 0.2 --clips $CIDSTREAM_DATA/videos/foggy_road_real.mp4
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.config import data_root, load_config  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from cidstream.io import source_from_config  # noqa: E402
from cidstream.evaluation.stability import StabilityMeter  # noqa: E402

DATA = data_root() / "videos"
CLIPS = [(str(DATA / "foggy_road_real.mp4"), 225), (str(DATA / "heavy_foggy_road_synthetic.mp4"), 300),
         (str(ROOT / "samples" / "hazy_traffic.mp4"), 100)]


def decode(spec: str, frames: int, cfg) -> list:
    with source_from_config(spec, cfg.input, frames, "cpu") as src:
        return [f.rgb() for f in src]


def measure(frames: list, dehazer: Dehazer | None, batch: int, stream: str) -> tuple[dict, float]:
    """Figures of one pass (batches of ``batch`` frames as the pipeline makes them) and its fps."""
    import numpy as np

    meter = StabilityMeter()
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch):
        x = np.stack(frames[i:i + batch])
        out = x if dehazer is None else dehazer.process(torch.from_numpy(x), stream=stream).cpu().numpy()
        meter.update_batch(x, out)
    return meter.result(), len(frames) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", nargs="+", help="video files (default: the three benchmark clips)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: 225 / 300 / 100)")
    p.add_argument("--models", default="raw,dcp,cid-lite")
    p.add_argument("--alpha", type=float)
    p.add_argument("--level-alpha", type=float)
    p.add_argument("--motion", type=float)
    p.add_argument("--cut-threshold", type=float)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stability.json"))
    args = p.parse_args(argv)
    cfg = load_config(overrides=[{"engine": {"device": "cpu"}}])
    t = dict(vars(cfg.temporal))
    for key in ("alpha", "level_alpha", "motion", "cut_threshold"):
        if getattr(args, key) is not None:
            t[key] = getattr(args, key)
    clips = [(c, args.frames or 300) for c in args.clips] if args.clips else \
        [(c, args.frames or n) for c, n in CLIPS]
    models = args.models.split(",")
    dehazers = {}
    for m in models:
        if m != "raw":
            dehazers[(m, False)] = Dehazer(m, device="cpu", dcp=vars(cfg.model.dcp), temporal=False)
            dehazers[(m, True)] = Dehazer(m, device="cpu", dcp=vars(cfg.model.dcp), temporal=t)
    rows = []
    print(f"temporal: alpha {t['alpha']:g}, level_alpha {t['level_alpha']:g}, motion {t['motion']:g}, cut_threshold {t['cut_threshold']:g}")
    print(f"{'clip':34s} {'model':9s} {'smoothing':9s} {'flicker':>8s} {'warp':>7s} {'fps':>6s}")
    for spec, n in clips:
        frames = decode(spec, n, cfg)
        for m in models:
            for smooth in ([False] if m == "raw" else [False, True]):
                d = None if m == "raw" else dehazers[(m, smooth)]
                if d is not None and d.temporal is not None:
                    d.temporal.reset()
                res, fps = measure(frames, d, cfg.engine.batch, stream=spec)
                row = {"clip": Path(spec).name, "frames": len(frames), "model": m, "temporal": smooth, **res,
                       "fps": round(fps, 1)}
                rows.append(row)
                print(f"{row['clip']:34s} {m:9s} {'on' if smooth else 'off':9s} {res['flicker_ratio']:8.3f} "
                      f"{res['warp_ratio']:7.3f} {fps:6.1f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "device": "cpu",
                               "temporal": t, "batch": cfg.engine.batch, "results": rows}, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
