"""One detector's detections on several views of a frame (raw, dehazed) merged into one set.

Each view finds vehicles the other misses; merging recalls more than either. ``nms`` keeps the most
confident box of each overlapping group (class-aware, at the detector's own NMS IoU, so two views
that agree give back what one gave). ``wbf`` (weighted box fusion) groups boxes of the same class
across views, at most one box per view in a group (boxes of one view are already distinct objects
after the detector's NMS), averages each group's boxes weighted by confidence, and scales the group's
mean confidence by the share of views that found it, so a box both views agree on outranks one seen
by a single view. Identical views fuse to the same boxes.
"""
from __future__ import annotations

import numpy as np
import torch

from .detections import Detections, box_iou

METHODS = ("wbf", "nms")
FUSE_IOU = {"wbf": 0.55, "nms": 0.7}


def _concat(views: list[Detections]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xyxy = np.concatenate([v.xyxy for v in views]).reshape(-1, 4).astype(np.float32)
    conf = np.concatenate([v.confidence for v in views]).astype(np.float32)
    cls = np.concatenate([v.class_id for v in views]).astype(np.int32)
    view = np.concatenate([np.full(len(v), k) for k, v in enumerate(views)]).astype(np.int32)
    return xyxy, conf, cls, view


def nms_fuse(views: list[Detections], iou: float = FUSE_IOU["nms"]) -> Detections:
    import torchvision  # 3 s to import: only when NMS fusion runs (the detector has imported it by then)

    xyxy, conf, cls, _ = _concat(views)
    if len(conf) == 0:
        return Detections.empty()
    keep = torchvision.ops.batched_nms(torch.from_numpy(xyxy), torch.from_numpy(conf), torch.from_numpy(cls).long(),
                                       iou).numpy()
    return Detections(xyxy[keep], conf[keep], cls[keep])


def wbf_fuse(views: list[Detections], iou: float = FUSE_IOU["wbf"]) -> Detections:
    xyxy, conf, cls, view = _concat(views)
    if len(conf) == 0:
        return Detections.empty()
    n_views = len(views)
    boxes, scores, classes = [], [], []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        idx = idx[np.argsort(-conf[idx], kind="stable")]
        fused: list[np.ndarray] = []           # running fused box per group
        members: list[list[int]] = []
        for i in idx:
            if fused:
                ious = box_iou(xyxy[i:i + 1], np.stack(fused))[0]
                ious[[view[i] in view[m] for m in members]] = -1  # one box per view in a group
                j = int(ious.argmax())
                if ious[j] > iou:
                    members[j].append(i)
                    w = conf[members[j]]
                    fused[j] = (xyxy[members[j]] * w[:, None]).sum(0) / w.sum()
                    continue
            fused.append(xyxy[i].copy())
            members.append([i])
        for box, m in zip(fused, members):
            seen = len(set(view[m].tolist()))
            boxes.append(box)
            scores.append(float(conf[m].mean()) * min(seen, n_views) / n_views)
            classes.append(int(c))
    order = np.argsort(-np.asarray(scores), kind="stable")
    return Detections(np.asarray(boxes, np.float32)[order], np.asarray(scores, np.float32)[order],
                      np.asarray(classes, np.int32)[order])


def fuse(views: list[Detections], method: str = "wbf", iou: float | None = None) -> Detections:
    if method not in METHODS:
        raise ValueError(f"unknown fusion {method!r}: use {' or '.join(METHODS)}")
    iou = FUSE_IOU[method] if iou is None else iou
    return wbf_fuse(views, iou) if method == "wbf" else nms_fuse(views, iou)
