"""Throughput of `cidstream batch` with local workers 1 and 2 and with Ray, and what Ray adds per file.

    python benchmarks/batch_throughput.py                    # $CIDSTREAM_DATA/videos, 120 frames a file
    python benchmarks/batch_throughput.py --max-frames 300 --configs local:1 local:2 ray:2

Each configuration runs the real command in a fresh process on a fresh output folder. Throughput is
the batch's frames over its wall time (from the first file handed out to the last result; the engine's
start-up is reported beside it). The per-file overhead run uses many tiny jobs (copies of one clip,
5 frames each), so the fixed cost per file dominates: overhead = (seconds of the run / files) and the
driver-observed time minus the task's own time, for each engine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from cidstream.bench import machine_name
from cidstream.config import data_root

REPO = Path(__file__).resolve().parents[1]
DATA = data_root() / "videos"


def run_batch(inputs: list[str], out: Path, config: str, extra: list[str]) -> dict:
    engine, workers = config.split(":")
    cmd = [sys.executable, "-m", "cidstream", "batch", *inputs, "-o", str(out), "--engine", engine,
           "--workers", workers, "--no-progress", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    report = json.loads((out / "batch_report.json").read_text())
    if proc.returncode != 0:
        raise SystemExit(f"{config} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    run = report["this_run"]
    return {"config": config, "files": run["files_done"], "frames": run["frames"], "seconds": run["seconds"],
            "fps": run["fps"], "engine_start_s": run["engine_start_s"],
            "overhead_per_file_s": run["overhead_per_file_s"], "engine": report["engine"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", nargs="+", default=[str(DATA)], help="folders/files (default $CIDSTREAM_DATA/videos)")
    p.add_argument("--max-frames", type=int, default=120, help="frames per file (default 120)")
    p.add_argument("--configs", nargs="+", default=["local:1", "local:2", "ray:2"], help="ENGINE:WORKERS each")
    p.add_argument("--model", default="dcp")
    p.add_argument("--tiny-files", type=int, default=16, help="jobs in the per-file overhead run (0: skip it)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args()

    extra = ["--model", args.model, "--max-frames", str(args.max_frames)]
    rows, overhead = [], []
    with tempfile.TemporaryDirectory(prefix="cidstream-batch-bench-") as tmp:
        tmp = Path(tmp)
        for config in args.configs:
            print(f"throughput: {config}", file=sys.stderr, flush=True)
            rows.append(run_batch(args.inputs, tmp / f"out-{config.replace(':', '-')}", config, extra))
        if args.tiny_files:
            clip = DATA / "traffic_cam_640x360.mp4"
            tiny = tmp / "tiny"
            tiny.mkdir()
            for i in range(args.tiny_files):
                shutil.copy(clip, tiny / f"copy{i:02d}.mp4")
            for config in args.configs:
                print(f"per-file overhead: {config}", file=sys.stderr, flush=True)
                overhead.append(run_batch([str(tiny)], tmp / f"tiny-{config.replace(':', '-')}", config,
                                          ["--model", args.model, "--max-frames", "5"]))
    for r in overhead:
        r["seconds_per_file"] = round(r["seconds"] / r["files"], 3)

    name = machine_name(torch.device("cpu"))
    payload = {"date": dt.date.today().isoformat(), "machine": name, "model": args.model,
               "max_frames": args.max_frames, "throughput": rows, "per_file_overhead": overhead}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"batch-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")

    base = rows[0]["fps"] if rows else 0
    print(f"| configuration | files | frames | seconds | frames/s | vs {rows[0]['config']} | engine start (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['files']} | {r['frames']} | {r['seconds']:.1f} | {r['fps']:.1f} | "
              f"{r['fps'] / base:.2f} | {r['engine_start_s']:.1f} |")
    if overhead:
        print(f"\n{args.tiny_files} files of 5 frames:\n")
        print("| configuration | seconds per file | driver-observed minus task time per file (s) |")
        print("|---|---:|---:|")
        for r in overhead:
            print(f"| {r['config']} | {r['seconds_per_file']:.3f} | {r['overhead_per_file_s']:.3f} |")
    print(f"\nmachine: {name}; written {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
