"""The detection stage of the pipeline: dehazed frames, and raw ones too in compare mode."""
from __future__ import annotations

import numpy as np
import torch

from .detections import Detections
from .detector import Detector
from .tracking import Tracker


class DetectStage:
    """One detector call per batch (raw and dehazed frames together in compare mode), then
    tracking frame by frame when asked. Frames may be numpy arrays or device tensors."""

    def __init__(self, detector: Detector, compare: bool = False, track: bool = False, frame_rate: float = 30.0):
        self.detector, self.compare, self.track = detector, compare, track
        self.trackers = {"dehazed": Tracker(frame_rate), "raw": Tracker(frame_rate)} if track else {}

    def __call__(self, raw, dehazed) -> tuple[list[Detections], list[Detections] | None]:
        n = len(dehazed)
        if self.compare:
            both = torch.cat([raw, dehazed]) if isinstance(dehazed, torch.Tensor) else np.concatenate([raw, dehazed])
            found = self.detector(both)
            raw_dets, dets = found[:n], found[n:]
        else:
            raw_dets, dets = None, self.detector(dehazed)
        if self.track:
            dets = [self.trackers["dehazed"].update(d) for d in dets]
            if raw_dets is not None:
                raw_dets = [self.trackers["raw"].update(d) for d in raw_dets]
        return dets, raw_dets

    def unique_counts(self) -> dict[str, int]:
        keys = ("raw", "dehazed") if self.compare else ("dehazed",)
        return {k: self.trackers[k].unique for k in keys} if self.track else {}
