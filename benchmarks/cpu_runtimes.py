"""Which CPU runtime is fastest for the dehazer and for the detector, and does its output match torch's?

Dehazer (the bundled cid-lite, gate off, frame by frame): torch fp32, torch bf16, onnxruntime and OpenVINO on
the graph `cidstream export` writes (one file per frame size). Output agreement with torch fp32 on real fog
frames: the largest and mean difference in levels and the share of values more than 1 level off.
Detector (YOLO11n, imgsz 640): torch (Ultralytics .pt), and Ultralytics' own ONNX and OpenVINO exports (dynamic
shapes), each through cidstream's Detector; agreement = class-agnostic AP50 against the torch detector's own
boxes at conf >= 0.25 on clear frames (100 = sees exactly what torch sees).

Every arm runs in each round on the same frames, the arms interleaved so that a noisy machine slows them
alike; fps are medians over rounds. OpenVINO is not a dependency: `pip install openvino` to include it.

    python benchmarks/cpu_runtimes.py                      # -> benchmarks/results/cpu_runtimes.json
    python benchmarks/cpu_runtimes.py --rounds 5 --frames 32
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.bench import machine_name  # noqa: E402
from cidstream.config import data_root  # noqa: E402
from cidstream.detect.detector import Detector  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from cidstream.evaluation.clear_check import reference_ap  # noqa: E402
from cidstream.export import export_model  # noqa: E402

SIZES = ((360, 640), (720, 1280))
BATCH = 4


def frames_of(clip: str, n: int, size: tuple[int, int]) -> np.ndarray:
    with av.open(str(data_root() / "videos" / clip)) as c:
        return np.stack([cv2.resize(f.to_ndarray(format="rgb24"), size[::-1], interpolation=cv2.INTER_AREA)
                         for _, f in zip(range(n), c.decode(video=0))])


def timed(fn, frames: np.ndarray) -> tuple[float, list]:
    """(fps, outputs) of ``fn`` over ``frames`` in batches of BATCH."""
    outs, t0 = [], time.perf_counter()
    for i in range(0, len(frames), BATCH):
        outs.append(fn(frames[i:i + BATCH]))
    return len(frames) / (time.perf_counter() - t0), outs


def openvino_dehazer(onnx: Path):
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx), "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()})
    return lambda x: compiled([x])[0]


def dehazer_arms(tmp: Path, size: tuple[int, int]) -> dict:
    arms = {"torch fp32": Dehazer("cid-lite", device="cpu", precision="fp32", temporal=False),
            "torch bf16": Dehazer("cid-lite", device="cpu", precision="bf16", temporal=False)}
    onnx = tmp / f"cid_lite_{size[0]}.onnx"
    export_model("cid-lite", onnx, height=size[0], width=size[1])
    arms["onnxruntime"] = Dehazer(str(onnx), device="cpu")
    fns = {name: (lambda x, d=d: d.process(torch.from_numpy(x)).numpy()) for name, d in arms.items()}
    try:
        fns["openvino"] = openvino_dehazer(onnx)
    except ImportError:
        print("openvino not installed: pip install openvino to include it", file=sys.stderr)
    return fns


def detector_arms(tmp: Path, base: Path) -> dict:
    import shutil

    from ultralytics import YOLO

    arms = {"torch": str(base)}
    own = shutil.copy(base, tmp / base.name)  # Ultralytics writes its exports beside the weights: here, not in data
    for fmt, extra in (("onnx", {"simplify": False}), ("openvino", {})):
        try:
            arms[fmt] = YOLO(own).export(format=fmt, imgsz=640, dynamic=True, verbose=False, **extra)
        except Exception as exc:  # a runtime that is not installed: measured where it is
            print(f"detector export to {fmt} failed: {exc}", file=sys.stderr)
    return {name: Detector(path, conf=0.001) for name, path in arms.items()}


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
        detectors = detector_arms(Path(tmp), base)
        for size in SIZES:
            key = f"{size[1]}x{size[0]}"
            fog = frames_of("foggy_road_real.mp4", args.frames, size)
            clear = np.concatenate([frames_of("highway_720p.mp4", args.frames // 2, size),
                                    frames_of("traffic_cam_640x360.mp4", args.frames // 2, size)])
            dehazers = dehazer_arms(Path(tmp), size)
            fps = {("dehazer", k): [] for k in dehazers} | {("detector", k): [] for k in detectors}
            outs = {}
            for fn in dehazers.values():   # warm-up
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
