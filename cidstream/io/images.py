"""Reading and writing still images as RGB uint8, whatever their depth or channel count.

Images are turned upright at read time: the EXIF orientation of JPEG, PNG and WebP files (phone
photos) is applied to the pixels, as viewers and ``cv2.IMREAD_COLOR`` do (OpenCV's TIFF decoder
applies the TIFF orientation tag itself). The written images carry no orientation tag, and the
detector sees the frames the way a viewer shows the input.
"""
from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from ..config import OutputConfig
from ..errors import InputError, OutputError
from .atomic import write_atomic, write_error

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def natural_key(path: Path):
    """Sort frame2 before frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def natural_path_key(path: Path):
    """Natural order, folder by folder (cam2/ before cam10/)."""
    return [natural_key(Path(part)) for part in path.parts]


def to_rgb8(img: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoded OpenCV image -> (RGB uint8, alpha or None). Handles grey, 16-bit, float and RGBA."""
    if img.dtype == np.uint16:
        img = ((img.astype(np.float32) / 257.0) + 0.5).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{path}: unsupported pixel type {img.dtype}")
    alpha = None
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        alpha = np.ascontiguousarray(img[:, :, 3])
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise InputError(f"{path}: unsupported channel count {img.shape[2]}")
    return np.ascontiguousarray(img), alpha


# How to turn stored pixels upright: (transpose, flip rows, flip columns), applied in that order to
# the first two axes (H, W) of a numpy array or torch tensor. Shared with video display matrices.
UPRIGHT = (False, False, False)
EXIF_ORIENTATIONS = {  # EXIF/TIFF tag 274; the same operations as OpenCV's ApplyExifOrientation
    1: UPRIGHT, 2: (False, False, True), 3: (False, True, True), 4: (False, True, False),
    5: (True, False, False), 6: (True, False, True), 7: (True, True, True), 8: (True, True, False),
}


def orient(a, op: tuple[bool, bool, bool]):
    """``a`` (H, W, ...), numpy array or torch tensor, turned upright by ``op`` (contiguous copy)."""
    transpose, rows, cols = op
    if isinstance(a, np.ndarray):
        if transpose:
            a = a.swapaxes(0, 1)
        if rows:
            a = a[::-1]
        if cols:
            a = a[:, ::-1]
        return np.ascontiguousarray(a)
    if transpose:
        a = a.transpose(0, 1)
    dims = [d for d, flip in ((0, rows), (1, cols)) if flip]
    return (a.flip(dims) if dims else a).contiguous()


def max_image_pixels() -> tuple[int, int]:
    """(pixels, side) limits of an image: OpenCV's own (CV_IO_MAX_IMAGE_PIXELS, default 2^30, and
    CV_IO_MAX_IMAGE_WIDTH/HEIGHT, default 2^20), so that an image is refused by us with its size
    before OpenCV fails on it with an assertion."""
    def env(name, default):
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default
    return env("CV_IO_MAX_IMAGE_PIXELS", 1 << 30), min(env("CV_IO_MAX_IMAGE_WIDTH", 1 << 20),
                                                      env("CV_IO_MAX_IMAGE_HEIGHT", 1 << 20))


def _u16(data, i, big=True):
    return struct.unpack_from(">H" if big else "<H", data, i)[0]


def _tiff_tags(data: bytes, base: int, wanted: tuple) -> dict:
    """Values of the SHORT/LONG ``wanted`` tags of IFD0 of the TIFF structure at ``data[base:]``
    (a TIFF file, or the payload of an EXIF block)."""
    order = data[base:base + 2]
    if order not in (b"II", b"MM"):
        return {}
    big = order == b"MM"
    out = {}
    try:
        ifd = base + struct.unpack_from(">I" if big else "<I", data, base + 4)[0]
        for k in range(min(_u16(data, ifd, big), 1000)):
            e = ifd + 2 + 12 * k
            tag, typ = _u16(data, e, big), _u16(data, e + 2, big)
            if tag in wanted and typ in (3, 4):  # SHORT, LONG: the value sits in the entry itself
                out[tag] = _u16(data, e + 8, big) if typ == 3 else \
                    struct.unpack_from(">I" if big else "<I", data, e + 8)[0]
    except struct.error:
        pass  # a damaged IFD: keep what was read
    return out


