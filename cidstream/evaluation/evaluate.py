"""Detection AP50 on labelled images, raw vs dehazed by each model, same detector and settings."""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..detect.arms import B_SUFFIX, Arm, fused_arm, per_frame_arm
from ..detect.detectors import Detectors
from ..detect.stage import DetectStage
from ..frames import BatchResult, Frame, FrameBatch
from ..pipeline import DehazeStage, Pipeline
from ..sinks.base import Sink
from ..errors import ConfigError, InputError, OutputError
from ..io.images import image_header, read_image
from ..io.sources import list_images
from .ap import GroundTruth, average_precision, match
from .bootstrap import bootstrap
from ..detect.detections import Detections, box_iou
from ..detect.draw import draw_detections
from ..detect.fusion import FUSE_IOU, METHODS
from ..detect.fusion import fuse as fuse_views
from .labels import Box, LabelNotes, detect_format, match_labels, read_labels, yolo_name
from .splits import in_split

VEHICLE = "vehicle"  # the class-agnostic pseudo-class over all evaluated classes
# YOLO label ids are checked against the detector: label boxes that a confident raw detection overlaps
# (IoU >= 0.5, any class) vote for "label id - detector id". With at least SHIFT_MIN_VOTES votes of which
# SHIFT_MIN_SHARE agree on one offset other than --yolo-id-offset, that offset is used and a warning says so.
SHIFT_MIN_VOTES, SHIFT_MIN_SHARE, SHIFT_CONF = 5, 0.7, 0.25


def _truth_for(boxes, classes) -> dict[str, GroundTruth]:
    out = {}
    for cls in list(classes) + [VEHICLE]:
        sel = [b for b in boxes if (b.name in classes if cls == VEHICLE else b.name == cls)]
        out[cls] = GroundTruth(np.array([b.xyxy for b in sel], np.float64).reshape(-1, 4),
                               np.array([b.difficult for b in sel], bool))
    return out


def _offset_votes(votes: Counter, boxes: list[Box], det: Detections) -> None:
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


def _choose_offset(votes: Counter, given: int) -> tuple[int, str | None]:
    """(offset to use, warning or None) from the votes of ``_offset_votes``."""
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


def _suspect_offset(gt: dict, names: dict[int, str], classes: list[str], offset: int) -> str | None:
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


