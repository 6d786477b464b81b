"""The detection stage: an Ultralytics YOLO model restricted to the classes we count."""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cpu_runtime import resolve_cpu_runtime, warn
from ..config import DetectConfig
from ..errors import CidstreamError, WeightsError
from .cpu_graph import (FASTEST, first_line, graph_path, make_graph, match_threads, quiet, remove_graph,
                        runtime_of)
from .cache import cached_label
from .detections import Detections
from .safe_load import check_detector_file, check_model_yaml

_DETECT = DetectConfig()  # the defaults of Detector: the config's detect section (classes is a default_factory)
VEHICLE_CLASSES = tuple(_DETECT.classes)  # detect.classes' default, as a tuple: a shared default must not change
DEFAULT_DETECTOR = "yolo11n.pt"
DETECTOR_ENV = "CIDSTREAM_DETECTOR"


class DetectorError(CidstreamError):
    pass


def resolve_detector_spec(spec: str | None) -> str:
    """--detector wins, then $CIDSTREAM_DETECTOR, then Ultralytics' yolo11n.pt (downloaded when online)."""
    return spec or os.environ.get(DETECTOR_ENV) or DEFAULT_DETECTOR


def _checked_source(spec: str, path: Path) -> str:
    """What to hand Ultralytics for ``spec``: a PyTorch file (.pt, .pth) or a model YAML only once
    safe_load found that loading it runs no code from it; a bare .pt name is first fetched (or found in
    Ultralytics' weights folder) the way Ultralytics would, and that file checked."""
    if path.suffix.lower() in (".yaml", ".yml"):
        check_model_yaml(spec)
    if path.suffix.lower() not in (".pt", ".pth"):
        return spec
    if not path.is_file():  # a bare name, e.g. yolo11n.pt
        from ultralytics.utils.downloads import attempt_download_asset

        spec = attempt_download_asset(spec)
    check_detector_file(spec)
    return spec


def load_yolo(spec: str):
    """Load an Ultralytics model file or name, turning every failure into one readable message."""
    os.environ.setdefault("YOLO_VERBOSE", "False")  # keep Ultralytics' banners out of our terminal output
    # Ultralytics' NMS uses torchvision's kernel only when torchvision is already imported; its own
    # fallback loops box by box and, on CUDA, waits for the GPU at every step (6x slower detection on an H100).
    import torchvision  # noqa: F401
    from ultralytics import YOLO

    path = Path(spec)
    bare_name = path.name == spec and not path.exists()
    if not bare_name and not path.exists():
        raise DetectorError(f"detector file not found: {spec}")
    if path.exists() and path.is_file() and path.stat().st_size == 0:
        raise DetectorError(f"detector file is empty (0 bytes): {spec}")
    try:  # file name endings Ultralytics loads a model from: its export formats, plus .pth and model YAMLs
        from ultralytics.engine.exporter import export_formats

        formats = [s if s.startswith(".") else Path(s).suffix for s in export_formats()["Suffix"]]
        formats = [s for s in formats if s]
    except Exception:  # an Ultralytics without this table: the usual ones
        formats = [".pt", ".torchscript", ".onnx", ".engine", ".mlpackage", ".pb", ".tflite", ".mnn"]
    formats = tuple(dict.fromkeys(formats + [".pth", ".yaml", ".yml"]))
    expected = ", ".join(s for s in formats if s not in (".yaml", ".yml"))
    not_a_model = (f"{spec} is not an Ultralytics model file (expected a detection model: {expected} or an "
                   "exported model folder)")
    if path.is_file():
        if path.suffix.lower() not in formats:
            raise DetectorError(not_a_model)
        with open(path, "rb") as fh:
            head = fh.read(4096)
        # No model format starts like text (UTF-8 without control characters); model YAMLs are text.
        control = set(range(32)) - {9, 10, 12, 13}
        try:
            head.decode("utf-8")
            text = not control.intersection(head)
        except UnicodeDecodeError as exc:  # text unless the 4 KiB cut a character at the end
            text = exc.start >= len(head) - 4 and not control.intersection(head)
        if text and path.suffix.lower() not in (".yaml", ".yml"):
            raise DetectorError(not_a_model.replace(" file (", " file: it is a text file (", 1))
    try:
        model = YOLO(_checked_source(spec, path))
        model.names  # noqa: B018 - non-.pt formats load lazily: load now, so a bad file fails here, in one line
    except WeightsError as exc:
        raise DetectorError(str(exc)) from None
    except ConnectionError as exc:
        if path.is_file():  # Ultralytics swaps an old YOLOv5 file name for its YOLOv5u model's, then downloads
            from ultralytics.utils.checks import check_yolov5u_filename

            raise DetectorError(
                f"detector {spec}: Ultralytics does not read a file named {path.name}: it takes the name for its "
                f"own {check_yolov5u_filename(path.name)} and tried to download that (offline?); rename the "
                "file") from exc
        raise DetectorError(
            f"detector '{spec}' is not on this machine and could not be downloaded (offline?): pass "
            f"--detector PATH to an Ultralytics .pt file, or set {DETECTOR_ENV}=PATH") from exc
    except Exception as exc:
        if "not a supported model format" in str(exc):
            raise DetectorError(not_a_model) from exc
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DetectorError(f"cannot load detector {spec}: {first}") from exc
    if model.task != "detect":
        raise DetectorError(f"{spec} is a '{model.task}' model, not a detection model")
    return model


