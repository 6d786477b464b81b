"""Depth for the scattering model, normalised to [0, 1] (0 = at the camera, 1 = the far limit).

Four sources, each with what it assumes:

- ``dataset``: depth maps that come with the images (16-bit PNG or .npy named like the image). Assumes
  larger values are farther; they are rescaled per image to [0, 1] (metric scale is not needed,
  beta carries it).
- ``road_prior``: a traffic camera over a road, needing no data. Assumes a flat ground plane below a
  horizon (estimated as the strongest brightness drop from sky to ground in the upper 15-65 % of the
  frame), inverse-distance depth on that plane (``near``: the depth of the bottom row, as a fraction
  of the far limit), sky at the far limit, and that anything standing on
  the road (cars, poles: strong gradients) is as far as the ground where it stands: depth is carried
  up from the ground contact.
- ``image_cues``: any scene. Mixes row position (higher is farther) with a brightness/low-saturation
  cue (bright, colourless regions are usually sky or distant), smoothed. Rough, for non-road scenes.
- ``network``: a user-supplied torch.export program (.pt2) or TorchScript file mapping (N, 3, H, W) RGB in [0, 1] to relative depth
  (N, 1, H, W), larger = farther (set ``invert: true`` for disparity-style outputs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .degradations import gaussian_blur, luminance


def normalise(depth: torch.Tensor) -> torch.Tensor:
    lo = depth.amin(dim=(2, 3), keepdim=True)
    hi = depth.amax(dim=(2, 3), keepdim=True)
    return ((depth - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)


def estimate_horizon(x: torch.Tensor) -> torch.Tensor:
    """Row index (N,) of the horizon: the largest drop of row-mean brightness in 15-65 % of the height."""
    h = x.shape[2]
    rows = gaussian_blur(luminance(x).mean(dim=3, keepdim=True), 2.0)[:, 0, :, 0]  # (N, H)
    drop = rows[:, :-1] - rows[:, 1:]
    lo, hi = int(0.15 * h), max(int(0.15 * h) + 1, int(0.65 * h))
    return drop[:, lo:hi].argmax(dim=1) + lo + 1


def road_prior(x: torch.Tensor, horizon: torch.Tensor | None = None, near: float = 0.02,
               object_edges: float = 0.08) -> torch.Tensor:
    """Ground-plane depth with sky far and objects at their ground contact, (N, 1, H, W) in [0, 1]."""
    n, _, h, w = x.shape
    horizon = estimate_horizon(x) if horizon is None else horizon.to(x.device)
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    below = (rows - horizon.view(n, 1, 1).to(x.dtype)).clamp(min=0)
    ground = (near * (h - horizon.view(n, 1, 1).to(x.dtype)) / below.clamp(min=1e-3)).clamp(max=1.0)
    depth = ground.expand(n, h, w).clone()  # rows at or above the horizon: 1 (sky, far)
    # Objects: pixels with strong gradients below the horizon take the depth of the ground under them.
    lum = luminance(x)[:, 0]
    grad = torch.zeros_like(lum)
    grad[:, 1:-1, 1:-1] = (lum[:, 1:-1, 2:] - lum[:, 1:-1, :-2]).abs() + (lum[:, 2:, 1:-1] - lum[:, :-2, 1:-1]).abs()
    grad = gaussian_blur(grad.unsqueeze(1), 1.5)[:, 0]
    is_object = (grad > object_edges) & (rows.expand(n, h, w) > horizon.view(n, 1, 1))
    carried = depth[:, h - 1].clone()
    for y in range(h - 2, -1, -1):  # bottom-up scan: an object row inherits the depth below it
        obj = is_object[:, y]
        carried = torch.where(obj, carried, depth[:, y])
        depth[:, y] = torch.where(obj, carried, depth[:, y])
    return depth.unsqueeze(1)


def image_cues(x: torch.Tensor) -> torch.Tensor:
    """Row position mixed with a 'bright and colourless' cue, smoothed, (N, 1, H, W) in [0, 1]."""
    n, _, h, w = x.shape
    rows = torch.linspace(1.0, 0.0, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    mx, mn = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    saturation = (mx - mn) / mx.clamp(min=1e-3)
    airy = mx * (1 - saturation)
    cue = gaussian_blur(airy, max(2.0, min(h, w) / 40))
    return normalise(0.6 * rows + 0.4 * normalise(cue))


def load_depth_map(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """A dataset depth map (16-bit PNG, 8-bit PNG or .npy) resized to (H, W), normalised: (1, 1, H, W)."""
    import cv2

    if path.suffix == ".npy":
        arr = np.load(path).astype(np.float32)
    else:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"cannot read depth map {path}")
        arr = arr.astype(np.float32)
        if arr.ndim == 3:
            arr = arr[..., 0]
    t = torch.from_numpy(arr)[None, None]
    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return normalise(t)


class DepthSource:
    """Chooses depth for a batch as the recipe says: road_prior, image_cues, dataset or network."""

    def __init__(self, kind: str = "road_prior", folder: str | None = None, path: str | None = None,
                 invert: bool = False, near: float = 0.02):
        if kind not in ("road_prior", "image_cues", "dataset", "network"):
            raise ValueError(f"unknown depth source '{kind}' (road_prior, image_cues, dataset, network)")
        self.kind, self.folder, self.invert, self.near = kind, Path(folder) if folder else None, invert, near
        self.net = None
        if kind == "network":
            if not path or not Path(path).is_file():
                raise ValueError(f"depth network file not found: {path}")
            # torch.export programs (.pt2) are the current format; TorchScript files still load.
            self.net = (torch.export.load(path).module() if path.endswith(".pt2")
                        else torch.jit.load(path, map_location="cpu").eval())
        if kind == "dataset" and (self.folder is None or not self.folder.is_dir()):
            raise ValueError(f"depth folder not found: {folder}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, names: list[str] | None = None) -> torch.Tensor:
        if self.kind == "road_prior":
            return road_prior(x, near=self.near)
        if self.kind == "image_cues":
            return image_cues(x)
        if self.kind == "network":
            d = self.net.to(x.device)(x).float()
            d = normalise(F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False))
            return 1 - d if self.invert else d
        maps = []
        for name in names or []:
            stem = Path(name).stem
            found = next((p for p in self.folder.glob(f"{stem}.*") if p.suffix in (".png", ".npy")), None)
            if found is None:
                raise ValueError(f"no depth map for {name} in {self.folder}")
            maps.append(load_depth_map(found, tuple(x.shape[-2:])))
        d = torch.cat(maps).to(x.device)
        return 1 - d if self.invert else d