def _warn(warnings: list[str], text: str) -> None:
    warnings.append(text)
    print(f"warning: {text}", file=sys.stderr)


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
    (see ``_choose_offset``) the offset they show is used and the report's ``warnings`` say so
    (None: no offset given, 0 unless the labels show one).
    ``split``: evaluate only the 'select' or 'report' half of the images (cidstream.evaluation.splits).
    ``resamples``: bootstrap resamples for the 95 % intervals (0: none).
    ``batch``: images dehazed and detected together (engine.batch), as ``run`` does it: uint8 tensors on the
    dehazer's device, detected there; only images of one size share a batch (others go in smaller ones).
    The detections, and so the AP, do not depend on it beyond float noise."""
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    if max_images is not None and max_images < 1:
        raise ConfigError(f"--max-images must be at least 1, got {max_images}")
    if output_dir is not None:
        from ..io.atomic import check_writable_folder

        check_writable_folder(output_dir, "eval output folder")
    given_offset = 0 if yolo_id_offset is None else int(yolo_id_offset)
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
    pairs = match_labels(images, labels, fmt)
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
    found = {v: {c: [] for c in classes + [VEHICLE]} for v in variants}
    shown = {v: {} for v in variants}  # image -> confident detections count, to pick examples
    sizes: dict[Path, tuple[int, int]] = {}
    detected = _detect_views(images, batch, sizes, dehazers, detectors, progress)
    for k, img_path in enumerate(images):  # in image order, as one image at a time would have recorded them
        h, w = sizes[img_path]
        boxes = read_labels(pairs[img_path], fmt, w, h, detector.names, given_offset, notes)
        image_id = img_path.name
        gt[image_id] = boxes
        per_detector = detected.pop(k)
        for sfx, dt_model in detectors_by.items():
            dets = per_detector[sfx]
            if sfx == "" and fmt == "yolo":
                _offset_votes(votes, boxes, dets[Arm.RAW])
            for m, name in zip(dehazers, fused):
                dets[name] = fuse_views([dets[Arm.RAW], dets[m]], fuse)
            for v, det in dets.items():
                arm = v + sfx
                for i in range(len(det)):
                    item = (image_id, float(det.confidence[i]), det.xyxy[i])
                    found[arm].setdefault(dt_model.names[int(det.class_id[i])], []).append(item)
                    found[arm][VEHICLE].append(item)
                shown[arm][img_path] = int((det.confidence >= 0.25).sum())
    warnings: list[str] = []
    for note in notes.warnings(detector.names.values()):
        _warn(warnings, note)
    offset = given_offset
    if fmt == "yolo":
        offset, note = _choose_offset(votes, given_offset)
        if note:
            _warn(warnings, note)
            for boxes in gt.values():  # the detections do not depend on the labels: only rename the truth
                for b in boxes:
                    b.name = yolo_name(b.label_id, detector.names, offset)
        else:
            note = _suspect_offset(gt, detector.names, classes, offset)
            if note:
                _warn(warnings, note)
    truth = {c: {} for c in classes + [VEHICLE]}
    for image_id, boxes in gt.items():
        for cls, g in _truth_for(boxes, classes).items():
            truth[cls][image_id] = g
    positives = sum(int((~g.difficult).sum()) for g in truth[VEHICLE].values())
    if positives == 0:
        raise InputError(f"the labels hold no boxes of the evaluated classes ({', '.join(classes)}): nothing to "
                         "evaluate (check --classes, --label-format and --yolo-id-offset: DAWN's labels_yolo "
                         "need --yolo-id-offset 1)")
    results = {}
    for v in variants:
        per_class = {}
        for cls in classes + [VEHICLE]:
            r = average_precision(found[v].get(cls, []), truth[cls])
            per_class[cls] = {"ap50": None if math.isnan(r.ap) else round(r.ap, 4), "positives": r.positives,
                              "detections": r.detections, "true_positives": r.true_positives}
        valid = [per_class[c]["ap50"] for c in classes if per_class[c]["positives"] > 0]
        results[v] = {"map50": round(float(np.mean(valid)), 4) if valid else None,
                      "vehicle_ap50": per_class[VEHICLE]["ap50"], "per_class": per_class}
    if resamples > 0:
        names = list(gt)
        matched = {v: {c: match(found[v].get(c, []), truth[c], names) for c in classes + [VEHICLE]}
                   for v in variants}
        compared = _pairs(variants) if detector_b is not None or fuse else None  # None: every pair
        intervals = bootstrap(matched, classes, VEHICLE, len(names), resamples, pairs=compared)
        for v in variants:
            results[v]["vehicle_ap50_ci"] = intervals["arms"][v]["vehicle_ap50"]
            results[v]["map50_ci"] = intervals["arms"][v]["map50"]
        for row in intervals["differences"]:
            for key in ("vehicle_ap50", "map50"):
                a, b = results[row["a"]][key], results[row["b"]][key]
                row[f"{key}_difference"] = None if a is None or b is None else round(a - b, 4)
        bootstrap_info = {k: intervals[k] for k in ("resamples", "seed", "level", "differences")}
    else:
        bootstrap_info = None
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
    report["examples"] = _examples(images, dehazers, detectors_by, shown, pairs, fmt, offset, examples)
    return report


def _size_groups(images: list[Path], batch: int) -> list[list[int]]:
    """Indices of ``images`` in batches of at most ``batch``: images of one declared size (upright, from the
    file header) together, in image order; a header without a size makes a group of its own."""
    if batch <= 1:
        return [[k] for k in range(len(images))]
    groups: dict[object, list[int]] = {}
    for k, path in enumerate(images):
        try:
            with open(path, "rb") as fh:
                _, size, orientation = image_header(fh.read(1 << 20))  # the header, not the pixels
        except Exception:  # only a hint for grouping: read_image reports a bad file when its turn comes
            size, orientation = None, 1
        key = ("unknown", k) if size is None else (size[::-1] if orientation in (5, 6, 7, 8) else size)
        groups.setdefault(key, []).append(k)
    out = []
    for members in groups.values():
        out += [members[i:i + batch] for i in range(0, len(members), batch)]
    return sorted(out, key=lambda g: g[0])


def _read_stacked(images: list[Path], group: list[int], sizes: dict):
    """(indices, uint8 (N, H, W, 3) array) per decoded shape of the group's images (a header may have lied)."""
    by_shape: dict[tuple, list] = {}
    for k in group:
        rgb, _ = read_image(images[k])
        sizes[images[k]] = rgb.shape[:2]
        by_shape.setdefault(rgb.shape, []).append((k, rgb))
    for items in by_shape.values():
        yield [k for k, _ in items], np.stack([rgb for _, rgb in items])


