"""Fog-aware natural-scene statistics of a frame, the kind FADE (Choi, You and Bovik, 2015) builds its fog
density from, written here on tensors so the fog meter can take them as inputs at almost no cost.

Why: natural images have predictable local statistics that fog disturbs in known ways. It flattens the
normalised (MSCN) coefficients and their neighbour products, lowers and evens out local sharpness, drains
contrast energy from the luminance and both colour-opponent channels, and narrows the histogram and
colourfulness. Unlike the mean contrast, these read a dense veil over a textured scene as dense. The meter
gets their frame means; it learns how they map to metres (training/fog_meter/haze_train.py), so no fog-free corpus
model is needed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NSS_COUNT = 9
_C = 1.0 / 255.0              # MSCN stabiliser: one grey level
_HIST_BINS = 32


def _gaussian_blur(x: torch.Tensor, sigma: float = 7.0 / 6.0, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian (7 taps at sigma 7/6, the MSCN window), edges replicated; (N, C, h, w)."""
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _gradient_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude of each channel after a light blur (the contrast energy of a channel): (N, C)."""
    s = _gaussian_blur(x)
    gx = s[..., :, 1:] - s[..., :, :-1]
    gy = s[..., 1:, :] - s[..., :-1, :]
    return (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).sqrt().mean(dim=(2, 3))


def _entropy(luma: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (bits) of each frame's grey histogram in _HIST_BINS bins: (N,)."""
    n = luma.shape[0]
    bins = (luma.reshape(n, -1).clamp(0, 1) * (_HIST_BINS - 1)).round().long()
    counts = torch.zeros(n, _HIST_BINS, device=luma.device, dtype=luma.dtype)
    counts.scatter_add_(1, bins, torch.ones_like(bins, dtype=luma.dtype))
    p = counts / counts.sum(dim=1, keepdim=True)
    return -(p * torch.log2(p.clamp(min=1e-12))).sum(dim=1)


def fog_nss(x: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) RGB in [0, 1] and its (N, 1, h, w) grey -> (N, NSS_COUNT) statistics:

    variance of the MSCN coefficients, variance of their vertical neighbour products, log mean local sharpness
    (the MSCN window's standard deviation), its coefficient of variation, log contrast energy of grey, of
    yellow-blue and of red-green, grey-histogram entropy, colourfulness (Hasler and Suesstrunk)."""
    mu = _gaussian_blur(luma)
    sigma = (_gaussian_blur(luma * luma) - mu * mu).clamp(min=0).sqrt()
    mscn = (luma - mu) / (sigma + _C)
    pair = mscn[..., 1:, :] * mscn[..., :-1, :]
    sharp = sigma.mean(dim=(1, 2, 3))
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    rg, yb = r - g, 0.5 * (r + g) - b
    energy = _gradient_energy(torch.cat([luma, yb, rg], dim=1)).clamp(min=1e-5).log()
    dims = (1, 2, 3)
    colourful = ((rg.var(dim=dims, correction=0) + yb.var(dim=dims, correction=0)).sqrt()
                 + 0.3 * (rg.mean(dim=dims) ** 2 + yb.mean(dim=dims) ** 2).sqrt())
    return torch.stack([
        mscn.var(dim=dims, correction=0), pair.var(dim=dims, correction=0), sharp.clamp(min=1e-5).log(),
        sigma.std(dim=dims, correction=0) / (sharp + 1e-4), energy[:, 0], energy[:, 1], energy[:, 2],
        _entropy(luma), colourful], dim=1)
