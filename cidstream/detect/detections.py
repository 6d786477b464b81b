"""Detections as arrays (not dicts of lists): boxes, confidences, classes, optional track ids."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    xyxy: np.ndarray                      # (N, 4) float32, pixels of the original frame
    confidence: np.ndarray                # (N,) float32
    class_id: np.ndarray                  # (N,) int32, the detector's class ids
    tracker_id: np.ndarray | None = None  # (N,) int64 when tracking

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index) -> "Detections":
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index],
                          None if self.tracker_id is None else self.tracker_id[index])

    def to_records(self, names: dict[int, str]) -> list[dict]:
        """JSON-ready boxes: {"box": [x1, y1, x2, y2], "class": name, "class_id", "confidence"[, "track_id"]}."""
        out = []
        for i in range(len(self)):
            rec = {"box": [round(float(v), 2) for v in self.xyxy[i]], "class": names[int(self.class_id[i])],
                   "class_id": int(self.class_id[i]), "confidence": round(float(self.confidence[i]), 4)}
            if self.tracker_id is not None:
                rec["track_id"] = int(self.tracker_id[i])
            out.append(rec)
        return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)
