"""VOC average precision: all-point interpolation, IoU 0.5, 'difficult' boxes neither count nor penalise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detect.detections import box_iou


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


@dataclass
class Matched:
    """One class of one arm: detections sorted by score, each with its image's index and outcome."""
    image: np.ndarray      # (D,) int: index into the image list
    tp: np.ndarray         # (D,) float 1/0
    counted: np.ndarray    # (D,) float: 0 for a match to a 'difficult' box (neither true nor false)
    positives: np.ndarray  # (I,) non-difficult boxes per image


def match(detections: list[tuple[str, float, np.ndarray]], truth: dict[str, GroundTruth],
          images: list[str], iou_threshold: float = 0.5) -> Matched:
    """VOC greedy matching: highest score first, each box taken by one detection at most.

    Which detection is a true positive depends only on the detections of its own image, so the
    result serves every reweighting of the images (bootstrap.py) as well as the plain AP."""
    index = {name: i for i, name in enumerate(images)}
    positives = np.array([int((~truth[n].difficult).sum()) if n in truth else 0 for n in images], np.float64)
    order = np.argsort([-d[1] for d in detections], kind="stable")
    used = {k: np.zeros(len(g.boxes), bool) for k, g in truth.items()}
    img, tp, counted = np.zeros(len(order), np.int64), np.zeros(len(order)), np.ones(len(order))
    for rank, i in enumerate(order):
        name, _, box = detections[i]
        img[rank] = index[name]
        g = truth.get(name)
        if g is None or len(g.boxes) == 0:
            continue
        ious = box_iou(np.asarray(box, np.float64)[None], g.boxes)[0]
        j = int(np.argmax(ious))
        if ious[j] >= iou_threshold:
            if g.difficult[j]:
                counted[rank] = 0
            elif not used[name][j]:
                used[name][j] = True
                tp[rank] = 1
    return Matched(img, tp, counted, positives)


def weighted_ap(m: Matched, weights: np.ndarray) -> float:
    """AP with each image counted ``weights[i]`` times (NaN when the weighted set has no positives)."""
    positives = float(weights @ m.positives)
    if positives == 0:
        return float("nan")
    w = weights[m.image] * m.counted
    keep = w > 0
    if not keep.any():
        return 0.0
    ctp = np.cumsum((w * m.tp)[keep])
    cfp = np.cumsum((w * (1 - m.tp))[keep])
    return voc_ap(ctp / positives, ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps))


def average_precision(detections: list[tuple[str, float, np.ndarray]], truth: dict[str, GroundTruth],
                      iou_threshold: float = 0.5) -> APResult:
    """``detections``: (image id, score, xyxy) for one class over all images; ``truth``: per image."""
    images = list(dict.fromkeys([*truth, *(d[0] for d in detections)]))
    m = match(detections, truth, images, iou_threshold)
    positives = int(m.positives.sum())
    return APResult(weighted_ap(m, np.ones(len(images))), positives, len(detections), int(m.tp.sum()))
