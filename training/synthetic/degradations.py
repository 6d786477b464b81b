"""Degradations as batched tensor functions: (N, 3, H, W) float in [0, 1] in, same out.

Every function takes per-sample parameters as tensors of shape (N,) (or (N, 3) for colours),
so one call degrades a whole batch with different settings per image, on the CPU or the GPU.
Randomness comes only from the ``generator`` passed in, so a seed reproduces a sample exactly.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1, 1) on x's device and dtype."""
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def smooth_field(n: int, h: int, w: int, scale: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """Smooth random field in about [-1, 1], (N, 1, H, W): low-resolution noise, bicubically enlarged."""
    gh, gw = max(2, math.ceil(h / scale) + 1), max(2, math.ceil(w / scale) + 1)
    coarse = torch.randn(n, 1, gh, gw, generator=generator, device=generator.device)
    field = F.interpolate(coarse.to(device), size=(h, w), mode="bicubic", align_corners=False)
    return (field / field.abs().amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)).clamp(-1, 1)


def luminance(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def haze(x: torch.Tensor, depth: torch.Tensor, beta: torch.Tensor, airlight: torch.Tensor,
         patchiness: torch.Tensor | None = None, height_falloff: torch.Tensor | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta * d), depth d in [0, 1].

    ``patchiness`` (N,) modulates beta by a smooth random field (non-homogeneous fog, 0 = uniform);
    ``height_falloff`` (N,) thins the fog towards the top of the frame: beta * exp(-k * (1 - y / H)).
    ``airlight`` is (N, 3).
    """
    return scatter(x, transmission(x, depth, beta, patchiness, height_falloff, generator), airlight)


def transmission(x: torch.Tensor, depth: torch.Tensor, beta: torch.Tensor, patchiness: torch.Tensor | None = None,
                 height_falloff: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The transmission map t (N, 1, H, W) that ``haze`` applies: training supervises a dehazer's own with it."""
    n, _, h, w = x.shape
    b = _col(beta, x).expand(n, 1, h, w)
    if patchiness is not None and generator is not None and bool((patchiness > 0).any()):
        field = smooth_field(n, h, w, max(8, min(h, w) // 4), generator, x.device)
        b = b * (1.0 + _col(patchiness, x) * field).clamp(min=0.0)
    if height_falloff is not None:
        rows = torch.linspace(0.0, 1.0, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
        b = b * torch.exp(-_col(height_falloff, x) * (1.0 - rows))
    return torch.exp(-b * depth.to(x.dtype))


def scatter(x: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor) -> torch.Tensor:
    """I = J t + A (1 - t) for a transmission map and an (N, 3) airlight."""
    a = airlight.to(device=x.device, dtype=x.dtype).view(x.shape[0], 3, 1, 1)
    return (x * t + a * (1.0 - t)).clamp(0.0, 1.0)


def low_light(x: torch.Tensor, gamma: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
    """Darken like an underexposed night frame: exposure * J^gamma (gamma > 1 crushes shadows)."""
    return (_col(exposure, x) * x.clamp(min=0).pow(_col(gamma, x))).clamp(0.0, 1.0)


def _gaussian_kernel1d(sigma: float, device) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    k = torch.exp(-(torch.arange(-radius, radius + 1, device=device, dtype=torch.float32) ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with one sigma for the whole batch."""
    k = _gaussian_kernel1d(sigma, x.device).to(x.dtype)
    c = x.shape[1]
    pad = len(k) // 2
    y = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, pad, pad), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def glow(x: torch.Tensor, strength: torch.Tensor, threshold: torch.Tensor, radius: float = 12.0) -> torch.Tensor:
    """Night haze: light scattered around bright sources (lamps, headlights) as a wide halo."""
    bright = (luminance(x) - _col(threshold, x)).clamp(min=0) / (1 - _col(threshold, x)).clamp(min=1e-3)
    halo = gaussian_blur(x * bright, radius)
    halo = halo + gaussian_blur(x * bright, radius * 3) * 0.5
    return (x + _col(strength, x) * halo).clamp(0.0, 1.0)


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
    return (x + _col(sigma, x) * noise).clamp(0.0, 1.0)


def poisson_gaussian_noise(x: torch.Tensor, shot: torch.Tensor, read: torch.Tensor,
                           generator: torch.Generator) -> torch.Tensor:
    """Sensor noise whose variance grows with the signal: var = shot * I + read^2."""
    noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
    std = torch.sqrt(_col(shot, x) * x.clamp(min=0) + _col(read, x) ** 2)
    return (x + std * noise).clamp(0.0, 1.0)


def chroma_noise(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator, scale: int = 4) -> torch.Tensor:
    """Blotchy low-frequency colour noise, as cheap sensors show in the dark."""
    n, c, h, w = x.shape
    coarse = torch.randn(n, c, max(1, h // scale), max(1, w // scale), generator=generator, device=generator.device)
    noise = F.interpolate(coarse.to(x.device, x.dtype), size=(h, w), mode="bilinear", align_corners=False)
    noise = noise - noise.mean(dim=1, keepdim=True)  # colour only, no brightness change
    return (x + _col(sigma, x) * noise).clamp(0.0, 1.0)


def colour_cast(x: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Per-channel gains (N, 3): white balance gone wrong, dust or sodium light."""
    return (x * gains.to(x.device, x.dtype).view(-1, 3, 1, 1)).clamp(0.0, 1.0)


def _per_sample_conv(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve sample i with kernel i (N, k, k), all channels alike, in one grouped conv."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, k, k)
    y = F.conv2d(F.pad(x.reshape(1, n * c, h, w), (k // 2,) * 4, mode="replicate"), weight, groups=n * c)
    return y.view(n, c, h, w)


def defocus_blur(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Disk kernel of per-sample radius (pixels, fractional allowed through soft edges)."""
    r_max = max(1, int(math.ceil(float(radius.max()))))
    coords = torch.arange(-r_max, r_max + 1, device=x.device, dtype=torch.float32)
    dist = torch.sqrt(coords.view(1, -1, 1) ** 2 + coords.view(1, 1, -1) ** 2)
    disk = (radius.to(x.device).float().view(-1, 1, 1) + 0.5 - dist).clamp(0, 1)
    return _per_sample_conv(x, disk / disk.sum(dim=(1, 2), keepdim=True))


def motion_blur(x: torch.Tensor, length: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Line kernel of per-sample length (pixels) and angle (radians): camera shake, fast traffic."""
    half = max(1, int(math.ceil(float(length.max()) / 2)))
    coords = torch.arange(-half, half + 1, device=x.device, dtype=torch.float32)
    yy, xx = coords.view(-1, 1), coords.view(1, -1)
    a = angle.to(x.device).float().view(-1, 1, 1)
    along = xx * torch.cos(a) + yy * torch.sin(a)
    across = -xx * torch.sin(a) + yy * torch.cos(a)
    line = (1 - across.abs()).clamp(0, 1) * ((length.to(x.device).float().view(-1, 1, 1) / 2 + 0.5
                                              - along.abs()).clamp(0, 1))
    return _per_sample_conv(x, line / line.sum(dim=(1, 2), keepdim=True).clamp(min=1e-6))


def rain(x: torch.Tensor, density: torch.Tensor, length: torch.Tensor, angle: torch.Tensor,
         brightness: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Falling rain as bright streaks: drops scattered with per-sample ``density`` (share of pixels),
    smeared along ``angle`` (radians, pi/2 = straight down) over ``length`` pixels by the exposure, and
    screened onto the frame at ``brightness``."""
    n, _, h, w = x.shape
    drops = torch.rand(n, 1, h, w, generator=generator, device=generator.device).to(x.device, x.dtype)
    drops = (drops < _col(density, drops)).to(x.dtype)
    streaks = motion_blur(drops, length, angle) * _col(length, x)  # one drop -> a line of about 1
    veil = (streaks.clamp(0.0, 1.0) * _col(brightness, x)).expand_as(x)
    return (x + (1.0 - x) * veil).clamp(0.0, 1.0)  # screen blend: brightens, never darkens


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Real JPEG round trip per image (OpenCV's libjpeg, on the CPU)."""
    import cv2

    out = []
    for img, q in zip(x, quality):
        rgb = (img.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        back = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
        out.append(torch.from_numpy(back).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out).to(x.device, x.dtype)


def video_codec(x: torch.Tensor, crf: torch.Tensor) -> torch.Tensor:
    """Real H.264 intra round trip per image (libx264 through PyAV): blocking, ringing, chroma loss."""
    import av
    import numpy as np

    out = []
    for img, q in zip(x, crf):
        rgb = (img.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        h, w = rgb.shape[:2]
        padded = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = padded.shape[1], padded.shape[0], "yuv420p"
        enc.time_base = Fraction(1, 25)
        enc.options = {"crf": str(int(q)), "preset": "veryfast", "tune": "zerolatency"}
        packets = list(enc.encode(av.VideoFrame.from_ndarray(padded, format="rgb24"))) + list(enc.encode(None))
        dec = av.CodecContext.create("h264", "r")
        frames = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
        back = frames[-1].to_ndarray(format="rgb24")[:h, :w]
        out.append(torch.from_numpy(np.ascontiguousarray(back)).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out).to(x.device, x.dtype)
