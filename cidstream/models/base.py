"""What every dehazing model tells the engine about itself."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..ops.padding import pad_to_multiple

# Input normalisations: "unit" feeds [0, 1] as is; "symmetric" feeds (x - 0.5) / 0.5, as the official CID code.
INPUT_NORMS = ("unit", "symmetric")
# Output mappings: "clamp" uses the map as an RGB image in [0, 1] (official CID); "tanh_unit" maps [-1, 1] to [0, 1].
OUTPUT_MAPS = ("clamp", "tanh_unit")


@dataclass(frozen=True)
class Normalization:
    input: str = "unit"
    output: str = "clamp"

    def __post_init__(self):
        if self.input not in INPUT_NORMS:
            raise ValueError(f"unknown input normalisation {self.input!r} (known: {', '.join(INPUT_NORMS)})")
        if self.output not in OUTPUT_MAPS:
            raise ValueError(f"unknown output mapping {self.output!r} (known: {', '.join(OUTPUT_MAPS)})")

    def to_dict(self) -> dict:
        return asdict(self)

    def prepare(self, x01: torch.Tensor) -> torch.Tensor:
        return x01 * 2.0 - 1.0 if self.input == "symmetric" else x01

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        if self.output == "tanh_unit":
            y = (y + 1.0) * 0.5
        return y.clamp(0.0, 1.0)


class DehazeModel(nn.Module):
    """Base of all dehazers: ``forward`` maps a normalised batch to an image map.

    ``forward_features`` also returns ``z``, the pooled bottleneck feature the training
    phases align across domains. The engine pads inputs to ``pad_multiple`` and at least
    ``min_size`` pixels per side, then crops the result back.
    """

    arch: str = ""
    pad_multiple: int = 1
    min_size: int = 1
    normalization = Normalization()
    # Networks run under bf16/fp16 autocast; classical models (DCP) keep fp32.
    low_precision_ok: bool = True
    trainable: bool = True

    def config(self) -> dict:
        """Constructor arguments, stored in weights files so the same shape can be rebuilt."""
        return {}

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def fuse_for_inference(self) -> "DehazeModel":
        """Fold every eval-mode BatchNorm into the convolution before it (same outputs, fewer passes).

        Irreversible for this instance: call it on a model used only for inference.
        """
        assert not self.training, "fuse_for_inference needs eval mode"
        for module in list(self.modules()):
            if hasattr(module, "fuse_conv_bn"):  # blocks whose BN pairs are not in a Sequential
                module.fuse_conv_bn()
            if isinstance(module, nn.Sequential):
                items = list(module._modules.items())
                for (ka, a), (kb, b) in zip(items, items[1:]):
                    if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                        module._modules[ka] = fuse_conv_bn_eval(a, b)
                        module._modules[kb] = nn.Identity()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def frames_to_input(frames: torch.Tensor, net: "DehazeModel") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the network's input: float NCHW, padded to its multiple, normalised.

    The dehazer and the exported graphs (``cidstream export``) run this same code, so they match.
    """
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    x = pad_to_multiple(x, net.pad_multiple, net.min_size)
    return net.normalization.prepare(x)


def output_to_frames(y: torch.Tensor, net: "DehazeModel", h, w) -> torch.Tensor:
    """The network's output -> uint8 (N, h, w, 3): output mapping, crop back, clamp and round."""
    y = net.normalization.finish(y.float())[:, :, :h, :w]
    return y.mul(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
