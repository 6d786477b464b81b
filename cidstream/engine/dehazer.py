"""The dehazing stage: uint8 frames in, uint8 frames out; float only on the device."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from ..config import GateConfig
from ..cpu_runtime import resolve_cpu_runtime
from ..frames import HazeRecord, to_device
from ..models import CIDLite, DehazeModel, ExportedModel, LoadedModel, load_model
from ..models.base import frames_to_input, output_to_frames
from .device import DTYPES, is_auto, select_device, select_precision
from .coefficient_graph import FASTEST, CoefficientGraph
from .haze import HazeGate, apply_gate
from .temporal import TemporalSmoother


@dataclass(frozen=True)
class DehazerSpec:
    """Everything a Dehazer is built from, and nothing else: the model name and its dcp parameters, the
    engine's device, precision and channels_last, the temporal and gate sections. Hashable: the batch
    worker's cache key of loaded dehazers (equal specs give interchangeable dehazers) and part of the
    ledger's fingerprint."""

    model: str
    device: str
    precision: str
    channels_last: bool
    cpu_runtime: str
    dcp: tuple              # sorted (key, value) pairs of each section
    temporal: tuple
    gate: tuple

    @classmethod
    def from_config(cls, cfg, model: str | None = None) -> "DehazerSpec":
        e = cfg.engine

        def items(section) -> tuple:
            return tuple(sorted(vars(section).items()))

        return cls(model or cfg.model.name, e.device, e.precision, e.channels_last, e.cpu_runtime,
                   items(cfg.model.dcp), items(cfg.temporal), items(cfg.gate))

    def as_dict(self) -> dict:
        return {"model": self.model, "device": self.device, "precision": self.precision,
                "channels_last": self.channels_last, "cpu_runtime": self.cpu_runtime, "dcp": dict(self.dcp),
                "temporal": dict(self.temporal), "gate": dict(self.gate)}


