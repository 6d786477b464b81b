"""source -> batcher -> dehazer -> sink, with decode and encode in their own threads."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ..frames import FrameBatch
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
    model_seconds: float = 0.0
    dropped: int = 0
    interrupted: bool = False
    latencies_ms: list = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        return self.frames / self.model_seconds if self.model_seconds > 0 else 0.0


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


def run_pipeline(source: Source, dehazer: Dehazer, sink: Sink, batch: int = 4, max_latency_ms: float = 100.0,
                 queue_size: int = 32, on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
    """Dehaze a whole source into a sink. Ctrl-C stops reading and keeps every processed frame:
    the sink is always closed (finalized), and the error or interruption is recorded in the stats."""
    stats = RunStats()
    reader = _reader_for(source, queue_size)
    start = time.perf_counter()
    try:
        latency = max_latency_ms if source.live else None
        for fb in iter_batches(reader, batch, latency, source.info.source):
            t0 = time.perf_counter()
            out = dehazer(fb.images)
            stats.model_seconds += time.perf_counter() - t0
            now = time.monotonic()
            for frame, image in zip(fb.frames, out):
                sink.write(frame, image)
                if source.live and frame.captured_at is not None:
                    stats.latencies_ms.append((now - frame.captured_at) * 1000.0)
            stats.frames += len(fb)
            stats.batches += 1
            stats.seconds = time.perf_counter() - start
            if on_batch is not None:
                on_batch(stats)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        reader.stop()
        stats.dropped = reader.dropped
        try:
            sink.close()
        finally:
            stats.seconds = time.perf_counter() - start
    return stats
