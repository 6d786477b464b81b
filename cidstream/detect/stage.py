"""The detection stage of the pipeline: the dehazed frames, the raw ones too in compare mode, a second
detector and fused views as extra arms; tracking per stream inside."""
from __future__ import annotations

import numpy as np
import torch

from .detections import Detections
from .detector import Detector
from .fusion import fuse as fuse_views
from .tracking import Tracker


def arm_names(detector_b: bool, fuse: str | None, compare: bool = True) -> tuple[str, ...]:
    """The arms beyond dehazed (and raw in compare mode): raw_b and dehazed_b through the second
    detector, fused (raw and dehazed detections merged) per detector."""
    b = (("raw_b",) if compare else ()) + ("dehazed_b",) if detector_b else ()
    fused = (("fused",) + (("fused_b",) if detector_b else ())) if fuse and compare else ()
    return b + fused


class DetectStage:
    """One detector call per batch (raw and dehazed frames together in compare mode), then tracking
    frame by frame when asked, with one tracker per stream and arm (a live batch holds several cameras).
    Frames may be numpy arrays or device tensors.

    ``detector_b`` adds the arm dehazed_b (and raw_b in compare mode) from one call of the second detector
    on the same frames; ``fuse`` ('wbf' or 'nms'), in compare mode, the arms fused (and fused_b)."""

    def __init__(self, detector: Detector, compare: bool = False, track: bool = False, frame_rate: float = 30.0,
                 detector_b: Detector | None = None, fuse: str | None = None):
        self.detector, self.compare, self.track, self.frame_rate = detector, compare, track, frame_rate
        self.detector_b = detector_b
        self.fuse = fuse if compare else None
        self.extra = arm_names(detector_b is not None, self.fuse, compare)
        self.arms = (("raw", "dehazed") if compare else ("dehazed",)) + self.extra
        self.trackers: dict[tuple, Tracker] = {}
        self.frame_rates: dict[str, float] = {}   # per stream, where it differs from frame_rate (live cameras)

    def __call__(self, raw, dehazed, streams: list | None = None) -> dict[str, list[Detections]]:
        """arm -> detections per frame; ``streams``: the stream of each frame, for tracking (None: one)."""
        n = len(dehazed)
        arms: dict[str, list[Detections]] = {}
        views = raw is not None and self.compare
        frames = (torch.cat([raw, dehazed]) if isinstance(dehazed, torch.Tensor) else np.concatenate([raw, dehazed])) \
            if views else dehazed
        for detector, sfx in ((self.detector, ""), (self.detector_b, "_b")):
            if detector is None:
                continue
            found = detector(frames)
            if views:
                arms["raw" + sfx], arms["dehazed" + sfx] = found[:n], found[n:]
            else:
                arms["dehazed" + sfx] = found
        if self.fuse:
            for sfx in ("", "_b") if self.detector_b is not None else ("",):
                arms["fused" + sfx] = [fuse_views([r, d], self.fuse) for r, d in zip(arms["raw" + sfx],
                                                                                    arms["dehazed" + sfx])]
        if self.track:
            keys = streams or [None] * n
            arms = {arm: [self._tracker(keys[i], arm).update(d) for i, d in enumerate(dets)]
                    for arm, dets in arms.items()}
        return arms

    def _tracker(self, stream, arm: str) -> Tracker:
        key = (stream, arm)
        if key not in self.trackers:
            self.trackers[key] = Tracker(self.frame_rates.get(stream, self.frame_rate))
        return self.trackers[key]

    def unique_counts(self) -> dict[str, int]:
        """Unique track ids per arm, over all streams."""
        if not self.track:
            return {}
        out = dict.fromkeys(self.arms, 0)
        for (_, arm), tracker in self.trackers.items():
            out[arm] = out.get(arm, 0) + tracker.unique
        return out
