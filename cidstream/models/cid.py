"""The CID network: Res2Net-101 v1b encoder (to layer3) and the attention/PixelShuffle decoder.

Module names and shapes follow the official checkpoint so its ``{'model': state_dict}`` file
loads as is (after stripping ``module.``). Only layer1-3 exist: the official encoder stops
at layer3 (1024 channels at 1/16 resolution).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .base import DehazeModel, Normalization
from .blocks import AttentionBlock, PyramidEnhancer


class Bottle2neck(nn.Module):
    """Res2Net bottleneck: the 3x3 stage is split into ``scale`` groups with hierarchical residuals."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 base_width: int = 26, scale: int = 4, first: bool = False):
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        self.width, self.scale, self.first = width, scale, first
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False) for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        # The first block of a stage ("stage" type) pools the untouched split instead of passing it on.
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if first else nn.Identity()
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def fuse_conv_bn(self) -> None:
        self.conv1, self.bn1 = fuse_conv_bn_eval(self.conv1, self.bn1), nn.Identity()
        self.conv3, self.bn3 = fuse_conv_bn_eval(self.conv3, self.bn3), nn.Identity()
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            self.convs[i], self.bns[i] = fuse_conv_bn_eval(conv, bn), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outs = []
        sp = None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = splits[i] if (i == 0 or self.first) else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        outs.append(self.pool(splits[-1]))
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Res2NetEncoder(nn.Module):
    """Res2Net v1b (deep stem, avg-pool downsampling) truncated after layer3."""

    def __init__(self, layers=(3, 4, 23), base_width: int = 26, scale: int = 4):
        super().__init__()
        self.base_width, self.scale = base_width, scale
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_ch = planes * Bottle2neck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_ch:
            downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride=stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(self.inplanes, out_ch, 1, bias=False),
                nn.BatchNorm2d(out_ch),
            )
        layers = [Bottle2neck(self.inplanes, planes, stride, downsample, self.base_width, self.scale, first=True)]
        self.inplanes = out_ch
        layers += [Bottle2neck(out_ch, planes, 1, None, self.base_width, self.scale) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def fuse_conv_bn(self) -> None:
        self.conv1[6], self.bn1 = fuse_conv_bn_eval(self.conv1[6], self.bn1), nn.Identity()

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        return self.layer3(l2), l1, l2


class CIDNet(DehazeModel):
    """The paper's dehazer. Output: tanh map used directly as RGB in [0, 1]; z: pooled mid features."""

    arch = "cid"
    pad_multiple = 16
    min_size = 32  # the enhancer average-pools with a 32-pixel window
    normalization = Normalization(input="symmetric", output="clamp")

    def __init__(self, layers=(3, 4, 23)):
        super().__init__()
        self.layers = tuple(layers)
        self.encoder = Res2NetEncoder(self.layers)
        self.mid_conv = AttentionBlock(1024)
        self.up_block = nn.PixelShuffle(2)
        self.attention1 = AttentionBlock(256)
        self.attention2 = AttentionBlock(192)
        self.enhancer = PyramidEnhancer(28, 28)
        self.tail1 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(28, 3, 7), nn.Tanh())

    def config(self) -> dict:
        return {"layers": list(self.layers)}

    def forward_features(self, x: torch.Tensor):
        deep, l1, l2 = self.encoder(x)
        mid = self.mid_conv(deep)
        y = self.attention1(self.up_block(mid))                       # 256 ch, 1/8
        y = self.attention2(self.up_block(torch.cat((y, l2), dim=1)))  # 192 ch, 1/4
        y = self.up_block(self.up_block(torch.cat((y, l1), dim=1)))    # 28 ch, full size
        image = self.tail1(self.enhancer(y))
        z = mid.mean(dim=(2, 3))
        return image, z
