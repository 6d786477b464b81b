"""Boxes and counts drawn on frames, for the side-by-side video and report thumbnails."""
from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections

PALETTE = [(255, 99, 71), (65, 105, 225), (50, 205, 50), (255, 215, 0), (186, 85, 211), (0, 206, 209)]


def draw_detections(image: np.ndarray, det: Detections | None, names: dict[int, str], title: str) -> np.ndarray:
    """RGB uint8 copy with boxes, labels and a title bar ('title: N')."""
    out = image.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(w, h) / 900)
    thick = max(1, round(scale * 2))
    det = det if det is not None else Detections.empty()
    for i in range(len(det)):
        x1, y1, x2, y2 = (int(round(v)) for v in det.xyxy[i])
        cid = int(det.class_id[i])
        color = PALETTE[cid % len(PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        label = f"{names.get(cid, cid)} {det.confidence[i]:.2f}"
        if det.tracker_id is not None and det.tracker_id[i] >= 0:
            label = f"#{det.tracker_id[i]} " + label
        cv2.putText(out, label, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, color, thick,
                    cv2.LINE_AA)
    bar = max(14, int(30 * scale))
    cv2.rectangle(out, (0, 0), (w, bar), (0, 0, 0), -1)
    cv2.putText(out, f"{title}: {len(det)}", (6, bar - max(3, bar // 4)), cv2.FONT_HERSHEY_SIMPLEX, 1.0 * scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return out


def side_by_side(raw: np.ndarray, dehazed: np.ndarray, raw_det, det, names: dict[int, str]) -> np.ndarray:
    return np.concatenate([draw_detections(raw, raw_det, names, "raw"),
                           draw_detections(dehazed, det, names, "dehazed")], axis=1)
