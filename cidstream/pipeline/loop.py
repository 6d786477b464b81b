"""The one pipeline loop: source -> batcher -> dehazer -> detector -> sinks, with decode, detection (CUDA)
and encode overlapping."""
from __future__ import annotations

import contextlib
import queue
import random
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np
import torch

from ..config import EngineConfig, InputConfig
from ..engine.batcher import iter_batches
from ..engine.dehazer import Dehazer
from ..engine.haze import gate_counts
from ..errors import CidstreamError, InputError
from ..frames import BatchResult, DeviceFrames, FrameBatch
from ..io.reader import END, BackgroundReader
from ..io.sources import Source
from ..ops.color import rgb_to_yuv420
from ..sinks.base import Sink
from ..sinks.media import uses_i420
from .stages import Dehazed, DehazeStage

if TYPE_CHECKING:  # the detection stage's modules load Ultralytics' helpers: only runs that detect import them
    from ..detect.stage import DetectStage


LATENCY_SAMPLES = 4096  # frame latencies a run keeps for its p50/p95, whatever its length


class Reservoir:
    """A uniform random sample of at most ``size`` of the values added (reservoir sampling, Vitter's
    algorithm R): percentiles of a run of days come from a few kilobytes, and stay those of the whole run,
    not of its last minutes. Iterates and measures like the list of the values kept; ``seen`` counts all."""

    def __init__(self, size: int = LATENCY_SAMPLES, seed: int = 0):
        self.size, self.seen, self.values = size, 0, []
        self._rng = random.Random(seed)

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.seen += 1
            if len(self.values) < self.size:
                self.values.append(value)
            elif (j := self._rng.randrange(self.seen)) < self.size:
                self.values[j] = value

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):
        return iter(self.values)


@dataclass
class RunStats:
    frames: int = 0
    batches: int = 0
    seconds: float = 0.0
    dropped: int = 0
    interrupted: bool = False
    stopped: str | None = None      # "duration": stopped by the run's time limit (a normal end, not an interruption)
    latencies_ms: Reservoir = field(default_factory=Reservoir, repr=False)  # live sources: capture to written
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


class _SizeGuard:
    """A run's memory is checked for its first frame's size; a later frame that is larger (an image of
    16000x16000 in a folder, a stream whose resolution changes) goes through ``check`` ((h, w) -> None,
    raising CidstreamError) before it goes on, so it ends the run with the reason instead of taking the
    machine's memory. Frames no larger than one already checked pass as they are."""

    def __init__(self, check: Callable[[tuple[int, int]], None], source: Source):
        self.check, self.info = check, source.info
        self.largest = (self.info.height or 0) * (self.info.width or 0)

    def __call__(self, frame):
        h, w = frame.shape
        if h * w > self.largest:
            try:
                self.check((h, w))
            except CidstreamError as exc:
                what = f"frame {frame.index}" + (f" ({frame.name})" if frame.name else "")
                raise InputError(f"{what} of {self.info.source} is {w}x{h}, larger than the {self.info.width}x"
                                 f"{self.info.height} the run began with: {exc}") from None
            self.largest = h * w
        return frame


class _Guarded:
    """A live source's reader whose frames pass a _SizeGuard as they are taken (its own drop-oldest
    queue holds only a few)."""

    def __init__(self, reader, guard: _SizeGuard):
        self.reader, self.guard = reader, guard

    def get(self, timeout: float | None = None):
        item = self.reader.get(timeout=timeout)
        return item if item is END else self.guard(item)

    def __getattr__(self, name):
        return getattr(self.reader, name)


def reader_for(source: Source, queue_size: int, guard: _SizeGuard | None = None):
    """A file is decoded ahead into a queue of ``queue_size`` (input.queue_size) frames; a live source
    is read straight from its own drop-oldest queue (live.queue_size): a second queue behind it would
    hold up to ``queue_size`` more stale frames, and latency would grow by as many frame times.
    ``guard`` sees a file's frames in the decoding thread, before a queue could hold several too large."""
    live_reader = getattr(source, "reader", None) if source.live else None
    if callable(live_reader):
        return live_reader() if guard is None else _Guarded(live_reader(), guard)
    frames = (lambda: map(guard, source)) if guard is not None else (lambda: iter(source))
    return BackgroundReader(frames, maxsize=queue_size, drop_oldest=source.live, name="decoder").start()


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


