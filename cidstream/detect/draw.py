"""Boxes and counts drawn on frames, for the side-by-side video and report thumbnails."""
from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections

PALETTE = [(255, 99, 71), (65, 105, 225), (50, 205, 50), (255, 215, 0), (186, 85, 211), (0, 206, 209)]


FONT = cv2.FONT_HERSHEY_SIMPLEX


def _style(w: int, h: int) -> tuple[float, int, int]:
    """(scale, line thickness, title bar height) for a frame size."""
    scale = max(0.35, min(w, h) / 900)
    return scale, max(1, round(scale * 2)), max(14, int(30 * scale))


def _label_text(det: Detections, i: int, names: dict[int, str]) -> str:
    cid = int(det.class_id[i])
    label = f"{names.get(cid, cid)} {det.confidence[i]:.2f}"
    if det.tracker_id is not None and det.tracker_id[i] >= 0:
        label = f"#{det.tracker_id[i]} " + label
    return label


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(det: Detections, names: dict[int, str], width: int, height: int) -> list:
    """Where each box's label goes: per detection (text, (x, y) text origin, (x1, y1, x2, y2) rectangle)
    or None when there is no free spot. Labels never overlap each other or the title bar: the most
    confident detections are placed first, each above its box, else inside it at the top, below it,
    inside at the bottom, or further down inside; a label that fits nowhere is left out (its box stays)."""
    scale, thick, bar = _style(width, height)
    taken = [(0, 0, width, bar)]  # the title bar
    out: list = [None] * len(det)
    for i in np.argsort(-det.confidence, kind="stable"):
        text = _label_text(det, int(i), names)
        (tw, th), base = cv2.getTextSize(text, FONT, 0.8 * scale, thick)
        x1, y1, x2, y2 = (int(round(v)) for v in det.xyxy[i])
        step = th + base + 2
        tops = [y1 - 3 - th, y1 + 2, y2 + 2, y2 - 2 - th - base] + [y1 + 2 + k * step for k in range(1, 8)]
        for k, top in enumerate(tops):
            if k >= 4 and top + th + base > y2:  # the further-down spots stay inside the box
                break
            x = min(max(0, x1 + (2 if k in (1, 3) or k >= 4 else 0)), max(0, width - tw))
            rect = (x, top, x + tw, top + th + base)
            if top < 0 or rect[3] > height or any(_overlaps(rect, t) for t in taken):
                continue
            taken.append(rect)
            out[int(i)] = (text, (x, top + th), rect)
            break
    return out


def draw_detections(image: np.ndarray, det: Detections | None, names: dict[int, str], title: str) -> np.ndarray:
    """RGB uint8 copy with boxes, labels (never printed over each other) and a title bar ('title: N')."""
    out = image.copy()
    h, w = out.shape[:2]
    scale, thick, bar = _style(w, h)
    det = det if det is not None else Detections.empty()
    for i in range(len(det)):
        x1, y1, x2, y2 = (int(round(v)) for v in det.xyxy[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), PALETTE[int(det.class_id[i]) % len(PALETTE)], thick)
    for i, placed in enumerate(place_labels(det, names, w, h)):
        if placed is not None:
            text, org, rect = placed
            cv2.rectangle(out, rect[:2], (rect[2] - 1, rect[3] - 1), (0, 0, 0), -1)  # readable over box lines
            cv2.putText(out, text, org, FONT, 0.8 * scale, PALETTE[int(det.class_id[i]) % len(PALETTE)], thick,
                        cv2.LINE_AA)
    cv2.rectangle(out, (0, 0), (w, bar), (0, 0, 0), -1)
    cv2.putText(out, f"{title}: {len(det)}", (6, bar - max(3, bar // 4)), FONT, 1.0 * scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return out


def side_by_side(raw: np.ndarray, dehazed: np.ndarray, raw_det, det, names: dict[int, str],
                 suffix: str = "") -> np.ndarray:
    return np.concatenate([draw_detections(raw, raw_det, names, "raw" + suffix),
                           draw_detections(dehazed, det, names, "dehazed" + suffix)], axis=1)
