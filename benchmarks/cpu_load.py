"""Throughput on a busy CPU: `cidstream bench` with and without CPU-bound processes beside it.

    python benchmarks/cpu_load.py                      # traffic_cam 640x360, cid-lite, loads 0 and 1
    python benchmarks/cpu_load.py --loads 0 1 2 --models cid-lite dcp --frames 60

Each load process is one Python busy loop (one core's worth of work). With C cores and L of them, a
process that keeps C threads busy gets about C / (C + L) of the machine, so the goal is loaded fps ≥
0.8 × idle fps × C / (C + L), for the model stage (timed in the main thread) and end to end alike.
``--spin`` also measures libgomp's default wait (GOMP_SPINCOUNT=300000, the behaviour before cidstream
set OMP_WAIT_POLICY=PASSIVE), which is what collapsed under load. Results go to
benchmarks/results/cpu_load-<machine>.json and a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from cidstream.config import data_root

REPO = Path(__file__).resolve().parents[1]
DATA = data_root()
DEFAULT_INPUT = DATA / "videos" / "traffic_cam_640x360.mp4"
GOAL = 0.8
# libgomp's own default when OMP_WAIT_POLICY is unset: spin this long before sleeping.
SPIN_ENV = {"GOMP_SPINCOUNT": "300000"}


def _busy_loops(n: int) -> list[subprocess.Popen]:
    """``n`` single-threaded CPU hogs that stop by themselves after 15 minutes at most."""
    code = "import time\nend = time.monotonic() + 900\nwhile time.monotonic() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def _bench(spec: str, model: str, frames: int, repeats: int, env: dict) -> dict:
    cmd = [sys.executable, "-m", "cidstream", "bench", spec, "--model", model, "--device", "cpu",
           "--frames", str(frames), "--repeats", str(repeats), "--json", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=1800).stdout
    return json.loads(out[out.index("{"):])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=str(DEFAULT_INPUT if DEFAULT_INPUT.exists() else REPO / "samples/hazy_traffic.mp4"))
    p.add_argument("--models", nargs="+", default=["cid-lite"])
    p.add_argument("--loads", nargs="+", type=int, default=[0, 1])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--spin", action="store_true", help="also measure libgomp's default spin wait (before the fix)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args()
    cores = os.cpu_count() or 1
    policies = {"cidstream": {}} | ({"gomp-spin": SPIN_ENV} if args.spin else {})
    rows, machine = [], ""
    for model in args.models:
        for policy, extra in policies.items():
            idle = None
            for load in args.loads:
                hogs = _busy_loops(load)
                try:
                    time.sleep(0.5 if load else 0)
                    r = _bench(args.input, model, args.frames, args.repeats, dict(os.environ, **extra))
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
                machine = r["machine"]
                share = cores / (cores + load)
                row = {"model": model, "wait": policy, "load": load, "share": round(share, 3),
                       "model_fps": round(r["model_fps"], 2), "end_to_end_fps": round(r["end_to_end_fps"], 2)}
                if load == 0:
                    idle = row
                elif idle is not None:
                    for k in ("model_fps", "end_to_end_fps"):
                        rel = row[k] / idle[k] / share
                        row[k.replace("_fps", "_vs_share")] = round(rel, 2)
                    row["goal_met"] = min(row["model_vs_share"], row["end_to_end_vs_share"]) >= GOAL
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", machine).strip("-")[:60] or "machine"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"cpu_load-{slug}.json"
    path.write_text(json.dumps({"machine": machine, "cores": cores, "input": args.input, "frames": args.frames,
                                "repeats": args.repeats, "goal": GOAL, "rows": rows}, indent=2) + "\n")
    print(f"machine: {machine}; {cores} cores; goal: loaded fps ≥ {GOAL} × idle × cores/(cores+load)\n")
    print("| model | wait | load | model fps | end-to-end fps | model ÷ (idle × share) | e2e ÷ (idle × share) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['wait']} | {r['load']} | {r['model_fps']} | {r['end_to_end_fps']} | "
              f"{r.get('model_vs_share', '–')} | {r.get('end_to_end_vs_share', '–')} |")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
