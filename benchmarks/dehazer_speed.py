"""Model-stage speed of two or more dehazer weights, measured in one run, as a ratio to the first.

The dehazing stage as a video run uses it (Dehazer.process, one stream in batches of 4, temporal smoothing on,
gate off) at 640x360 on real fog frames, for each CPU runtime asked for (auto: what cidstream picks). The arms
are interleaved in every round so a noisy machine slows them alike; fps are medians over rounds.

    python benchmarks/dehazer_speed.py --model cid-lite --model cid-lite-affine     # -> benchmarks/results/dehazer_speed.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cidstream.bench import machine_name  # noqa: E402
from cidstream.config import EngineConfig, words  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from cpu_runtimes import frames_of, timed  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model name or weights file (repeatable; the first is the "
                    "reference); default cid-lite and cid-lite-affine")
    ap.add_argument("--cpu-runtime", action="append", choices=words(EngineConfig, "cpu_runtime"),
                    help="runtimes to time (repeatable; default auto and torch)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=32, help="frames per arm and round (batches of 4)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dehazer_speed.json"))
    args = ap.parse_args(argv)
    models = args.model or ["cid-lite", "cid-lite-affine"]
    runtimes = args.cpu_runtime or ["auto", "torch"]
    frames = frames_of("foggy_road_real.mp4", args.frames, (360, 640))
    arms = {}
    for runtime in runtimes:
        for model in models:
            d = Dehazer(model, device="cpu", precision="fp32", cpu_runtime=runtime)
            arms[(model, runtime)] = lambda x, d=d: d.process(torch.from_numpy(x), "video").numpy()
            arms[(model, runtime)](frames[:4])  # graphs made and warm before timing
    fps = {k: [] for k in arms}
    for _ in range(args.rounds):
        for key, fn in arms.items():
            fps[key].append(timed(fn, frames)[0])
    rows = []
    print(f"{'model':40s} {'runtime':12s} {'fps':>7s} {'÷ ' + models[0]:>14s}")
    for (model, runtime), values in fps.items():
        median = statistics.median(values)
        ratio = median / statistics.median(fps[(models[0], runtime)])
        rows.append({"model": model, "runtime": runtime, "fps": round(median, 2), "fps_rounds": [round(v, 2) for v in values],
                     "ratio_to_first": round(ratio, 3)})
        print(f"{model:40s} {runtime:12s} {median:7.2f} {ratio:14.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_name(torch.device("cpu")), "size": [360, 640], "batch": 4, "rounds": args.rounds,
                               "frames": args.frames, "results": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
