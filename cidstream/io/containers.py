"""PyAV containers for code that reads or writes media without a Source (sinks, evaluation, benchmarks):
io/ is the one place that opens media (issue 39), so a change of how files are opened is made here once."""
from __future__ import annotations

import os
from typing import Iterator

import av
import numpy as np


def open_input_container(spec: str | os.PathLike):
    """``spec`` opened for reading with FFmpeg's defaults, no options and no timeouts (live streams are
    opened by a Source, with its timeouts and reconnects)."""
    return av.open(str(spec))


def open_output_container(path: str | os.PathLike, options: dict | None = None):
    """``path`` opened for writing, its format chosen by FFmpeg from the suffix; ``options``: the muxer's."""
    return av.open(str(path), mode="w", options=options or {})


def rgb_frames(path: str | os.PathLike, step: int = 1) -> Iterator[np.ndarray]:
    """Every ``step``-th frame of the first video stream as RGB uint8 (H, W, 3), as stored: no display
    matrix applied, unlike a VideoSource (io/decode.py). The file is closed when the iteration ends."""
    with open_input_container(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % step == 0:
                yield f.to_ndarray(format="rgb24")
