"""Run ``cidstream bench`` over a matrix of inputs, models, batch sizes and concurrent streams; write
JSON named after the machine and print a Markdown table.

    python benchmarks/run_benchmarks.py                       # 640x360 and 1280x720, dcp/cid-lite/cid, CPU
    python benchmarks/run_benchmarks.py --device cuda --detect --inputs in720.mp4 in1080.mp4 \\
        --batches 8 16 32 --streams 1 4 16

Inputs default to $CIDSTREAM_DATA/videos (traffic_cam_640x360.mp4, highway_720p.mp4); the built-in
sample stands in when that folder is missing. Results land in benchmarks/results/<machine>[-tag].json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import re
import sys
from pathlib import Path

import torch

from cidstream.bench import run_bench
from cidstream.engine.device import cuda_available
from cidstream.config import data_root, load_config

REPO = Path(__file__).resolve().parents[1]
DATA = data_root() / "videos"
DEFAULT_INPUTS = [DATA / "traffic_cam_640x360.mp4", DATA / "highway_720p.mp4"]
# The full CID network is ~50x slower than the others on a CPU: fewer frames keep the run short.
DEFAULT_FRAMES = {"dcp": 90, "cid-lite": 90, "cid": 8}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=["dcp", "cid-lite", "cid"])
    p.add_argument("--device", default="auto")
    p.add_argument("--batches", nargs="+", type=int, default=[4], help="engine.batch values (default 4)")
    p.add_argument("--streams", nargs="+", type=int, default=[1], help="inputs processed at once (default 1)")
    p.add_argument("--decode", default="auto", help="input.decode: auto, rgb24, yuv420p or nvdec")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, help="frames per run for every model (default: per model)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--tag", default="", help="suffix of the JSON file name")
    p.add_argument("--detect", action="store_true", help="add the detector stage (see --detector)")
    p.add_argument("--detector", default=str(data_root() / "weights" / "yolo11n_coco_from_int8.pt"),
                   help="detector for --detect (default: the YOLO11n COCO file in $CIDSTREAM_DATA/weights)")
    args = p.parse_args()
    inputs = args.inputs or [str(x) for x in DEFAULT_INPUTS if x.exists()] or [str(REPO / "samples/hazy_traffic.mp4")]

    rows = []
    for spec, model, batch, streams in itertools.product(inputs, args.models, args.batches, args.streams):
        cfg = load_config(overrides=[{"model": {"name": model},
                                      "engine": {"device": args.device, "batch": batch},
                                      "input": {"decode": args.decode},
                                      "detect": {"detector": args.detector}}])
        frames = args.frames or DEFAULT_FRAMES.get(model, 90)
        repeats = args.repeats if model != "cid" or cuda_available() else 1
        print(f"bench {Path(spec).name} {model} batch {batch} x{streams} ({frames} frames x {repeats})",
              file=sys.stderr, flush=True)
        rows.append(run_bench(spec, cfg, frames=frames, repeats=repeats, detect=args.detect,
                              streams=streams).to_dict())
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    machine = rows[0]["machine"]
    slug = re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"date": dt.date.today().isoformat(), "machine": machine, "torch": torch.__version__, "results": rows}
    tag = args.tag or ("detect" if args.detect else "")
    path = out / f"{slug}{'-' + tag if tag else ''}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    det = args.detect
    print("| input | model | batch | streams | decode (path) | upload | model | " + ("detect | " if det else "") +
          "download | encode | e2e video | e2e/slowest |" + (" e2e no video | e2e/slowest |" if det else "") + " GPU MB |")
    print("|---|---|---:|---:|---|---:|---:|" + ("---:|" if det else "") + "---:|---:|---:|---:|" +
          ("---:|---:|" if det else "") + "---:|")
    for r in rows:
        cells = [f"{r['width']}x{r['height']}", r["model"], str(r["batch"]), str(r["streams"]),
                 f"{r['decode_fps']:.0f} ({r['decode_path']})", "–" if r["upload_fps"] is None else f"{r['upload_fps']:.0f}", f"{r['model_fps']:.1f}"]
        if det:
            cells.append(f"{r['detect_fps']:.1f}")
        cells += [f"{r['download_fps']:.0f}", f"{r['encode_fps']:.0f}", f"{r['end_to_end_fps']:.1f}",
                  f"{r['ratio']:.2f} ({r['slowest_stage']})"]
        if det:
            cells += [f"{r['no_video_fps']:.1f}", f"{r['no_video_ratio']:.2f}"]
        cells.append(str(r["gpu_memory_mb"] or "-"))
        print("| " + " | ".join(cells) + " |")
    print(f"\nmachine: {machine}; written {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
