"""The dehazing stage: uint8 frames in, uint8 frames out; float only on the device."""
from __future__ import annotations

import contextlib
import json

import numpy as np
import torch
import torch.nn.functional as F

from ..config import GateConfig
from ..models import DehazeModel, ExportedModel, LoadedModel, load_model
from .device import DTYPES, select_device, select_precision
from .haze import HazeGate
from .temporal import TemporalSmoother


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> torch.Tensor:
    """Pad right/bottom so H and W are multiples of ``multiple`` and at least ``min_size``.

    Reflection where the frame is large enough (no artificial edges for the network),
    replication otherwise. The caller crops back, so no pixel is lost.
    """
    h, w = x.shape[-2:]
    if not (isinstance(h, int) and isinstance(w, int)):
        # Symbolic sizes (a graph exported with --dynamic): the graph needs frames of at least
        # max(multiple, min_size) pixels per side, and for those this is the branch below (reflect).
        return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="reflect")

    def target(n: int) -> int:
        n = max(n, min_size)
        return -(-n // multiple) * multiple

    ph, pw = target(h) - h, target(w) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def frames_to_input(frames: torch.Tensor, net: DehazeModel) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the network's input: float NCHW, padded to its multiple, normalised.

    The exported graphs (``cidstream export``) run this same code, so they match the dehazer.
    """
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    x = pad_to_multiple(x, net.pad_multiple, net.min_size)
    return net.normalization.prepare(x)


def output_to_frames(y: torch.Tensor, net: DehazeModel, h, w) -> torch.Tensor:
    """The network's output -> uint8 (N, h, w, 3): output mapping, crop back, clamp and round."""
    y = net.normalization.finish(y.float())[:, :, :h, :w]
    return y.mul(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class Dehazer:
    """Callable pipeline stage.

    ``dehazer(frames)`` takes (N, H, W, 3) uint8 RGB as a numpy array (returns numpy) or a
    torch tensor (returns a tensor on the dehazer's device, so a detector can take it there).
    A model instance passed in is put in eval mode with its BatchNorms folded into the convolutions:
    pass a copy of a model you are still training.
    """

    def __init__(self, model: str | LoadedModel | DehazeModel = "dcp", device: str = "auto",
                 precision: str = "auto", channels_last: bool = True, random_init: bool = False,
                 dcp: dict | None = None,
                 temporal: dict | bool | None = None):
        if isinstance(model, str):
            model = load_model(model, random_init=random_init, dcp=dcp)
        elif isinstance(model, DehazeModel):
            model = LoadedModel(model, model.arch)
        self.loaded = model
        self.device = select_device(device)
        # An exported graph (cidstream export) takes and returns uint8 frames itself: normalisation,
        # padding and precision are inside it, so process() hands it the frames as they are.
        self.exported = isinstance(self.net, ExportedModel)
        self.precision = select_precision(precision, self.device)
        if self.exported:
            self.device = self.net.use_device(self.device, explicit=(device or "auto").lower() != "auto")
            self.precision = self.net.precision
        elif not self.net.low_precision_ok:
            self.precision = "fp32"
        # channels_last helps convolutions; the classical DCP has none.
        self.channels_last = channels_last and self.net.trainable
        self.net.to(self.device).eval().fuse_for_inference()
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self._init_temporal(temporal)
        # Measured but not gated unless configured (from_config: the gate section, default skip), so
        # the Python API and exported-graph parity keep plain dehazing.
        self.gate = HazeGate(**{**vars(GateConfig()), "policy": "off"})
        self.last_haze = None

    @staticmethod
    def config_sections(cfg, model: str | None = None) -> dict:
        """Everything ``from_config`` reads from a config, and nothing else: the model name and its dcp
        parameters, the engine's device, precision and channels_last, and the temporal and gate sections.
        ``config_spec`` hashes the same dict, so a cache of loaded dehazers cannot miss a setting."""
        e = cfg.engine
        return {"model": model or cfg.model.name, "dcp": dict(vars(cfg.model.dcp)), "device": e.device,
                "precision": e.precision, "channels_last": e.channels_last, "temporal": dict(vars(cfg.temporal)),
                "gate": dict(vars(cfg.gate))}

    @classmethod
    def config_spec(cls, cfg, model: str | None = None) -> str:
        """A hashable key of ``config_sections``: equal keys give interchangeable dehazers."""
        return json.dumps(cls.config_sections(cfg, model), sort_keys=True, default=str)

    @classmethod
    def from_config(cls, cfg, random_init: bool = False, model: str | None = None) -> "Dehazer":
        """Build from a ``cidstream.config.Config`` (the sections ``config_sections`` lists); ``model``
        overrides the name."""
        s = cls.config_sections(cfg, model)
        dehazer = cls(s["model"], device=s["device"], precision=s["precision"], channels_last=s["channels_last"],
                      random_init=random_init, dcp=s["dcp"], temporal=s["temporal"])
        dehazer.gate = HazeGate(**s["gate"])
        return dehazer

    @property
    def net(self) -> DehazeModel:
        return self.loaded.model

    @property
    def name(self) -> str:
        return self.loaded.label

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def upload(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 host array -> uint8 tensor on the device (pinned, async on CUDA)."""
        t = torch.from_numpy(np.ascontiguousarray(frames))
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    @torch.inference_mode()
    def process(self, frames: torch.Tensor, stream: str | None = None) -> torch.Tensor:
        """uint8 (N, H, W, 3) on the device -> dehazed uint8 (N, H, W, 3) on the device.

        ``stream``: consecutive frames of one video source (its id), for state kept over time; a list
        of ids, one per frame, when a batch mixes sources (cameras in live); None for independent images."""
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        h, w = frames.shape[1:3]
        frames = frames.to(self.device, non_blocking=True)
        if self.exported:
            out = self.net(frames)
        else:
            x = frames_to_input(frames, self.net)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                y = self._forward(x, stream)
            out = output_to_frames(y, self.net, h, w)
        return self._gate(frames, out, stream)

    def _init_temporal(self, temporal: dict | bool | None) -> None:
        """Video smoothing (engine/temporal.py) for models that expose low-resolution estimates
        (cid-lite, dcp: ``forward_smoothed``); cid and exported graphs run frame by frame."""
        opts = {} if temporal is None or temporal is True else ({"enabled": False} if temporal is False else temporal)
        self.temporal = None
        if opts.get("enabled", True) and not self.exported and hasattr(self.net, "forward_smoothed"):
            self.temporal = TemporalSmoother(alpha=opts.get("alpha", 0.25), level_alpha=opts.get("level_alpha", 0.3),
                                             cut_threshold=opts.get("cut_threshold", 0.08),
                                             motion=opts.get("motion", 0.04))

    def _forward(self, x: torch.Tensor, stream) -> torch.Tensor:
        """The network on a prepared batch; ``stream`` is one key for the whole batch, a list of keys
        (one per frame, e.g. cameras batched together in live) or None (independent images)."""
        streams = list(stream) if isinstance(stream, (list, tuple)) else [stream] * x.shape[0]
        if self.temporal is None or all(s is None for s in streams):
            return self.net(x)
        if len(streams) != x.shape[0]:
            raise ValueError(f"{len(streams)} stream ids for {x.shape[0]} frames")
        self.temporal.begin(x, streams)
        return self.temporal.steady_level(x, self.net.forward_smoothed(x, self.temporal.smooth))

    def _gate(self, frames: torch.Tensor, out: torch.Tensor, stream: str | None) -> torch.Tensor:
        """Haze gating (engine/haze.py): clear frames kept raw or blended by their visibility, since
        dehazing a clear frame can cost detections. The measure runs under every policy (it is cheap)
        and is kept, on the device, as ``last_haze``: (3, N) level, visibility_m, strength."""
        out, self.last_haze = self.gate(frames, out)
        return out

    def __call__(self, frames):
        if isinstance(frames, torch.Tensor):
            return self.process(frames)
        frames = np.asarray(frames)
        if frames.ndim == 3:
            return self(frames[None])[0]
        return self.process(self.upload(frames)).cpu().numpy()
