"""Live-camera figures against a real GStreamer RTSP server (tests/rtsp_server.py, system Python):

    python benchmarks/live_bench.py                   # latency 640x360 and 1280x720, overload drops, restarts
    python benchmarks/live_bench.py --soak 600        # + RSS at start vs after a 10-minute run

- latency: capture (frame decoded) -> output (handed to the encoder and detection log), p50/p95 over
  the run, from `cidstream live`'s stats.json, for a live test pattern at each size;
- overload: a stream faster than processing (1920x1080 at 30 fps by default): drop rate and latency,
  which drop-oldest keeps bounded;
- restart: the server is killed, restarted on the same port 1 s later, and the time from the restart
  to the first frame processed again is taken from the camera's events (median of --restarts);
- soak: RSS of the `cidstream live` process after 30 s of warm-up and at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
import yaml

from cidstream.bench import machine_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.conftest import RtspServer, free_port  # noqa: E402  (the same server the tests use)



def start_live(tmp: Path, url: str, args: list[str], **live) -> tuple[subprocess.Popen, Path]:
    root = tmp / f"live-{time.monotonic_ns()}"
    cfg = tmp / f"cams-{time.monotonic_ns()}.yaml"
    cfg.write_text(yaml.safe_dump({"output": str(root), "settings": {"live": {"status_every_s": 0.5, **live}},
                                   "cameras": [{"name": "cam", "url": url}]}))
    proc = subprocess.Popen([sys.executable, "-m", "cidstream", "live", str(cfg), "--no-status", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, root


def cam_stats(root: Path) -> dict:
    return json.loads((root / "stats.json").read_text())["cameras"][0]


def wait_for(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.1)
    raise SystemExit("timed out")


def measure_stream(tmp: Path, size: str, fps: int, seconds: float, args: list[str]) -> dict:
    server = RtspServer(free_port(), ["--testsrc", "--size", size, "--fps", str(fps)]).start()
    try:
        proc, root = start_live(tmp, server.url, ["--duration", str(seconds), *args])
        proc.wait(seconds + 60)
        s = cam_stats(root)
    finally:
        server.stop()
    return {"size": size, "stream_fps": fps, "seconds": seconds, "processed_fps": round(s["processed"] / seconds, 1),
            "received": s["received"], "processed": s["processed"], "dropped": s["dropped"],
            "drop_rate": s["drop_rate"], "latency_ms_p50": s["latency_ms_p50"], "latency_ms_p95": s["latency_ms_p95"]}


def measure_restarts(tmp: Path, n: int, args: list[str]) -> list[float]:
    server = RtspServer(free_port(), ["--testsrc", "--size", "640x360", "--fps", "25"]).start()
    proc, root = start_live(tmp, server.url, args, watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0)
    delays = []
    try:
        wait_for(lambda: cam_stats(root)["processed"] > 25)
        for _ in range(n):
            server.kill()
            wait_for(lambda: cam_stats(root)["state"] in ("waiting", "connecting"))
            time.sleep(1.0)
            server.start()
            restarted = time.time()
            wait_for(lambda since=restarted: any(e["event"].startswith("streaming") and e["time"] > since
                                                 for e in cam_stats(root)["events"]))
            first = min(e["time"] for e in cam_stats(root)["events"]
                        if e["event"].startswith("streaming") and e["time"] > restarted)
            delays.append(round(first - restarted, 2))
            time.sleep(2.0)
    finally:
        proc.terminate()
        proc.wait(60)
        server.stop()
    return delays


def soak(tmp: Path, seconds: float, args: list[str]) -> dict:
    server = RtspServer(free_port(), ["--testsrc", "--size", "640x360", "--fps", "25"]).start()
    proc, root = start_live(tmp, server.url, ["--duration", str(seconds), *args], segment_s=60)
    p = psutil.Process(proc.pid)
    samples = []
    try:
        while proc.poll() is None:
            try:
                samples.append((round(time.monotonic(), 1), round(p.memory_info().rss / 2**20, 1)))
            except psutil.NoSuchProcess:
                break
            time.sleep(5.0)
        s = cam_stats(root)
    finally:
        server.stop()
    t0 = samples[0][0]
    start = [m for t, m in samples if 30 <= t - t0 < 60]
    end = [m for t, m in samples if t - t0 >= seconds - 30]
    return {"seconds": seconds, "rss_mib_after_warmup": statistics.median(start), "rss_mib_at_end": statistics.median(end),
            "rss_mib_max": max(m for _, m in samples), "processed": s["processed"], "dropped": s["dropped"],
            "segments": len(s["segments"]), "samples": samples}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="length of each latency run (default 30)")
    p.add_argument("--sizes", nargs="*", default=["640x360", "1280x720"])
    p.add_argument("--overload", default="1920x1080@30", help="SIZE@FPS faster than processing ('' to skip)")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--soak", type=float, default=0.0, help="soak length in seconds (0: no soak)")
    p.add_argument("--model", default="dcp")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args()
    extra = ["--model", args.model]
    result = {"date": dt.date.today().isoformat(), "machine": machine_name(torch.device("cpu")), "model": args.model}
    with tempfile.TemporaryDirectory(prefix="cidstream-live-bench-") as tmp:
        tmp = Path(tmp)
        result["latency"] = []
        for size in args.sizes:
            print(f"latency {size}", file=sys.stderr, flush=True)
            result["latency"].append(measure_stream(tmp, size, 25, args.seconds, extra))
        if args.overload:
            size, fps = args.overload.split("@")
            print(f"overload {args.overload}", file=sys.stderr, flush=True)
            result["overload"] = measure_stream(tmp, size, int(fps), args.seconds, extra)
        if args.restarts:
            print("restarts", file=sys.stderr, flush=True)
            delays = measure_restarts(tmp, args.restarts, extra)
            result["restart_to_first_frame_s"] = {"each": delays, "median": statistics.median(delays)}
        if args.soak:
            print(f"soak {args.soak:.0f} s", file=sys.stderr, flush=True)
            result["soak"] = soak(tmp, args.soak, extra)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", result["machine"].lower()).strip("-")
    path = out / f"live-{slug}{'-soak' if args.soak else ''}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print("| stream | processed fps | dropped | latency p50 / p95 ms |")
    print("|---|---:|---:|---:|")
    for r in result["latency"] + ([result["overload"]] if "overload" in result else []):
        print(f"| {r['size']} @ {r['stream_fps']} fps | {r['processed_fps']} | {r['drop_rate']:.1%} | "
              f"{r['latency_ms_p50']} / {r['latency_ms_p95']} |")
    if "restart_to_first_frame_s" in result:
        print(f"\nserver restart -> first frame processed: {result['restart_to_first_frame_s']}")
    if "soak" in result:
        s = result["soak"]
        print(f"\nsoak {s['seconds']:.0f} s: RSS {s['rss_mib_after_warmup']} MiB after warm-up -> {s['rss_mib_at_end']} "
              f"MiB at the end (max {s['rss_mib_max']}), {s['processed']} frames, {s['segments']} segments")
    print(f"\nmachine: {result['machine']}; written {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    sys.exit(main())
