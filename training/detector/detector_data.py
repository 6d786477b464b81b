"""The fog-adaptation set for a detector, written as an Ultralytics dataset (images/ + labels/ + data.yaml).

No human labels: a clean frame is labelled with the frozen base detector's confident boxes (every class,
its own class ids) and those labels are kept for the frame's degraded copies, so the clean view teaches
the foggy one. Real fog frames get the base detector's boxes on the raw frame and on its DCP output,
merged (training/dehazer/pseudo_labels.py; more dehazers and mirrored views on request). Each clean frame yields ``copies`` images, each left clean with
probability ``clean_share`` and otherwise degraded by one domain of the multi-domain recipe (the
dehazer's recipe). The set depends only on the config and the base detector, so it is built once per
run folder and reused on resume (a fingerprint says when it is stale).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from cidstream.errors import ConfigError, OutputError

from ..synthetic.generate import degrade_batch, depth_source, to_tensor, to_uint8
from ..inputs import expand_sources, frames_at_most, round_robin
from ..dehazer.pseudo_labels import merge_detections
from ..synthetic.recipe import load_recipe
from ..data_entries import resolve, source_specs

DATA_KEYS = {"recipe", "clean", "clean_stride", "dedup", "copies", "clean_share", "label_conf", "real", "real_stride",
             "pseudo_conf", "pseudo_iou", "pseudo_views", "pseudo_flip", "val_share", "val_max", "imgsz", "max_clean",
             "max_real"}


MANIFEST = "images.tsv"
MANIFEST_HEADER = "part\tfile\tview\tsource\tframe\n"
# Every file a set of ours holds: DatasetWriter's images, labels and lists, and Ultralytics' label caches
# (labels/PART.cache) and disk image caches (images/PART/NAME.npy).
OWN_FILES = re.compile(r"(images/(train|val)/\d{6}_[^/]+\.(jpg|npy)|labels/(train|val)/\d{6}_[^/]+\.txt"
                       r"|labels/(train|val)\.cache(\.npy)?|images\.tsv|dataset\.json|data\.yaml)")


def _foreign(root: Path) -> str | None:
    """The first entry below ``root`` that no training set of ours holds (a link counts: rmtree would
    remove it), else None; a set with images must also have our manifest (written first, so an
    interrupted build has it too)."""
    seen = False
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs) + sorted(files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or (name in files and not OWN_FILES.fullmatch(rel)):
                return f"it holds {rel}"
            seen = seen or (name in files and rel != MANIFEST)
    if not seen:
        return None
    try:
        with (root / MANIFEST).open(encoding="utf-8") as fh:
            ours = fh.readline() == MANIFEST_HEADER
    except (OSError, UnicodeDecodeError):
        ours = False
    return None if ours else f"it has no {MANIFEST} of ours"


def check_own_dataset(root: Path) -> None:
    """Refuse a RUN_DIR/dataset that the training did not build: the set is replaced whole when the
    config or base detector changes, and that must never take the user's files with it."""
    root = Path(root)
    if not os.path.lexists(root):
        return
    what = "it is a link" if root.is_symlink() else "it is a file" if not root.is_dir() else _foreign(root)
    if what is None:
        return
    raise OutputError(f"{root} was not built by cidstream train detector ({what}): the training replaces "
                      f"RUN_DIR/dataset whole, so it must hold nothing but a set it built ({MANIFEST}, dataset.json, "
                      "data.yaml, images/, labels/). Move your files away or choose another --run-dir")


def check_split(counts: dict, root: Path, data: dict) -> None:
    """Ultralytics needs training and validation images; without either it fails after loading everything."""
    empty = [part for part in ("train", "val") if not counts.get(part)]
    if empty:
        raise ConfigError(f"the training set in {root} has no {' and no '.join(empty)} images "
                          f"({counts.get('train', 0)} train, {counts.get('val', 0)} val; validation frames are drawn "
                          f"by a hash of source and frame with data.val_share {data.get('val_share', 0.1)}): add "
                          "frames (data.clean, data.real, data.max_clean) or change data.val_share")