class Pipeline:
    """The one loop that moves batches through the stages into the sinks: ``run``, ``batch``, ``live``,
    ``eval`` and ``bench`` all drive it.

    Per batch: ``dehaze`` (frames to the device, dehazed, haze measured), ``detect`` (arms, tracking
    inside), then the downloads the sinks declared in ``Sink.needs`` start, and every sink gets one frozen
    ``BatchResult``. On CUDA all of it is queued on one stream of the pipeline's own, so decoding (which
    waits on the default stream) never waits for the model, and with a detector the detection of batch
    k runs in one more thread while batch k+1 is dehazed. ``model_lock`` makes pipelines in threads that
    share one model take turns on it. ``on_batch(stats)`` may raise KeyboardInterrupt to stop. ``live``:
    frames from cameras, whose capture-to-output latency is recorded.

    ``feed(batches)`` may be called more than once (live feeds the frames already received after a stop);
    ``close()`` finalizes every sink, holding off a second Ctrl-C while the files are finished."""

    def __init__(self, dehaze: DehazeStage, detect: DetectStage | None = None, sinks: list[Sink] = (),
                 on_batch: Callable[[RunStats], None] | None = None, model_lock=None, live: bool = False):
        self.dehaze, self.detect, self.sinks, self.live = dehaze, detect, list(sinks), live
        self.needs = sink_needs(self.sinks)
        self.device = dehaze.device
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.lock = model_lock or contextlib.nullcontext()
        self.on_batch = on_batch
        self.stats = RunStats()
        self._start = time.perf_counter()

    def _on_stream(self):
        return torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext()

    def _time(self, stage: str, t0: float) -> None:
        self.stats.stage_seconds[stage] += time.perf_counter() - t0

    def dehazed(self, fb: FrameBatch) -> tuple[FrameBatch, Dehazed]:
        t0 = time.perf_counter()
        with self.lock, self._on_stream():
            out = self.dehaze(fb)
        self._time("dehaze", t0)
        return fb, out

    def finish(self, item: tuple[FrameBatch, Dehazed]) -> BatchResult:
        """Detection, and the downloads the sinks read, of a dehazed batch."""
        fb, d = item
        t0 = time.perf_counter()
        with self._on_stream():
            arms = {}
            if self.detect is not None:
                with self.lock:
                    arms = self.detect(d.raw, d.frames, fb.streams or [fb.source_id] * len(fb), d.haze)
            self._time("detect", t0)
            # 4:2:0 for the encoder is made on the GPU: half the bytes of RGB come back.
            h, w = fb.shape
            i420 = DeviceFrames(rgb_to_yuv420(d.frames), prefetch=True) \
                if uses_i420(self.needs, self.device.type, h, w) else None
            out = DeviceFrames(d.frames, prefetch="dehazed" in self.needs)
            raw = DeviceFrames(d.raw, prefetch="raw" in self.needs) if fb.images is None or self.cuda else None
            haze = None if d.haze is None else DeviceFrames(d.haze.values, prefetch=True)  # 5 x N floats
        return BatchResult(fb, out, arms, i420, raw, haze)

    def process(self, fb: FrameBatch) -> BatchResult:
        """One batch through the stages, not written anywhere (the Python API, tests)."""
        return self.finish(self.dehazed(fb))

    def _emit(self, result: BatchResult) -> None:
        stats = self.stats
        now = time.monotonic()
        for sink in self.sinks:
            sink.write_result(result)
        if self.live:
            stats.latencies_ms.extend((now - f.captured_at) * 1000.0 for f in result.batch.frames if f.captured_at)
        stats.frames += len(result)
        stats.batches += 1
        haze = result.haze
        if haze is not None:
            raw, blended = gate_counts(haze.strength)
            stats.frames_left_raw += raw
            stats.frames_blended += blended
        stats.seconds = time.perf_counter() - self._start
        if self.on_batch is not None:
            self.on_batch(stats)

    def feed(self, batches: Iterable[FrameBatch]) -> RunStats:
        """Every batch through the stages into the sinks. Ctrl-C (KeyboardInterrupt, also from ``on_batch``)
        stops taking batches; those already on the device are still finished and written, and the run
        is marked interrupted. ``batches`` is closed before this returns (a generator's cleanup runs)."""
        overlap = ThreadPoolExecutor(1, thread_name_prefix="detect") if self.cuda and self.detect else None
        pending: deque = deque()
        try:
            try:
                for fb in batches:
                    if overlap is None:
                        self._emit(self.process(fb))
                        continue
                    pending.append(overlap.submit(self.finish, self.dehazed(fb)))
                    while len(pending) > 1 or (pending and pending[0].done()):
                        self._emit(pending.popleft().result())
            finally:
                while pending:  # batches already on the device are finished and written, also after Ctrl-C
                    self._emit(pending.popleft().result())
        except KeyboardInterrupt:
            self.stats.interrupted = True
        finally:
            if overlap is not None:
                overlap.shutdown(wait=True, cancel_futures=True)
            close = getattr(batches, "close", None)
            if callable(close):
                close()
        return self.stats

    def close(self) -> RunStats:
        """Finalize every sink (all of them, also when one fails; the first failure is raised after)."""
        with _finalizing() as held:
            try:
                _close_all(self.sinks)
            finally:
                self.stats.seconds = time.perf_counter() - self._start
                self.stats.stage_seconds["write"] = sum(getattr(s, "busy_seconds", 0.0) for s in self.sinks)
        self.stats.interrupted = self.stats.interrupted or bool(held)
        return self.stats

    def run(self, batches: Iterable[FrameBatch]) -> RunStats:
        """``feed`` then ``close``: the sinks are finalized whatever happens."""
        try:
            self.feed(batches)
        finally:
            self.close()
        return self.stats


