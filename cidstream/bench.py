"""Stage-by-stage speed of one input: decode, model, encode, and all of them together.

Each stage is timed alone on the same frames (decode, upload/convert to RGB on the device, model,
detector, download of what the encoder takes, encode), then the whole pipeline runs, writing the
video and (with a detector) writing detections only; the ratio end-to-end / slowest stage says how
well the stages overlap (1.0 = perfectly).
"""
from __future__ import annotations

import contextlib
import platform
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .detect.stage import DetectStage
from .engine import Dehazer
from .errors import ConfigError, InputError
from .evaluation.stability import StabilityMeter
from .frames import BatchResult, FrameBatch
from .io import source_from_config
from .io.atomic import check_writable_file, write_atomic, write_error
from .ops.color import rgb_to_yuv420
from .pipeline import DehazeStage, Pipeline, source_batches
from .pipeline.loop import reader_for
from .sinks import ThreadedSink
from .sinks.base import NullSink, Sink
from .sinks.media import EncoderSettings, VideoSink, uses_i420

# Copies of the input run at once (--streams): each holds a decoder, an encoder and their threads and
# queues, so beyond this the machine's threads and memory, not the model, would be measured.
MAX_STREAMS = 64


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
    runtime: str = "torch"           # what ran the network: torch, or a graph in openvino / onnxruntime (CPU)
    decode_fps: float = 0.0
    # decoded frames -> RGB on the device (copy, and 4:2:0 conversion there); None where there is nothing to do
    # (RGB frames decoded into host memory, run on the CPU: the model reads them where they are)
    upload_fps: float | None = 0.0
    model_fps: float = 0.0           # the dehazing stage as the loop runs it: upload, haze measure, network
    network_frames: int = 0          # frames of the benchmark the network ran on (the gate left the others raw)
    gate_fps: float = 0.0            # the haze gate's measure alone (frames on the device)
    gate_share: float = 0.0          # its share of the dehazing stage's time (model_fps / gate_fps)
    gate_measure: str = ""           # which measure (gate.measure)
    download_fps: float = 0.0        # dehazed frames -> the host in the encoder's form (4:2:0 made on CUDA)
    encode_fps: float = 0.0
    end_to_end_fps: float = 0.0      # writing the dehazed video
    slowest_stage: str = ""
    ratio: float = 0.0              # end-to-end / slowest stage (1.0: the stages overlap perfectly)
    serial_fps: float = 0.0         # 1 / sum(1 / stage fps): the stages run one after another
    overlap: float = 0.0            # end-to-end / serial (> 1: overlapping pays off)
    no_video_fps: float | None = None    # end to end writing nothing (detections only, with --detect)
    no_video_ratio: float | None = None  # ... / its slowest stage (decode, upload, model[, detect])
    gpu_memory_mb: float | None = None  # peak allocated during the run (CUDA only)
    decode_path: str = ""
    encode_path: str = ""
    detector: str | None = None     # with --detect: the detector, its fps alone (dehazed frames on the
    detect_fps: float | None = None  # device), and its share of the end-to-end time
    detector_runtime: str | None = None  # what ran it: torch, or a graph in openvino / onnxruntime (CPU)
    detector_share: float | None = None
    # with --fog-detector: the fog path alone (every frame to the fog detector on its view) and its cost as
    # a ratio to the base path (the base detector alone, detect_fps), measured in the same rounds
    fog_detector: str | None = None
    fog_view: str | None = None
    fog_path_fps: float | None = None
    fog_path_cost: float | None = None
    streams: int = 1                 # files processed at once (--streams); fps figures are their sum
    flicker_ratio: float | None = None  # stability of the model output over the benchmark's frames vs the
    warp_ratio: float | None = None     # input's (cidstream/evaluation/stability.py); temporal smoothing as configured
    temporal: bool = False              # smoothing was on (video input and a model that supports it)
    fixed_cost_s: float | None = None   # seconds a run costs beyond its frames (bench.fixed_cost); None: the
    # two runs it is fitted from do not separate it from this machine's noise
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


