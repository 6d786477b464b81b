"""Unique-vehicle counting with Ultralytics' ByteTrack on our own detections (needs the `lap` package)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .detections import Detections

# Ultralytics' bytetrack.yaml defaults (track_buffer is set per stream from its frame rate).
BYTETRACK = dict(tracker_type="bytetrack", track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25,
                 track_buffer=30, match_thresh=0.8, fuse_score=True)


class _TrackInput:
    """The results-like view BYTETracker.update expects: conf, cls, xywh and boolean indexing."""

    def __init__(self, det: Detections):
        self.det = det
        xyxy = det.xyxy
        self.conf = det.confidence
        self.cls = det.class_id.astype(np.float32)
        self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)

    def __len__(self):
        return len(self.conf)

    def __getitem__(self, index):
        return _TrackInput(self.det[index])


class Tracker:
    """One ByteTrack state per stream; assigns ``tracker_id`` to detections frame by frame."""

    def __init__(self, frame_rate: float = 30.0):
        try:
            from ultralytics.trackers.byte_tracker import BYTETracker
            import lap  # noqa: F401  (ByteTrack's matching needs it; fail here, not mid-run)
        except ImportError as exc:
            from ..errors import CidstreamError
            raise CidstreamError("--track needs the 'lap' package: pip install lap") from exc
        # Lost tracks are kept for one second of video, whatever the frame rate.
        args = dict(BYTETRACK, track_buffer=max(1, round(frame_rate)))
        self.tracker = BYTETracker(SimpleNamespace(**args))
        self.ids: set[int] = set()

    def update(self, det: Detections) -> Detections:
        out = self.tracker.update(_TrackInput(det))
        track_ids = np.full(len(det), -1, np.int64)
        if len(out):
            idx = out[:, 7].astype(int)
            track_ids[idx] = out[:, 4].astype(np.int64)
        self.ids.update(int(t) for t in track_ids if t >= 0)
        return Detections(det.xyxy, det.confidence, det.class_id, track_ids)

    @property
    def unique(self) -> int:
        return len(self.ids)
