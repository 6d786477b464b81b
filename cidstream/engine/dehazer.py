"""The dehazing stage: uint8 frames in, uint8 frames out; float only on the device."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ..models import DehazeModel, ExportedModel, LoadedModel, load_model
from .device import DTYPES, select_device, select_precision


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
                 dcp: dict | None = None):
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

    @classmethod
    def from_config(cls, cfg, random_init: bool = False, model: str | None = None) -> "Dehazer":
        """Build from a ``cidstream.config.Config`` (model and engine sections); ``model`` overrides the name."""
        e = cfg.engine
        return cls(model or cfg.model.name, device=e.device, precision=e.precision, channels_last=e.channels_last,
                   random_init=random_init, dcp=vars(cfg.model.dcp))

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
    def process(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) on the device -> dehazed uint8 (N, H, W, 3) on the device."""
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        h, w = frames.shape[1:3]
        frames = frames.to(self.device, non_blocking=True)
        if self.exported:
            return self.net(frames)
        x = frames_to_input(frames, self.net)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            y = self.net(x)
        return output_to_frames(y, self.net, h, w)

    def __call__(self, frames):
        if isinstance(frames, torch.Tensor):
            return self.process(frames)
        frames = np.asarray(frames)
        if frames.ndim == 3:
            return self(frames[None])[0]
        return self.process(self.upload(frames)).cpu().numpy()
