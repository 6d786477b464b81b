"""Detection AP50 on labelled images, raw vs dehazed by each model, same detector and settings: ``run_eval``
ties the run (running.py), the scores (scoring.py) and the example images (examples.py) into one report,
which render.py writes."""
from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from pathlib import Path

from .. import __version__
from ..detect.arms import B_SUFFIX, Arm, fused_arm, per_frame_arm
from ..detect.detectors import Detectors
from ..detect.fusion import METHODS
from ..detect.fusion import fuse as fuse_views
from ..errors import ConfigError, InputError
from ..io.sources import list_images
from . import label_offset
from .examples import ExampleImages
from .labels import Box, LabelNotes, detect_format, match_labels, read_labels
from .render import difference_rows, fmt_interval, write_eval
from .running import detect_views
from .scoring import VEHICLE, ArmDetections, compared_pairs, score
from .splits import in_split

__all__ = ["VEHICLE", "difference_rows", "fmt_interval", "run_eval", "write_eval"]  # what the CLI takes from here


def _warn(warnings: list[str], text: str) -> None:
    warnings.append(text)
    print(f"warning: {text}", file=sys.stderr)


def _labelled_images(images_spec: str, labels_dir: str, label_format: str, split: str | None,
                     max_images: int | None) -> tuple[list[Path], Path, str, dict[Path, Path]]:
    """(images, labels folder, label format, image -> its label file): the images to evaluate, refused
    with the reason when there are none or the labels are not a folder."""
    images = list_images(images_spec)
    if split not in (None, "all"):
        images = in_split(images, split)
        if not images:
            raise InputError(f"no images of {images_spec} fall into the {split} half")
    if max_images:
        images = images[:max_images]
    labels = Path(labels_dir)
    if not labels.is_dir():
        if labels.exists():
            raise InputError(f"--labels needs a folder of label files (VOC .xml or YOLO .txt, named like the "
                             f"images); {labels_dir} is a file, not a folder")
        raise InputError(f"labels folder not found: {labels_dir}")
    fmt = detect_format(labels) if label_format == "auto" else label_format
    return images, labels, fmt, match_labels(images, labels, fmt)


