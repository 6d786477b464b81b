"""CPU precision for `auto`: cid-lite's dehazing stage in fp32 and in bf16 on this machine, speed and output.

    python benchmarks/precision.py [--input VIDEO] [--frames 48] [--rounds 5] [--out benchmarks/results/precision_cpu.json]

Rounds interleave the two precisions so a noisy machine slows both alike; the figure is the median of
bf16 fps / fp32 fps over rounds. The output difference is in 8-bit levels on the same frames. `auto`
keeps bf16 only where the CPU has native bf16 (AVX512-BF16 or AMX, `engine/device.cpu_supports_bf16`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from cidstream.bench import machine_name
from cidstream.config import data_root
from cidstream.engine import Dehazer
from cidstream.engine.device import cpu_supports_bf16, select_precision
from cidstream.frames import FrameBatch
from cidstream.io import open_source
from cidstream.pipeline import DehazeStage

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(data_root() / "videos" / "traffic_cam_640x360.mp4"))
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "precision_cpu.json"))
    args = ap.parse_args()
    with open_source(args.input, max_frames=args.frames) as src:
        frames = list(src)
    batches = [FrameBatch.of(frames[i:i + args.batch]) for i in range(0, len(frames), args.batch)]
    stages = {p: DehazeStage(Dehazer("cid-lite", device="cpu", precision=p, temporal=False)) for p in ("fp32", "bf16")}
    outs = {p: torch.cat([stage(b).frames for b in batches]) for p, stage in stages.items()}  # also a warm-up
    fps = {p: [] for p in stages}
    for _ in range(args.rounds):
        for p, stage in stages.items():
            t0 = time.perf_counter()
            for b in batches:
                stage(b)
            fps[p].append(len(frames) / (time.perf_counter() - t0))
    diff = (outs["bf16"].int() - outs["fp32"].int()).abs().float()
    ratios = [b / f for b, f in zip(fps["bf16"], fps["fp32"])]
    result = {"machine": machine_name(torch.device("cpu")), "input": args.input, "frames": len(frames),
              "batch": args.batch, "rounds": args.rounds, "cpu_native_bf16": cpu_supports_bf16(),
              "auto_picks": select_precision("auto", torch.device("cpu")),
              "fps_fp32": round(statistics.median(fps["fp32"]), 2), "fps_bf16": round(statistics.median(fps["bf16"]), 2),
              "bf16_over_fp32": round(statistics.median(ratios), 3),
              "output_diff_levels": {"mean": round(float(diff.mean()), 3), "p99": float(np.percentile(diff.numpy(), 99)),
                                     "max": float(diff.max())}}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