def fingerprint(data: dict, detector: str) -> str:
    """What the set depends on: the data section and the base detector file's bytes."""
    h = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode())
    with open(detector, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


def is_val(source: str, index: int, share: float) -> bool:
    """Held-out frames for Ultralytics' validation, by a hash of where they came from."""
    key = f"{Path(source).name}:{index}".encode()
    return hashlib.sha256(key).digest()[0] / 256.0 < share


def fit_long_side(rgb: np.ndarray, size: int) -> np.ndarray:
    """The detector letterboxes to ``size`` anyway: store no more pixels than it will see."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def yolo_lines(rows: np.ndarray, w: int, h: int) -> str:
    """(K, 5) rows of class, x1, y1, x2, y2 in pixels -> YOLO txt (class cx cy bw bh, normalised)."""
    out = []
    for c, x1, y1, x2, y2 in rows:
        x1, x2 = np.clip([x1, x2], 0, w)
        y1, y2 = np.clip([y1, y2], 0, h)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        out.append(f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    return "\n".join(out) + ("\n" if out else "")


class DatasetWriter:
    """Images and YOLO labels, and images.tsv: where each image came from (part, file, view, source, frame)."""

    def __init__(self, root: Path):
        self.root = root
        self.counts = {"train": 0, "val": 0}
        self.boxes = {"train": 0, "val": 0}
        self.kinds: dict[str, int] = {}
        for part in ("train", "val"):
            (root / "images" / part).mkdir(parents=True, exist_ok=True)
            (root / "labels" / part).mkdir(parents=True, exist_ok=True)
        self.manifest = (root / MANIFEST).open("w", encoding="utf-8")
        self.manifest.write(MANIFEST_HEADER)
        self.manifest.flush()  # what marks the folder as ours (check_own_dataset), even if the build is killed

    def write(self, part: str, rgb: np.ndarray, rows: np.ndarray, kind: str, source: str, frame: int) -> None:
        name = f"{self.counts[part]:06d}_{kind}"
        cv2.imwrite(str(self.root / "images" / part / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        h, w = rgb.shape[:2]
        (self.root / "labels" / part / f"{name}.txt").write_text(yolo_lines(rows, w, h), encoding="utf-8")
        self.manifest.write(f"{part}\t{name}.jpg\t{kind}\t{source}\t{frame}\n")
        self.counts[part] += 1
        self.boxes[part] += len(rows)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def teacher_views(det, image: np.ndarray, flip: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The base detector's boxes on an image (and on its mirror image, mapped back)."""
    d = det(image[None])[0]
    out = [(d.xyxy, d.confidence, d.class_id)]
    if flip:
        m = det(np.ascontiguousarray(image[:, ::-1])[None])[0]
        xyxy = m.xyxy.copy()
        xyxy[:, [0, 2]] = image.shape[1] - m.xyxy[:, [2, 0]]
        out.append((xyxy, m.confidence, m.class_id))
    return out


def _rows(det, scale: float) -> np.ndarray:
    """Detections -> (K, 5) class, x1, y1, x2, y2 in the stored image's pixels."""
    return np.concatenate([det.class_id[:, None].astype(np.float32), det.xyxy * scale], axis=1).reshape(-1, 5)


def build_dataset(data: dict, detector_path: str, root: Path, log=print, progress=None, device: str = "cpu") -> dict:
    """Write the set into ``root`` (replaced when its fingerprint differs) and return its summary.
    ``progress(step, done, total)``: frames done of at most ``total`` per step (clean, then real fog);
    the base detector and the dehazers of the pseudo-labels run on ``device``."""
    from cidstream.detect.detector import Detector
    from cidstream.engine import Dehazer

    unknown = set(data) - DATA_KEYS
    if unknown:
        raise ConfigError(f"detector training config, data: unknown keys {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(DATA_KEYS))})")
    missing = {"recipe", "clean"} - set(data)
    if missing:
        raise ConfigError(f"detector training config, data: needs {' and '.join(sorted(missing))}")
    check_own_dataset(root)
    summary_path = root / "dataset.json"
    key = fingerprint(data, detector_path)
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary.get("fingerprint") == key:
            log(f"training set already built in {root} ({summary['images']['train']} train, "
                f"{summary['images']['val']} val images)")
            check_split(summary["images"], root, data)
            return summary
        log(f"the training set in {root} was built from another config or detector: rebuilding")
    if root.exists():
        shutil.rmtree(root)
    imgsz = int(data.get("imgsz", 640))
    copies, clean_share = int(data.get("copies", 3)), float(data.get("clean_share", 0.3))
    val_share, val_max = float(data.get("val_share", 0.1)), int(data.get("val_max", 80))
    if copies < 1 or not 0 <= clean_share <= 1 or not 0 < val_share < 1:
        raise ConfigError("detector training config: copies must be >= 1, clean_share in [0, 1], val_share in (0, 1)")
    recipe = load_recipe(resolve(data["recipe"]))
    depth_of = depth_source(recipe)
    det = Detector(detector_path, classes=None, conf=float(data.get("label_conf", 0.4)), imgsz=imgsz, device=device)
    writer = DatasetWriter(root)
    generator = torch.Generator().manual_seed(recipe.seed)
    draw = np.random.default_rng(recipe.seed)
    clean_specs = expand_sources(source_specs(data["clean"]))
    max_clean = data.get("max_clean")
    clean_stride = int(data.get("clean_stride", 3))
    total = frames_at_most(clean_specs, clean_stride)
    total = min(total, int(max_clean)) if max_clean is not None else total
    done = 0
    for rgb, src, idx in round_robin(clean_specs, clean_stride, float(data.get("dedup", 2.0))):
        if max_clean is not None and done >= int(max_clean):
            break
        small = fit_long_side(rgb, imgsz)
        rows = _rows(det(rgb[None])[0], small.shape[1] / rgb.shape[1])
        part = "val" if is_val(src, idx, val_share) and writer.counts["val"] < val_max else "train"
        keep_clean = draw.random(copies) < clean_share
        n_degraded = int((~keep_clean).sum())
        if n_degraded:
            clean = to_tensor([small] * n_degraded, "cpu")
            hazy, domains, _ = degrade_batch(recipe, clean, depth_of(clean), generator)
            for view, dom in zip(to_uint8(hazy), domains):
                writer.write(part, view, rows, dom, src, idx)
        for _ in range(int(keep_clean.sum())):
            writer.write(part, small, rows, "clean", src, idx)
        done += 1
        if progress is not None:
            progress("clean frames", done, max(total, done))
    if not done:
        raise ConfigError(f"detector training config: no frames in the clean sources {data['clean']}")
    real_frames = 0
    if data.get("real"):
        names = list(data.get("pseudo_views", ["raw", "dcp"]))
        dehazers = {v: Dehazer(v, device=device) for v in names if v != "raw"}
        flip = bool(data.get("pseudo_flip", False))
        conf, iou = float(data.get("pseudo_conf", 0.35)), float(data.get("pseudo_iou", 0.6))
        det.conf = conf
        max_real = data.get("max_real")
        real_specs, real_stride = expand_sources(source_specs(data["real"])), int(data.get("real_stride", 2))
        total = frames_at_most(real_specs, real_stride)
        total = min(total, int(max_real)) if max_real is not None else total
        for rgb, src, idx in round_robin(real_specs, real_stride, 0.5):
            if max_real is not None and real_frames >= int(max_real):
                break
            views = []
            for v in names:
                image = rgb if v == "raw" else dehazers[v](rgb[None])[0]
                views += teacher_views(det, image, flip)
            small = fit_long_side(rgb, imgsz)
            merged = merge_detections(views, conf, iou)
            merged[:, 1:] *= small.shape[1] / rgb.shape[1]
            writer.write("val" if is_val(src, idx, val_share) and writer.counts["val"] < val_max else "train",
                         small, merged, "real_fog", src, idx)
            real_frames += 1
            if progress is not None:
                progress("real fog frames", real_frames, max(total, real_frames))
    writer.manifest.close()
    check_split(writer.counts, root, data)
    names = {int(k): v for k, v in det.names.items()}
    (root / "data.yaml").write_text(json.dumps({"path": str(root.resolve()), "train": "images/train",
                                                "val": "images/val", "names": names}, indent=1), encoding="utf-8")
    summary = {"fingerprint": key, "clean_frames": done, "real_fog_frames": real_frames, "images": writer.counts,
               "boxes": writer.boxes, "kinds": dict(sorted(writer.kinds.items())), "clean_share": clean_share,
               "copies": copies, "label_conf": float(data.get("label_conf", 0.4)), "imgsz": imgsz,
               "clean_sources": clean_specs, "real_sources": list(data.get("real") or [])}
    summary_path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    log(f"training set: {writer.counts['train']} train / {writer.counts['val']} val images from {done} clean frames "
        f"and {real_frames} real fog frames; {writer.boxes['train']} train boxes; views {summary['kinds']}")
    return summary
