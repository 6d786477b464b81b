"""YUV 4:2:0 <-> RGB on whatever device the planes are on.

Decoders hand out 4:2:0 planes (half the bytes of RGB); converting them where the model runs keeps
the CPU free and the copy small. The conversion follows FFmpeg's own (swscale's default path):
chroma repeated 2x2 (no interpolation), the stream's matrix and range, results truncated to 8 bits,
so it lands within 2 levels of ``VideoFrame.to_ndarray(format="rgb24")``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Kr, Kb of each matrix; the names follow PyAV's Colorspace enum values.
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
_AV_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}


@dataclass(frozen=True)
class ColorSpec:
    """How a stream's YUV maps to RGB: matrix and range. FFmpeg treats untagged video as BT.601
    limited range, and so do we."""

    matrix: str = "bt601"
    full_range: bool = False

    @classmethod
    def of_frame(cls, frame) -> "ColorSpec":
        """From a PyAV VideoFrame's tags (``colorspace``, ``color_range``; yuvj formats are full range)."""
        matrix = _AV_COLORSPACE.get(int(frame.colorspace or 2), "bt601")
        fmt = frame.format.name if frame.format is not None else ""
        full = int(frame.color_range or 0) == 2 or fmt.startswith("yuvj")
        return cls(matrix, full)

    def coefficients(self) -> tuple[float, float, float, float, float, float]:
        """(luma scale, luma offset, R<-V, G<-U, G<-V, B<-U) with the range folded in."""
        kr, kb = MATRICES[self.matrix]
        kg = 1.0 - kr - kb
        ys, yo, cs = (1.0, 0.0, 1.0) if self.full_range else (255.0 / 219.0, 16.0, 255.0 / 224.0)
        return (ys, yo, 2 * (1 - kr) * cs, -2 * kb * (1 - kb) / kg * cs, -2 * kr * (1 - kr) / kg * cs,
                2 * (1 - kb) * cs)


def yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, spec: ColorSpec = ColorSpec()) -> torch.Tensor:
    """uint8 planes y (N, H, W), u and v (N, ceil(H/2), ceil(W/2)) -> uint8 RGB (N, H, W, 3), same device."""
    h, w = y.shape[-2:]
    ys, yo, rv, gu, gv, bu = spec.coefficients()
    luma = (y.float() - yo) * ys
    cu = u.float() - 128.0
    cv = v.float() - 128.0
    # Chroma is repeated 2x2, then cropped (odd sizes have a half-used last chroma column/row).
    r_c = (rv * cv).repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]
    g_c = (gu * cu + gv * cv).repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]
    b_c = (bu * cu).repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]
    rgb = torch.stack((luma + r_c, luma + g_c, luma + b_c), dim=-1)
    return rgb.clamp_(0.0, 255.0).to(torch.uint8)  # truncation, as swscale's fast path


def rgb_to_yuv420(rgb: torch.Tensor, spec: ColorSpec = ColorSpec()) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3), H and W even -> uint8 I420 frames (N, H * 3 // 2, W): the Y plane, then
    U and V (each H/2 x W/2) packed row after row, the layout ``VideoFrame.from_ndarray(.., 'yuv420p')``
    takes. Chroma is the mean of each 2x2 block."""
    n, h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs an even frame size, got {w}x{h}")
    kr, kb = MATRICES[spec.matrix]
    kg = 1.0 - kr - kb
    ys, yo, cs = (1.0, 0.0, 1.0) if spec.full_range else (219.0 / 255.0, 16.0, 224.0 / 255.0)
    x = rgb.permute(0, 3, 1, 2).float()
    luma = kr * x[:, 0] + kg * x[:, 1] + kb * x[:, 2]                       # (N, H, W), 0..255
    y = luma * ys + yo
    xs = F.avg_pool2d(x, 2)                                                # (N, 3, H/2, W/2)
    luma_s = kr * xs[:, 0] + kg * xs[:, 1] + kb * xs[:, 2]
    u = (xs[:, 2] - luma_s) / (2 * (1 - kb)) * cs + 128.0
    v = (xs[:, 0] - luma_s) / (2 * (1 - kr)) * cs + 128.0
    planes = [p.reshape(n, -1) for p in (y, u, v)]
    out = torch.cat(planes, dim=1).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
    return out.view(n, h * 3 // 2, w)
