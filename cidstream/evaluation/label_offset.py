"""YOLO label ids checked against the detector's class ids: a label set written as detector id + 1 (DAWN's
labels_yolo) read with offset 0 scores cars as motorcycles, and AP near 0 would be mistaken for a result.

Label boxes that a confident raw detection overlaps (IoU >= 0.5, any class) vote for "label id - detector
id". With at least SHIFT_MIN_VOTES votes of which SHIFT_MIN_SHARE agree on one offset other than the given
--yolo-id-offset, that offset is used and a warning says so."""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..detect.detections import Detections, box_iou
from .labels import Box, yolo_name

SHIFT_MIN_VOTES, SHIFT_MIN_SHARE, SHIFT_CONF = 5, 0.7, 0.25


def vote(votes: Counter, boxes: list[Box], det: Detections) -> None:
    """Each label box with a confident detection on it (IoU >= 0.5, any class) votes for label id - class id."""
    keep = det.confidence >= SHIFT_CONF
    labelled = [b for b in boxes if b.label_id is not None]
    if not labelled or not keep.any():
        return
    ious = box_iou(np.array([b.xyxy for b in labelled], np.float64), det.xyxy[keep])
    ids = det.class_id[keep]
    for b, row in zip(labelled, ious):
        j = int(row.argmax())
        if row[j] >= 0.5:
            votes[b.label_id - int(ids[j])] += 1


def settle(votes: Counter, gt: dict[str, list[Box]], names: dict[int, str], classes: list[str],
           given: int) -> tuple[int, str | None]:
    """(offset to evaluate with, warning or None). When the votes show another offset, the boxes of ``gt``
    are renamed by it (the detections do not depend on the labels: only the truth changes)."""
    offset, note = _chosen(votes, given)
    if note is None:
        return given, _suspect(gt, names, classes, given)
    for boxes in gt.values():
        for b in boxes:
            b.name = yolo_name(b.label_id, names, offset)
    return offset, note


def _chosen(votes: Counter, given: int) -> tuple[int, str | None]:
    """(offset the votes show, warning or None when it is the given one or the votes are too few or split)."""
    total = sum(votes.values())
    if total < SHIFT_MIN_VOTES:
        return given, None
    shift, count = votes.most_common(1)[0]
    if shift == given or count / total < SHIFT_MIN_SHARE:
        return given, None
    return shift, (f"the YOLO label ids look like the detector's class ids + {shift} ({count} of the {total} label "
                   f"boxes that a confident detection overlaps have id = detector id + {shift}), not + {given}: "
                   f"evaluated with --yolo-id-offset {shift} (DAWN's labels_yolo need 1; pass the right "
                   f"--yolo-id-offset to silence this)")


def _suspect(gt: dict[str, list[Box]], names: dict[int, str], classes: list[str], offset: int) -> str | None:
    """Without enough detections to vote: do the label ids land on the evaluated classes more often one id
    further down (DAWN: 1 person, 3 car, 6 bus, 8 truck = COCO id + 1)?"""
    ids = [b.label_id for boxes in gt.values() for b in boxes if b.label_id is not None]
    if not ids:
        return None
    share = {k: sum(yolo_name(i, names, k) in classes for i in ids) / len(ids) for k in (offset, offset + 1)}
    if share[offset + 1] >= 0.5 and share[offset + 1] > 2 * share[offset]:
        return (f"only {share[offset]:.0%} of the label boxes fall into the evaluated classes with --yolo-id-offset "
                f"{offset}, {share[offset + 1]:.0%} with --yolo-id-offset {offset + 1}: the label ids may be the "
                f"detector's class ids + {offset + 1} (as in DAWN's labels_yolo); check --yolo-id-offset")
    return None
