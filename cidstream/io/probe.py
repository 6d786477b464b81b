"""How many frames a video file announces, read from its header without decoding: for progress bars and
for refusing a single-image output, before the file is opened for real."""
from __future__ import annotations

import av

from .containers import open_input_container


def announced_frames(spec: str, estimate: bool = False) -> int | None:
    """The first video stream's frame count from the header; None when unknown, when there is no video
    stream, or when the file cannot be read (opening it as a source says why). ``estimate``: without a
    count, duration x average frame rate (a progress bar may be off by a frame; a refusal may not)."""
    try:
        with open_input_container(spec) as c:
            if not c.streams.video:
                return None
            s = c.streams.video[0]
            if s.frames:
                return int(s.frames)
            if estimate and s.duration and s.time_base and s.average_rate:
                return int(float(s.duration * s.time_base) * float(s.average_rate))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return None
    return None
