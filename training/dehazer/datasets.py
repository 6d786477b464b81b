"""Training datasets: synthetic pairs made on the fly (or read back from `train generate` output),
and unlabeled real hazy frames of the target domain."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cidstream.io.images import read_image

from ..synthetic.depth import DepthSource
from ..synthetic.generate import degrade_batch, depth_source
from ..inputs import expand_sources, resize_short_side, round_robin
from ..synthetic.recipe import Recipe


def load_frames(sources: list[str], short_side: int, stride: int = 10, dedup: float = 2.0,
                limit: int | None = None) -> list[np.ndarray]:
    """Decode once, keep in memory: RGB uint8 frames resized to ``short_side``."""
    frames = []
    for rgb, _, _ in round_robin(expand_sources(sources), stride, dedup):
        frames.append(resize_short_side(rgb, short_side))
        if limit is not None and len(frames) >= limit:
            break
    if not frames:
        raise ValueError(f"no frames in {sources}")
    return frames


def random_crop(arrays: list[torch.Tensor], size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The same random size x size window of each (C, H, W) tensor (padded by reflection if smaller)."""
    h, w = arrays[0].shape[-2:]
    if h < size or w < size:
        pad = (0, max(0, size - w), 0, max(0, size - h))
        arrays = [torch.nn.functional.pad(a[None], pad, mode="reflect")[0] for a in arrays]
        h, w = arrays[0].shape[-2:]
    y = int(torch.randint(h - size + 1, (1,), generator=generator))
    x = int(torch.randint(w - size + 1, (1,), generator=generator))
    return [a[..., y:y + size, x:x + size] for a in arrays]


class OnTheFlyPairs(Dataset):
    """Item i: a random crop of a clean frame and its degradation by the recipe, deterministic in
    (recipe seed, epoch, i). Depth comes from the whole frame, so crops keep a coherent haze."""

    def __init__(self, frames: list[np.ndarray], recipe: Recipe, crop: int = 256, length: int | None = None,
                 device: str = "cpu"):
        self.frames, self.recipe, self.crop, self.device = frames, recipe, crop, torch.device(device)
        self.length = length or len(frames)
        self.epoch = 0
        self.depth: DepthSource = depth_source(recipe)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed((self.recipe.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
        frame = self.frames[int(torch.randint(len(self.frames), (1,), generator=g))]
        clean = torch.from_numpy(frame).to(self.device).permute(2, 0, 1).float()[None] / 255.0
        hazy, domains, params = degrade_batch(self.recipe, clean, self.depth(clean), g)
        c, h = random_crop([clean[0], hazy[0]], self.crop, g)
        return {"clean": c.cpu(), "hazy": h.cpu(), "domain": domains[0], "params": json.dumps(params[0])}


class GeneratedPairs(Dataset):
    """Pairs written by `cidstream train generate` (OUT/metadata.jsonl), with random crops."""

    def __init__(self, folder: str | Path, crop: int | None = 256, seed: int = 0):
        self.folder = Path(folder)
        self.records = [json.loads(x) for x in (self.folder / "metadata.jsonl").read_text().splitlines()]
        self.crop, self.seed = crop, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[i]
        clean, hazy = (torch.from_numpy(read_image(self.folder / rec[k])[0]).permute(2, 0, 1).float() / 255.0
                       for k in ("clean", "hazy"))
        if self.crop:
            clean, hazy = random_crop([clean, hazy], self.crop, torch.Generator().manual_seed(self.seed + i))
        return {"clean": clean, "hazy": hazy, "domain": rec["domain"]}


class RealHazy(Dataset):
    """Unlabeled real hazy frames (target domain): foggy videos, real_hazy photos, dawn_fog images
    without their labels. Random crops; no ground truth."""

    def __init__(self, sources: list[str], crop: int = 256, short_side: int = 360, stride: int = 5, seed: int = 0):
        self.frames = load_frames(sources, short_side, stride=stride, dedup=1.0)
        self.crop, self.seed = crop, seed

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int):
        img = torch.from_numpy(self.frames[i]).permute(2, 0, 1).float() / 255.0
        (img,) = random_crop([img], self.crop, torch.Generator().manual_seed(self.seed + i))
        return {"hazy": img}
