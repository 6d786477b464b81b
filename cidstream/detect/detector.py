"""The detection stage: an Ultralytics YOLO model restricted to the classes we count."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CidstreamError
from .detections import Detections

VEHICLE_CLASSES = ("car", "bus", "truck", "motorcycle", "bicycle")
DEFAULT_DETECTOR = "yolo11n.pt"
DETECTOR_ENV = "CIDSTREAM_DETECTOR"


class DetectorError(CidstreamError):
    pass


def resolve_detector_spec(spec: str | None) -> str:
    """--detector wins, then $CIDSTREAM_DETECTOR, then Ultralytics' yolo11n.pt (downloaded when online)."""
    return spec or os.environ.get(DETECTOR_ENV) or DEFAULT_DETECTOR


def load_yolo(spec: str):
    """Load an Ultralytics model file or name, turning every failure into one readable message."""
    os.environ.setdefault("YOLO_VERBOSE", "False")  # keep Ultralytics' banners out of our terminal output
    from ultralytics import YOLO

    path = Path(spec)
    bare_name = path.name == spec and not path.exists()
    if not bare_name and not path.exists():
        raise DetectorError(f"detector file not found: {spec}")
    if path.exists() and path.is_file() and path.stat().st_size == 0:
        raise DetectorError(f"detector file is empty (0 bytes): {spec}")
    try:
        model = YOLO(spec)
    except ConnectionError as exc:
        raise DetectorError(
            f"detector '{spec}' is not on this machine and could not be downloaded (offline?): pass "
            f"--detector PATH to an Ultralytics .pt file, or set {DETECTOR_ENV}=PATH") from exc
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DetectorError(f"cannot load detector {spec}: {first}") from exc
    if model.task != "detect":
        raise DetectorError(f"{spec} is a '{model.task}' model, not a detection model")
    return model


def letterbox(frames: torch.Tensor, imgsz: int, stride: int = 32) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """uint8 (N, H, W, 3) on any device -> float (N, 3, h, w) in [0, 1], resized to fit ``imgsz`` and
    padded (grey 114, centred) to a multiple of ``stride``, as Ultralytics' own letterbox does."""
    n, h, w, _ = frames.shape
    ratio = min(imgsz / h, imgsz / w)
    nh, nw = max(1, round(h * ratio)), max(1, round(w * ratio))
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=ratio < 1)
    ph, pw = (-nh) % stride, (-nw) % stride
    top, left = ph // 2, pw // 2
    x = F.pad(x, (left, pw - left, top, ph - top), value=114 / 255)
    return x, ratio, (left, top)


class Detector:
    """Callable on a batch: numpy (N, H, W, 3) RGB uint8 goes through Ultralytics' own letterbox;
    a torch uint8 tensor is letterboxed where it lies (on CUDA: no round trip through the host)."""

    def __init__(self, model: str | None = None, classes=VEHICLE_CLASSES, conf: float = 0.25, iou: float = 0.7,
                 imgsz: int = 640, device: str | torch.device = "cpu"):
        self.spec = resolve_detector_spec(model)
        self.yolo = load_yolo(self.spec)
        self.names: dict[int, str] = {int(k): v for k, v in self.yolo.names.items()}
        self.class_ids = self.resolve_classes(classes)
        self.conf, self.iou, self.imgsz = conf, iou, imgsz
        self.device = torch.device(device)
        self.quantize = 16 if self.device.type == "cuda" else None  # fp16 on the GPU

    @classmethod
    def from_config(cls, detect_cfg, device) -> "Detector":
        """Build from a config's ``detect`` section."""
        d = detect_cfg
        return cls(d.detector or None, classes=d.classes, conf=d.conf, iou=d.iou, imgsz=d.imgsz, device=device)

    def resolve_classes(self, classes) -> list[int] | None:
        if not classes:
            return None  # every class the model knows
        by_name = {v.lower(): k for k, v in self.names.items()}
        unknown = [c for c in classes if str(c).lower() not in by_name]
        if unknown:
            known = ", ".join(list(self.names.values())[:12])
            raise DetectorError(f"detector {Path(self.spec).name} has no class {', '.join(map(repr, unknown))} "
                                f"(it knows {len(self.names)}: {known}, ...)")
        return [by_name[str(c).lower()] for c in classes]

    @property
    def label(self) -> str:
        return Path(self.spec).name

    def _predict(self, source, **kw):
        # On a CPU, Ultralytics' device selection sets torch's thread count for the whole process to
        # cpu_count - 1 (1 on a 2-core machine), which would halve the dehazer's speed: put it back.
        threads = torch.get_num_threads()
        try:
            return self.yolo.predict(source, conf=self.conf, iou=self.iou, classes=self.class_ids, verbose=False,
                                     device=str(self.device), quantize=self.quantize, **kw)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    @staticmethod
    def _unpack(result, scale: float = 1.0, offset=(0, 0)) -> Detections:
        boxes = result.boxes
        xyxy = boxes.xyxy.float().cpu().numpy()
        if scale != 1.0 or offset != (0, 0):
            xyxy = (xyxy - np.array([offset[0], offset[1], offset[0], offset[1]], np.float32)) / scale
        return Detections(xyxy.astype(np.float32), boxes.conf.float().cpu().numpy().astype(np.float32),
                          boxes.cls.cpu().numpy().astype(np.int32))

    @torch.inference_mode()
    def __call__(self, frames) -> list[Detections]:
        if len(frames) == 0:
            return []
        if isinstance(frames, torch.Tensor):
            h, w = frames.shape[1:3]
            x, ratio, offset = letterbox(frames, self.imgsz)
            results = self._predict(x.to(self.device))
            dets = [self._unpack(r, ratio, offset) for r in results]
            for d in dets:
                d.xyxy[:, [0, 2]] = d.xyxy[:, [0, 2]].clip(0, w)
                d.xyxy[:, [1, 3]] = d.xyxy[:, [1, 3]].clip(0, h)
            return dets
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]  # Ultralytics reads numpy images as BGR
        return [self._unpack(r) for r in self._predict(bgr, imgsz=self.imgsz)]