def run_eval(images_spec: str, labels_dir: str, dehazers: dict, detectors, label_format: str = "auto",
             yolo_id_offset: int | None = 0, max_images: int | None = None, examples: int = 4, progress=None,
             output_dir: str | Path | None = None, split: str | None = None, resamples: int = 1000,
             batch: int = 1) -> dict:
    """``dehazers``: name -> Dehazer; ``detectors``: a Detector, or Detectors (detect/detectors.py). Returns
    the JSON-ready result (example images base64 under 'examples').

    Arms: the raw images and each model's output, through the base detector; with a second detector the
    same views through it too (arm names end in " [B]"); with ``fuse`` ('wbf' or 'nms') also, per model and
    detector, the raw and dehazed detections merged (arm "raw+MODEL wbf"); with a fog detector, per model,
    the detection ``run`` gives (arm "MODEL per-frame"): the fog detector on its view of the images that
    model's gate dehazed, the base detector on the raw image elsewhere.

    ``output_dir``: where write_eval will write; checked for writability before any detection work.
    ``yolo_id_offset``: YOLO label id = detector class id + this; when the labels clearly say otherwise
    (see label_offset.py) the offset they show is used and the report's ``warnings`` say so
    (None: no offset given, 0 unless the labels show one).
    ``split``: evaluate only the 'select' or 'report' half of the images (cidstream.evaluation.splits).
    ``resamples``: bootstrap resamples for the 95 % intervals (0: none).
    ``batch``: images dehazed and detected together (engine.batch), as ``run`` does it: uint8 tensors on the
    dehazer's device, detected there; only images of one size share a batch (others go in smaller ones).
    The detections, and so the AP, do not depend on it beyond float noise.
    ``examples``: images drawn for the page, from the frames and detections of the same run."""
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    if max_images is not None and max_images < 1:
        raise ConfigError(f"--max-images must be at least 1, got {max_images}")
    if output_dir is not None:
        from ..io.atomic import check_writable_folder

        check_writable_folder(output_dir, "eval output folder")
    given_offset = 0 if yolo_id_offset is None else int(yolo_id_offset)
    images, labels, fmt, pairs = _labelled_images(images_spec, labels_dir, label_format, split, max_images)
    detectors = detectors if isinstance(detectors, Detectors) else Detectors(detectors)
    detector, detector_b, fuse = detectors.base, detectors.second, detectors.fuse
    classes = [detector.names[i] for i in (detector.class_ids or sorted(detector.names))]
    if fuse is not None and fuse not in METHODS:
        raise ConfigError(f"--fuse must be one of {', '.join(METHODS)}, got {fuse!r}")
    if fuse and not dehazers:
        raise ConfigError("--fuse merges raw and dehazed detections: it needs at least one --model")
    detectors_by = {"": detector, **({B_SUFFIX: detector_b} if detector_b is not None else {})}
    if detector_b is not None:
        missing = set(classes) - set(detector_b.names.values())
        if missing:
            raise ConfigError(f"--detector-b {detector_b.label} has no class {', '.join(sorted(missing))}: both "
                              "detectors must know the evaluated classes")
    views = [Arm.RAW] + list(dehazers)
    fused = [fused_arm(m, fuse) for m in dehazers] if fuse else []
    per_frame = [per_frame_arm(m) for m in dehazers] if detectors.fog is not None else []  # same classes: Detectors
    variants = [v + sfx for sfx in detectors_by for v in views + fused] + per_frame
    gt: dict[str, list[Box]] = {}
    notes = LabelNotes()  # boxes clipped or left out, unknown names: told once below
    votes: Counter = Counter()
    found = ArmDetections(variants, classes)
    sizes: dict[Path, tuple[int, int]] = {}
    chosen = ExampleImages(examples, views, detectors_by, per_frame=bool(per_frame))
    detected = detect_views(images, batch, sizes, dehazers, detectors, progress, chosen)
    for k, img_path in enumerate(images):  # in image order, as one image at a time would have recorded them
        h, w = sizes[img_path]
        boxes = read_labels(pairs[img_path], fmt, w, h, detector.names, given_offset, notes)
        image_id = img_path.name
        gt[image_id] = boxes
        per_detector = detected.pop(k)
        for sfx, dt_model in detectors_by.items():
            dets = per_detector[sfx]
            if sfx == "" and fmt == "yolo":
                label_offset.vote(votes, boxes, dets[Arm.RAW])
            for m, name in zip(dehazers, fused):
                dets[name] = fuse_views([dets[Arm.RAW], dets[m]], fuse)
            for v, det in dets.items():
                found.add(v + sfx, image_id, det, dt_model.names)
    warnings: list[str] = []
    for note in notes.warnings(detector.names.values()):
        _warn(warnings, note)
    offset = given_offset
    if fmt == "yolo":
        offset, note = label_offset.settle(votes, gt, detector.names, classes, given_offset)
        if note:
            _warn(warnings, note)
    results, bootstrap_info = score(found, gt, classes, resamples,
                                    compared_pairs(variants) if detector_b is not None or fuse else None)
    report = {"cidstream_version": __version__, "created": dt.datetime.now().isoformat(timespec="seconds"),
              "images": len(images), "images_source": images_spec, "split": split or "all",
              "bootstrap": bootstrap_info, "labels": str(labels), "label_format": fmt,
              "detector": detector.label, "detector_b": detector_b.label if detector_b is not None else None,
              "fuse": fuse, "fog_detector": detectors.fog.label if detectors.fog is not None else None,
              "fog_view": detectors.fog_view if detectors.fog is not None else None, "classes": classes,
              "conf": detector.conf, "iou": detector.iou,
              "imgsz": detector.imgsz, "batch": batch, "iou_threshold": 0.5, "ap": "VOC all-point", "results": results,
              "models": {name: d.name for name, d in dehazers.items()}, "warnings": warnings}
    if fmt == "yolo":
        report["yolo_id_offset"] = {"given": yolo_id_offset, "used": offset,
                                    "votes": {str(d): n for d, n in votes.most_common(5)}}
    report["examples"] = chosen.drawn(gt)
    return report
