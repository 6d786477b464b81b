"""source -> batcher -> dehazer -> detector -> sinks, with decode, detection (CUDA) and encode overlapping."""
from __future__ import annotations

import contextlib
import itertools
import queue
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from ..frames import BatchResult, DeviceFrames, FrameBatch
from ..ops.color import rgb_to_yuv420
from ..io.reader import END, BackgroundReader
from ..io.sinks import Sink, uses_i420
from ..io.sources import Source
from .batcher import iter_batches
from .dehazer import Dehazer
from .haze import gate_counts

_RUNS = itertools.count()


@dataclass
class RunStats:
    frames: int = 0
    batches: int = 0
    seconds: float = 0.0
    dropped: int = 0
    interrupted: bool = False
    stopped: str | None = None      # "duration": stopped by the run's time limit (a normal end, not an interruption)
    latencies_ms: list = field(default_factory=list, repr=False)
    # Busy time of each stage where it runs: decode (reader thread), dehaze and detect (main thread),
    # write (writer threads, summed over sinks).
    stage_seconds: dict = field(default_factory=lambda: {"decode": 0.0, "dehaze": 0.0, "detect": 0.0, "write": 0.0})
    frames_left_raw: int = 0        # haze gate: frames measured clear and passed through undehazed
    frames_blended: int = 0         # haze gate: frames dehazed at partial strength

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        return self.stage_fps("dehaze")

    def stage_fps(self, stage: str) -> float:
        busy = self.stage_seconds.get(stage, 0.0)
        return self.frames / busy if busy > 0 else 0.0


def _reader_for(source: Source, queue_size: int):
    """A file is decoded ahead into a queue of ``queue_size`` (input.queue_size) frames; a live source
    is read straight from its own drop-oldest queue (live.queue_size): a second queue behind it would
    hold up to ``queue_size`` more stale frames, and latency would grow by as many frame times."""
    live_reader = getattr(source, "reader", None) if source.live else None
    if callable(live_reader):
        return live_reader()
    return BackgroundReader(lambda: iter(source), maxsize=queue_size, drop_oldest=source.live,
                            name="decoder").start()


class _Until:
    """A reader whose items end (END) once ``deadline`` (monotonic) passes, also while the source
    sends nothing: ``run --duration`` stops a stalled stream too."""

    def __init__(self, reader: BackgroundReader, deadline: float, stats: RunStats):
        self.reader, self.deadline, self.stats = reader, deadline, stats

    def get(self, timeout: float | None = None):
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                self.stats.stopped = "duration"
                return END
            limit = self.deadline if end is None else min(end, self.deadline)
            try:
                return self.reader.get(timeout=max(0.0, limit - now))
            except queue.Empty:
                if end is not None and time.monotonic() >= end and end < self.deadline:
                    raise


@contextlib.contextmanager
def _finalizing():
    """While the outputs are finalized, a second Ctrl-C (or SIGTERM) would cut the file short and leave
    it unplayable: hold both off until the files are closed (main thread only; other threads get no signals).
    Yields the list of signals held: one that came during the encoding of the last frames still makes
    the run an interrupted one."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum, frame):
        held.append(signum)
        sys.stderr.write("still finalizing the output with the frames already processed; one moment\n")

    previous = {}
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, hold)
            except (ValueError, OSError):
                pass
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sink_needs(sinks: list[Sink]) -> frozenset:
    """Host forms of the results the sinks will read (see Sink.needs)."""
    return frozenset().union(*(s.needs for s in sinks))


class BatchProcessor:
    """One batch through the device: to the device as RGB (4:2:0 converted there), dehaze, detect,
    and start the downloads the sinks need. On CUDA all of it is queued on one stream of its own, so
    decoding (which waits on the default stream) never waits for the model; the host waits only
    where a result is handed to it (the detections, or a sink reading its frames).

    ``detect(raw, dehazed)`` returns (detections on the dehazed frames, on the raw ones or None,
    extra comparison arms as a dict), as detect/stage.py's ``DetectStage`` does."""

    def __init__(self, dehazer: Dehazer, detect=None, needs: frozenset = frozenset({"dehazed"}),
                 stats: "RunStats | None" = None, model_lock=None):
        self.dehazer, self.detect, self.stats = dehazer, detect, stats
        self.device = dehazer.device
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.needs = needs
        self.lock = model_lock or contextlib.nullcontext()
        self._run = next(_RUNS)  # temporal state is per pipeline run: a rerun of a file starts fresh

    def _streams(self, fb: FrameBatch, streams: list | None):
        """Temporal-state keys for the dehazer: the source (or, in live, each frame's camera); None for
        image-folder frames, which are independent pictures and must not be smoothed."""
        if streams is not None:
            return [None if s is None else f"{s}#{self._run}" for s in streams]
        if any(f.name is not None for f in fb.frames):
            return None
        return f"{fb.source_id}#{self._run}"

    def _on_stream(self):
        return torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext()

    def _time(self, stage: str, t0: float) -> None:
        if self.stats is not None:
            self.stats.stage_seconds[stage] += time.perf_counter() - t0

    def dehaze(self, fb: FrameBatch, streams: list | None = None) -> tuple:
        t0 = time.perf_counter()
        with self.lock, self._on_stream():
            raw = fb.to_device(self.device)
            dehazed = self.dehazer.process(raw, stream=self._streams(fb, streams))
            haze = getattr(self.dehazer, "last_haze", None)  # read under the lock: the next batch replaces it
        self._time("dehaze", t0)
        return fb, raw, dehazed, haze

    def finish(self, item: tuple) -> BatchResult:
        fb, raw, dehazed, haze = item
        t0 = time.perf_counter()
        with self._on_stream():
            dets = raw_dets = arms = None
            if self.detect is not None:
                with self.lock:
                    dets, raw_dets, arms = self.detect(raw, dehazed)
            self._time("detect", t0)
            # 4:2:0 for the encoder is made on the GPU: half the bytes of RGB come back.
            h, w = fb.shape
            i420 = DeviceFrames(rgb_to_yuv420(dehazed), prefetch=True) \
                if uses_i420(self.needs, self.device.type, h, w) else None
            out = DeviceFrames(dehazed, prefetch="dehazed" in self.needs)
            raw_host = DeviceFrames(raw, prefetch="raw" in self.needs) if fb.images is None or self.cuda else None
            haze = None if haze is None else DeviceFrames(haze, prefetch=True)  # 3 x N floats
        return BatchResult(fb, out, dets, raw_dets, dehazed_i420=i420, raw=raw_host, haze=haze, arms=arms)

    def __call__(self, fb: FrameBatch, streams: list | None = None) -> BatchResult:
        return self.finish(self.dehaze(fb, streams))


