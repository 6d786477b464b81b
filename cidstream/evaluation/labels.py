"""Ground-truth boxes from VOC XML or YOLO txt label folders, matched to images by file stem.

A label that cannot be right is refused with its file and line: a coordinate that is not a finite number,
an inverted box (x2 < x1), a YOLO line that is not 'class cx cy w h', XML that is not Pascal VOC. One that
is partly right is fixed and told once per evaluation (``LabelNotes``): a box reaching outside the image is
clipped to it (dropped when nothing of it is inside), and VOC class names the detector does not know are
counted, as they are never evaluated.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from ..errors import InputError

# Datasets spell some classes differently from COCO detectors.
ALIASES = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "tvmonitor": "tv",
           "diningtable": "dining table", "pottedplant": "potted plant"}
PIXEL_SLACK = 1.0  # how far a box may reach outside the image unremarked: VOC's 1-based pixels, float rounding
LISTED = 5         # files (or names) a warning names one by one
LABEL_FORMATS = ("voc", "yolo")  # what label files may be (eval's --label-format, besides auto)
VOC, YOLO = LABEL_FORMATS


@dataclass
class Box:
    name: str
    xyxy: tuple[float, float, float, float]
    difficult: bool = False
    label_id: int | None = None  # YOLO labels: the class id as written in the file (before any offset)


@dataclass
class LabelNotes:
    """What reading the labels of one evaluation fixed or left out, to be told once, not per file."""

    clipped: Counter = field(default_factory=Counter)  # label file name -> boxes clipped to the image
    dropped: Counter = field(default_factory=Counter)  # label file name -> boxes wholly outside it
    names: Counter = field(default_factory=Counter)    # VOC class name -> boxes

    def warnings(self, known) -> list[str]:
        """Warnings for the clipped and dropped boxes and for the class names not in ``known`` (the detector's)."""
        known = set(known)
        unknown = Counter({n: c for n, c in self.names.items() if n not in known})
        told = ((self.clipped, "label boxes reaching outside their image were clipped to it"),
                (self.dropped, "label boxes wholly outside their image were left out"),
                (unknown, "label boxes of class names the detector does not know are not evaluated"))
        return [f"{what}: {_listed(counts)}" for counts, what in told if counts]


def _listed(counts: Counter) -> str:
    """'a.xml (2 boxes), b.xml (1 box) and 3 more (9 boxes)': the largest counts first."""
    top = counts.most_common(LISTED)
    text = ", ".join(f"{k} ({_boxes(n)})" for k, n in top)
    rest = sum(counts.values()) - sum(n for _, n in top)
    return text + (f" and {len(counts) - len(top)} more ({_boxes(rest)})" if rest else "")


def _boxes(n: int) -> str:
    return f"{n} box{'' if n == 1 else 'es'}"


def detect_format(folder: Path) -> str:
    if any(folder.glob("*.xml")):
        return VOC
    if any(folder.glob("*.txt")):
        return YOLO
    raise InputError(f"no label files in {folder} (expected VOC .xml or YOLO .txt files)")


def read_labels(path: Path, fmt: str, width: int, height: int, id_to_name: dict[int, str], id_offset: int,
                notes: LabelNotes | None = None) -> list[Box]:
    """The boxes of one image of ``width`` x ``height`` from its label file in ``fmt`` ('voc' or 'yolo')."""
    if fmt == VOC:
        return read_voc(path, (width, height), notes)
    return read_yolo(path, width, height, id_to_name, id_offset, notes)


def _parse_xml(path: Path) -> tuple[ET.Element, dict]:
    """The XML tree of ``path`` and the line of each element (ElementTree keeps none)."""
    builder, lines = ET.TreeBuilder(), {}
    parser = expat.ParserCreate()
    parser.StartElementHandler = lambda tag, attrs: lines.setdefault(builder.start(tag, attrs),
                                                                     parser.CurrentLineNumber)
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as exc:
        raise InputError(f"label file {path} is not valid XML: {exc}") from exc
    return builder.close(), lines


def read_voc(path: Path, size: tuple[int, int] | None = None, notes: LabelNotes | None = None) -> list[Box]:
    """Boxes of a Pascal VOC file; with the image's ``size`` (width, height) clipped to it (see LabelNotes)."""
    root, lines = _parse_xml(path)
    if root.tag != "annotation":
        raise InputError(f"label file {path} is not a Pascal VOC annotation: its root element is <{root.tag}>, "
                         "not <annotation> (other XML label formats are not read)")
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        bb = obj.find("bndbox")
        if bb is None:
            raise InputError(f"label file {path}, line {lines.get(obj, '?')}: object '{name}' has no <bndbox>")
        xyxy = tuple(_voc_coordinate(path, bb, k, lines, name) for k in ("xmin", "ymin", "xmax", "ymax"))
        if xyxy[2] < xyxy[0] or xyxy[3] < xyxy[1]:
            raise InputError(f"label file {path}, line {lines.get(bb, '?')}: the box of '{name}' is inverted "
                             f"(xmin {xyxy[0]:g}, ymin {xyxy[1]:g}, xmax {xyxy[2]:g}, ymax {xyxy[3]:g})")
        name = ALIASES.get(name, name)
        box = Box(name, xyxy, (obj.findtext("difficult") or "0").strip() == "1")
        if notes is not None:
            notes.names[name] += 1
        if _fit(box, size, path, notes):
            boxes.append(box)
    return boxes


def _voc_coordinate(path: Path, bb: ET.Element, key: str, lines: dict, name: str) -> float:
    """A finite number from ``<key>`` of a box, else an error naming the line (of the box where it is missing)."""
    el = bb.find(key)
    where = f"label file {path}, line {lines.get(el if el is not None else bb, '?')}"
    text = (el.text or "").strip() if el is not None else ""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: the box of '{name}' has no number for <{key}> (got {text[:40]!r})") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: <{key}> of '{name}' is {text}, not a coordinate")
    return value


