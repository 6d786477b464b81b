"""What form decoded frames take, and where: the decode paths of video sources.

- ``rgb24``: software decode, FFmpeg converts to RGB on the CPU (simple; costs CPU time per pixel).
- ``yuv420p``: software decode, the 4:2:0 planes are handed on as they are (no conversion, half the
  bytes of RGB to copy) and converted to RGB where the model runs (``ops.color``).
- ``nvdec``: NVDEC decodes on the GPU and frames stay there (PyAV ``is_hw_owned``); their NV12
  planes become CUDA tensors through DLPack, without a copy.
- ``auto``: nvdec on CUDA when FFmpeg can use the GPU, else yuv420p on CUDA; on a CPU the path
  measured cheapest there (docs/benchmarking.md).
Frames in other pixel formats (4:2:2, 10-bit, RGB codecs) are converted to RGB by FFmpeg.

Rotation: a display matrix (phone videos: the stream's rotation, or per-frame side data) is applied
to the pixels here, on every path (RGB arrays, 4:2:0 planes, NVDEC planes on the GPU), the way
FFmpeg's own command line does (autorotate). Applying it, rather than copying the tag to the output,
is the choice because the model and the detector must see upright frames too: the source's size
(``probe_orientation``), the frames, the detections and the output (written without a tag) are all
upright, as a player shows the input.
"""
from __future__ import annotations

import logging
import math
import struct

import av
import torch

from ..config import InputConfig, words
from ..errors import ConfigError
from ..frames import Frame, YUVPlanes
from ..ops.color import ColorSpec
from .images import UPRIGHT, orient

log = logging.getLogger(__name__)
_DISPLAYMATRIX = av.sidedata.sidedata.Type.DISPLAYMATRIX

DECODE_MODES = tuple(words(InputConfig, "decode"))  # the setting's words, defined once in config
CPU_DEFAULT = "rgb24"
PLANAR_420 = ("yuv420p", "yuvj420p")


def nvdec_available() -> bool:
    """This PyAV's FFmpeg can decode on a CUDA device; whether there is a GPU is the device choice's question
    (engine/device.py): callers ask for a device that is already CUDA."""
    try:
        from av.codec.hwaccel import hwdevices_available
    except ImportError:
        return False
    return "cuda" in hwdevices_available()


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


def display_matrix(vf) -> tuple | None:
    """The frame's display matrix (9 ints, FFmpeg's AV_FRAME_DATA_DISPLAYMATRIX layout) or None."""
    for sd in vf.side_data:
        if sd.type == _DISPLAYMATRIX:
            return struct.unpack("=9i", bytes(sd))
    return None


def matrix_orientation(m) -> tuple[tuple[bool, bool, bool], float]:
    """(op for ``images.orient``, clockwise display angle) of a display matrix, decided as FFmpeg's
    command line does (fftools: get_rotation, then transpose/hflip/vflip); an angle that is not a
    multiple of 90 degrees gives UPRIGHT (the caller warns)."""
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if not scale0 or not scale1:
        return UPRIGHT, 0.0
    theta = -round(-math.degrees(math.atan2(m[1] / scale1, m[0] / scale0)))  # av_display_rotation_get
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return ((True, False, False) if m[3] > 0 else (True, False, True)), theta    # cclock_flip / clock
    if abs(theta - 180) < 1:
        return (False, m[4] < 0, m[0] < 0), theta                                    # vflip, hflip
    if abs(theta - 270) < 1:
        return ((True, True, True) if m[3] < 0 else (True, True, False)), theta      # clock_flip / cclock
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return (False, m[4] < 0, False), 0.0                                          # vflip
    return UPRIGHT, theta


def probe_orientation(spec: str, options: dict | None = None) -> tuple[bool, bool, bool]:
    """The display orientation of the first frame of the first video stream of ``spec`` (UPRIGHT when
    it has none or cannot be read: decoding will say why), so that a source can announce its upright
    size before decoding. Costs one open and one decoded frame."""
    try:
        with av.open(spec, options=options or {}) as container:
            for vf in container.decode(container.streams.video[0]):
                m = display_matrix(vf)
                return matrix_orientation(m)[0] if m is not None else UPRIGHT
    except (av.error.FFmpegError, OSError, IndexError, ValueError, UnicodeDecodeError):
        pass
    return UPRIGHT


class FrameDecoder:
    """Opens a container for one decode path and turns PyAV frames into ``Frame`` objects."""

    def __init__(self, mode: str = "rgb24", device: torch.device | str | None = None):
        self.mode = mode
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.path = {"rgb24": "software, rgb24 on the CPU", "yuv420p": "software, yuv420p planes",
                     "nvdec": "NVDEC, frames stay on the GPU"}[mode]
        self._matrix, self._op = None, UPRIGHT  # the last display matrix seen and what it asks for

    def orientation(self, vf) -> tuple[bool, bool, bool]:
        """What turns this frame upright (see ``images.orient``), from its display matrix."""
        m = display_matrix(vf)
        if m != self._matrix:
            self._matrix = m
            self._op, theta = matrix_orientation(m) if m is not None else (UPRIGHT, 0.0)
            if self._op == UPRIGHT and theta:
                log.warning("the video's display matrix turns the picture %.0f degrees clockwise, not a multiple "
                            "of 90: frames are processed as stored, not turned", theta)
        return self._op

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
        """The decoded ``vf`` as a Frame, turned upright by its display matrix: each 4:2:0 plane is
        turned the same way (software decoding hands a frame of odd size that must turn over as RGB,
        since flipping a plane of odd size would shift its chroma by one pixel; NVDEC keeps planes)."""
        fmt = vf.format.name
        op = self.orientation(vf)
        if self.mode == "nvdec" and fmt == "cuda":
            y = _hw_plane(vf.planes[0])                 # (H, W), pitched
            uv = _hw_plane(vf.planes[1])                # (H/2, W/2, 2)
            u, v = uv[..., 0], uv[..., 1]
            if op != UPRIGHT:
                # Copies queued on the default stream, after FFmpeg's copy of the picture (also there).
                with torch.cuda.stream(torch.cuda.default_stream(self.device)):
                    y, u, v = orient(y, op), orient(u, op), orient(v, op)
            # FFmpeg copies each decoded picture on the legacy default stream; wait for that stream
            # only (the pipeline's own work runs on other streams), then take the planes.
            torch.cuda.default_stream(self.device).synchronize()
            return Frame(None, index, planes=YUVPlanes(y, u, v, ColorSpec.of_frame(vf)), **meta)
        even = vf.width % 2 == 0 and vf.height % 2 == 0
        if self.mode != "rgb24" and fmt in PLANAR_420 and (op == UPRIGHT or even):
            if self.mode == "nvdec" and self.path.startswith("NVDEC"):
                self.path = "NVDEC unavailable for this stream: software, yuv420p planes"
            planes = [torch.from_dlpack(p) for p in vf.planes]  # views of the decoder's buffers, no copy
            if op != UPRIGHT:
                planes = [orient(p, op) for p in planes]
            return Frame(None, index, planes=YUVPlanes(*planes, ColorSpec.of_frame(vf)), **meta)
        image = vf.to_ndarray(format="rgb24")
        return Frame(orient(image, op) if op != UPRIGHT else image, index, **meta)
