"""Losses of the three training phases, as small pure functions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM of two [0, 1] batches with a uniform window (per sample, shape (N,))."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pool = lambda t: F.avg_pool2d(t, window, 1, window // 2, count_include_pad=False)  # noqa: E731
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx * mx, pool(y * y) - my * my, pool(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)


def restoration_loss(out: torch.Tensor, clean: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """Per-sample L1 + SSIM term, shape (N,): phases weight samples differently."""
    return (out - clean).abs().mean(dim=(1, 2, 3)) + ssim_weight * (1 - ssim(out, clean))


def dark_channel_prior_loss(out: torch.Tensor, patch: int = 9, inp: torch.Tensor | None = None,
                            sky_tolerance: float = 0.1) -> torch.Tensor:
    """Haze-free outdoor images have a near-zero dark channel: penalise what is left of it.

    Measured on the output clamped to [0, 1]: unclamped, a network lowers it by going negative.
    With the input given, pixels within ``sky_tolerance`` of its airlight (sky, where the prior
    does not hold) are left out, as the runtime's DCP does."""
    # filters.dark_channel(out.clamp(0, 1), patch) in value; max_pool2d kept for its gradient, which gives a
    # window's share to one pixel of a tie (dark_channel splits it): training stays bit-identical
    dark = -F.max_pool2d(-out.clamp(0, 1).amin(dim=1, keepdim=True), patch, 1, patch // 2)
    if inp is None:
        return dark.mean()
    from cidstream.config import DCPParams
    from cidstream.ops.filters import dark_channel, estimate_airlight

    airlight = estimate_airlight(inp, dark_channel(inp, patch), DCPParams().top_fraction)
    keep = ((inp - airlight).abs().mean(dim=1, keepdim=True) > sky_tolerance).float()
    return (dark * keep).sum() / keep.sum().clamp(min=1.0)


def total_variation(out: torch.Tensor) -> torch.Tensor:
    return (out[..., 1:, :] - out[..., :-1, :]).abs().mean() + (out[..., :, 1:] - out[..., :, :-1]).abs().mean()


def scattering_supervision(maps: dict, truth: dict) -> torch.Tensor:
    """Per-sample L1 between cid-lite's scattering head and the generator's own transmission (pooled to the
    head's size) and airlight, shape (N,): phase 1 learns the physics, not only the picture."""
    t_true = F.adaptive_avg_pool2d(truth["t"].to(maps["t_net"]), maps["t_net"].shape[-2:])
    return ((maps["t_net"] - t_true).abs().mean(dim=(1, 2, 3))
            + (maps["airlight"] - truth["airlight"].to(maps["airlight"])).abs().mean(dim=1))


def colour_balance(out: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """Keep the output's channel balance and brightness near the input's: no new casts, no crushing."""
    mo, mi = out.mean(dim=(2, 3)), inp.mean(dim=(2, 3))
    cast = ((mo - mo.mean(dim=1, keepdim=True)) - (mi - mi.mean(dim=1, keepdim=True))).abs().mean()
    return cast + (mo.mean(dim=1) - mi.mean(dim=1)).clamp(max=0).abs().mean()  # darker than the input costs


def covariance(features: torch.Tensor) -> torch.Tensor:
    """(n, d) samples -> (d, d) unbiased covariance."""
    centred = features - features.mean(dim=0, keepdim=True)
    return centred.T @ centred / max(1, features.shape[0] - 1)


def coral_bounded(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_u = 1 - exp(-||C_s - C_t||_F^2 / (4 d^2)): Deep CORAL, bounded to [0, 1) (the paper's phase 2)."""
    d = source.shape[1]
    return 1 - torch.exp(-((covariance(source) - covariance(target)) ** 2).sum() / (4 * d * d))


def unit_scale(samples: torch.Tensor) -> torch.Tensor:
    """Each sample vector rescaled to norm sqrt(d) (entries of order 1), so the bounded CORAL loss
    works in its sensitive range instead of saturating at 1 on raw activations."""
    d = samples.shape[1]
    return samples * (d ** 0.5) / samples.norm(dim=1, keepdim=True).clamp(min=1e-6)


def spatial_samples(feature_map: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N*h*w, C): every position is a sample of the feature distribution."""
    return feature_map.permute(0, 2, 3, 1).reshape(-1, feature_map.shape[1])


class RandomFourierFeatures:
    """Maps each feature dimension separately to ``k`` random Fourier features (StableNet)."""

    def __init__(self, dims: int, k: int = 2, generator: torch.Generator | None = None):
        g = generator or torch.Generator().manual_seed(0)
        self.w = torch.randn(dims, k, generator=g)
        self.b = torch.rand(dims, k, generator=g) * 2 * math.pi

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """(n, d) -> (n, d, k)."""
        return math.sqrt(2.0) * torch.cos(z.unsqueeze(-1) * self.w.to(z) + self.b.to(z))


def weighted_cross_covariance(u: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum of squared weighted covariances between RFF features of *different* dimensions.

    ``u`` (n, d, k), ``weights`` (n,) summing to n."""
    n, d, k = u.shape
    w = (weights / weights.sum()).view(n, 1)
    flat = u.reshape(n, d * k)
    mean = (w * flat).sum(dim=0, keepdim=True)
    centred = flat - mean
    cov = (w * centred).T @ centred  # (d*k, d*k)
    same_dim = torch.block_diag(*[torch.ones(k, k, device=u.device, dtype=u.dtype)] * d).bool()
    return (cov[~same_dim] ** 2).sum()


class SampleWeightLearner:
    """StableNet's sample weighting: softmax logits optimised a few steps per batch to decorrelate
    features, with a memory of past batches' features and weights so weights are global, not per batch."""

    def __init__(self, dims: int, k: int = 2, steps: int = 10, lr: float = 0.3, penalty: float = 1e-3,
                 memory: int = 4, seed: int = 0):
        self.rff = RandomFourierFeatures(dims, k, torch.Generator().manual_seed(seed))
        self.steps, self.lr, self.penalty, self.memory = steps, lr, penalty, memory
        self.past: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Weights (n,) with mean 1 for the batch features ``z`` (n, d); no gradient flows to z."""
        z = z.detach().float()
        n = z.shape[0]
        u_now = self.rff(z)
        logits = torch.zeros(n, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=self.lr)
        u_mem = torch.cat([u for u, _ in self.past] + [u_now]) if self.past else u_now
        w_mem = torch.cat([w for _, w in self.past]) if self.past else torch.zeros(0)
        for _ in range(self.steps):
            w = n * torch.softmax(logits, dim=0)
            all_w = torch.cat([w_mem, w])
            loss = weighted_cross_covariance(u_mem, all_w * len(all_w) / all_w.sum()) + self.penalty * (w ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        w = (n * torch.softmax(logits, dim=0)).detach()
        self.past = (self.past + [(u_now, w)])[-self.memory:]
        return w


def coefficient_smoothness(ab: torch.Tensor, work: torch.Tensor, edge: float = 20.0) -> torch.Tensor:
    """Edge-aware total variation of cid-lite's low-resolution (gain, offset) maps: where the image is
    flat (sky, fog banks) the maps should be flat too, or the output turns blotchy; across image
    edges they may change freely (weight exp(-edge * |grey step|))."""
    guide = F.adaptive_avg_pool2d(work.float().mean(dim=1, keepdim=True), ab.shape[-2:])
    coeff = torch.cat((ab[:, :3].log(), ab[:, 3:]), 1)
    total = ab.new_zeros(())
    for dim in (2, 3):
        n = coeff.shape[dim] - 1
        step = (coeff.narrow(dim, 1, n) - coeff.narrow(dim, 0, n)).abs().mean(dim=1, keepdim=True)
        weight = torch.exp(-edge * (guide.narrow(dim, 1, n) - guide.narrow(dim, 0, n)).abs())
        total = total + (weight * step).mean()
    return total
