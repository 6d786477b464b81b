"""Attention building blocks shared by the CID network and its lite variant.

Attribute names follow the official CID checkpoint layout (``conv1``, ``calayer.ca``,
``palayer.pa``, ``refine1``...), so an official state dict loads without renaming keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_conv(in_ch: int, out_ch: int, kernel: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias)


class ChannelAttention(nn.Module):
    """One gate per channel from the global mean: re-weights feature maps by haze context."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.ca(self.avg_pool(x))


class PixelAttention(nn.Module):
    """One gate per pixel shared by all channels: thick and thin haze get different treatment."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.pa = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, 1, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pa(x)


class AttentionBlock(nn.Module):
    """conv-ReLU-residual-conv, channel attention, pixel attention, outer residual (FFA/CID block)."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.conv1 = same_conv(channels, channels, kernel)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = same_conv(channels, channels, kernel)
        self.calayer = ChannelAttention(channels)
        self.palayer = PixelAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.act1(self.conv1(x)) + x
        res = self.palayer(self.calayer(self.conv2(res)))
        return res + x


class PyramidEnhancer(nn.Module):
    """Adds context pooled at four scales (1/32 ... 1/4) before the last refinement conv."""

    POOLS = (32, 16, 8, 4)

    def __init__(self, in_channels: int, out_channels: int, width: int = 20):
        super().__init__()
        self.relu = nn.LeakyReLU(0.2, inplace=True)
        self.refine1 = same_conv(in_channels, width, 3)
        self.refine2 = same_conv(width, width, 3)
        self.conv1010 = nn.Conv2d(width, 1, 1)
        self.conv1020 = nn.Conv2d(width, 1, 1)
        self.conv1030 = nn.Conv2d(width, 1, 1)
        self.conv1040 = nn.Conv2d(width, 1, 1)
        self.refine3 = same_conv(width + len(self.POOLS), out_channels, 3)
        # Unused by forward; present in the official checkpoints, so kept for strict loading.
        self.batch1 = nn.InstanceNorm2d(100, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.relu(self.refine2(self.relu(self.refine1(x))))
        size = feat.shape[-2:]
        heads = (self.conv1010, self.conv1020, self.conv1030, self.conv1040)
        context = [
            F.interpolate(self.relu(head(F.avg_pool2d(feat, k))), size=size, mode="nearest")
            for head, k in zip(heads, self.POOLS)
        ]
        return torch.tanh(self.refine3(torch.cat(context + [feat], dim=1)))
