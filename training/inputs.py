"""Clean frames for generation: image folders and videos, sampled with a stride and without
near-duplicates, so a static camera does not fill the set with the same picture."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

# The input list (.ts, .webm, .mpg, ... too), not cidstream.sinks.media.VIDEO_SUFFIXES: that one is what we can write.
from cidstream.config import INPUT_VIDEO_SUFFIXES
from cidstream.errors import InputError
from cidstream.io.images import IMAGE_SUFFIXES
from cidstream.io import VideoSource, open_source


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)


def iter_frames(spec: str, stride: int = 1, dedup: float = 0.0) -> Iterator[tuple[np.ndarray, str, int]]:
    """(RGB uint8, source, frame index) from a video, folder, glob or image. For videos only: every
    ``stride``-th frame, skipping frames whose 32x18 grey thumbnail differs from the last kept one by
    less than ``dedup`` (mean absolute difference, 0-255 scale). Image folders hold distinct pictures
    and are used whole."""
    if stride < 1:
        raise InputError(f"stride must be at least 1, got {stride}")
    last = None
    with open_source(spec) as src:
        video = isinstance(src, VideoSource)
        for frame in src:
            if video and frame.index % stride:
                continue
            if video and dedup > 0:
                thumb = thumbnail(frame.image)
                if last is not None and float(np.abs(thumb - last).mean()) < dedup:
                    continue
                last = thumb
            yield frame.image, spec, frame.index


def frames_at_most(specs: list[str], stride: int) -> int:
    """How many frames ``round_robin`` can yield at most (video headers' counts over the stride; near
    duplicates it skips make the true number smaller): the total of a progress bar."""
    total = 0
    for spec in specs:
        try:
            with open_source(spec) as src:
                n = src.info.frame_count or 0
                total += -(-n // stride) if isinstance(src, VideoSource) else n
        except Exception:  # unreadable sources fail properly when their frames are read
            continue
    return total


def round_robin(specs: list[str], stride: int, dedup: float) -> Iterator[tuple[np.ndarray, str, int]]:
    """Interleave sources so a long video does not crowd out the others."""
    iters = [iter_frames(s, stride, dedup) for s in specs]
    while iters:
        for it in list(iters):
            try:
                yield next(it)
            except StopIteration:
                iters.remove(it)


def resize_short_side(rgb: np.ndarray, short: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def expand_sources(specs: list[str]) -> list[str]:
    """A folder holding videos and no images stands for its videos."""
    out = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir() and not any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
            videos = sorted(str(v) for v in p.iterdir() if v.suffix.lower() in INPUT_VIDEO_SUFFIXES)
            if videos:
                out += videos
                continue
        out.append(spec)
    return out
