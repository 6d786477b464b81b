"""cid-lite: our real-time dehazer with CID's interface (image and pooled feature z).

Design: a small inverted-residual encoder down to 1/16, an attention bottleneck (CID's
``mid_conv`` idea at 96 channels), and a decoder that stops at 1/4 of the working resolution. Full-resolution
work is only ``J = a * I + b`` on coefficient maps upsampled by a guided filter, which is the atmospheric
scattering model's own form (J = I / t + A (1 - 1 / t)) and keeps every input pixel's detail. This is what
makes real time on two CPU cores possible (``detail_eps`` adds a half-resolution guided filter of the
luminance; its cost: docs/benchmarking.md, "Round 5 dehazer").

Two heads fill (a, b):

* ``scattering`` (the shipped weights since round 5): the decoder predicts one transmission map t and the
  bottleneck one near-grey airlight A per frame (``airlight_colour: frame``: only its brightness, its colour
  being that of the frame's haziest pixels); a = g / t and b = g A (1 - 1 / t). One t for all three
  colours and one A per frame cannot paint blotches or tints into flat regions, the sky guard (as the
  runtime's DCP) keeps t near 1 where the frame is within ``sky_tolerance`` of A, and g is a global gain
  that keeps at least ``keep_brightness`` of the input's mean luminance without pushing A past white.
* ``affine`` (rounds 1-4): six free per-pixel maps, a per colour and b per colour. It can make anything,
  blotches included; kept so older weights files load.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import DehazeModel, Normalization
from .blocks import AttentionBlock
from ..ops.filters import box_filter, grey, guided_filter


def conv_bn_act(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1; residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expand: int = 4):
        super().__init__()
        hidden = in_ch * expand
        self.use_res = stride == 1 and in_ch == out_ch
        self.block = nn.Sequential(
            conv_bn_act(in_ch, hidden, 1),
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            conv_bn_act(hidden, out_ch, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


def guided_upsample(coeffs: torch.Tensor, work: torch.Tensor, full: torch.Tensor, radius: int = 2,
                    eps: float = 1e-3) -> torch.Tensor:
    """Upsample low-resolution coefficient maps so their edges follow the full-resolution image
    (fast guided filter, grey guide): no halos where depth jumps, e.g. at the horizon."""
    low = coeffs.shape[-2:]
    guide_low = F.adaptive_avg_pool2d(work.float().mean(dim=1, keepdim=True), low)
    mean_g = box_filter(guide_low, radius)
    var_g = box_filter(guide_low * guide_low, radius) - mean_g * mean_g
    mean_p = box_filter(coeffs, radius)
    cov = box_filter(guide_low * coeffs, radius) - mean_g * mean_p
    a = cov / (var_g + eps)
    b = mean_p - a * mean_g
    size = full.shape[-2:]
    a = F.interpolate(box_filter(a, radius), size=size, mode="bilinear", align_corners=False)
    b = F.interpolate(box_filter(b, radius), size=size, mode="bilinear", align_corners=False)
    return a * full.float().mean(dim=1, keepdim=True) + b


HEADS = ("affine", "scattering")
AIRLIGHT_COLOURS = ("network", "frame")
# Settings applied after the scattering model that training switches off (training/dehazer/trainer.py) and export takes
# from the config: they change how the output is shown, not what the network learns.
DISPLAY_SETTINGS = ("keep_brightness", "detail_eps")


class CIDLite(DehazeModel):
    arch = "cid-lite"
    pad_multiple = 16
    min_size = 16
    normalization = Normalization(input="unit", output="clamp")

    def __init__(self, widths=(16, 24, 48, 96), work_short_side: int = 360, head: str = "affine",
                 t_min: float = 0.2, sky_tolerance: float = 0.1, keep_brightness: float = 0.6,
                 max_gain: float = 1.6, refine_radius: int = 2, airlight_colour: str = "network",
                 detail_eps: float = 0.0):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"cid-lite head must be one of {', '.join(HEADS)}, got {head!r}")
        self.head_kind, self.t_min, self.sky_tolerance = head, float(t_min), float(sky_tolerance)
        self.keep_brightness, self.max_gain, self.refine_radius = float(keep_brightness), float(max_gain), int(refine_radius)
        if airlight_colour not in AIRLIGHT_COLOURS:
            raise ValueError(f"cid-lite airlight_colour must be one of {', '.join(AIRLIGHT_COLOURS)}, got {airlight_colour!r}")
        self.airlight_colour, self.detail_eps = airlight_colour, float(detail_eps)
        c1, c2, c3, c4 = self.widths = tuple(widths)
        # Frames whose short side is at least twice this are average-pooled by an integer factor
        # before the encoder: the coefficients are smooth, so 720p and 1080p cost about what 360p does.
        self.work_short_side = work_short_side
        self.stem = nn.Sequential(conv_bn_act(3, c1, 3, 2), conv_bn_act(c1, c2, 3, 2))          # 1/4
        self.enc2 = nn.Sequential(InvertedResidual(c2, c2), InvertedResidual(c2, c2))            # 1/4
        self.enc3 = nn.Sequential(InvertedResidual(c2, c3, 2), InvertedResidual(c3, c3))         # 1/8
        self.enc4 = nn.Sequential(InvertedResidual(c3, c4, 2), InvertedResidual(c4, c4))         # 1/16
        self.mid_conv = AttentionBlock(c4)
        self.dec3 = nn.Sequential(conv_bn_act(c4 + c3, c3, 1), InvertedResidual(c3, c3))         # 1/8
        self.dec2 = nn.Sequential(conv_bn_act(c3 + c2, c2, 1), InvertedResidual(c2, c2))         # 1/4
        self.head = nn.Conv2d(c2 + 3, 6 if head == "affine" else 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # affine starts as the identity: a = 1, b = 0
        if head == "scattering":
            # starts nearly clear (t = 0.9) under a light grey airlight
            nn.init.constant_(self.head.bias, float(torch.logit(torch.tensor((0.9 - self.t_min) / (1 - self.t_min)))))
            self.airlight_head = nn.Linear(c4, 4)  # brightness and three chroma logits
            nn.init.zeros_(self.airlight_head.weight)
            nn.init.constant_(self.airlight_head.bias, 1.0)

    def config(self) -> dict:
        cfg = {"widths": list(self.widths), "work_short_side": self.work_short_side}
        if self.head_kind == "scattering":
            cfg |= {"head": "scattering", "t_min": self.t_min, "sky_tolerance": self.sky_tolerance,
                    "keep_brightness": self.keep_brightness, "max_gain": self.max_gain,
                    "refine_radius": self.refine_radius, "airlight_colour": self.airlight_colour,
                    "detail_eps": self.detail_eps}
        return cfg

    def forward_features(self, x: torch.Tensor):
        image, mid = self.forward_with_map(x)
        return image, mid.mean(dim=(2, 3))

    def forward_with_map(self, x: torch.Tensor):
        """Image and the spatial bottleneck map (N, C, h, w): training aligns its statistics."""
        ab, work, mid = self.coefficient_maps(x)
        return self.apply_coefficients(ab, work, x), mid

    def coefficient_maps(self, x: torch.Tensor):
        """Low-resolution (gain a, offset b) maps (N, 6, h, w), the working-resolution input and the
        bottleneck map; training regularises the maps themselves."""
        work = self.work_input(x)
        ab, mid = self.coefficients(work)
        return ab, work, mid

    def work_input(self, x: torch.Tensor) -> torch.Tensor:
        """The frame the encoder sees: large frames average-pooled by an integer factor."""
        factor = max(1, min(x.shape[-2:]) // self.work_short_side) if self.work_short_side else 1
        return F.avg_pool2d(x, factor, ceil_mode=True) if factor > 1 else x

    def coefficients(self, work: torch.Tensor):
        """The network proper, working resolution in, bounded (a, b) maps and bottleneck out: the part a CPU
        runtime may take over (engine/coefficient_graph.py), since everything before and after it is cheap."""
        logits, mid, small = self._head_logits(work)
        if self.head_kind == "scattering":
            return self._scattering(logits, mid, small)["ab"], mid
        # Bound the coefficients at low resolution, then upsample: full-resolution work stays two ops.
        gain = torch.exp(logits[:, :3].clamp(-2.0, 2.0))   # a = 1 / t, in [0.14, 7.4]
        offset = torch.tanh(logits[:, 3:])                 # b = A (1 - 1 / t), in [-1, 1]
        return torch.cat((gain, offset), 1), mid

    def _head_logits(self, work: torch.Tensor):
        """Encoder, bottleneck and decoder: the head's raw output at 1/4 of ``work``, the bottleneck map and
        ``work`` in [0, 1] pooled to the head's size."""
        s = work * 2.0 - 1.0
        f2 = self.enc2(self.stem(s))
        f3 = self.enc3(f2)
        mid = self.mid_conv(self.enc4(f3))
        y = self.dec3(torch.cat((F.interpolate(mid, size=f3.shape[-2:], mode="bilinear", align_corners=False), f3), 1))
        y = self.dec2(torch.cat((F.interpolate(y, size=f2.shape[-2:], mode="bilinear", align_corners=False), f2), 1))
        small = F.adaptive_avg_pool2d(s, f2.shape[-2:])
        return self.head(torch.cat((y, small), 1)).float(), mid, small * 0.5 + 0.5

    def scattering_maps(self, x: torch.Tensor) -> dict:
        """The scattering head's pieces for a batch: ``t_net`` (the network's transmission, N x 1 x h x w),
        ``t`` (after the sky guard), ``airlight`` (N x 3), ``gain`` (N x 1 x 1 x 1), ``ab``, ``work`` and
        ``mid``: training supervises t_net and the airlight with the generator's own."""
        work = self.work_input(x)
        logits, mid, small = self._head_logits(work)
        return self._scattering(logits, mid, small) | {"work": work, "mid": mid}

    def _scattering(self, logits: torch.Tensor, mid: torch.Tensor, small: torch.Tensor) -> dict:
        """(a, b) of the scattering model from a transmission logit map and the bottleneck; ``small`` is the
        input in [0, 1] at the maps' size."""
        t_net = self.t_min + (1.0 - self.t_min) * torch.sigmoid(logits)
        air = self.airlight_head(mid.float().mean(dim=(2, 3)))
        level = 0.2 + 0.8 * torch.sigmoid(air[:, :1])                 # brightness in [0.2, 1]
        if self.airlight_colour == "frame":
            # the colour of the frame's haziest pixels (a soft top of the per-pixel minimum over colours)
            weights = torch.softmax(small.amin(dim=1).flatten(1) * 40.0, dim=1).unsqueeze(1)   # N x 1 x hw
            colour = (small.flatten(2) * weights).sum(dim=2)                                  # N x 3
            ratio = (colour / colour.mean(dim=1, keepdim=True).clamp(min=1e-3)).clamp(0.85, 1.15)
        else:
            ratio = 1.0 + 0.15 * torch.tanh(air[:, 1:] - air[:, 1:].mean(dim=1, keepdim=True))
        airlight = (level * ratio).clamp(0.05, 1.0)   # each colour within 15 % of the level
        a_map = airlight.view(-1, 3, 1, 1)
        t = t_net
        if self.sky_tolerance > 0:  # |I - A| < K: sky and fog banks, where a small t would amplify noise
            distance = (small - a_map).abs().mean(dim=1, keepdim=True).clamp(min=1e-3)
            t = torch.minimum(t * (self.sky_tolerance / distance).clamp(min=1.0), torch.ones_like(t))
        dehazed = ((small - a_map) / t + a_map).clamp(0.0, 1.0)
        luma = lambda v: 0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3]  # noqa: E731
        darkening = luma(small).mean(dim=(2, 3), keepdim=True) / luma(dehazed).mean(dim=(2, 3), keepdim=True).clamp(min=1e-3)
        ceiling = (1.0 / airlight.amax(dim=1)).view(-1, 1, 1, 1).clamp(min=1.0)
        gain = (self.keep_brightness * darkening).clamp(min=1.0)
        gain = torch.minimum(gain, torch.minimum(ceiling, torch.full_like(ceiling, self.max_gain)))
        inv = 1.0 / t
        ab = torch.cat((gain * inv.expand(-1, 3, -1, -1), gain * a_map * (1.0 - inv)), 1)
        return {"t_net": t_net, "t": t, "airlight": airlight, "gain": gain, "ab": ab}

    def forward_smoothed(self, x: torch.Tensor, smooth=None, coefficients=None) -> torch.Tensor:
        """``forward`` with the low-resolution (a, b) maps passed through ``smooth(name, maps)`` before
        upsampling: video smooths them over time (engine/temporal.py); the guide stays this frame's.
        ``coefficients``: the network as another runtime runs it (engine/coefficient_graph.py)."""
        work = self.work_input(x)
        ab = coefficients(work) if coefficients is not None else self.coefficients(work)[0]
        return self.apply_coefficients(ab if smooth is None else smooth("ab", ab), work, x)

    def apply_coefficients(self, ab: torch.Tensor, work: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ab = guided_upsample(ab, work, x, radius=self.refine_radius)
        x = x.float()
        if self.detail_eps > 0:
            # Dehaze the edge-preserving base of the frame and add its fine luminance residue d back
            # unamplified (a (x - d) + b + d): the noise and codec grain of flat regions (variance under
            # detail_eps) are not multiplied by 1 / t. One channel and a half-resolution filter keep it cheap.
            luma = grey(x)
            detail = luma - guided_filter(luma, luma, 2, self.detail_eps, subsample=2)
            return torch.addcmul(ab[:, 3:] + detail, ab[:, :3], x - detail)
        return torch.addcmul(ab[:, 3:], ab[:, :3], x)

    def encoder_modules(self) -> list[nn.Module]:
        """What the adaptation phases freeze: everything up to the bottleneck."""
        return [self.stem, self.enc2, self.enc3, self.enc4]
