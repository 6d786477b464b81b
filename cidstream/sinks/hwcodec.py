"""Hardware video encoding (NVENC through PyAV's FFmpeg) when the machine has it, else libx264.

FFmpeg builds list NVENC even where no NVIDIA driver exists, so an encoder is used only after a
real open succeeds. (NVDEC decoding lives with the other decode paths in ``io.decode``.)"""
from __future__ import annotations

import functools
from fractions import Fraction

import av

SOFTWARE_ENCODER = "libx264"
NVENC = "h264_nvenc"


@functools.lru_cache(maxsize=None)
def encoder_opens(codec: str) -> bool:
    if codec not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 25)
        ctx.open()
        return True
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def resolve_encoder(codec: str, device_type: str = "cpu") -> str:
    """'auto' -> NVENC when running on CUDA and it really opens, else libx264; other names pass through."""
    if codec != "auto":
        return codec
    return NVENC if device_type == "cuda" and encoder_opens(NVENC) else SOFTWARE_ENCODER


def encoder_options(codec: str, crf: int, preset: str) -> dict:
    if codec in ("libx264", "libx265"):
        return {"crf": str(crf), "preset": preset}
    if codec.endswith("_nvenc"):
        return {"rc": "vbr", "cq": str(crf), "preset": "p4"}  # constant quality, like crf
    return {}
