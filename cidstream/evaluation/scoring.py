"""eval's numbers: each arm's AP50 per class and class-agnostic, with bootstrap intervals of each AP and of
the differences between arms, from the detections every arm found and the labelled boxes."""
from __future__ import annotations

import math

import numpy as np

from ..detect.arms import B_SUFFIX
from ..detect.detections import Detections
from ..errors import InputError
from .ap import GroundTruth, average_precision, match
from .bootstrap import bootstrap
from .labels import Box

VEHICLE = "vehicle"  # the class-agnostic pseudo-class over all evaluated classes


class ArmDetections:
    """Each arm's detections over all images, per class name and under VEHICLE, in the form AP reads:
    (image id, confidence, box). Kept in image order, so the AP does not depend on how images were batched."""

    def __init__(self, arms: list[str], classes: list[str]):
        self.by_arm = {arm: {c: [] for c in classes + [VEHICLE]} for arm in arms}

    def add(self, arm: str, image_id: str, det: Detections, names: dict[int, str]) -> None:
        found = self.by_arm[arm]
        for i in range(len(det)):
            item = (image_id, float(det.confidence[i]), det.xyxy[i])
            found.setdefault(names[int(det.class_id[i])], []).append(item)
            found[VEHICLE].append(item)


def _truth(gt: dict[str, list[Box]], classes: list[str]) -> dict[str, dict[str, GroundTruth]]:
    """class (and VEHICLE) -> image id -> its labelled boxes of that class."""
    truth = {c: {} for c in classes + [VEHICLE]}
    for image_id, boxes in gt.items():
        for cls in truth:
            sel = [b for b in boxes if (b.name in classes if cls == VEHICLE else b.name == cls)]
            truth[cls][image_id] = GroundTruth(np.array([b.xyxy for b in sel], np.float64).reshape(-1, 4),
                                               np.array([b.difficult for b in sel], bool))
    return truth


def compared_pairs(arms: list[str]) -> list[tuple[str, str]]:
    """The differences worth an interval once a second detector or fusion multiplies the arms: each
    arm against raw, each detector-B arm against raw [B], and each view across the two detectors."""
    out = [(arms[0], a) for a in arms[1:]]
    b_arms = [a for a in arms if a.endswith(B_SUFFIX)]
    if b_arms:
        out += [(b_arms[0], a) for a in b_arms[1:]]
        out += [(a.removesuffix(B_SUFFIX), a) for a in b_arms[1:]]
    return list(dict.fromkeys(out))


def score(found: ArmDetections, gt: dict[str, list[Box]], classes: list[str], resamples: int,
          pairs: list[tuple[str, str]] | None) -> tuple[dict, dict | None]:
    """(per arm: mAP50, vehicle AP50, per class AP50 and counts, with 95 % intervals when ``resamples`` > 0;
    the bootstrap's settings and the differences of ``pairs`` of arms (None: every pair), or None).
    Refused when the labels hold nothing to find: every AP would be undefined."""
    truth = _truth(gt, classes)
    if sum(int((~g.difficult).sum()) for g in truth[VEHICLE].values()) == 0:
        raise InputError(f"the labels hold no boxes of the evaluated classes ({', '.join(classes)}): nothing to "
                         "evaluate (check --classes, --label-format and --yolo-id-offset: DAWN's labels_yolo "
                         "need --yolo-id-offset 1)")
    results = {}
    for arm, by_class in found.by_arm.items():
        per_class = {}
        for cls in classes + [VEHICLE]:
            r = average_precision(by_class.get(cls, []), truth[cls])
            per_class[cls] = {"ap50": None if math.isnan(r.ap) else round(r.ap, 4), "positives": r.positives,
                              "detections": r.detections, "true_positives": r.true_positives}
        valid = [per_class[c]["ap50"] for c in classes if per_class[c]["positives"] > 0]
        results[arm] = {"map50": round(float(np.mean(valid)), 4) if valid else None,
                        "vehicle_ap50": per_class[VEHICLE]["ap50"], "per_class": per_class}
    if resamples <= 0:
        return results, None
    names = list(gt)
    matched = {arm: {c: match(by_class.get(c, []), truth[c], names) for c in classes + [VEHICLE]}
               for arm, by_class in found.by_arm.items()}
    intervals = bootstrap(matched, classes, VEHICLE, len(names), resamples, pairs=pairs)
    for arm, r in results.items():
        r["vehicle_ap50_ci"] = intervals["arms"][arm]["vehicle_ap50"]
        r["map50_ci"] = intervals["arms"][arm]["map50"]
    for row in intervals["differences"]:
        for key in ("vehicle_ap50", "map50"):
            a, b = results[row["a"]][key], results[row["b"]][key]
            row[f"{key}_difference"] = None if a is None or b is None else round(a - b, 4)
    return results, {k: intervals[k] for k in ("resamples", "seed", "level", "differences")}