_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: bilinear weights in 1/2048ths
_COEF_SCALE = 1 << _COEF_BITS


@functools.lru_cache(maxsize=32)
def _linear_taps(n_src: int, n_dst: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices and fixed-point weights of cv2.resize(INTER_LINEAR) along one axis: half-pixel centres,
    coordinates in float32 from a float64 scale, weights rounded to 1/2048 (round half to even), borders
    replicated, no antialiasing."""
    scale = 1.0 / (n_dst / n_src)  # OpenCV: inv_scale = dsize / ssize, scale = 1 / inv_scale
    f = ((torch.arange(n_dst, dtype=torch.float64) + 0.5) * scale - 0.5).float()
    s = torch.floor(f)
    f = f - s
    w0 = torch.round((1.0 - f) * _COEF_SCALE).to(torch.int32)  # torch.round rounds half to even, as cvRound
    w1 = torch.round(f * _COEF_SCALE).to(torch.int32)
    s = s.long()
    i0, i1 = s.clamp(0, n_src - 1), (s + 1).clamp(0, n_src - 1)
    return tuple(t.to(device) for t in (i0, i1, w0, w1))  # cached per shape and device: one small copy each


def resize_linear_u8(frames: torch.Tensor, nh: int, nw: int) -> torch.Tensor:
    """uint8 (N, H, W, C) -> uint8 (N, nh, nw, C), bit-exact with cv2.resize(..., INTER_LINEAR) on uint8 images
    (which is also what it does for an exact 2x shrink, where it switches to INTER_AREA: the same numbers).
    Pure torch integer arithmetic, so it runs where the tensor lies (CUDA included)."""
    n, h, w, c = frames.shape
    r0, r1, b0, b1 = _linear_taps(h, nh, frames.device)
    c0, c1, a0, a1 = _linear_taps(w, nw, frames.device)
    a0, a1 = a0.view(1, 1, nw, 1), a1.view(1, 1, nw, 1)

    def horizontal(rows: torch.Tensor) -> torch.Tensor:  # sum of two taps, in units of 1/2048
        rows = rows.to(torch.int32)
        return rows.index_select(2, c0) * a0 + rows.index_select(2, c1) * a1

    d0 = horizontal(frames.index_select(1, r0))  # only the rows the vertical pass reads
    d1 = horizontal(frames.index_select(1, r1))
    b0, b1 = b0.view(1, nh, 1, 1), b1.view(1, nh, 1, 1)
    # OpenCV's vectorised vertical pass (VResizeLinearVec_32s8u): it drops 4 bits, keeps the high 16 bits of
    # each product and rounds the sum by 2 bits (its scalar formula, (d0*b0 + d1*b1 + 2**21) >> 22, is off by
    # one on ~10% of pixels). Bit-exact with cv2 5.0 on x86 for 60 random sizes (and on CUDA, H100).
    out = (((d0 >> 4) * b0) >> 16) + (((d1 >> 4) * b1) >> 16)
    return ((out + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def stride_multiple(imgsz: int, stride: int = 32) -> int:
    """``imgsz`` rounded up to a multiple of ``stride``: the sizes a detector takes."""
    return -(-imgsz // stride) * stride


def letterbox_params(h: int, w: int, imgsz: int,
                     stride: int = 32) -> tuple[float, tuple[int, int], tuple[int, int, int, int]]:
    """Ultralytics' LetterBox geometry for a same-shape batch at predict time (auto=True, centred, scale-up
    allowed): ratio, resized (nh, nw), and padding (top, bottom, left, right) to a multiple of ``stride``."""
    r = min(imgsz / h, imgsz / w)
    nh, nw = max(round(h * r), 1), max(round(w * r), 1)
    dh, dw = ((imgsz - nh) % stride) / 2, ((imgsz - nw) % stride) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return r, (nh, nw), (top, bottom, left, right)


def letterbox(frames: torch.Tensor, imgsz: int, stride: int = 32) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """uint8 (N, H, W, 3) RGB on any device -> float (N, 3, h, w) in [0, 1], resized to fit ``imgsz`` and padded
    (grey 114, centred) to a multiple of ``stride``: the same numbers Ultralytics' own predict-time letterbox
    (cv2 INTER_LINEAR, no antialiasing) feeds the model for numpy frames. The image is resized and padded as
    uint8 and only then divided by 255, so every value is k/255 with k in 0..255: never outside [0, 1]
    (Ultralytics takes a float tensor whose max exceeds 1 for 0-255 input and divides it by 255 again)."""
    if frames.dtype != torch.uint8:
        raise TypeError(f"letterbox expects uint8 frames, got {frames.dtype}")
    n, h, w, c = frames.shape
    ratio, (nh, nw), (top, bottom, left, right) = letterbox_params(h, w, imgsz, stride)
    if (nh, nw) == (h, w):
        x = frames
    elif frames.device.type == "cpu":  # the same numbers from OpenCV itself, several times faster on a CPU
        import cv2

        x = torch.from_numpy(np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR)
                                       for f in frames.numpy()]))
    else:
        x = resize_linear_u8(frames, nh, nw)
    out = torch.full((n, nh + top + bottom, nw + left + right, c), 114, dtype=torch.uint8, device=frames.device)
    out[:, top:top + nh, left:left + nw] = x
    # dense NCHW, as Ultralytics' own preprocess hands the model (a channels-last view could pick other kernels)
    return out.permute(0, 3, 1, 2).contiguous().float().div_(255.0), ratio, (left, top)


@dataclass(frozen=True)
class DetectorSpec:
    """Everything a Detector is built from in a config's ``detect`` section (the detector file as
    resolved, $CIDSTREAM_DETECTOR included); the device comes from the dehazer. Hashable: equal specs
    (on one device) give interchangeable detectors. ``runtime``: detect.cpu_runtime (auto | torch | openvino |
    onnxruntime), what runs the detector on a CPU."""

    detector: str
    classes: tuple
    conf: float
    iou: float
    imgsz: int
    runtime: str = "torch"

    @classmethod
    def from_config(cls, detect_cfg) -> "DetectorSpec":
        d = detect_cfg
        return cls(str(resolve_detector_spec(d.detector or None)), tuple(d.classes), d.conf, d.iou, d.imgsz,
                   d.cpu_runtime)


class Detector:
    """Callable on a batch: numpy (N, H, W, 3) RGB uint8 goes through Ultralytics' own letterbox;
    a torch uint8 tensor is letterboxed where it lies (on CUDA: no round trip through the host).

    ``runtime`` (auto | torch | openvino | onnxruntime, see cidstream.cpu_runtime): on a CPU, a graph runtime
    runs a PyTorch .pt detector through a graph of it made once and cached (the same boxes, faster); torch, the
    default here, and any CUDA device run PyTorch. Where the graph cannot be made or loaded, the detector warns
    once and runs on PyTorch. ``.runtime`` says what runs it."""

    def __init__(self, model: str | None = None, classes=VEHICLE_CLASSES, conf: float = _DETECT.conf,
                 iou: float = _DETECT.iou, imgsz: int = _DETECT.imgsz, device: str | torch.device = "cpu",
                 runtime: str = "torch"):
        # an unknown name fails before any loading
        wanted = resolve_cpu_runtime(runtime, device, order=FASTEST)
        self.requested_runtime = str(runtime or "auto").lower()
        self.spec = resolve_detector_spec(model)
        self.yolo = load_yolo(self.spec)
        self.names: dict[int, str] = {int(k): v for k, v in self.yolo.names.items()}
        self.class_ids = self.resolve_classes(classes)
        self.conf, self.iou = conf, iou
        self.device = torch.device(device)
        self.quantize = 16 if self.device.type == "cuda" else None  # fp16 on the GPU
        stride = getattr(self.yolo.model, "stride", None)  # Ultralytics pads to max(model stride, 32)
        self.stride = max(int(stride.max()), 32) if isinstance(stride, torch.Tensor) else 32
        self.imgsz = stride_multiple(imgsz, self.stride)
        if self.imgsz != imgsz:  # the model takes sizes on its stride grid; Ultralytics' check_imgsz rounds up too
            print(f"warning: detect.imgsz {imgsz} is not a multiple of {self.stride} (the detector's stride): "
                  f"using {self.imgsz}", file=sys.stderr)
        self._threads = torch.get_num_threads()  # what a graph runtime runs on (see _match_threads)
        self._graph: Path | None = None  # the graph file or folder a graph runtime loaded
        self._threads_warned = False
        self._runtime = runtime_of(self.yolo.model)
        if self._runtime != "torch":  # an exported model the user passed: it runs as it is
            self._match_threads(self.yolo, self.yolo.model)
        elif wanted != "torch":
            self._use_graph(wanted)

    @property
    def runtime(self) -> str:
        """What runs the detector: 'torch', 'openvino' or 'onnxruntime' (or the Ultralytics format of an
        exported model file the detector was given)."""
        return self._runtime

    def _use_graph(self, runtime: str) -> None:
        """Swap the PyTorch model for its graph in ``runtime``: the cached one, else one made now. A cached graph
        that does not load is made again, once; where that fails too, warn and keep PyTorch."""
        weights = getattr(self.yolo, "ckpt_path", None)
        if not weights or Path(weights).suffix.lower() not in (".pt", ".pth") or not Path(weights).is_file():
            return  # a model built from a YAML (no weights file to export): PyTorch runs it
        threads = torch.get_num_threads()
        try:
            path = graph_path(self.yolo.model.state_dict(), self.names, runtime, self.imgsz)
            for attempt in (1, 2):
                made = not path.exists()
                if made:
                    make_graph(weights, runtime, self.imgsz, path)
                try:
                    graph = self._load_graph(path)
                    break
                except Exception:
                    if made or attempt == 2:
                        raise
                    remove_graph(path)  # a damaged cached graph: make it again
        except Exception as exc:
            warn(f"detector {self.label}: cannot run it with {runtime} ({first_line(exc)}); "
                             "running it with torch")
            return
        finally:
            torch.set_num_threads(threads)
        self.yolo, self._graph, self._runtime = graph, path, runtime

    def _load_graph(self, path: Path):
        """The graph at ``path`` as an Ultralytics model, run once on a small blank batch (so a damaged file fails
        here, not on the first frames), with the class names of the PyTorch model."""
        from ultralytics import YOLO

        graph = YOLO(str(path), task="detect")
        self._match_threads(graph, path)
        with quiet():
            self._predict(torch.zeros((1, 3, self.stride * 2, self.stride * 2)), yolo=graph)
            names = {int(k): v for k, v in graph.names.items()}
        if names != self.names:
            raise DetectorError(f"the graph at {path} names its classes differently from the PyTorch model")
        return graph

    def _match_threads(self, yolo, path) -> None:
        """Have a graph run on torch's thread count (see match_threads): set before each predict."""
        if runtime_of(str(path)) not in ("onnxruntime", "openvino"):
            return

        def on_predict_start(predictor):  # Ultralytics callback: the predictor's model is loaded by now
            if self._threads_warned:
                return
            try:
                match_threads(predictor.model.backend, path, self._threads)
            except Exception as exc:  # never fail a run over its thread count
                self._threads_warned = True
                warn(f"cannot set the thread count of detector {self.label}'s graph "
                                 f"({first_line(exc)}); it runs on its runtime's default")

        yolo.add_callback("on_predict_start", on_predict_start)

    @classmethod
    def from_spec(cls, spec: "DetectorSpec", device) -> "Detector":
        return cls(spec.detector, classes=list(spec.classes), conf=spec.conf, iou=spec.iou, imgsz=spec.imgsz,
                   device=device, runtime=spec.runtime)

    @classmethod
    def from_config(cls, detect_cfg, device) -> "Detector":
        """Build from a config's ``detect`` section (what ``DetectorSpec.from_config`` takes)."""
        return cls.from_spec(DetectorSpec.from_config(detect_cfg), device)

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
        return cached_label(self.spec) or Path(self.spec).name

    def _predict(self, source, yolo=None, **kw):
        # On a CPU, Ultralytics' device selection sets torch's thread count for the whole process to
        # cpu_count - 1 (1 on a 2-core machine), which would halve the dehazer's speed: put it back.
        threads = torch.get_num_threads()
        self._threads = threads  # a graph runtime runs on as many (see _match_threads)
        try:
            return (yolo or self.yolo).predict(source, conf=self.conf, iou=self.iou, classes=self.class_ids,
                                               verbose=False, device=str(self.device), quantize=self.quantize, **kw)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    @staticmethod
    def _unpack(result) -> Detections:
        boxes = result.boxes
        return Detections(boxes.xyxy.float().cpu().numpy().astype(np.float32),
                          boxes.conf.float().cpu().numpy().astype(np.float32),
                          boxes.cls.cpu().numpy().astype(np.int32))

    @staticmethod
    def _unpack_letterboxed(result, shape, orig_shape) -> Detections:
        """Boxes found on a letterboxed tensor, mapped back to the frame with Ultralytics' own scale_boxes
        (per-axis gains, its padding rounding, clipped to the frame), as its numpy path does."""
        from ultralytics.utils.ops import scale_boxes

        boxes = result.boxes
        xyxy = scale_boxes(tuple(shape), boxes.xyxy.clone(), tuple(orig_shape))
        return Detections(xyxy.float().cpu().numpy().astype(np.float32),
                          boxes.conf.float().cpu().numpy().astype(np.float32),
                          boxes.cls.cpu().numpy().astype(np.int32))

    @torch.inference_mode()
    def __call__(self, frames) -> list[Detections]:
        if len(frames) == 0:
            return []
        if isinstance(frames, torch.Tensor):
            h, w = frames.shape[1:3]
            x, _, _ = letterbox(frames, self.imgsz, self.stride)
            results = self._predict(x.to(self.device))
            return [self._unpack_letterboxed(r, x.shape[2:], (h, w)) for r in results]
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]  # Ultralytics reads numpy images as BGR
        return [self._unpack(r) for r in self._predict(bgr, imgsz=self.imgsz)]
