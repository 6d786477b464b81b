"""VOC average precision: all-point interpolation, IoU 0.5, 'difficult' boxes neither count nor penalise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detections import box_iou


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC2010+ all-point interpolation)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


@dataclass
class GroundTruth:
    boxes: np.ndarray       # (M, 4) xyxy
    difficult: np.ndarray   # (M,) bool


@dataclass
class APResult:
    ap: float
    positives: int          # non-difficult ground-truth boxes
    detections: int
    true_positives: int


def average_precision(detections: list[tuple[str, float, np.ndarray]], truth: dict[str, GroundTruth],
                      iou_threshold: float = 0.5) -> APResult:
    """``detections``: (image id, score, xyxy) for one class over all images; ``truth``: per image."""
    positives = int(sum((~g.difficult).sum() for g in truth.values()))
    if not detections:
        return APResult(0.0 if positives else float("nan"), positives, 0, 0)
    order = np.argsort([-d[1] for d in detections], kind="stable")
    used = {k: np.zeros(len(g.boxes), bool) for k, g in truth.items()}
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, i in enumerate(order):
        image, _, box = detections[i]
        g = truth.get(image)
        if g is None or len(g.boxes) == 0:
            fp[rank] = 1
            continue
        ious = box_iou(np.asarray(box, np.float64)[None], g.boxes)[0]
        j = int(np.argmax(ious))
        if ious[j] >= iou_threshold:
            if g.difficult[j]:
                continue  # neither true nor false positive
            if not used[image][j]:
                used[image][j] = True
                tp[rank] = 1
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    if positives == 0:
        return APResult(float("nan"), 0, len(detections), int(ctp[-1]))
    recall = ctp / positives
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return APResult(voc_ap(recall, precision), positives, len(detections), int(ctp[-1]))