def _timed(device: torch.device, fn, n: int) -> float:
    """fps of ``fn()`` over ``n`` frames, the device's queued work included."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return n / (time.perf_counter() - t0)


def _short_input_note(src, decoded: list, asked: int) -> str | None:
    """A note when the input gave fewer frames than asked for, saying so when the file looks truncated
    (the source's own completeness check, which it skips when given a frame limit)."""
    n = len(decoded)
    if n >= asked:
        return None
    note = f"input ended after {n} of the {asked} frames asked for: all timings are on {n} frames"
    check, stream = getattr(src, "_check_complete", None), getattr(src, "stream", None)
    last = decoded[-1].pts if decoded else None
    if check is None or stream is None or last is None or not stream.time_base:
        return note
    saved = src.max_frames
    src.max_frames = None
    try:
        check(n, float(last * stream.time_base))
    except InputError as exc:
        note += f"; {exc}"
    finally:
        src.max_frames = saved
    return note


class _StopLock:
    """The model lock of bench's pipelines (``shared``: several streams take turns on the model, as batch
    threads do; one stream keeps its detector overlapping the model). Ctrl-C and SIGTERM reach the main
    thread only: it sets ``stop``, and no pipeline calls a model after that, so all stop after the batch in hand."""

    def __init__(self, shared: bool):
        self.lock = threading.Lock() if shared else None
        self.stop = threading.Event()

    def __enter__(self):
        if self.lock is not None:
            self.lock.acquire()
        if self.stop.is_set():
            self.__exit__()
            raise KeyboardInterrupt  # the pipeline stops as on Ctrl-C
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.release()


class _UntilStopped(Sink):
    """A benchmark's video sink that drops what is still queued once a stop is asked (the file is thrown away)."""

    def __init__(self, sink: Sink, stop: threading.Event):
        self.inner, self.stop, self.path, self.needs = sink, stop, sink.path, sink.needs

    @property
    def written(self) -> int:
        return self.inner.written

    def write_result(self, result: BatchResult) -> None:
        if not self.stop.is_set():
            self.inner.write_result(result)

    def close(self) -> None:
        self.inner.close()


def _join(threads: list[threading.Thread]) -> None:
    """Wait for ``threads``, waking every 0.1 s: a SIGTERM or Ctrl-C that another thread received is
    raised in the main thread only when it runs Python code, not while it sleeps in a plain join."""
    for t in threads:
        while t.is_alive():
            t.join(0.1)


def _pipelines(open_source, streams: int, dehazer, sinks_for, cfg, stage_for) -> tuple[float, list]:
    """Run one ``Pipeline`` per source, ``streams`` sources at once (threads sharing the model, as ``batch``
    does on CUDA); the summed fps. Ctrl-C or SIGTERM stops them all promptly, then is raised again."""
    e = cfg.engine
    stats, errors = [], []
    lock = _StopLock(shared=streams > 1)

    def one(i, src):
        try:
            pipeline = Pipeline(DehazeStage(dehazer), stage_for(), [sinks_for(i, src, lock.stop)], model_lock=lock)
            reader = reader_for(src, cfg.input.queue_size)  # as run reads it: decoded ahead, or a camera's own queue
            stats.append(pipeline.run(source_batches(src, reader, e.batch, e.max_latency_ms, pipeline.stats)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = []
    with contextlib.ExitStack() as opened:
        try:
            sources = [opened.enter_context(open_source()) for _ in range(streams)]
            t0 = time.perf_counter()
            for i, src in enumerate(sources):
                threads.append(threading.Thread(target=one, args=(i, src), name=f"bench-stream-{i}"))
                threads[-1].start()
            _join(threads)
        except KeyboardInterrupt:
            lock.stop.set()
            _join(threads)
            raise
    if errors:
        raise errors[0]
    return sum(st.frames for st in stats) / (time.perf_counter() - t0), stats


def bench_reads(input_spec: str, cfg: Config, config_file: str | None = None) -> list[Path]:
    """Files a bench reads: the input, the model, detector and fog meter weights, the config file."""
    from .models.registry import bundled_weights
    from .run_input import input_files

    named = [cfg.detect.detector, cfg.detect.fog_detector, cfg.detect.detector_b, cfg.gate.meter, config_file]
    return (input_files(input_spec)[0] + [bundled_weights(cfg.model.name) or Path(cfg.model.name)]
            + [Path(p) for p in named if p])


def check_json_output(path: str | None, input_spec: str, cfg: Config, config_file: str | None = None) -> None:
    """Refuse a --json FILE that cannot be written, or is a file the bench reads, before any work."""
    if path and path != "-":
        check_writable_file(path, bench_reads(input_spec, cfg, config_file), "--json file")


def save_json(path: str | Path, text: str) -> None:
    """Write --json FILE whole (write_atomic), its folder created."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as exc:
        raise write_error(path, exc) from None


def fixed_cost(frames_long: int, fps_long: float, frames_short: int, fps_short: float) -> float | None:
    """Seconds a run costs beyond its frames (thread and encoder start, finalizing): the intercept of
    t = c + n / r through two runs of n frames each (None when the runs do not separate)."""
    t_long, t_short = frames_long / fps_long, frames_short / fps_short
    if frames_long <= frames_short or t_long <= t_short:
        return None
    rate = (frames_long - frames_short) / (t_long - t_short)
    cost = t_long - frames_long / rate
    return cost if cost >= 0 else None  # a negative intercept is noise, not a cost


def run_bench(input_spec: str, cfg: Config, frames: int = 90, repeats: int = 3, warmup: int = 2,
              progress=None, detect: bool = False, streams: int = 1) -> BenchResult:
    """Rounds of decode, upload/convert, model, (detector,) download, encode and end-to-end runs (writing
    the video, and with --detect also writing detections only), interleaved so that a noisy machine
    slows all of them alike; per-stage figures and the ratios are medians over rounds. ``streams`` > 1
    runs that many copies of the input at once for the end-to-end figures."""
    if not 1 <= streams <= MAX_STREAMS:
        raise ConfigError(f"--streams must be from 1 to {MAX_STREAMS}, got {streams}")
    e, o = cfg.engine, cfg.output
    dehazer = Dehazer.from_config(cfg, random_init=True)
    device = dehazer.device
    cuda = device.type == "cuda"
    detector = detectors = None
    if detect:
        from .detect.detectors import Detectors

        detectors = Detectors.from_config(cfg.detect, device)
        detector = detectors.base

    def source(limit: int = frames):
        return source_from_config(input_spec, cfg.input, limit, device)

    with source() as src:
        info = src.info
        decoded = list(src)
        short = _short_input_note(src, decoded, frames)
    n = len(decoded)
    h, w = decoded[0].shape
    res = BenchResult(input=info.source, width=w, height=h, frames=n, model=dehazer.name, device=str(device),
                      precision=dehazer.precision, runtime=dehazer.runtime, batch=e.batch, machine=machine_name(device),
                      repeats=repeats, streams=streams)
    if dehazer.loaded.weights is None and dehazer.net.trainable:
        res.notes.append("random weights (speed only)")
    if short:
        res.notes.append(short)
    batches = [FrameBatch.of(decoded[i:i + e.batch]) for i in range(0, n, e.batch)]
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    # The stage objects the loop runs, timed alone below; the end-to-end runs build the same ones.
    dehaze_stage = DehazeStage(dehazer)
    detect_stage = DetectStage(detector) if detector is not None else None  # the base path: every frame to it
    # The fog path alone: every frame to the fog detector on its view (no gate record: all taken as hazy)
    fog_stage = DetectStage(detectors) if detectors is not None and detectors.fog is not None else None
    for _ in range(warmup):
        out = dehaze_stage(batches[0]).frames
        if detect_stage is not None:
            detect_stage(None, out)
    # The frames in order, as a run sees them (smoothed over time for a video), measured for stability.
    measured = list(map(DehazeStage(dehazer), batches))
    dehazed = [d.frames for d in measured]
    res.network_frames = n if dehazer.gate.policy == "off" or not dehazer.gate.skip_raw else \
        sum(int((d.haze.strength > 0).sum()) for d in measured)
    stream = dehaze_stage.streams(batches[0])
    host_out = [b.cpu().numpy() for b in dehazed]
    meter = StabilityMeter()
    for fb, out in zip(batches, host_out):
        meter.update_batch(fb.host_rgb(), out)
    stability = meter.result()
    res.flicker_ratio, res.warp_ratio = stability["flicker_ratio"], stability["warp_ratio"]
    res.temporal = stream is not None and dehazer.temporal is not None
    encoder = EncoderSettings.from_config(o, device.type)  # every video sink of the benchmark encodes with these
    i420 = uses_i420(encoder.needs, device.type, h, w)

    def download():
        for b in dehazed:
            (rgb_to_yuv420(b) if i420 else b).cpu()

    on_device = [torch.from_numpy(np.ascontiguousarray(fb.host_rgb())).to(device) for fb in batches]
    runs = {k: [] for k in ("decode", "upload", "model", "gate", "detect", "detect_fog", "download", "encode",
                            "end_to_end", "no_video", "short")}
    shares, ratios, nv_ratios = [], [], []
    short_n = max(1, n // 3)
    with tempfile.TemporaryDirectory(prefix="cidstream-bench-") as tmp:
        for r in range(repeats):
            if progress is not None:
                progress(f"round {r + 1}/{repeats}")
            with source() as src:  # decode only
                res.decode_path = src.decode_path
                t0 = time.perf_counter()
                count = sum(1 for _ in src)
                _sync(device)
                runs["decode"].append(count / (time.perf_counter() - t0))
            runs["upload"].append(_timed(device, lambda: [b.to_device(device) for b in batches], n))
            runs["model"].append(_timed(device, lambda: [dehaze_stage(b) for b in batches], n))
            runs["gate"].append(_timed(device, lambda: [dehazer.gate.measure_frames(u) for u in on_device], n))
            if detect_stage is not None:  # detector only, on dehazed frames already on the device
                runs["detect"].append(_timed(device, lambda: [detect_stage(None, b) for b in dehazed], n))
            if fog_stage is not None:
                runs["detect_fog"].append(_timed(device, lambda: [fog_stage(u, b) for u, b in zip(on_device, dehazed)],
                                                 n))
            if cuda:
                runs["download"].append(_timed(device, download, n))

            sink = VideoSink(Path(tmp) / f"enc{r}.mp4", info, encoder, copy_audio=False)  # encode only
            items = [BatchResult(fb, out, i420_frames=rgb_to_yuv420(torch.from_numpy(out)).numpy() if i420 else None)
                     for fb, out in zip(batches, host_out)]
            t0 = time.perf_counter()
            for item in items:
                sink.write_result(item)
            sink.close()
            runs["encode"].append(n / (time.perf_counter() - t0))
            res.encode_path = sink.codec

            def video_sinks(i, src, stop, r=r):
                video = VideoSink(Path(tmp) / f"e2e{r}_{i}.mp4", src.info, encoder, copy_audio=False)
                return ThreadedSink(_UntilStopped(video, stop), o.queue_size)

            def stage_for():  # what a run detects with: the per-frame choice when a fog detector is set
                return DetectStage(detectors) if detectors is not None else None

            fps, stats = _pipelines(source, streams, dehazer, video_sinks, cfg, stage_for)
            runs["end_to_end"].append(fps)
            short_source = lambda: source(short_n)  # noqa: E731 - a third of the frames: the run's fixed cost
            runs["short"].append(_pipelines(short_source, streams, dehazer, lambda i, *a: video_sinks(f"s{i}", *a), cfg,
                                            stage_for)[0])
            # Upload (to the device, 4:2:0 -> RGB) runs inside the dehazing stage: part of "model".
            stages = ["decode", "model", "encode"] + (["detect"] if detector else []) + (["download"] if cuda else [])
            ratios.append(fps / streams / min(runs[k][-1] for k in stages))
            shares.append(sum(s.stage_seconds["detect"] for s in stats) / sum(s.seconds for s in stats))
            if detector is not None:  # detections only: nothing is downloaded or encoded
                fps, _ = _pipelines(source, streams, dehazer, lambda *a: NullSink(), cfg, stage_for)
                runs["no_video"].append(fps)
                nv_ratios.append(fps / streams / min(runs[k][-1] for k in stages if k not in ("encode", "download")))

    med = {k: _median(v) for k, v in runs.items() if v}
    res.decode_fps, res.model_fps = med["decode"], med["model"]
    # On the CPU an RGB batch is read where it was decoded: "upload" would time nothing (hundreds of
    # thousands of fps). It is a stage only where it copies (CUDA) or converts (4:2:0 input).
    res.upload_fps = med["upload"] if cuda or any(b.images is None for b in batches) else None
    res.encode_fps, res.end_to_end_fps = med["encode"], med["end_to_end"]
    res.gate_fps, res.gate_measure = med["gate"], dehazer.gate.measure
    res.gate_share = med["model"] / med["gate"]
    res.download_fps = med.get("download", 0.0)
    if cuda:
        res.gpu_memory_mb = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    stages = {k: med[k] for k in ("decode", "model", "encode", "download", "detect") if k in med}
    res.fixed_cost_s = fixed_cost(n * streams, med["end_to_end"], short_n * streams, med["short"])
    if detector is not None:
        res.detector, res.detect_fps, res.detector_runtime = detector.label, med["detect"], detector.runtime
        if fog_stage is not None:
            res.fog_detector, res.fog_view, res.fog_path_fps = detectors.fog.label, detectors.fog_view, med["detect_fog"]
            res.fog_path_cost = med["detect"] / med["detect_fog"]
        res.detector_share = _median(shares)
        res.no_video_fps, res.no_video_ratio = med["no_video"], _median(nv_ratios)
    res.slowest_stage = min(stages, key=stages.get)
    res.ratio = _median(ratios)
    res.serial_fps = 1.0 / sum(1.0 / v for v in stages.values())
    res.overlap = res.end_to_end_fps / streams / res.serial_fps
    return res
