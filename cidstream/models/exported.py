"""Graphs written by ``cidstream export`` (ONNX, TorchScript), run as a dehazing model.

An exported graph takes uint8 RGB frames (N, H, W, 3) and returns them dehazed in the same form:
normalisation, padding, precision, clamp and rounding are inside it. ``ExportedModel`` wraps one
so ``cidstream run --model FILE.onnx`` works; the ``Dehazer`` sees that it is one and hands it
the frames as they are. ONNX files run in onnxruntime (imported only here, only when used).
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import DeviceError, InputError, WeightsError
from .base import DehazeModel, frames_to_input, output_to_frames

FORMAT = "cidstream-export"
FORMAT_VERSION = 1
# ONNX: metadata_props["cidstream"] holds the whole record as JSON (flat, readable keys beside it);
# TorchScript: the extra file "cidstream.json" inside the archive.
METADATA_KEY = "cidstream"
TORCHSCRIPT_EXTRA = "cidstream.json"
INPUT_NAME, OUTPUT_NAME = "frames", "dehazed"
SUFFIXES = {".onnx": "onnx", ".ts": "torchscript", ".torchscript": "torchscript"}


def exported_format(path: str | Path) -> str | None:
    """'onnx' or 'torchscript' when ``path`` is (named like) an exported graph, else None.

    A ``.pt`` file (Triton's name for TorchScript models) counts when it holds our metadata.
    """
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    if path.suffix.lower() == ".pt" and path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                if any(n.endswith(f"/extra/{TORCHSCRIPT_EXTRA}") for n in zf.namelist()):
                    return "torchscript"
        except (OSError, zipfile.BadZipFile):
            return None
    return None


def _read_metadata(path: Path, fmt: str) -> dict:
    if fmt == "onnx":
        try:
            import onnx

            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise WeightsError(f"cannot read ONNX file {path}: {type(exc).__name__}: {exc}") from exc
        props = {p.key: p.value for p in proto.metadata_props}
        text = props.get(METADATA_KEY)
    else:
        # A TorchScript file is a zip archive; extra files lie under <archive name>/extra/.
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(f"/extra/{TORCHSCRIPT_EXTRA}")]
                text = zf.read(names[0]).decode("utf-8") if names else None
        except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise WeightsError(f"cannot read TorchScript file {path}: {type(exc).__name__}: {exc}") from exc
    if not text:
        raise WeightsError(f"{path} was not written by 'cidstream export' (no '{METADATA_KEY}' metadata): "
                           "its input and output layout are unknown")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: unreadable cidstream metadata ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: export format {meta.get('format')} v{meta.get('format_version')} is not "
                           f"supported by this cidstream (expects {FORMAT} v{FORMAT_VERSION})")
    return meta


class ExportedModel(DehazeModel):
    """An exported graph as a model: ``model(frames)`` takes and returns uint8 (N, H, W, 3) tensors."""

    arch = "exported"
    trainable = False
    low_precision_ok = False

    def __init__(self, path: str | Path, fmt: str, metadata: dict):
        super().__init__()
        self.path, self.format, self.metadata = Path(path), fmt, metadata
        self.arch = metadata.get("arch", "exported")
        shape = metadata.get("input_size") or {}
        self.fixed_size = None if metadata["export"].get("dynamic") else (shape["height"], shape["width"])
        self.min_side = int(metadata.get("min_side", 1))
        self.max_short_side = metadata.get("max_short_side")
        self.runner = None
        self.device = None

    @property
    def precision(self) -> str:
        return self.metadata["export"].get("precision", "fp32")

    def fuse_for_inference(self) -> "ExportedModel":
        return self

    def use_device(self, device: torch.device, explicit: bool = True) -> torch.device:
        """Start the runtime for ``device``; returns the device the frames should be on.

        onnxruntime without CUDA (the ``onnxruntime`` package) runs on the CPU: an error when cuda was
        asked for by name, a quiet fallback for ``auto``. TorchScript runs where it was traced.
        """
        if self.format == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, torch.get_num_threads())
            opts.log_severity_level = 3
            providers = ["CPUExecutionProvider"]
            if device.type == "cuda":
                if "CUDAExecutionProvider" in ort.get_available_providers():
                    providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
                elif explicit:
                    raise DeviceError("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu), "
                                      "so the ONNX model cannot run on cuda: use --device cpu")
                else:
                    device = torch.device("cpu")
            try:
                self.runner = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
            except Exception as exc:
                raise WeightsError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        else:
            traced = torch.device(self.metadata["export"].get("device", "cpu"))
            if traced.type != device.type:
                if explicit:
                    raise DeviceError(f"{self.path.name} was exported (traced) on {traced.type} and runs there "
                                      f"only: use --device {traced.type}, or export again with --device {device.type}")
                device = traced
            try:
                with warnings.catch_warnings():  # torch 2.14 marks TorchScript deprecated; it still loads
                    warnings.simplefilter("ignore", FutureWarning)
                    self.runner = torch.jit.load(str(self.path), map_location=device).eval()
            except Exception as exc:
                raise WeightsError(f"cannot load TorchScript file {self.path}: {exc}") from exc
        self.device = device
        return device

    def check_size(self, h: int, w: int) -> None:
        if self.fixed_size is not None and (h, w) != tuple(self.fixed_size):
            fh, fw = self.fixed_size
            raise InputError(f"{self.path.name} was exported for {fw}x{fh} frames, the input is {w}x{h}: export "
                             f"again with --width {w} --height {h}, or with --dynamic")
        if self.fixed_size is None and min(h, w) < self.min_side:
            raise InputError(f"{self.path.name} (exported with --dynamic) needs frames of at least {self.min_side} "
                             f"pixels per side, the input is {w}x{h}: export a fixed size for it")
        if self.fixed_size is None and self.max_short_side and min(h, w) > self.max_short_side:
            raise InputError(f"{self.path.name} (exported with --dynamic) handles frames whose short side is at most "
                             f"{self.max_short_side} pixels, the input is {w}x{h}: export with --width {w} "
                             f"--height {h} for it")

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        self.check_size(*frames.shape[1:3])
        if self.runner is None:
            self.use_device(frames.device, explicit=False)
        if self.format == "torchscript":
            return self.runner(frames.to(self.device))
        # ONNX through onnxruntime: host arrays in and out (also with its CUDA provider).
        out = self.runner.run([OUTPUT_NAME], {INPUT_NAME: frames.cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out).to(frames.device)


class FramesGraph(torch.nn.Module):
    """What ``cidstream export`` writes: uint8 (N, H, W, 3) RGB -> dehazed uint8 (N, H, W, 3), i.e.
    ``Dehazer.process`` as one module (its own input/output functions around ``net``)."""

    def __init__(self, net: DehazeModel, half: bool = False):
        super().__init__()
        self.net, self.half_precision = net, half

    def forward(self, frames: torch.Tensor) -> torch.Tensor:

        h, w = frames.shape[1], frames.shape[2]
        x = frames_to_input(frames, self.net)
        if self.half_precision:
            x = x.half()
        return output_to_frames(self.net(x), self.net, h, w)


def load_exported(path: str | Path) -> ExportedModel:
    """An ONNX or TorchScript file written by ``cidstream export``; its runtime starts on first use."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"exported model not found: {path}" if not path.exists()
                           else f"exported model path is not a file: {path}")
    fmt = exported_format(path)
    if fmt is None:
        raise WeightsError(f"{path}: not an exported model (.onnx, .ts, .torchscript)")
    return ExportedModel(path, fmt, _read_metadata(path, fmt))
