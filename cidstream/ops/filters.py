"""The dark channel prior's filters on tensors (any device, batch first): separable min filter, dark
channel, box and guided filters, airlight. The DCP model, the haze gate, cid-lite and the training
losses share them."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _min_along(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Running minimum of width ``size`` (odd) along ``dim``, edges replicated.

    Window doubling: minima over 2, 4, 8... samples, so a 15-wide window costs 4 passes, not 15.
    """
    pad = size // 2
    first, last = x.narrow(dim, 0, 1), x.narrow(dim, x.shape[dim] - 1, 1)
    shape = list(x.shape)
    shape[dim] = pad
    y = torch.cat([first.expand(shape), x, last.expand(shape)], dim=dim)
    n = x.shape[dim]
    width = 1
    while width * 2 <= size:
        length = y.shape[dim] - width
        y = torch.minimum(y.narrow(dim, 0, length), y.narrow(dim, width, length))
        width *= 2
    if width < size:  # cover the rest with one overlapping step
        shift = size - width
        length = y.shape[dim] - shift
        y = torch.minimum(y.narrow(dim, 0, length), y.narrow(dim, shift, length))
    return y.narrow(dim, 0, n)


def min_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Separable erosion of an (N, 1, H, W) map with a size x size square."""
    return _min_along(_min_along(x, size, 2), size, 3)


def dark_channel(x: torch.Tensor, patch: int) -> torch.Tensor:
    return min_filter(x.amin(dim=1, keepdim=True), patch)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window clipped at the borders, in O(1) per pixel via cumulative sums."""

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        c = torch.cumsum(t, dim=dim)
        c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)
        idx = torch.arange(n, device=t.device)
        hi = (idx + radius + 1).clamp(max=n)
        lo = (idx - radius).clamp(min=0)
        shape = [1] * t.dim()
        shape[dim] = n
        count = (hi - lo).to(t.dtype).view(shape)
        return (c.index_select(dim, hi) - c.index_select(dim, lo)) / count

    return along(along(x, 2), 3)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float, subsample: int = 1) -> torch.Tensor:
    """He et al.'s grey-guide guided filter: edges of ``guide`` shape the smoothed ``src``.

    With ``subsample`` > 1 the linear coefficients are computed on a reduced grid and upsampled
    (the "fast guided filter"); the output keeps full-resolution edges from ``guide``.
    """
    full_size = guide.shape[-2:]
    g, p, r = guide, src, radius
    if subsample > 1:
        low = (max(1, full_size[0] // subsample), max(1, full_size[1] // subsample))
        g = F.interpolate(guide, size=low, mode="bilinear", align_corners=False, antialias=True)
        p = F.interpolate(src, size=low, mode="bilinear", align_corners=False, antialias=True)
        r = max(1, round(radius / subsample))
    mean_i = box_filter(g, r)
    mean_p = box_filter(p, r)
    cov_ip = box_filter(g * p, r) - mean_i * mean_p
    var_i = box_filter(g * g, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = box_filter(a, r), box_filter(b, r)
    if subsample > 1:
        mean_a = F.interpolate(mean_a, size=full_size, mode="bilinear", align_corners=False)
        mean_b = F.interpolate(mean_b, size=full_size, mode="bilinear", align_corners=False)
    return mean_a * guide + mean_b


def estimate_airlight(x: torch.Tensor, dark: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """Mean colour of the pixels with the brightest dark channel, shape (N, 3, 1, 1)."""
    n = x.shape[0]
    flat_dark = dark.reshape(n, -1)
    k = max(1, torch.sym_int(flat_dark.shape[1] * top_fraction))  # stays symbolic in an exported graph
    idx = flat_dark.topk(k, dim=1).indices                        # (N, k)
    pixels = x.reshape(n, 3, -1).gather(2, idx.unsqueeze(1).expand(n, 3, k))
    return pixels.mean(dim=2).clamp(min=0.05).view(n, 3, 1, 1)


def grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) BT.601 luma."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def relative_contrast(luma: torch.Tensor) -> torch.Tensor:
    """3x3 local standard deviation over local mean (+0.05), per pixel: what fog flattens."""
    mean = box_filter(luma, 1)
    std = (box_filter(luma * luma, 1) - mean * mean).clamp(min=0).sqrt()
    return std / (mean + 0.05)


def dcp_transmission(x: torch.Tensor, dark: torch.Tensor, patch: int, omega: float,
                     top_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(airlight (N, 3, 1, 1), transmission t = 1 - omega * dark channel of x / airlight, (N, 1, H, W))."""
    airlight = estimate_airlight(x, dark, top_fraction)
    return airlight, 1.0 - omega * dark_channel(x / airlight, patch)
