"""Typed objects passed between stages: one decoded frame, a temporal batch of them, stream facts.

Pixels travel in the form the decoder gave them: RGB arrays (images, rgb24 decoding), or 4:2:0 planes
(``YUVPlanes``) on the host or, with NVDEC, already on the GPU. A batch becomes RGB where the model
runs (``FrameBatch.to_device``); host RGB is made only for the sinks that need it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Mapping

import numpy as np
import torch

from .ops.color import ColorSpec, yuv420_to_rgb



def to_device(data, device: torch.device) -> torch.Tensor:
    """A host array or a tensor on ``device``: from the host through pinned memory and asynchronously to a GPU,
    shared (no copy) where it already is. The one upload every stage uses."""
    t = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(data))
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class HazeRecord:
    """Each frame's haze measure (engine/haze.py HazeGate.decide), by name: ``level``, ``visibility_m``, the gate
    ``strength``, the meter's ``uncertainty`` factor and the ``steady_m`` visibility the gate followed. The rows of
    one (5, N) array (a tensor on the device, or host floats), so a batch's record moves and slices as one piece."""

    ROWS = ("level", "visibility_m", "strength", "uncertainty", "steady_m")
    __slots__ = ("values",)

    def __init__(self, values):
        if tuple(values.shape[:1]) != (len(self.ROWS),):
            raise ValueError(f"a haze record has {len(self.ROWS)} rows, got shape {tuple(values.shape)}")
        self.values = values

    level = property(lambda self: self.values[0])
    visibility_m = property(lambda self: self.values[1])
    strength = property(lambda self: self.values[2])
    uncertainty = property(lambda self: self.values[3])
    steady_m = property(lambda self: self.values[4])

    def __len__(self) -> int:
        return int(self.values.shape[1])

    def select(self, indices) -> "HazeRecord":
        return HazeRecord(self.values[:, indices])


