"""Video in segments for streams that run for days: a new file every N seconds, each playable alone.

Segments are fragmented MP4 (a header first, then self-contained fragments), so even the segment
being written when a process is killed plays up to its last complete fragment."""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np

from ..config import LiveConfig
from ..errors import OutputError
from ..frames import Frame, StreamInfo
from .base import Sink
from .media import EncoderSettings, VideoSink

FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


class SegmentedVideoSink(Sink):
    """Writes ``folder/PREFIX_YYYYmmdd-HHMMSS.mp4`` files; a frame size change also starts a new one.
    Frames need ``time`` (seconds, monotonic); each segment's timestamps start at 0. ``segment_s``
    defaults to the config's live.segment_s."""

    def __init__(self, folder: str | Path, info: StreamInfo, segment_s: float = LiveConfig.segment_s,
                 prefix: str = "segment", encoder: EncoderSettings = EncoderSettings()):
        self.path = Path(folder)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {self.path}: {exc.strerror or exc}") from exc
        self.info, self.segment_s, self.prefix = info, segment_s, prefix
        self.encoder = encoder   # every segment's encoder is opened with these, threads included
        self.needs = encoder.needs
        self.segments: list[Path] = []   # closed segments, oldest first
        self._current: VideoSink | None = None
        self._t0 = 0.0
        self._first_index = 0
        self._size = None
        self._last_pts = None

    def _name(self) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.path / f"{self.prefix}_{stamp}.mp4"
        n = 2
        while path.exists() or path in self.segments:
            path = self.path / f"{self.prefix}_{stamp}_{n}.mp4"
            n += 1
        return path

    def _rotate(self, frame: Frame, size) -> None:
        self._close_current()
        info = dataclasses.replace(self.info, frame_count=None, has_audio=False)
        sink = VideoSink(self._name(), info, self.encoder, copy_audio=False, container_options=FRAGMENTED_MP4)
        self._current, self._t0, self._first_index, self._size = sink, frame.time or 0.0, frame.index, size
        self._last_pts = None

    def write(self, frame: Frame, image: np.ndarray, i420: bool = False) -> None:
        size = (image.shape[0] * 2 // 3, image.shape[1]) if i420 else image.shape[:2]
        t = frame.time or 0.0
        if self._current is None or size != self._size or (self.segment_s and t - self._t0 >= self.segment_s):
            self._rotate(frame, size)
        pts = round((t - self._t0) / self._current.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # frames decoded in the same millisecond keep their order
        self._last_pts = pts
        self._current.write(dataclasses.replace(frame, index=frame.index - self._first_index, pts=pts), image, i420)
        self.written += 1

    def _close_current(self) -> None:
        if self._current is not None:
            sink, self._current = self._current, None
            sink.close()
            if sink.written:
                self.segments.append(sink.path)

    def close(self) -> None:
        self._close_current()
