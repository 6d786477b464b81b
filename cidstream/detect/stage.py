"""The detection stage of the pipeline: dehazed frames, and raw ones too in compare mode; with a
second detector and fusion, the extra arms of a comparison."""
from __future__ import annotations

import numpy as np
import torch

from .detections import Detections
from .detector import Detector
from .fusion import fuse as fuse_views
from .tracking import Tracker


def arm_names(detector_b: bool, fuse: str | None) -> tuple[str, ...]:
    """The extra arms of a comparison, beyond raw and dehazed: raw_b and dehazed_b through the second
    detector, fused (raw and dehazed detections merged) per detector."""
    return (("raw_b", "dehazed_b") if detector_b else ()) + (("fused",) if fuse else ()) \
        + (("fused_b",) if fuse and detector_b else ())


class DetectStage:
    """One detector call per batch (raw and dehazed frames together in compare mode), then
    tracking frame by frame when asked. Frames may be numpy arrays or device tensors.

    In compare mode, ``detector_b`` adds the arms raw_b and dehazed_b (one call of the second detector
    on the same frames) and ``fuse`` ('wbf' or 'nms') the arms fused (and fused_b)."""

    def __init__(self, detector: Detector, compare: bool = False, track: bool = False, frame_rate: float = 30.0,
                 detector_b: Detector | None = None, fuse: str | None = None):
        self.detector, self.compare, self.track = detector, compare, track
        self.detector_b, self.fuse = (detector_b, fuse) if compare else (None, None)
        self.extra = arm_names(self.detector_b is not None, self.fuse)
        keys = ("raw", "dehazed") + self.extra if compare else ("dehazed",)
        self.trackers = {k: Tracker(frame_rate) for k in keys} if track else {}

    def __call__(self, raw, dehazed) -> tuple[list[Detections], list[Detections] | None, dict]:
        """(detections on the dehazed frames, on the raw frames or None, extra arm -> detections)."""
        n = len(dehazed)
        extra: dict[str, list[Detections]] = {}
        if self.compare:
            both = torch.cat([raw, dehazed]) if isinstance(dehazed, torch.Tensor) else np.concatenate([raw, dehazed])
            found = self.detector(both)
            raw_dets, dets = found[:n], found[n:]
            if self.detector_b is not None:
                found_b = self.detector_b(both)
                extra["raw_b"], extra["dehazed_b"] = found_b[:n], found_b[n:]
            if self.fuse:
                extra["fused"] = [fuse_views([r, d], self.fuse) for r, d in zip(raw_dets, dets)]
                if self.detector_b is not None:
                    extra["fused_b"] = [fuse_views([r, d], self.fuse)
                                        for r, d in zip(extra["raw_b"], extra["dehazed_b"])]
        else:
            raw_dets, dets = None, self.detector(dehazed)
        if self.track:
            dets = [self.trackers["dehazed"].update(d) for d in dets]
            if raw_dets is not None:
                raw_dets = [self.trackers["raw"].update(d) for d in raw_dets]
            extra = {k: [self.trackers[k].update(d) for d in v] for k, v in extra.items()}
        return dets, raw_dets, extra

    def unique_counts(self) -> dict[str, int]:
        return {k: t.unique for k, t in self.trackers.items()}
