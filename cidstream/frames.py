"""Typed objects passed between stages: one decoded frame, a temporal batch of them, stream facts."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass
class Frame:
    """One RGB uint8 frame (H, W, 3) with where it came from."""

    image: np.ndarray
    index: int
    pts: int | None = None          # presentation timestamp in the source's time base
    time: float | None = None       # seconds from the start of the source
    name: str | None = None         # file name, for image-folder sources
    alpha: np.ndarray | None = None  # kept aside for RGBA images, re-attached on write
    captured_at: float | None = None  # time.monotonic() when decoded (latency accounting)


@dataclass
class FrameBatch:
    """Consecutive frames of equal size from one source; ``images`` is (N, H, W, 3) uint8."""

    images: np.ndarray
    frames: list[Frame]
    source_id: str = ""

    @classmethod
    def of(cls, frames: list[Frame], source_id: str = "") -> "FrameBatch":
        return cls(np.stack([f.image for f in frames]), frames, source_id)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def indices(self) -> list[int]:
        return [f.index for f in self.frames]

    @property
    def times(self) -> list[float | None]:
        return [f.time for f in self.frames]


@dataclass
class BatchResult:
    """What the pipeline hands to sinks per batch: the dehazed frames and, when detecting, the
    detections per frame on the dehazed frames and (compare mode) on the raw ones."""

    batch: FrameBatch
    dehazed: np.ndarray                      # (N, H, W, 3) uint8
    detections: list | None = None           # list[Detections] on the dehazed frames
    raw_detections: list | None = None       # list[Detections] on the raw frames


@dataclass
class StreamInfo:
    """What a sink needs to reproduce the source's timing and size."""

    source: str
    kind: str                       # "video", "images" or "live"
    width: int | None = None
    height: int | None = None
    fps: Fraction | None = None
    time_base: Fraction | None = None
    frame_count: int | None = None  # None when unknown (live streams, some containers)
    codec: str | None = None
    has_audio: bool = False
