"""eval's example images: the images where the first model changed the confident detection count most,
each view drawn side by side with the detections the scored run found on it. Chosen while the images pass,
so only the chosen ones' frames are kept: memory grows with the number of examples, not of images."""
from __future__ import annotations

import base64
import heapq
from dataclasses import dataclass

import cv2
import numpy as np

from ..detect.arms import Arm, per_frame_arm
from ..detect.detections import Detections
from ..detect.detector import Detector
from ..detect.draw import draw_detections
from ..frames import BatchResult
from .labels import Box

SHOWN_CONF = 0.25  # draw what a user would see, not the AP ranking tail the run keeps


def _confident_count(det: Detections) -> int:
    return int((det.confidence >= SHOWN_CONF).sum())


@dataclass(frozen=True)
class _Panel:
    """One drawn view: the frame of ``view`` with the detections of ``arm`` by the detector of ``suffix``."""

    view: str
    suffix: str
    arm: str


@dataclass
class _Example:
    name: str                                   # the image's file name
    frames: dict[str, np.ndarray]               # view -> the frame its pipeline made (raw: as read)
    detections: dict[_Panel, Detections]        # above the drawing threshold


class ExampleImages:
    """Keeps the ``count`` images with the largest change |confident detections of the first model - of
    raw| (base detector; ties: the earlier image), as sorting all images would pick them, in a heap of
    ``count``. Rows: one per detector over the views (raw, each model); with a fog detector one more, each
    model's per-frame choice under its column."""

    def __init__(self, count: int, views: list[str], detectors: dict[str, Detector], per_frame: bool):
        self.first = views[1] if len(views) > 1 else None
        self.count = count if self.first is not None else 0
        self.detectors = detectors
        self.rows = [[_Panel(v, suffix, v) for v in views] for suffix in detectors]
        if per_frame:
            self.rows.append([None if v == Arm.RAW else _Panel(v, "", per_frame_arm(v)) for v in views])
        self._heap: list[tuple[tuple[int, int], _Example]] = []  # min-heap on (change, -image index)

    def offer(self, results: dict[str, BatchResult], detected: dict) -> None:
        """One batch of images after every view: ``results``, view -> that view's BatchResult; ``detected``,
        image index -> detector suffix -> arm -> detections (running.detect_views)."""
        if self.count <= 0:
            return
        for i, frame in enumerate(results[Arm.RAW].batch.frames):
            found = detected[frame.index][""]
            rank = (abs(_confident_count(found[self.first]) - _confident_count(found[Arm.RAW])), -frame.index)
            if len(self._heap) == self.count and rank <= self._heap[0][0]:
                continue
            entry = (rank, self._example(frame.name, i, results, detected[frame.index]))
            (heapq.heappush if len(self._heap) < self.count else heapq.heapreplace)(self._heap, entry)

    def _example(self, name: str, i: int, results: dict[str, BatchResult], detected: dict) -> _Example:
        frames = {view: r.dehazed[i].copy() for view, r in results.items()}  # a copy: not the whole batch
        shown = {}
        for panel in (p for row in self.rows for p in row if p is not None):
            det = detected[panel.suffix][panel.arm]
            # the detector's own threshold test (Ultralytics keeps conf > threshold), at the drawing threshold
            shown[panel] = det[det.confidence > max(self.detectors[panel.suffix].conf, SHOWN_CONF)]
        return _Example(name, frames, shown)

    def drawn(self, gt: dict[str, list[Box]]) -> list[dict]:
        """{"image", "image_jpeg_base64"} per example, the largest change first; ``gt``: image name -> its
        labelled boxes, drawn in white on every panel."""
        return [{"image": ex.name, "image_jpeg_base64": _jpeg_base64(self._draw(ex, gt[ex.name]))}
                for _, ex in sorted(self._heap, key=lambda entry: entry[0], reverse=True)]

    def _draw(self, ex: _Example, boxes: list[Box]) -> np.ndarray:
        rows = []
        for row in self.rows:
            panels = []
            for panel in row:
                if panel is None:
                    panels.append(np.zeros_like(ex.frames[Arm.RAW]))
                    continue
                image = draw_detections(ex.frames[panel.view], ex.detections[panel],
                                        self.detectors[panel.suffix].names, panel.arm + panel.suffix)
                for b in boxes:
                    x1, y1, x2, y2 = (int(round(c)) for c in b.xyxy)
                    cv2.rectangle(image, (x1, y1), (x2, y2), (255, 255, 255), 1)
                panels.append(image)
            rows.append(np.concatenate(panels, axis=1))
        return np.concatenate(rows, axis=0)


def _jpeg_base64(image: np.ndarray) -> str:
    """At most 1500 pixels wide, JPEG quality 80: small enough to sit inside eval.html."""
    scale = min(1.0, 1500 / image.shape[1])
    image = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(buf.tobytes()).decode("ascii")