@dataclass
class YUVPlanes:
    """4:2:0 planes: y (..., H, W), u and v (..., ceil(H/2), ceil(W/2)); numpy arrays or torch tensors
    (host or device). One frame's planes have no leading dimension, a batch's have N."""

    y: object
    u: object
    v: object
    color: ColorSpec = ColorSpec()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.y.shape[-2:])

    @property
    def on_device(self) -> bool:
        return isinstance(self.y, torch.Tensor) and self.y.device.type != "cpu"

    @classmethod
    def stack(cls, planes: list["YUVPlanes"]) -> "YUVPlanes":
        first = planes[0]
        if isinstance(first.y, torch.Tensor):
            return cls(*(torch.stack([getattr(p, k) for p in planes]) for k in "yuv"), first.color)
        return cls(*(np.stack([getattr(p, k) for p in planes]) for k in "yuv"), first.color)

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The planes as tensors on ``device`` (pinned, non-blocking copies from the host on CUDA)."""
        return tuple(to_device(p, device) for p in (self.y, self.u, self.v))


@dataclass
class Frame:
    """One frame with where it came from. Pixels are ``image`` (RGB uint8 (H, W, 3), numpy) or
    ``planes`` (4:2:0, see YUVPlanes); ``rgb()`` gives host RGB either way."""

    image: np.ndarray | None
    index: int
    pts: int | None = None          # presentation timestamp in the source's time base
    time: float | None = None       # seconds from the start of the source
    name: str | None = None         # file name, for image-folder sources
    alpha: np.ndarray | None = None  # kept aside for RGBA images, re-attached on write
    captured_at: float | None = None  # time.monotonic() when decoded (latency accounting)
    planes: YUVPlanes | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.image.shape[:2] if self.image is not None else self.planes.shape

    @property
    def layout(self) -> tuple:
        """Frames of one layout stack into one batch: same size, same pixel form and device."""
        if self.image is not None:
            return ("rgb", *self.image.shape[:2])
        return ("yuv420", self.planes.on_device, self.planes.color, *self.planes.shape)

    def rgb(self) -> np.ndarray:
        if self.image is None:
            self.image = FrameBatch.of([self]).host_rgb()[0]
        return self.image


@dataclass
class FrameBatch:
    """Consecutive frames of one layout from one source: ``images`` (N, H, W, 3) uint8 RGB or
    ``planes`` (YUVPlanes with a leading N)."""

    images: np.ndarray | None
    frames: list[Frame]
    source_id: str = ""
    planes: YUVPlanes | None = None
    streams: tuple | None = None    # the stream of each frame when a batch mixes them (live cameras)
    _host: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, frames: list[Frame], source_id: str = "", streams: tuple | None = None) -> "FrameBatch":
        if frames[0].image is not None:
            return cls(np.stack([f.image for f in frames]), frames, source_id, streams=streams)
        return cls(None, frames, source_id, YUVPlanes.stack([f.planes for f in frames]), streams)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames[0].shape

    @property
    def indices(self) -> list[int]:
        return [f.index for f in self.frames]

    @property
    def times(self) -> list[float | None]:
        return [f.time for f in self.frames]

    def to_device(self, device: torch.device) -> torch.Tensor:
        """uint8 RGB (N, H, W, 3) on ``device``: RGB is copied there, 4:2:0 is copied (half the bytes)
        and converted there."""
        if self.images is not None:
            return to_device(self.images, device)
        return yuv420_to_rgb(*self.planes.tensors(device), self.planes.color)

    def host_rgb(self) -> np.ndarray:
        """uint8 RGB (N, H, W, 3) on the host (converted once, on the CPU, when the batch is 4:2:0)."""
        if self.images is not None:
            return self.images
        if self._host is None:
            where = self.planes.y.device if self.planes.on_device else torch.device("cpu")
            self._host = self.to_device(where).cpu().numpy()
        return self._host


class DeviceFrames:
    """A tensor the pipeline made on its device, and the moment it is ready (a CUDA event on the
    stream that made it). ``prefetch()`` starts the copy to pinned host memory without waiting;
    ``get()`` gives the host array, waiting only for this tensor, from any thread. On the CPU the
    tensor already is the host array."""

    def __init__(self, tensor: torch.Tensor, prefetch: bool = False):
        self._lock = threading.Lock()
        self._tensor, self._host, self._array = tensor, None, None
        self._event = None
        if tensor.device.type == "cuda":
            self._event = torch.cuda.Event()
            if prefetch:
                self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                self._host.copy_(tensor, non_blocking=True)
            self._event.record()

    def get(self) -> np.ndarray:
        with self._lock:
            if self._array is None:
                if self._event is not None:
                    self._event.synchronize()
                host = self._host if self._host is not None else self._tensor.cpu()
                self._array, self._tensor, self._host = host.numpy(), None, None
            return self._array


def _host(value):
    return value.get() if isinstance(value, DeviceFrames) else value


@dataclass(frozen=True)
class BatchResult:
    """What the pipeline hands to every sink per batch; frozen, so one sink cannot change what the next
    reads. Frames the pipeline kept on the device arrive as ``DeviceFrames`` that sinks wait for in their
    own threads; ``dehazed_i420`` is set when the encoder's 4:2:0 planes were made on the device (half
    the bytes of RGB to download)."""

    batch: FrameBatch
    dehazed_frames: object = None   # (N, H, W, 3) uint8: numpy or DeviceFrames (None: no sink reads them)
    arms: Mapping[str, list] = field(default_factory=dict)  # arm (dehazed, raw, raw_b, dehazed_b, fused, fused_b)
    i420_frames: object = None      # -> list[Detections]; (N, H*3/2, W) uint8 I420: numpy, DeviceFrames or None
    raw_frames: object = None       # host RGB of the raw frames when they were on the device
    haze_values: object = None      # the (5, N) rows of a HazeRecord (on the device, or host floats)
    #                                 factor (NaN: the measure gives none) (engine/haze.py), or None

    def __post_init__(self):
        object.__setattr__(self, "arms", MappingProxyType(dict(self.arms)))

    @property
    def detections(self) -> list | None:
        """Detections on the dehazed frames (None: no detector)."""
        return self.arms.get("dehazed")

    @property
    def raw_detections(self) -> list | None:
        """Detections on the raw frames (compare mode)."""
        return self.arms.get("raw")

    def stream(self, name: str) -> list | None:
        """The detections of one arm."""
        return self.arms.get(name)

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def dehazed(self) -> np.ndarray:
        return _host(self.dehazed_frames)

    @property
    def dehazed_i420(self) -> np.ndarray | None:
        return _host(self.i420_frames)

    @property
    def haze(self) -> HazeRecord | None:
        """Each frame's haze measure as host floats (None: not measured)."""
        return None if self.haze_values is None else HazeRecord(np.asarray(_host(self.haze_values), dtype=np.float64))

    def haze_record(self, i: int) -> dict:
        """{"haze", "visibility_m", "visibility_factor", "visibility_steady_m", "gate"} of frame ``i`` for the
        outputs ({} when not measured). visibility_factor: the visibility is within /factor..*factor about two
        times in three (the learned meter's own uncertainty; absent for the training-free measures);
        visibility_steady_m: the stream's smoothed visibility the gate followed (the reading itself for images)."""
        h = self.haze
        if h is None:
            return {}
        record = {"haze": round(float(h.level[i]), 4), "visibility_m": round(float(h.visibility_m[i]), 1)}
        if np.isfinite(h.uncertainty[i]):
            record["visibility_factor"] = round(float(h.uncertainty[i]), 3)
        record["visibility_steady_m"] = round(float(h.steady_m[i]), 1)
        return {**record, "gate": round(float(h.strength[i]), 3)}

    @property
    def raw(self) -> np.ndarray:
        """The raw frames as host RGB (N, H, W, 3)."""
        return _host(self.raw_frames) if self.raw_frames is not None else self.batch.host_rgb()

    def select(self, indices: list[int], source_id: str = "",
               needs: frozenset = frozenset({"dehazed", "i420", "raw"})) -> "BatchResult":
        """The result of some of the batch's frames (live: one camera's share of a batch of several).
        The host forms in ``needs`` (see Sink.needs) are downloaded once for the whole batch, then shared
        out; the others are left behind."""
        def rows(value, form: str):
            host = _host(value) if form in needs else None
            return None if host is None else host[indices]

        haze = _host(self.haze_values)
        return BatchResult(FrameBatch.of([self.batch.frames[i] for i in indices], source_id),
                           rows(self.dehazed_frames, "dehazed"),
                           {k: [v[i] for i in indices] for k, v in self.arms.items()},
                           rows(self.i420_frames, "i420"), rows(self.raw_frames, "raw"),
                           None if haze is None else haze[:, indices])


@dataclass
class StreamInfo:
    """What a sink needs to reproduce the source's timing and size."""

    source: str
    kind: str                       # "video", "images" or "live"
    width: int | None = None
    height: int | None = None
    fps: Fraction | None = None
    time_base: Fraction | None = None
    frame_count: int | None = None  # None when unknown (live streams, some containers)
    codec: str | None = None
    has_audio: bool = False
    location: str | None = field(default=None, repr=False)  # to open it again (a URL with its password): never shown