class _ViewDetections(Sink):
    """The eval's sink: each image's detections on one view (raw or a model's output), per detector."""

    needs = frozenset()

    def __init__(self, view: str, detected: dict, done: list, total: int, progress):
        self.view, self.detected, self.done, self.total, self.progress = view, detected, done, total, progress

    def write_result(self, result: BatchResult) -> None:
        arms = result.arms
        for i, frame in enumerate(result.batch.frames):
            per_detector = self.detected.setdefault(frame.index, {})
            base = per_detector.setdefault("", {})
            base[self.view] = arms[Arm.DEHAZED_BASE][i] if Arm.DEHAZED_BASE in arms else arms[Arm.DEHAZED][i]
            if Arm.DEHAZED_BASE in arms:  # a fog detector: the per-frame choice is the stage's output
                base[per_frame_arm(self.view)] = arms[Arm.DEHAZED][i]
            if Arm.DEHAZED_B in result.arms:
                per_detector.setdefault(B_SUFFIX, {})[self.view] = result.arms[Arm.DEHAZED_B][i]
        self.done[0] += len(result)
        if self.progress is not None:
            self.progress(self.done[0], self.total)


def _image_batches(images: list[Path], batch: int, sizes: dict):
    """The images in batches of one size (see _size_groups), as frames named by their file (so no
    temporal state joins them: they are independent pictures)."""
    for group in _size_groups(images, batch):
        for idx, stack in _read_stacked(images, group, sizes):
            yield FrameBatch(stack, [Frame(stack[j], k, name=images[k].name) for j, k in enumerate(idx)], "eval")


def _detect_views(images: list[Path], batch: int, sizes: dict, dehazers: dict, detectors: Detectors,
                  progress) -> dict[int, dict[str, dict[str, Detections]]]:
    """image index -> detector suffix -> view -> detections. One pipeline per view (raw, then each model),
    the path ``run`` takes: uint8 batches dehazed on the dehazer's device and detected there. Each batch of
    images is read once and fed to every view's pipeline in turn. Fusion is eval's own (per view pair)."""
    first = next(iter(dehazers.values()), None)
    device = first.device if first is not None else "cpu"
    detected: dict = {}
    done = [0]
    total = len(images) * (1 + len(dehazers))
    plain = Detectors(detectors.base, second=detectors.second)
    per_frame = Detectors(detectors.base, detectors.fog, detectors.fog_view, detectors.second)
    pipelines = [Pipeline(DehazeStage(dehazer, device),
                          DetectStage(plain if dehazer is None else per_frame, keep_base=True),
                          [_ViewDetections(view, detected, done, total, progress)])
                 for view, dehazer in [(Arm.RAW, None), *dehazers.items()]]
    try:
        for fb in _image_batches(images, batch, sizes):
            for pipeline in pipelines:
                if pipeline.feed([fb]).interrupted:  # an AP over part of the images would be wrong: stop
                    raise KeyboardInterrupt
    finally:
        for pipeline in pipelines:
            pipeline.close()
    return detected


