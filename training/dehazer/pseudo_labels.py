"""Self-training through the detector on real fog, without human labels.

The frozen detector's confident detections on a real hazy frame and on the DCP teacher's output of
that frame are merged (NMS over the union): each view finds vehicles the other misses, so the union
recalls more than either. The dehazer is then trained so that the same detector, looking at the
dehazed frame, finds the union: Ultralytics' own detection loss, with gradients flowing only into
the dehazer. cid-lite outputs smooth per-pixel affine maps, so it can raise what the detector sees
only by changing contrast and tone, not by painting adversarial texture.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from cidstream.detect.detections import Detections
from cidstream.detect.fusion import nms_fuse


def merge_detections(views: list[tuple[np.ndarray, np.ndarray, np.ndarray]], conf: float,
                     iou: float) -> np.ndarray:
    """Union of several views' detections (xyxy, confidence, class) above ``conf``, duplicates
    removed by class-aware NMS at ``iou`` (the runtime's ``fuse --nms``). Returns (K, 5) rows of
    class, x1, y1, x2, y2."""
    dets = [Detections(np.asarray(x, np.float32).reshape(-1, 4), np.asarray(s, np.float32), np.asarray(c, np.int32))
            for x, s, c in views]
    merged = nms_fuse([d[d.confidence >= conf] for d in dets], iou)
    return np.concatenate([merged.class_id[:, None].astype(np.float32), merged.xyxy], axis=1).reshape(-1, 5)


def crop_boxes(boxes: np.ndarray, top: int, left: int, size: int, keep_fraction: float = 0.5) -> np.ndarray:
    """Boxes (class, xyxy) of a frame moved into a size x size crop at (top, left); boxes with less
    than ``keep_fraction`` of their area inside are dropped."""
    if len(boxes) == 0:
        return boxes
    xy = boxes[:, 1:] - np.array([left, top, left, top], np.float32)
    clipped = xy.clip(0, size)
    area = (xy[:, 2] - xy[:, 0]) * (xy[:, 3] - xy[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (inside >= keep_fraction * np.maximum(area, 1e-6)) & (clipped[:, 2] - clipped[:, 0] >= 4) \
        & (clipped[:, 3] - clipped[:, 1] >= 4)
    return np.concatenate([boxes[keep, :1], clipped[keep]], axis=1)


class DetectionLoss(torch.nn.Module):
    """The Ultralytics detection loss (box, class, DFL) of a frozen detector, differentiable in the
    input image only. Default gains are Ultralytics' training defaults."""

    def __init__(self, weights: str, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5):
        super().__init__()
        from ultralytics.utils.loss import v8DetectionLoss

        from .detector_features import frozen_detector

        self.net = frozen_detector(weights, "pseudo-label term")
        self.net.args = SimpleNamespace(box=box, cls=cls, dfl=dfl)
        self.criterion = v8DetectionLoss(self.net)

    def train(self, mode: bool = True):  # always frozen, BatchNorm statistics included
        return super().train(False)

    def forward(self, images: torch.Tensor, boxes: list[np.ndarray]) -> torch.Tensor:
        """Mean loss per image; ``images`` (N, 3, H, W) in [0, 1] with H, W multiples of 32,
        ``boxes`` per image (K, 5) rows of class, x1, y1, x2, y2 in pixels."""
        n, _, h, w = images.shape
        rows = [np.asarray(b, np.float32).reshape(-1, 5) for b in boxes]
        t = torch.from_numpy(np.concatenate(rows)).to(images.device)
        xy = t[:, 1:]
        xywh = torch.stack(((xy[:, 0] + xy[:, 2]) / 2 / w, (xy[:, 1] + xy[:, 3]) / 2 / h,
                            (xy[:, 2] - xy[:, 0]) / w, (xy[:, 3] - xy[:, 1]) / h), 1)
        image_index = torch.cat([torch.full((len(r),), float(i)) for i, r in enumerate(rows)]).to(images.device)
        batch = {"batch_idx": image_index, "cls": t[:, 0], "bboxes": xywh}
        loss, _ = self.criterion(self.net(images.clamp(0, 1).float()), batch)
        return loss.sum() / n


def pseudo_labels(detector_weights: str, frames: list[np.ndarray], teachers: list[np.ndarray], conf: float,
                  iou: float, imgsz: int = 640) -> list[np.ndarray]:
    """Per frame, the merged detections of the frozen detector on the raw frame and on its teacher
    output (all classes the detector knows)."""
    from cidstream.detect.detector import Detector

    det = Detector(detector_weights, classes=None, conf=conf, imgsz=imgsz)
    out = []
    for raw, teacher in zip(frames, teachers):
        views = [(d.xyxy, d.confidence, d.class_id) for d in (det(raw[None])[0], det(teacher[None])[0])]
        out.append(merge_detections(views, conf, iou))
    return out
