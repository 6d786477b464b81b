"""Runs a frame iterator in a background thread behind a bounded queue.

Files use the lossless policy (the producer waits for room); live feeds use drop-oldest,
so the consumer always works on fresh frames and latency stays bounded.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable

from ..config import InputConfig

END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class BackgroundReader:
    """``produce()``'s items behind a queue of ``maxsize`` (default: the config's input.queue_size)."""

    def __init__(self, produce: Callable[[], Iterable], maxsize: int = InputConfig.queue_size,
                 drop_oldest: bool = False, name: str = "reader"):
        self._produce = produce
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._drop_oldest = drop_oldest
        self._stop = threading.Event()
        self.dropped = 0
        self.produced = 0
        self.busy_seconds = 0.0  # time spent producing (decoding), not waiting for room
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "BackgroundReader":
        self._thread.start()
        return self

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._drop_oldest and item is not END and not isinstance(item, _Failure):
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def _run(self) -> None:
        try:
            items = iter(self._produce())
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    break
                finally:
                    self.busy_seconds += time.perf_counter() - t0
                if self._stop.is_set() or not self._put(item):
                    return
                self.produced += 1
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
            return
        self._put(END)

    def get(self, timeout: float | None = None):
        """Next item, or END; raises queue.Empty on timeout and re-raises producer errors."""
        item = self._queue.get(timeout=timeout)
        if isinstance(item, _Failure):
            raise item.exc
        return item

    def stop(self, join_timeout: float = 1.0) -> None:
        """Stop producing. A file's decoder notices within one frame; a producer blocked inside its
        source (a stalled stream) is not waited for longer than ``join_timeout`` (it is a daemon thread)."""
        self._stop.set()
        # Free a producer blocked on a full queue.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=join_timeout)
