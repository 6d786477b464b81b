"""Reading and writing still images as RGB uint8, whatever their depth or channel count."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, OutputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def natural_key(path: Path):
    """Sort frame2 before frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


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


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.stat().st_size == 0:
        raise InputError(f"image file is empty (0 bytes): {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot decode image {path} (corrupt, truncated or not an image)")
    return to_rgb8(img, path)


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, jpeg_quality: int = 95) -> None:
    suffix = path.suffix.lower()
    if alpha is not None and suffix in (".png", ".tif", ".tiff", ".webp"):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        bgr[:, :, 3] = alpha
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    try:
        ok = cv2.imwrite(str(path), bgr, params)
    except cv2.error as exc:
        raise OutputError(f"cannot write image {path}: {exc}") from exc
    if not ok:
        raise OutputError(f"cannot write image {path} (unwritable location or unsupported format)")