def dehaze_stream(source: Source, dehazer: Dehazer, batch: int = 4, max_latency_ms: float | None = None,
                  queue_size: int = 32) -> Iterator[tuple[FrameBatch, np.ndarray]]:
    """Python API: yields (batch, dehazed uint8 images) for a source, decoding in the background."""
    reader = _reader_for(source, queue_size)
    processor = BatchProcessor(dehazer)
    try:
        latency = max_latency_ms if source.live else None
        for fb in iter_batches(reader, batch, latency, source.info.source):
            yield fb, processor(fb).dehazed
    finally:
        reader.stop()


def run_pipeline(source: Source, dehazer: Dehazer, sinks: Sink | list[Sink], batch: int = 4,
                 max_latency_ms: float = 100.0, queue_size: int = 32, detect=None,
                 on_batch: Callable[[RunStats], None] | None = None, model_lock=None,
                 duration: float | None = None) -> RunStats:
    """Dehaze (and, with a ``detect`` stage, detect on) a whole source into sinks.

    Decoding and each sink run in threads of their own; on CUDA with a detector, detection runs in
    one more thread, so the dehazing of batch k+1 is queued while batch k is detected.
    Ctrl-C stops reading and keeps every processed frame: every sink is always closed
    (finalized); the interruption is recorded in the stats, errors propagate after closing.
    ``on_batch`` may raise KeyboardInterrupt to stop the run the same way; ``model_lock`` makes
    threads that share one model take turns on it. ``duration`` (seconds) ends the run after that
    long, finalized like a complete one (``stats.stopped == "duration"``)."""
    sinks = sinks if isinstance(sinks, list) else [sinks]
    stats = RunStats()
    processor = BatchProcessor(dehazer, detect, sink_needs(sinks), stats, model_lock)
    overlap = ThreadPoolExecutor(1, thread_name_prefix="detect") if processor.cuda and detect is not None else None
    pending: deque = deque()
    reader = _reader_for(source, queue_size)
    start = time.perf_counter()
    items = reader if duration is None else _Until(reader, time.monotonic() + duration, stats)

    def emit(result: BatchResult) -> None:
        now = time.monotonic()
        for sink in sinks:
            sink.write_result(result)
        if source.live:
            stats.latencies_ms.extend((now - f.captured_at) * 1000.0 for f in result.batch.frames if f.captured_at)
        stats.frames += len(result)
        stats.batches += 1
        haze = result.haze
        if haze is not None:
            raw, blended = gate_counts(haze[2])
            stats.frames_left_raw += raw
            stats.frames_blended += blended
        stats.seconds = time.perf_counter() - start
        if on_batch is not None:
            on_batch(stats)

    try:
        latency = max_latency_ms if source.live else None
        try:
            for fb in iter_batches(items, batch, latency, source.info.source):
                if overlap is None:
                    emit(processor(fb))
                    continue
                pending.append(overlap.submit(processor.finish, processor.dehaze(fb)))
                while len(pending) > 1 or (pending and pending[0].done()):
                    emit(pending.popleft().result())
        finally:
            while pending:  # batches already on the device are finished and written, also after Ctrl-C
                emit(pending.popleft().result())
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        with _finalizing() as held:
            if overlap is not None:
                overlap.shutdown(wait=True, cancel_futures=True)
            stop = getattr(source, "stop", None)
            if callable(stop):  # a live source stops reading at once, even while its camera sends nothing
                stop()
            reader.stop()
            stats.dropped = reader.dropped + getattr(getattr(source, "stats", None), "dropped", 0)
            stats.stage_seconds["decode"] = reader.busy_seconds
            try:
                _close_all(sinks)
            finally:
                stats.seconds = time.perf_counter() - start
                stats.stage_seconds["write"] = sum(getattr(s, "busy_seconds", 0.0) for s in sinks)
        stats.interrupted = stats.interrupted or bool(held)
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