def _jpeg_segments(data: bytes):
    """(marker, payload start, payload end) of a JPEG's header segments, up to and including SOS."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        end = i + 2 + _u16(data, i + 2)
        yield marker, i + 4, end
        if marker == 0xDA:
            return
        i = end


def _png_chunks(data: bytes):
    i = 8
    while i + 8 <= len(data):
        n, kind = struct.unpack_from(">I4s", data, i)
        yield kind, i + 8, i + 8 + n
        if kind == b"IEND":
            return
        i += 12 + n


def _webp_chunks(data: bytes):
    i = 12
    while i + 8 <= len(data):
        kind, n = struct.unpack_from("<4sI", data, i)
        yield kind, i + 8
        i += 8 + n + (n & 1)


def image_header(data: bytes) -> tuple[str | None, tuple[int, int] | None, int]:
    """(format, (width, height) as the file declares it or None, EXIF orientation 1-8 that the
    decoder leaves to us, else 1), read from the file's bytes without decoding any pixel."""
    fmt, size, orientation = None, None, 1
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            fmt = "png"
            for kind, a, b in _png_chunks(data):
                if kind == b"IHDR":
                    size = struct.unpack_from(">II", data, a)
                elif kind == b"eXIf":
                    orientation = _tiff_tags(data[a:b], 0, (274,)).get(274, 1)
        elif data[:2] == b"\xff\xd8":
            fmt = "jpeg"
            for marker, a, b in _jpeg_segments(data):
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack_from(">HH", data, a + 1)
                    size = (width, height)
                elif marker == 0xE1 and data[a:a + 6] == b"Exif\0\0" and orientation == 1:
                    orientation = _tiff_tags(data[a + 6:b], 0, (274,)).get(274, 1)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            fmt = "webp"
            for kind, a in _webp_chunks(data):
                if kind == b"VP8X":
                    size = (1 + int.from_bytes(data[a + 4:a + 7], "little"),
                            1 + int.from_bytes(data[a + 7:a + 10], "little"))
                elif kind == b"VP8 " and size is None:
                    size = (_u16(data, a + 6, False) & 0x3FFF, _u16(data, a + 8, False) & 0x3FFF)
                elif kind == b"VP8L" and size is None:
                    bits = struct.unpack_from("<I", data, a + 1)[0]
                    size = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
                elif kind == b"EXIF":
                    n = struct.unpack_from("<I", data, a - 4)[0]
                    exif = data[a:a + n]
                    exif = exif[6:] if exif.startswith(b"Exif\0\0") else exif
                    orientation = _tiff_tags(exif, 0, (274,)).get(274, 1)
        elif data[:4] in (b"II*\0", b"MM\0*"):
            fmt = "tiff"  # OpenCV's TIFF decoder applies the orientation tag itself
            tags = _tiff_tags(data, 0, (256, 257))
            if 256 in tags and 257 in tags:
                size = (tags[256], tags[257])
        elif data[:2] == b"BM":
            fmt = "bmp"
            width, height = struct.unpack_from("<HH" if data[14:18] == b"\x0c\0\0\0" else "<ii", data, 18)
            size = (abs(width), abs(height))
    except (struct.error, IndexError, ValueError):
        pass  # a damaged header: the decoder will say so
    return fmt, size, orientation if orientation in EXIF_ORIENTATIONS else 1


def _jpeg_is_complete(data: bytes) -> bool:
    """A JPEG's compressed data ends with the EOI marker; entropy-coded bytes never hold FF D9, so
    its absence after the first scan means the file was cut off (data may follow EOI: motion photos)."""
    sos = None
    for marker, a, _ in _jpeg_segments(data):
        if marker == 0xDA:
            sos = a
    return sos is None or data.find(b"\xff\xd9", sos) >= 0


# What libjpeg, libpng and OpenCV print on stderr while decoding. libjpeg's warnings mean lost or
# damaged pixels (it fills what is missing with grey), except the harmless ones below.
_LIBJPEG = ("Premature end of JPEG file", "Corrupt JPEG data", "Invalid SOS parameters",
            "Inconsistent progression sequence", "Warning: unknown JFIF revision",
            "Unknown Adobe color transform", "Application transferred too many scanlines")
