"""Clear weather must not suffer: AP50 of an arm on clean frames, with the base detector's own confident
boxes on the same raw frames as the reference (no human labels needed, and a perfect score means
"sees exactly what the base detector sees"). Used by the haze-gate benchmark, the detector training's
metadata and the fog-detector benchmark."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .ap import GroundTruth, average_precision
from ..config import AP_CONF
from ..detect.detections import Detections
from ..detect.detector import VEHICLE_CLASSES, Detector
from ..io.containers import rgb_frames

REF_CONF = 0.25


def read_every(path: str | Path, step: int) -> list[np.ndarray]:
    """Every ``step``-th frame of a video as RGB uint8, as stored (io.containers.rgb_frames)."""
    return list(rgb_frames(path, step))


def reference_ap(reference: list[Detections], found: list[Detections], ref_conf: float = REF_CONF) -> float:
    """Class-agnostic AP50 (in points, 0-100) of ``found`` against ``reference``'s boxes at ``ref_conf``."""
    truth = {}
    for i, r in enumerate(reference):
        keep = r.confidence >= ref_conf
        truth[str(i)] = GroundTruth(r.xyxy[keep].astype(np.float64), np.zeros(int(keep.sum()), bool))
    ranked = [(str(i), float(d.confidence[j]), d.xyxy[j]) for i, d in enumerate(found) for j in range(len(d))]
    return round(100 * average_precision(ranked, truth).ap, 2)


def clear_check(detectors: dict[str, str], sources: list[dict], reference: str, ref_conf: float = REF_CONF,
                imgsz: int = 640, classes=VEHICLE_CLASSES, log=print, device: str = "cpu", progress=None) -> dict:
    """Per source ({path, step}): AP50 of each named detector file on the raw frames against
    ``reference``'s confident boxes, vehicle classes only. The reference runs once, at the ranking
    confidence: its boxes above ``ref_conf`` are the truth, and its whole ranking is its own arm when
    it is among ``detectors``. ``progress(step, done, total)``: frames detected per source."""
    ref_det = Detector(reference, classes=classes, conf=AP_CONF, imgsz=imgsz, device=device)
    same = Path(reference).resolve()
    dets = {name: None if Path(path).resolve() == same else
            Detector(path, classes=classes, conf=AP_CONF, imgsz=imgsz, device=device) for name, path in detectors.items()}
    out = {}
    for src in sources:
        path = Path(src["path"])
        frames = read_every(path, int(src.get("step", 6)))
        runs = {None: ref_det, **{name: d for name, d in dets.items() if d is not None}}
        found = {key: [] for key in runs}
        for k, (key, d) in enumerate(runs.items()):
            for f in frames:
                found[key].append(d(f[None])[0])
                if progress is not None:
                    progress(f"clear-weather check: {path.stem}", k * len(frames) + len(found[key]),
                             len(runs) * len(frames))
        ref = found[None]
        row = {"frames": len(frames), "reference_boxes": int(sum((r.confidence >= ref_conf).sum() for r in ref))}
        for name, d in dets.items():
            row[name] = reference_ap(ref, ref if d is None else found[name], ref_conf)
        out[path.stem] = row
        log(f"  {path.stem}: {row}")
    return out
