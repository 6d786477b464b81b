"""Ground-truth boxes from VOC XML or YOLO txt label folders, matched to images by file stem."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

# Datasets spell some classes differently from COCO detectors.
ALIASES = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "tvmonitor": "tv",
           "diningtable": "dining table", "pottedplant": "potted plant"}


@dataclass
class Box:
    name: str
    xyxy: tuple[float, float, float, float]
    difficult: bool = False
    label_id: int | None = None  # YOLO labels: the class id as written in the file (before any offset)


def detect_format(folder: Path) -> str:
    if any(folder.glob("*.xml")):
        return "voc"
    if any(folder.glob("*.txt")):
        return "yolo"
    raise InputError(f"no label files in {folder} (expected VOC .xml or YOLO .txt files)")


def read_voc(path: Path) -> list[Box]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"label file {path} is not valid XML: {exc}") from exc
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        bb = obj.find("bndbox")
        if bb is None:
            continue
        try:
            xyxy = tuple(float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as exc:
            raise InputError(f"label file {path}: a box of '{name}' has no numeric coordinates") from exc
        boxes.append(Box(ALIASES.get(name, name), xyxy, (obj.findtext("difficult") or "0").strip() == "1"))
    return boxes


def read_yolo(path: Path, width: int, height: int, id_to_name: dict[int, str], id_offset: int) -> list[Box]:
    boxes = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cid, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
        except (ValueError, TypeError) as exc:
            raise InputError(f"label file {path}, line {n}: expected 'class cx cy w h', got {line!r}") from exc
        boxes.append(Box(yolo_name(cid, id_to_name, id_offset), ((cx - w / 2) * width, (cy - h / 2) * height,
                                                                 (cx + w / 2) * width, (cy + h / 2) * height),
                         label_id=cid))
    return boxes


def yolo_name(label_id: int, id_to_name: dict[int, str], id_offset: int) -> str:
    """The detector's name for a YOLO label id written as detector id + ``id_offset``."""
    return id_to_name.get(label_id - id_offset, f"class{label_id}")


def match_labels(images: list[Path], labels: Path, fmt: str) -> dict[Path, Path]:
    """image -> label file; every image must have one, and they must be for these images."""
    suffix = ".xml" if fmt == "voc" else ".txt"
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
