"""Which CPU runtime is fastest for the dehazer and for the detector, and does its output match torch's?

This is what `auto` (engine.cpu_runtime, detect.cpu_runtime) is chosen by. Dehazer (the bundled cid-lite, gate
off, as video: one stream in batches of 4, temporal smoothing on): torch fp32, torch bf16, and its network as a
graph in onnxruntime and OpenVINO with the smoothing and full-size apply in torch (what cidstream runs,
engine/coefficient_graph.py). Output agreement with torch fp32 on real fog frames: the largest and mean
difference in levels and the share of values more than 1 level off.
Detector (YOLO11n, imgsz 640): torch (Ultralytics .pt), and Ultralytics' own ONNX and OpenVINO exports (dynamic
shapes) as cidstream's Detector makes and caches them; agreement = class-agnostic AP50 against the torch
detector's own boxes at conf >= 0.25 on clear frames (100 = sees exactly what torch sees).

Every arm runs in each round on the same frames, the arms interleaved so that a noisy machine slows them
alike; fps are medians over rounds. Graphs are made before timing (into a temporary cache).

    python benchmarks/cpu_runtimes.py                      # -> benchmarks/results/cpu_runtimes.json
    python benchmarks/cpu_runtimes.py --rounds 5 --frames 32
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.bench import machine_name  # noqa: E402
from cidstream.config import AP_CONF, data_root  # noqa: E402
from cidstream.detect.detector import Detector  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from cidstream.evaluation.clear_check import reference_ap  # noqa: E402
from cidstream.io.containers import rgb_frames  # noqa: E402

SIZES = ((360, 640), (720, 1280))
BATCH = 4
RUNTIMES = ("onnxruntime", "openvino")


def frames_of(clip: str, n: int, size: tuple[int, int]) -> np.ndarray:
    frames = islice(rgb_frames(data_root() / "videos" / clip), n)
    return np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames])


def timed(fn, frames: np.ndarray) -> tuple[float, list]:
    """(fps, outputs) of ``fn`` over ``frames`` in batches of BATCH."""
    outs, t0 = [], time.perf_counter()
    for i in range(0, len(frames), BATCH):
        outs.append(fn(frames[i:i + BATCH]))
    return len(frames) / (time.perf_counter() - t0), outs


def dehazer_arms() -> dict:
    arms = {"torch fp32": Dehazer("cid-lite", device="cpu", precision="fp32"),
            "torch bf16": Dehazer("cid-lite", device="cpu", precision="bf16")}
    for runtime in RUNTIMES:
        arms[runtime] = Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime=runtime)
    return {name: (lambda x, d=d: d.process(torch.from_numpy(x), "video").numpy()) for name, d in arms.items()}


def detector_arms(base: Path) -> dict:
    return {name: Detector(str(base), conf=AP_CONF, runtime=name) for name in ("torch", *RUNTIMES)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=16, help="frames per arm and round (batches of 4)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu_runtimes.json"))
    args = ap.parse_args()
    result = {"machine": machine_name(torch.device("cpu")), "rounds": args.rounds, "frames": args.frames,
              "dehazer": {}, "detector": {}}
    base = data_root() / "weights" / "yolo11n_coco_from_int8.pt"
    with tempfile.TemporaryDirectory(prefix="cidstream-runtimes-") as tmp:
        os.environ["CIDSTREAM_CACHE"] = tmp   # graphs made fresh for this run, not taken from the user's cache
        detectors = detector_arms(base)
        for size in SIZES:
            key = f"{size[1]}x{size[0]}"
            fog = frames_of("foggy_road_real.mp4", args.frames, size)
            clear = np.concatenate([frames_of("highway_720p.mp4", args.frames // 2, size),
                                    frames_of("traffic_cam_640x360.mp4", args.frames // 2, size)])
            dehazers = dehazer_arms()
            fps = {("dehazer", k): [] for k in dehazers} | {("detector", k): [] for k in detectors}
            outs = {}
            for fn in dehazers.values():   # warm-up; makes the graphs
                fn(fog[:BATCH])
            for det in detectors.values():
                det(clear[:BATCH])
            for r in range(args.rounds):
                for name, fn in dehazers.items():
                    f, o = timed(fn, fog)
                    fps[("dehazer", name)].append(f)
                    outs[("dehazer", name)] = np.concatenate(o)
                for name, det in detectors.items():
                    f, o = timed(det, clear)
                    fps[("detector", name)].append(f)
                    outs[("detector", name)] = [d for batch in o for d in batch]
                print(f"{key} round {r + 1}: " + ", ".join(f"{k[0]} {k[1]} {v[-1]:.1f}" for k, v in fps.items()),
                      flush=True)
            ref = outs[("dehazer", "torch fp32")].astype(np.int16)
            for name in dehazers:
                diff = np.abs(outs[("dehazer", name)].astype(np.int16) - ref)
                result["dehazer"].setdefault(name, {})[key] = {
                    "fps": round(statistics.median(fps[("dehazer", name)]), 2),
                    "max_diff": int(diff.max()), "mean_diff": round(float(diff.mean()), 4),
                    "share_over_1": round(float((diff > 1).mean()), 6)}
            reference = outs[("detector", "torch")]
            for name in detectors:
                result["detector"].setdefault(name, {})[key] = {
                    "fps": round(statistics.median(fps[("detector", name)]), 2),
                    "ap50_vs_torch": reference_ap(reference, outs[("detector", name)])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for part in ("dehazer", "detector"):
        print(f"\n| {part} | " + " | ".join(f"{s[1]}x{s[0]} fps | agreement" for s in SIZES) + " |")
        print("|---|" + "---:|---|" * len(SIZES))
        for name, per in result[part].items():
            cells = []
            for s in SIZES:
                m = per[f"{s[1]}x{s[0]}"]
                agree = (f"max {m['max_diff']}, mean {m['mean_diff']:.3f} levels" if part == "dehazer" else
                         f"AP50 {m['ap50_vs_torch']:.1f}")
                cells += [f"{m['fps']:.1f}", agree]
            print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{result['machine']}; medians of {args.rounds} rounds; written {args.out}")


if __name__ == "__main__":
    main()