def source_batches(source: Source, reader, batch: int, max_latency_ms: float | None, stats: RunStats,
                   duration: float | None = None) -> Iterator[FrameBatch]:
    """A source's frames in temporal batches, decoded ahead by ``reader``; until ``duration`` seconds
    have passed, when given. On close, reading stops at once (a live source too, while its camera is
    silent) and the reader's counts go into ``stats``."""
    items = reader if duration is None else _Until(reader, time.monotonic() + duration, stats)
    try:
        yield from iter_batches(items, batch, max_latency_ms if source.live else None, source.info.source)
    finally:
        stop = getattr(source, "stop", None)
        if callable(stop):
            stop()
        reader.stop()
        stats.dropped = reader.dropped + getattr(getattr(source, "stats", None), "dropped", 0)
        stats.stage_seconds["decode"] = reader.busy_seconds


def dehaze_stream(source: Source, dehazer: Dehazer, batch: int = EngineConfig.batch,
                  max_latency_ms: float | None = None,
                  queue_size: int = InputConfig.queue_size) -> Iterator[tuple[FrameBatch, np.ndarray]]:
    """Python API: yields (batch, dehazed uint8 images) for a source, decoding in the background."""
    pipeline = Pipeline(DehazeStage(dehazer))
    batches = source_batches(source, reader_for(source, queue_size), batch, max_latency_ms, pipeline.stats)
    try:
        for fb in batches:
            yield fb, pipeline.process(fb).dehazed
    finally:
        batches.close()


def run_pipeline(source: Source, dehazer: Dehazer, sinks: Sink | list[Sink], batch: int = EngineConfig.batch,
                 max_latency_ms: float = EngineConfig.max_latency_ms, queue_size: int = InputConfig.queue_size,
                 detect: DetectStage | None = None, on_batch: Callable[[RunStats], None] | None = None, model_lock=None,
                 duration: float | None = None,
                 frame_check: Callable[[tuple[int, int]], None] | None = None) -> RunStats:
    """A whole source through ``Pipeline``: decoding in a thread of its own, each sink in its own.
    ``duration`` (seconds) ends the run after that long, finalized like a complete one
    (``stats.stopped == "duration"``); errors propagate after every sink is closed. ``frame_check``
    ((h, w), e.g. the run's memory check) refuses a frame larger than the first (see _SizeGuard)."""
    pipeline = Pipeline(DehazeStage(dehazer), detect, sinks if isinstance(sinks, list) else [sinks],
                        on_batch, model_lock, live=source.live)
    guard = _SizeGuard(frame_check, source) if frame_check is not None else None
    return pipeline.run(source_batches(source, reader_for(source, queue_size, guard), batch, max_latency_ms,
                                       pipeline.stats, duration))


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