def _pairs(arms: list[str]) -> list[tuple[str, str]]:
    """The differences worth an interval once a second detector or fusion multiplies the arms: each
    arm against raw, each detector-B arm against raw [B], and each view across the two detectors."""
    out = [(arms[0], a) for a in arms[1:]]
    b_arms = [a for a in arms if a.endswith(B_SUFFIX)]
    if b_arms:
        out += [(b_arms[0], a) for a in b_arms[1:]]
        out += [(a.removesuffix(B_SUFFIX), a) for a in b_arms[1:]]
    return list(dict.fromkeys(out))


def _examples(images, dehazers, detectors, shown, pairs, fmt, offset, count) -> list[dict]:
    """Images where the first model changed the confident detection count most, drawn side by side
    (each view through each detector)."""
    if not dehazers or count <= 0:
        return []
    first = next(iter(dehazers))
    ranked = sorted(images, key=lambda p: -abs(shown[first][p] - shown[Arm.RAW][p]))[:count]
    saved = {sfx: d.conf for sfx, d in detectors.items()}
    for d in detectors.values():
        d.conf = max(d.conf, 0.25)  # draw what a user would see, not the AP ranking tail
    out = []
    try:
        for path in ranked:
            rgb, _ = read_image(path)
            h, w = rgb.shape[:2]
            names = detectors[""].names
            gt = read_labels(pairs[path], fmt, w, h, names, offset)
            frames = {v: rgb if v == Arm.RAW else dehazers[v](rgb) for v in [Arm.RAW] + list(dehazers)}
            rows = []  # one row of views per detector
            for sfx, d in detectors.items():
                panels = []
                for v, frame in frames.items():
                    panel = draw_detections(frame, d(frame[None])[0], d.names, v + sfx)
                    for b in gt:
                        x1, y1, x2, y2 = (int(round(c)) for c in b.xyxy)
                        cv2.rectangle(panel, (x1, y1), (x2, y2), (255, 255, 255), 1)
                    panels.append(panel)
                rows.append(np.concatenate(panels, axis=1))
            row = np.concatenate(rows, axis=0)
            scale = min(1.0, 1500 / row.shape[1])
            row = cv2.resize(row, (int(row.shape[1] * scale), int(row.shape[0] * scale)), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(row, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
            out.append({"image": path.name, "image_jpeg_base64": base64.b64encode(buf.tobytes()).decode("ascii")})
    finally:
        for sfx, d in detectors.items():
            d.conf = saved[sfx]
    return out


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def fmt_interval(ci) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def fmt_signed(v) -> str:
    return "–" if v is None else f"{v:+.3f}"


def difference_rows(report: dict) -> list[tuple[str, str, str, str, str]]:
    """(arm pair, vehicle AP50 difference, its interval, mAP50 difference, its interval) per pair."""
    rows = []
    for d in (report.get("bootstrap") or {}).get("differences", []):
        rows.append((f"{d['a']} − {d['b']}", fmt_signed(d.get("vehicle_ap50_difference")),
                     fmt_interval(d["vehicle_ap50"]), fmt_signed(d.get("map50_difference")), fmt_interval(d["map50"])))
    return rows


def render_eval_html(report: dict) -> str:
    e = html.escape
    variants = list(report["results"])
    rows = ""
    for cls in report["classes"] + [VEHICLE]:
        pos = report["results"][Arm.RAW]["per_class"][cls]["positives"]
        cells = "".join(f"<td>{_fmt(report['results'][v]['per_class'][cls]['ap50'])}</td>" for v in variants)
        name = f"<b>{cls} (class-agnostic)</b>" if cls == VEHICLE else e(cls)
        rows += f"<tr><td>{name}</td><td>{pos}</td>{cells}</tr>"
    rows += "<tr><td><b>mAP50</b></td><td></td>" + "".join(
        f"<td><b>{_fmt(report['results'][v]['map50'])}</b></td>" for v in variants) + "</tr>"
    if report.get("bootstrap"):
        for key, label in (("vehicle_ap50_ci", "vehicle AP50 95 % interval"), ("map50_ci", "mAP50 95 % interval")):
            rows += f"<tr class=muted><td>{label}</td><td></td>" + "".join(
                f"<td>{fmt_interval(report['results'][v].get(key))}</td>" for v in variants) + "</tr>"
        diffs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in difference_rows(report))
        b = report["bootstrap"]
        differences = (f"<h2>Differences between arms</h2><p class=muted>{b['resamples']} bootstrap resamples of the "
                       f"images (the same resample for every arm), {b['level']:.0%} percentile intervals: an interval "
                       "that contains 0 means the lead may be noise.</p><table><tr><th>arms</th><th>vehicle AP50</th>"
                       f"<th>interval</th><th>mAP50</th><th>interval</th></tr>{diffs}</table>")
    else:
        differences = ""
    warnings = "".join(f"<p class=warn>warning: {e(w)}</p>" for w in report.get("warnings", []))
    arms_note = ""
    if report.get("detector_b"):
        arms_note += (f"<p>Arms without a tag: detector <b>{e(report['detector'])}</b>; arms tagged{e(B_SUFFIX)}: "
                      f"detector <b>{e(report['detector_b'])}</b>.</p>")
    if report.get("fuse"):
        method = "weighted box fusion" if report["fuse"] == "wbf" else "NMS"
        arms_note += (f"<p>Arms “{e(fused_arm('MODEL', report['fuse']))}”: one detector's detections on the raw "
                      f"image and on MODEL's output merged ({method}, IoU {FUSE_IOU[report['fuse']]}).</p>")
    examples = "".join(f"<h3>{e(x['image'])}</h3><img alt='{e(x['image'])}' "
                       f"src='data:image/jpeg;base64,{x['image_jpeg_base64']}'>" for x in report["examples"])
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>cidstream eval</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1560px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #eee;padding:.3em .9em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}.muted{{color:#777}}
.warn{{background:#fff4e5;border-left:4px solid #d97706;padding:.5em .8em}}</style></head><body>
<h1>Detection AP50: raw vs dehazed</h1>{arms_note}
<p class=muted>{report['images']} images from {e(report['images_source'])} ({e(report.get('split', 'all'))}) · labels {e(report['labels'])}
({report['label_format']}) · detector {e(report['detector'])} · imgsz {report['imgsz']}, conf {report['conf']},
NMS IoU {report['iou']} · {e(report['ap'])} AP at IoU {report['iou_threshold']} · {e(report['created'])}</p>
{warnings}<table><tr><th>class</th><th>GT boxes</th>{''.join(f'<th>{e(v)}</th>' for v in variants)}</tr>{rows}</table>
{differences}
<h2>Examples</h2><p class=muted>White: ground truth. Coloured: detections with confidence ≥ 0.25. One row per
detector.</p>{examples}
</body></html>"""


def write_eval(folder: Path, report: dict) -> tuple[Path, Path]:
    from ..io.atomic import check_writable_folder

    folder = Path(folder)
    check_writable_folder(folder, "eval output folder")
    slim = dict(report, examples=[{"image": x["image"]} for x in report["examples"]])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval.json").write_text(json.dumps(slim, indent=1), encoding="utf-8")
        (folder / "eval.html").write_text(render_eval_html(report), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the eval results into {folder}: {exc.strerror or exc}") from None
    return folder / "eval.json", folder / "eval.html"