_NATIVE = _LIBJPEG + ("libpng warning", "libpng error", "[ WARN:", "[ERROR:", "[ INFO:")
_HARMLESS = ("unknown JFIF revision", "Unknown Adobe color transform")
_EXTRANEOUS = re.compile(r"(\d+) extraneous bytes before marker")


def _jpeg_damage(lines: list[str]) -> str | None:
    """The libjpeg warning that says pixels were lost, if any. A few extraneous bytes before a marker
    are padding some cameras write; hundreds mean the decoder lost track of damaged data."""
    for line in lines:
        line = line.strip()
        if not line.startswith(_LIBJPEG) or any(h in line for h in _HARMLESS):
            continue
        extra = _EXTRANEOUS.search(line)
        if extra is None or int(extra.group(1)) > 32:
            return line
    return None


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _native_stderr():
    """Collect what the C decoders write to file descriptor 2 during the block (libjpeg prints its
    warnings there) into the yielded list, so that the user sees our one-line error and nothing else.
    Other lines caught meanwhile (another thread's output) are written through afterwards."""
    lines: list[str] = []
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            saved = None  # no usable stderr: nothing to silence
        if saved is None:
            yield lines
            return
        tmp = tempfile.TemporaryFile()
        try:
            os.dup2(tmp.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            tmp.close()
            other = []
            for line in text.splitlines(keepends=True):
                (lines if line.lstrip().startswith(_NATIVE) else other).append(line)
            if other:
                os.write(2, "".join(other).encode())


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """An image file as (RGB uint8 upright, alpha or None). Refused with an InputError: empty,
    unreadable, larger than the pixel limit (before decoding), truncated or corrupt (libjpeg would
    fill the missing part with grey: a silently wrong result), or not an image."""
    if path.stat().st_size == 0:
        raise InputError(f"image file is empty (0 bytes): {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    fmt, size, orientation = image_header(data)
    limit, side = max_image_pixels()
    if size is not None and (size[0] * size[1] > limit or max(size) > side):
        raise InputError(f"image {path} is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, above the limit of "
                         f"{limit:,} pixels ({side:,} per side; environment CV_IO_MAX_IMAGE_PIXELS)")
    if fmt == "jpeg" and not _jpeg_is_complete(data):
        raise InputError(f"image {path} is truncated: its JPEG data ends before the end-of-image marker "
                         "(the missing part would come out grey)")
    img, failure = None, ""
    with _native_stderr() as noise:
        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            failure = str(exc)
    if "CV_IO_MAX_IMAGE" in failure:
        raise InputError(f"image {path} is larger than the limit of {limit:,} pixels ({side:,} per side; "
                         "environment CV_IO_MAX_IMAGE_PIXELS)")
    if img is None or img.size == 0:
        raise InputError(f"cannot decode image {path} (corrupt, truncated or not an image)")
    damage = _jpeg_damage(noise)
    if damage:
        raise InputError(f"image {path} is corrupt (libjpeg: {damage}): parts of it would come out wrong")
    if orientation != 1 and fmt in ("jpeg", "png", "webp"):
        img = orient(img, EXIF_ORIENTATIONS[orientation])
    return to_rgb8(img, path)


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None,
                jpeg_quality: int = OutputConfig.jpeg_quality) -> None:
    """Encode and write atomically; ``alpha`` is kept where the format has one. ``jpeg_quality`` defaults
    to the config's output.jpeg_quality, so a direct call writes what a default run writes."""
    suffix = path.suffix.lower()
    if alpha is not None and suffix in (".png", ".tif", ".tiff", ".webp"):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        bgr[:, :, 3] = alpha
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    try:
        ok, data = cv2.imencode(suffix, bgr, params)
    except cv2.error as exc:
        raise OutputError(f"cannot write image {path}: {exc}") from exc
    if not ok:
        raise OutputError(f"cannot encode image {path} as {suffix}")
    try:  # encoded here and written by us: a full disk is told as such (imwrite only says False), never half a file
        write_atomic(path, data.tobytes(), sync=False)
    except OSError as exc:
        raise write_error(path, exc) from exc
