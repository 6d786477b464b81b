"""How many 640x360 cameras at 10 fps one machine carries in `cidstream live`: clear traffic from real RTSP
servers (tests/rtsp_server.py, one per camera, each streaming traffic_cam_640x360.mp4: 10 fps, 75 s), the
default live run (cid-lite, gate, video segments), with the network only on frames the gate keeps (the
default, issue 36) and on every frame (`gate.skip_raw: false`, as before).

A camera is carried when it is processed at >= 95 % of its frame rate with <= 5 % of its frames dropped
(live drops the oldest frame when processing lags). Also reported: all cameras' processed frames per second
together, and that divided by 10 (the cameras' worth of frames the machine processed).

    python benchmarks/live_capacity.py                       # 16 cameras, 40 s per arm
    python benchmarks/live_capacity.py --cameras 8 --seconds 60
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cidstream.bench import machine_name  # noqa: E402
from cidstream.config import data_root  # noqa: E402
from tests.conftest import RtspServer, free_port  # noqa: E402  (the same server the tests use)

CLIP = data_root() / "videos" / "traffic_cam_640x360.mp4"
CAMERA_FPS = 10.0
ARMS = {"default (skip raw frames)": True, "network on every frame": False}


def run_live(tmp: Path, urls: list[str], seconds: float, skip_raw: bool) -> dict:
    root = tmp / f"live-{time.monotonic_ns()}"
    cfg = tmp / f"cams-{time.monotonic_ns()}.yaml"
    cfg.write_text(yaml.safe_dump({
        "output": str(root),
        "settings": {"live": {"status_every_s": 1.0}, "gate": {"skip_raw": skip_raw}},
        "cameras": [{"name": f"cam{i:02d}", "url": u} for i, u in enumerate(urls)]}))
    subprocess.run([sys.executable, "-m", "cidstream", "live", str(cfg), "--no-status", "--duration", str(seconds)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 180, check=False)
    cams = json.loads((root / "stats.json").read_text())["cameras"]
    rows = []
    for c in cams:
        fps = c["processed"] / seconds
        rows.append({"name": c["name"], "processed_fps": round(fps, 2), "received": c["received"],
                     "processed": c["processed"], "dropped": c["dropped"], "drop_rate": c["drop_rate"],
                     "carried": fps >= 0.95 * CAMERA_FPS and c["drop_rate"] <= 0.05})
    total = sum(r["processed"] for r in rows) / seconds
    return {"cameras": rows, "carried": sum(r["carried"] for r in rows), "processed_fps_total": round(total, 1),
            "camera_equivalents": round(total / CAMERA_FPS, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=16)
    p.add_argument("--seconds", type=float, default=40.0, help="length of each live run (the clip lasts 75 s)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "live_capacity.json"))
    args = p.parse_args()
    result = {"machine": machine_name(torch.device("cpu")), "clip": CLIP.name, "camera_fps": CAMERA_FPS,
              "cameras": args.cameras, "seconds": args.seconds, "arms": {}}
    with tempfile.TemporaryDirectory(prefix="cidstream-live-capacity-") as tmp:
        for arm, skip in ARMS.items():  # fresh servers per arm: each streams the clip once per client
            servers = [RtspServer(free_port(), ["--file", str(CLIP)]).start() for _ in range(args.cameras)]
            try:
                print(f"{arm}: {args.cameras} cameras, {args.seconds:.0f} s", file=sys.stderr, flush=True)
                result["arms"][arm] = run_live(Path(tmp), [s.url for s in servers], args.seconds, skip)
            finally:
                for s in servers:
                    s.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("| arm | cameras carried (>= 9.5 fps, <= 5 % dropped) | processed fps, all cameras | camera equivalents |")
    print("|---|---:|---:|---:|")
    for arm, r in result["arms"].items():
        print(f"| {arm} | {r['carried']} of {args.cameras} | {r['processed_fps_total']} | {r['camera_equivalents']} |")
    print(f"\nmachine: {result['machine']}; written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    sys.exit(main())
