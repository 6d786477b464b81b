"""Temporal batching: consecutive frames of one size go to the model together."""
from __future__ import annotations

import queue
import time
from typing import Iterator

from ..frames import Frame, FrameBatch
from ..io.reader import END, BackgroundReader


def iter_batches(reader: BackgroundReader, batch: int, max_latency_ms: float | None = None,
                 source_id: str = "") -> Iterator[FrameBatch]:
    """Collect up to ``batch`` frames; with ``max_latency_ms`` (live feeds) a partial batch is
    flushed once its oldest frame has waited that long. A change of frame size or pixel form also
    flushes, and
    so does a source error (after which the error propagates)."""
    pending: list[Frame] = []
    deadline = None
    while True:
        timeout = None
        if pending and max_latency_ms is not None:
            timeout = max(0.0, deadline - time.monotonic())
        try:
            item = reader.get(timeout=timeout)
        except queue.Empty:
            yield FrameBatch.of(pending, source_id)
            pending = []
            continue
        except Exception:
            if pending:  # frames decoded before a source error still get processed
                yield FrameBatch.of(pending, source_id)
            raise
        if item is END:
            break
        if pending and item.layout != pending[0].layout:
            yield FrameBatch.of(pending, source_id)
            pending = []
        pending.append(item)
        if len(pending) == 1 and max_latency_ms is not None:
            deadline = time.monotonic() + max_latency_ms / 1000.0
        if len(pending) >= batch:
            yield FrameBatch.of(pending, source_id)
            pending = []
    if pending:
        yield FrameBatch.of(pending, source_id)
