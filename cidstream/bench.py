"""Stage-by-stage speed of one input: decode, model, encode, and all of them together.

Each stage is timed alone on the same frames, then the whole pipeline runs; the ratio
end-to-end / slowest stage says how well the stages overlap (1.0 = perfectly).
"""
from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .engine import Dehazer, run_pipeline
from .io import ThreadedSink, source_from_config
from .io.sinks import VideoSink


@dataclass
class BenchResult:
    input: str
    width: int
    height: int
    frames: int
    model: str
    device: str
    precision: str
    batch: int
    machine: str
    decode_fps: float = 0.0
    model_fps: float = 0.0
    encode_fps: float = 0.0
    end_to_end_fps: float = 0.0
    slowest_stage: str = ""
    ratio: float = 0.0              # end-to-end / slowest stage (1.0: the stages overlap perfectly)
    serial_fps: float = 0.0         # 1 / sum(1 / stage fps): the stages run one after another
    overlap: float = 0.0            # end-to-end / serial (> 1: overlapping pays off)
    upload_fps: float = 0.0          # host uint8 frames -> the device (pinned, non-blocking on CUDA)
    gpu_memory_mb: float | None = None  # peak allocated during the run (CUDA only)
    decode_path: str = "software"
    encode_path: str = ""
    detector: str | None = None     # with --detect: the detector, its fps alone (dehazed frames on the
    detect_fps: float | None = None  # device), and its share of the end-to-end time
    detector_share: float | None = None
    repeats: int = 1
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} CPU threads"


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_bench(input_spec: str, cfg: Config, frames: int = 90, repeats: int = 3, warmup: int = 2,
              progress=None, detect: bool = False) -> BenchResult:
    """Rounds of decode, model, (detector,) encode and end-to-end runs, interleaved so that a noisy
    machine slows all of them alike; per-stage figures and the ratio are medians over rounds."""
    e, o = cfg.engine, cfg.output
    dehazer = Dehazer.from_config(cfg, random_init=True)
    stage = None
    if detect:
        from .detect import Detector
        from .detect.stage import DetectStage

        stage = DetectStage(Detector.from_config(cfg.detect, dehazer.device))

    def source():
        return source_from_config(input_spec, cfg.input, frames, dehazer.device.type)

    with source() as src:
        info = src.info
        images = list(src)
    n = len(images)
    res = BenchResult(input=input_spec, width=images[0].image.shape[1], height=images[0].image.shape[0], frames=n,
                      model=dehazer.name, device=str(dehazer.device), precision=dehazer.precision, batch=e.batch,
                      machine=machine_name(dehazer.device), repeats=repeats)
    if dehazer.loaded.weights is None and dehazer.net.trainable:
        res.notes.append("random weights (speed only)")
    host = [np.stack([f.image for f in images[i:i + e.batch]]) for i in range(0, n, e.batch)]
    batches = [dehazer.upload(b) for b in host]
    if dehazer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dehazer.device)
    for _ in range(warmup):
        out = dehazer.process(batches[0])
        if stage is not None:
            stage.detector(out if out.device.type == "cuda" else out.numpy())

    runs = {"decode": [], "upload": [], "model": [], "encode": [], "end_to_end": [], "detect": []}
    shares, ratios = [], []
    with tempfile.TemporaryDirectory(prefix="cidstream-bench-") as tmp:
        for r in range(repeats):
            if progress is not None:
                progress(f"round {r + 1}/{repeats}")
            with source() as src:  # decode only
                res.decode_path = src.decode_path
                t0 = time.perf_counter()
                count = sum(1 for _ in src)
                runs["decode"].append(count / (time.perf_counter() - t0))

            _sync(dehazer.device)  # upload only
            t0 = time.perf_counter()
            for b in host:
                dehazer.upload(b)
            _sync(dehazer.device)
            runs["upload"].append(n / (time.perf_counter() - t0))

            _sync(dehazer.device)  # model only: uint8 batches already on the device
            t0 = time.perf_counter()
            for b in batches:
                dehazer.process(b)
            _sync(dehazer.device)
            runs["model"].append(n / (time.perf_counter() - t0))

            if stage is not None:  # detector only, on frames already on the device (numpy on the CPU)
                frames_in = [b if b.device.type == "cuda" else b.numpy() for b in batches]
                t0 = time.perf_counter()
                for b in frames_in:
                    stage.detector(b)
                _sync(dehazer.device)
                runs["detect"].append(n / (time.perf_counter() - t0))

            sink = VideoSink(Path(tmp) / f"enc{r}.mp4", info, codec=o.codec, crf=o.crf, preset=o.preset,
                             copy_audio=False, device_type=dehazer.device.type)  # encode only
            t0 = time.perf_counter()
            for f in images:
                sink.write(f, f.image)
            sink.close()
            runs["encode"].append(n / (time.perf_counter() - t0))
            res.encode_path = sink.codec

            sink = ThreadedSink(VideoSink(Path(tmp) / f"e2e{r}.mp4", info, codec=o.codec, crf=o.crf,
                                          preset=o.preset, copy_audio=False, device_type=dehazer.device.type),
                                o.queue_size)
            with source() as src:
                stats = run_pipeline(src, dehazer, sink, batch=e.batch, max_latency_ms=e.max_latency_ms,
                                     queue_size=cfg.input.queue_size, detect=stage)
            runs["end_to_end"].append(stats.fps)
            round_stages = (("decode", "model", "encode") + (("detect",) if stage is not None else ())
                            + (("upload",) if dehazer.device.type == "cuda" else ()))
            ratios.append(stats.fps / min(runs[k][-1] for k in round_stages))
            shares.append(stats.stage_seconds["detect"] / stats.seconds)

    res.decode_fps, res.model_fps = _median(runs["decode"]), _median(runs["model"])
    res.upload_fps = _median(runs["upload"])
    if dehazer.device.type == "cuda":
        res.gpu_memory_mb = round(torch.cuda.max_memory_allocated(dehazer.device) / 2**20, 1)
    res.encode_fps, res.end_to_end_fps = _median(runs["encode"]), _median(runs["end_to_end"])
    stages = {"decode": res.decode_fps, "model": res.model_fps, "encode": res.encode_fps}
    if dehazer.device.type == "cuda":  # on a CPU "upload" is no copy at all
        stages["upload"] = res.upload_fps
    if stage is not None:
        res.detector, res.detect_fps = stage.detector.label, _median(runs["detect"])
        res.detector_share = _median(shares)
        stages["detect"] = res.detect_fps
    res.slowest_stage = min(stages, key=stages.get)
    res.ratio = _median(ratios)
    res.serial_fps = 1.0 / sum(1.0 / v for v in stages.values())
    res.overlap = res.end_to_end_fps / res.serial_fps
    return res
