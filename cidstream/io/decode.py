"""What form decoded frames take, and where: the decode paths of video sources.

- ``rgb24``: software decode, FFmpeg converts to RGB on the CPU (simple; costs CPU time per pixel).
- ``yuv420p``: software decode, the 4:2:0 planes are handed on as they are (no conversion, half the
  bytes of RGB to copy) and converted to RGB where the model runs (``ops.color``).
- ``nvdec``: NVDEC decodes on the GPU and frames stay there (PyAV ``is_hw_owned``); their NV12
  planes become CUDA tensors through DLPack, without a copy.
- ``auto``: nvdec on CUDA when FFmpeg can use the GPU, else yuv420p on CUDA; on a CPU the path
  measured cheapest there (docs/benchmarking.md).
Frames in other pixel formats (4:2:2, 10-bit, RGB codecs) are converted to RGB by FFmpeg.
"""
from __future__ import annotations

import av
import torch

from ..errors import ConfigError
from ..frames import Frame, YUVPlanes
from ..ops.color import ColorSpec

DECODE_MODES = ("auto", "rgb24", "yuv420p", "nvdec")
CPU_DEFAULT = "rgb24"
PLANAR_420 = ("yuv420p", "yuvj420p")


def nvdec_available() -> bool:
    try:
        from av.codec.hwaccel import hwdevices_available
    except ImportError:
        return False
    return torch.cuda.is_available() and "cuda" in hwdevices_available()


def resolve_decode(mode: str, device: torch.device) -> str:
    """'auto' -> the cheapest path for frames going to ``device``; explicit modes are checked."""
    if mode not in DECODE_MODES:
        raise ConfigError(f"input.decode must be one of {', '.join(DECODE_MODES)}, got {mode!r}")
    if mode == "auto":
        if device.type == "cuda":
            return "nvdec" if nvdec_available() else "yuv420p"
        return CPU_DEFAULT
    if mode == "nvdec" and (device.type != "cuda" or not nvdec_available()):
        raise ConfigError("input.decode nvdec needs a CUDA device and an FFmpeg with CUDA (use auto, yuv420p or rgb24)")
    return mode


def _hw_plane(plane) -> torch.Tensor:
    return torch.utils.dlpack.from_dlpack(plane.__dlpack__())


class FrameDecoder:
    """Opens a container for one decode path and turns PyAV frames into ``Frame`` objects."""

    def __init__(self, mode: str = "rgb24", device: torch.device | str | None = None):
        self.mode = mode
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.path = {"rgb24": "software, rgb24 on the CPU", "yuv420p": "software, yuv420p planes",
                     "nvdec": "NVDEC, frames stay on the GPU"}[mode]

    def open(self, spec: str, options: dict):
        if self.mode == "nvdec":
            from av.codec.hwaccel import HWAccel

            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            hw = HWAccel("cuda", device=str(index), allow_software_fallback=True, is_hw_owned=True)
            try:
                return av.open(spec, options=options, hwaccel=hw)
            except OSError as exc:  # FFmpeg could not create its CUDA device (seen once on an H100)
                if isinstance(exc, FileNotFoundError):
                    raise
                self.mode, self.path = "yuv420p", f"NVDEC failed to start ({exc.strerror or exc}): software, yuv420p planes"
        return av.open(spec, options=options)

    def frame(self, vf, index: int, **meta) -> Frame:
        fmt = vf.format.name
        if self.mode == "nvdec" and fmt == "cuda":
            # FFmpeg copies each decoded picture on the legacy default stream; wait for that stream
            # only (the pipeline's own work runs on other streams), then take the planes as they are.
            torch.cuda.default_stream(self.device).synchronize()
            y = _hw_plane(vf.planes[0])                 # (H, W), pitched
            uv = _hw_plane(vf.planes[1])                # (H/2, W/2, 2)
            return Frame(None, index, planes=YUVPlanes(y, uv[..., 0], uv[..., 1], ColorSpec.of_frame(vf)), **meta)
        if self.mode != "rgb24" and fmt in PLANAR_420:
            if self.mode == "nvdec" and self.path.startswith("NVDEC"):
                self.path = "NVDEC unavailable for this stream: software, yuv420p planes"
            planes = [torch.from_dlpack(p) for p in vf.planes]  # views of the decoder's buffers, no copy
            return Frame(None, index, planes=YUVPlanes(*planes, ColorSpec.of_frame(vf)), **meta)
        return Frame(vf.to_ndarray(format="rgb24"), index, **meta)