class Dehazer:
    """Callable pipeline stage.

    ``dehazer(frames)`` takes (N, H, W, 3) uint8 RGB as a numpy array (returns numpy) or a
    torch tensor (returns a tensor on the dehazer's device, so a detector can take it there).
    A model instance passed in is put in eval mode with its BatchNorms folded into the convolutions:
    pass a copy of a model you are still training. ``cpu_runtime`` (auto, openvino, onnxruntime) runs
    cid-lite's network as a graph on a CPU at fp32 (cidstream/cpu_runtime.py); torch, the default here,
    keeps it in PyTorch (the config's default is auto).
    """

    def __init__(self, model: str | LoadedModel | DehazeModel = "dcp", device: str = "auto",
                 precision: str = "auto", channels_last: bool = True, random_init: bool = False,
                 dcp: dict | None = None,
                 temporal: dict | bool | None = None, cpu_runtime: str = "torch"):
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
            self.device = self.net.use_device(self.device, explicit=not is_auto(device))
            self.precision = self.net.precision
        elif not self.net.low_precision_ok:
            self.precision = "fp32"
        # channels_last helps convolutions; the classical DCP has none.
        self.channels_last = channels_last and self.net.trainable
        self.net.to(self.device).eval().fuse_for_inference()
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self._init_temporal(temporal)
        self.runtime, self.coefficients = "torch", None
        if isinstance(self.net, CIDLite) and self.net.trainable:
            self.runtime = resolve_cpu_runtime(cpu_runtime, self.device, self.precision, order=FASTEST)
            if self.runtime != "torch":
                self.coefficients = CoefficientGraph(self.net, self.runtime)
        # Measured but not gated unless configured (from_config: the gate section, default skip), so
        # the Python API and exported-graph parity keep plain dehazing.
        self.gate = HazeGate(**{**vars(GateConfig()), "policy": "off"})

    @classmethod
    def from_spec(cls, spec: "DehazerSpec", random_init: bool = False) -> "Dehazer":
        dehazer = cls(spec.model, device=spec.device, precision=spec.precision, channels_last=spec.channels_last,
                      random_init=random_init, dcp=dict(spec.dcp), temporal=dict(spec.temporal),
                      cpu_runtime=spec.cpu_runtime)
        dehazer.gate = HazeGate(**dict(spec.gate), cut_threshold=dict(spec.temporal)["cut_threshold"])
        return dehazer

    @classmethod
    def from_config(cls, cfg, random_init: bool = False, model: str | None = None) -> "Dehazer":
        """Build from a ``cidstream.config.Config`` (what ``DehazerSpec.from_config`` takes); ``model``
        overrides the name."""
        return cls.from_spec(DehazerSpec.from_config(cfg, model), random_init)

    @property
    def net(self) -> DehazeModel:
        return self.loaded.model

    @property
    def name(self) -> str:
        return self.loaded.label

    @property
    def compute(self) -> str:
        """The precision, and the CPU runtime where it is not torch: what summaries print."""
        return self.precision if self.runtime == "torch" else f"{self.precision}, {self.runtime}"

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def upload(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 host array -> uint8 tensor on the device (pinned, async on CUDA)."""
        return to_device(frames, self.device)

    @torch.inference_mode()
    def process(self, frames: torch.Tensor, stream: str | None = None) -> torch.Tensor:
        """uint8 (N, H, W, 3) on the device -> dehazed uint8 (N, H, W, 3) on the device.

        ``stream``: consecutive frames of one video source (its id), for state kept over time; a list
        of ids, one per frame, when a batch mixes sources (cameras in live); None for independent images."""
        return self.process_measured(frames, stream)[0]

    @torch.inference_mode()
    def process_measured(self, frames: torch.Tensor, stream=None) -> tuple[torch.Tensor, HazeRecord]:
        """``process``, and each frame's haze measure: (dehazed frames, the HazeRecord of HazeGate.decide, on the
        device). Clear frames are kept
        raw or blended by their visibility (engine/haze.py), since dehazing a clear frame can cost detections; on
        video the strength follows the stream's smoothed visibility. The measure runs under every policy (it is
        cheap).

        The measure runs first and the network only on the frames the gate keeps some of (strength > 0): a
        frame left raw costs the measure alone and comes out bit-identical to its input, and a stream whose
        frame was left raw starts its temporal smoothing afresh when it is dehazed again."""
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        frames = to_device(frames, self.device)
        if self.exported:  # a size the graph cannot take is an error on the first frame, clear or not
            self.net.check_size(*frames.shape[1:3])
        haze = self.gate.decide(frames, stream)
        if self.gate.policy == "off":
            return self._dehaze(frames, stream), haze
        if not self.gate.skip_raw:
            return apply_gate(frames, self._dehaze(frames, stream), haze.strength), haze
        keep = (haze.strength > 0).cpu()  # a few bytes: which frames the network must see
        streams = list(stream) if isinstance(stream, (list, tuple)) else [stream] * frames.shape[0]
        if self.temporal is not None:
            for key in {k for k, kept in zip(streams, keep.tolist()) if not kept and k is not None}:
                self.temporal.reset(key)
        if not bool(keep.any()):
            return frames, haze
        if bool(keep.all()):
            out = self._dehaze(frames, stream)
        else:
            idx = keep.nonzero().squeeze(1)
            at = idx.to(frames.device)
            out = frames.clone()  # the frames left raw stay as they came
            out[at] = self._dehaze(frames[at], [streams[i] for i in idx.tolist()])
        return apply_gate(frames, out, haze.strength), haze

    def _dehaze(self, frames: torch.Tensor, stream) -> torch.Tensor:
        """The network alone on uint8 frames on the device: the dehazed uint8 frames."""
        if self.exported:
            return self.net(frames)
        h, w = frames.shape[1:3]
        x = frames_to_input(frames, self.net)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            y = self._forward(x, stream)
        return output_to_frames(y, self.net, h, w)

    def _init_temporal(self, temporal: dict | bool | None) -> None:
        """Video smoothing (engine/temporal.py) for models that expose low-resolution estimates
        (cid-lite, dcp: ``forward_smoothed``); cid and exported graphs run frame by frame. Smoothing is on
        unless ``enabled`` is false; a setting ``temporal`` leaves out takes TemporalSmoother's default,
        which is TemporalConfig's, so no number is repeated here. Other keys are ignored."""
        opts = {} if temporal is None or temporal is True else ({"enabled": False} if temporal is False else temporal)
        self.temporal = None
        if opts.get("enabled", True) and not self.exported and hasattr(self.net, "forward_smoothed"):
            given = {k: opts[k] for k in ("alpha", "level_alpha", "cut_threshold", "motion") if k in opts}
            self.temporal = TemporalSmoother(**given)

    def _forward(self, x: torch.Tensor, stream) -> torch.Tensor:
        """The network on a prepared batch; ``stream`` is one key for the whole batch, a list of keys
        (one per frame, e.g. cameras batched together in live) or None (independent images)."""
        streams = list(stream) if isinstance(stream, (list, tuple)) else [stream] * x.shape[0]
        if self.temporal is None or all(s is None for s in streams):
            return self._network(x, None)
        if len(streams) != x.shape[0]:
            raise ValueError(f"{len(streams)} stream ids for {x.shape[0]} frames")
        self.temporal.begin(x, streams)
        return self.temporal.steady_level(x, self._network(x, self.temporal.smooth))

    def _network(self, x: torch.Tensor, smooth) -> torch.Tensor:
        if self.coefficients is not None:  # cid-lite's network in a CPU runtime, the rest here
            return self.net.forward_smoothed(x, smooth, self.coefficients)
        return self.net(x) if smooth is None else self.net.forward_smoothed(x, smooth)

    def __call__(self, frames):
        if isinstance(frames, torch.Tensor):
            return self.process(frames)
        frames = np.asarray(frames)
        if frames.ndim == 3:
            return self(frames[None])[0]
        return self.process(self.upload(frames)).cpu().numpy()
