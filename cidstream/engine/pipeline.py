"""source -> batcher -> dehazer -> sink, with decode and encode in their own threads."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ..frames import BatchResult, FrameBatch
from ..io.reader import BackgroundReader
from ..io.sinks import Sink
from ..io.sources import Source
from .batcher import iter_batches
from .dehazer import Dehazer


@dataclass
class RunStats:
    frames: int = 0
    batches: int = 0
    seconds: float = 0.0
    dropped: int = 0
    interrupted: bool = False
    latencies_ms: list = field(default_factory=list, repr=False)
    # Busy time of each stage where it runs: decode (reader thread), dehaze and detect (main thread),
    # write (writer threads, summed over sinks).
    stage_seconds: dict = field(default_factory=lambda: {"decode": 0.0, "dehaze": 0.0, "detect": 0.0, "write": 0.0})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        return self.stage_fps("dehaze")

    def stage_fps(self, stage: str) -> float:
        busy = self.stage_seconds.get(stage, 0.0)
        return self.frames / busy if busy > 0 else 0.0


def _reader_for(source: Source, queue_size: int) -> BackgroundReader:
    return BackgroundReader(lambda: iter(source), maxsize=queue_size, drop_oldest=source.live,
                            name="decoder").start()


def dehaze_stream(source: Source, dehazer: Dehazer, batch: int = 4, max_latency_ms: float | None = None,
                  queue_size: int = 32) -> Iterator[tuple[FrameBatch, np.ndarray]]:
    """Python API: yields (batch, dehazed uint8 images) for a source, decoding in the background."""
    reader = _reader_for(source, queue_size)
    try:
        latency = max_latency_ms if source.live else None
        for fb in iter_batches(reader, batch, latency, source.info.source):
            yield fb, dehazer(fb.images)
    finally:
        reader.stop()


def _process(fb: FrameBatch, dehazer: Dehazer, detect, stats: RunStats) -> BatchResult:
    t0 = time.perf_counter()
    if detect is not None and dehazer.device.type == "cuda":
        # Raw and dehazed frames stay on the GPU from the dehazer to the detector.
        raw = dehazer.upload(fb.images)
        dehazed = dehazer.process(raw)
        t1 = time.perf_counter()
        dets, raw_dets = detect(raw, dehazed)
        out = dehazed.cpu().numpy()
    else:
        out = dehazer(fb.images)
        t1 = time.perf_counter()
        dets, raw_dets = detect(fb.images, out) if detect is not None else (None, None)
    t2 = time.perf_counter()
    stats.stage_seconds["dehaze"] += t1 - t0
    stats.stage_seconds["detect"] += t2 - t1
    return BatchResult(fb, out, dets, raw_dets)


def run_pipeline(source: Source, dehazer: Dehazer, sinks: Sink | list[Sink], batch: int = 4,
                 max_latency_ms: float = 100.0, queue_size: int = 32, detect=None,
                 on_batch: Callable[[RunStats], None] | None = None, model_lock=None) -> RunStats:
    """Dehaze (and, with a ``detect`` stage, detect on) a whole source into sinks.

    Ctrl-C stops reading and keeps every processed frame: every sink is always closed
    (finalized); the interruption is recorded in the stats, errors propagate after closing.
    ``on_batch`` may raise KeyboardInterrupt to stop the run the same way; ``model_lock`` makes
    threads that share one model take turns on it."""
    sinks = sinks if isinstance(sinks, list) else [sinks]
    stats = RunStats()
    reader = _reader_for(source, queue_size)
    start = time.perf_counter()
    try:
        latency = max_latency_ms if source.live else None
        for fb in iter_batches(reader, batch, latency, source.info.source):
            with model_lock or contextlib.nullcontext():
                result = _process(fb, dehazer, detect, stats)
            now = time.monotonic()
            for sink in sinks:
                sink.write_result(result)
            if source.live:
                stats.latencies_ms.extend((now - f.captured_at) * 1000.0 for f in fb.frames if f.captured_at)
            stats.frames += len(fb)
            stats.batches += 1
            stats.seconds = time.perf_counter() - start
            if on_batch is not None:
                on_batch(stats)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        reader.stop()
        stats.dropped = reader.dropped + getattr(getattr(source, "stats", None), "dropped", 0)
        stats.stage_seconds["decode"] = reader.busy_seconds
        try:
            _close_all(sinks)
        finally:
            stats.seconds = time.perf_counter() - start
            stats.stage_seconds["write"] = sum(getattr(s, "busy_seconds", 0.0) for s in sinks)
    return stats


def _close_all(sinks: list[Sink]) -> None:
    """Close every sink even if one fails; re-raise the first failure."""
    error = None
    for sink in sinks:
        try:
            sink.close()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
