"""What clear frames cost: the default run (the network only on frames the gate keeps some of) against the
network on every frame (`gate.skip_raw: false`, what every run did before issue 36), in one process.

Each round runs `cidstream bench` once per arm on the same clip, the arms alternating so that a noisy
machine slows both alike; figures are medians over rounds, the speed-up is the median of the per-round
ratios. Clips: a clear highway at 1280x720 and a clear street camera at 640x360 (the meter reads them clear:
every frame left raw), and real night fog (dehazed: the default must be no slower there).

    python benchmarks/clear_frames.py                 # -> benchmarks/results/clear_frames.json
    python benchmarks/clear_frames.py --rounds 5 --frames 120
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.bench import run_bench  # noqa: E402
from cidstream.config import data_root, load_config  # noqa: E402

CLIPS = ("highway_720p.mp4", "traffic_cam_640x360.mp4", "foggy_road_real.mp4")
ARMS = {"default (skip raw frames)": True, "network on every frame": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "clear_frames.json"))
    args = ap.parse_args()
    rows = []
    for clip in CLIPS:
        path = str(data_root() / "videos" / clip)
        runs: dict[str, list] = {arm: [] for arm in ARMS}
        for r in range(args.rounds):
            for arm, skip in ARMS.items():
                cfg = load_config(overrides=[{"gate": {"skip_raw": skip}}])
                res = run_bench(path, cfg, frames=args.frames, repeats=1)
                runs[arm].append(res)
                print(f"{clip} round {r + 1} {arm}: end to end {res.end_to_end_fps:.1f} fps, "
                      f"dehazing stage {res.model_fps:.1f} fps", flush=True)
        new, old = (runs[a] for a in ARMS)
        row = {"clip": clip, "size": f"{new[0].width}x{new[0].height}", "frames": new[0].frames,
               "machine": new[0].machine, "device": new[0].device}
        for arm, results in runs.items():
            row[arm] = {k: round(statistics.median(getattr(x, k) for x in results), 2)
                        for k in ("end_to_end_fps", "model_fps", "decode_fps", "encode_fps", "gate_fps")}
        row["end_to_end_speedup"] = round(statistics.median(a.end_to_end_fps / b.end_to_end_fps
                                                            for a, b in zip(new, old)), 2)
        row["dehazing_stage_speedup"] = round(statistics.median(a.model_fps / b.model_fps for a, b in zip(new, old)), 2)
        rows.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=1) + "\n")
    print("\n| clip | size | end to end, default | every frame | speed-up | dehazing stage, default | every frame |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        a, b = (row[arm] for arm in ARMS)
        print(f"| {row['clip']} | {row['size']} | {a['end_to_end_fps']:.1f} | {b['end_to_end_fps']:.1f} | "
              f"×{row['end_to_end_speedup']:.2f} | {a['model_fps']:.1f} | {b['model_fps']:.1f} |")
    print(f"\n{rows[0]['machine']}; medians of {args.rounds} rounds; written {args.out}")


if __name__ == "__main__":
    main()
