"""The names a frame's detections are reported under (its arms), in one place: they are the columns and file
names of every output (detections.jsonl, the COCO and MOT files, report.json, batch_report.json, eval.json)
and must not drift apart. A StrEnum, so each is written as the plain string it stands for."""
from __future__ import annotations

from enum import StrEnum


class Arm(StrEnum):
    """The arms of a detection stage (detect/stage.py)."""

    RAW = "raw"                    # the base detector on the raw frames (compare mode)
    DEHAZED = "dehazed"            # the output: the base detector on the dehazed frames, or the per-frame choice
    RAW_B = "raw_b"                # the second detector (--detector-b) on the raw frames
    DEHAZED_B = "dehazed_b"        # the second detector on the dehazed frames
    FUSED = "fused"                # raw and dehazed detections merged (--fuse)
    FUSED_B = "fused_b"            # the same, of the second detector
    DEHAZED_BASE = "dehazed_base"  # with a fog detector, the base detector on every dehazed frame (eval only)


B_SUFFIX = " [B]"  # ends a name people read of the second detector's arm: eval's arms, report labels, drawn titles


def b_tagged(name: str) -> str:
    """``name`` as the second detector's: 'raw [B]'."""
    return f"{name}{B_SUFFIX}"


def fused_arm(view: str, method: str) -> str:
    """eval's arm of the raw image's and ``view``'s detections merged by ``method``: 'raw+dcp wbf'."""
    return f"{Arm.RAW}+{view} {method}"


def per_frame_arm(view: str) -> str:
    """eval's arm of the per-frame detector choice (--fog-detector) on ``view``'s images: 'dcp per-frame'."""
    return f"{view} per-frame"