def read_yolo(path: Path, width: int, height: int, id_to_name: dict[int, str], id_offset: int,
              notes: LabelNotes | None = None) -> list[Box]:
    """Boxes of a YOLO txt file (one 'class cx cy w h' line per box, relative to the image), clipped to it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"label file {path} is not UTF-8 text (YOLO labels are 'class cx cy w h' lines)") from None
    boxes = []
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"label file {path}, line {n}"
        try:
            if len(parts) != 5:
                raise ValueError
            cid, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
        except ValueError:
            raise InputError(f"{where}: expected 'class cx cy w h' (5 numbers), got {line[:80]!r}") from None
        if not all(map(math.isfinite, (cx, cy, w, h))):
            raise InputError(f"{where}: {line[:80]!r} holds a value that is not a finite number")
        if w < 0 or h < 0:
            raise InputError(f"{where}: the box is inverted (width {w:g}, height {h:g}): {line[:80]!r}")
        box = Box(yolo_name(cid, id_to_name, id_offset), ((cx - w / 2) * width, (cy - h / 2) * height,
                                                          (cx + w / 2) * width, (cy + h / 2) * height), label_id=cid)
        if _fit(box, (width, height), path, notes):
            boxes.append(box)
    return boxes


def _fit(box: Box, size: tuple[int, int] | None, path: Path, notes: LabelNotes | None) -> bool:
    """Clip ``box`` to an image of ``size`` (width, height), noting it; False when nothing of it is inside."""
    if size is None:
        return True
    w, h = size
    x1, y1, x2, y2 = box.xyxy
    if x1 >= -PIXEL_SLACK and y1 >= -PIXEL_SLACK and x2 <= w + PIXEL_SLACK and y2 <= h + PIXEL_SLACK:
        return True
    clipped = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
    inside = clipped[2] > clipped[0] and clipped[3] > clipped[1]
    if notes is not None:
        (notes.clipped if inside else notes.dropped)[path.name] += 1
    box.xyxy = clipped
    return inside


def yolo_name(label_id: int, id_to_name: dict[int, str], id_offset: int) -> str:
    """The detector's name for a YOLO label id written as detector id + ``id_offset``."""
    return id_to_name.get(label_id - id_offset, f"class{label_id}")


def match_labels(images: list[Path], labels: Path, fmt: str) -> dict[Path, Path]:
    """image -> label file; every image must have one, and they must be for these images."""
    suffix = ".xml" if fmt == VOC else ".txt"
    by_stem = {p.stem: p for p in labels.glob(f"*{suffix}")}
    pairs = {img: by_stem[img.stem] for img in images if img.stem in by_stem}
    if not pairs:
        raise InputError(f"none of the {len(by_stem)} label files in {labels} matches an image name "
                         f"(e.g. image {images[0].name} vs label {next(iter(by_stem), '?')}{'' if by_stem else ''})")
    missing = [img.name for img in images if img not in pairs]
    if missing:
        raise InputError(f"{len(missing)} of {len(images)} images have no {fmt.upper()} label file in {labels} "
                         f"(e.g. {', '.join(missing[:3])})")
    return pairs
