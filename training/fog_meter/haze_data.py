"""The fog meter's training set (`cidstream train fog-meter`): small copies of frames, each with what is known
of its visibility.

Three kinds of label, one per sample:
  exact     log10 visibility known: synthetic fog (Koschmieder, below) and real frames with a measurement;
  at_least  visibility at least this: clear frames, the generator's nuisances without fog (night, noise,
            colour cast, blur, compression), measurements at the meter's 20 km limit;
  at_most   visibility at most this: real fog without a measurement (weak labels).

Synthetic fog. The generator's depth is relative (0 at the camera, 1 at the far limit: sky and horizon,
training/synthetic/depth.py). Each sample draws a far limit ``far_m`` (metres, log-uniform in the config's range; a
road camera's farthest modelled ground), so depth in metres is d * far_m, and a visibility V drawn
log-uniformly; the scattering coefficient is then beta = 3.912 / V per metre (Koschmieder: V is where a black
object's contrast falls to 2 %), i.e. beta * far_m = 3.912 * far_m / V at the far limit, which is the
recipe's relative ``beta``. The rest of the chosen domain (airlight, tint, patches, noise, low light,
codec) is drawn by the recipe as for the dehazer's pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cidstream.config import data_root
from cidstream.engine.haze import VIS_MAX_M, small_copy
from cidstream.errors import InputError
from cidstream.evaluation.clear_check import read_every
from cidstream.io.images import read_image
from cidstream.io.sources import list_images

from ..synthetic import degradations as D
from ..data_entries import DATA_VAR, resolve, source_specs, visibility_table
from ..synthetic.depth import road_prior
from ..synthetic.generate import pick_domains
from ..synthetic.recipe import TINTS, Recipe, apply_step, draw

KOSCHMIEDER = 3.912            # -ln(0.02): the 2 % contrast threshold
FOG_OPS = ("haze", "glow")     # left out of a domain to make its nuisances without fog
# Clean crops are degraded at one of these sizes (the recipe's scale: short side 360), then copied small:
# landscape 16:9, 4:3 and portrait 9:16, drawn with these weights.
WORK_SIZES = {(360, 640): 0.6, (360, 480): 0.2, (640, 360): 0.2}
KINDS = ("exact", "at_least", "at_most")


@dataclass
class LabelledSet:
    """Small copies (uint8, (3, h, w) each), their labels (log10 metres), label kinds and a group name each."""
    images: list[torch.Tensor] = field(default_factory=list)
    targets: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def add(self, small: torch.Tensor, target: float, kind: str, group: str) -> None:
        self.images.append((small.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu())
        self.targets.append(float(target))
        self.kinds.append(kind)
        self.groups.append(group)

    def extend(self, other: "LabelledSet") -> None:
        for name in ("images", "targets", "kinds", "groups"):
            getattr(self, name).extend(getattr(other, name))

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g, k in zip(self.groups, self.kinds):
            out[f"{g} ({k})"] = out.get(f"{g} ({k})", 0) + 1
        return out


def check_sources(cfg: dict, config: str | Path) -> None:
    """Every clean and real path of the config must exist before the sets are built: a missing data folder
    otherwise ends as an internal error from deep inside a reader."""
    for key in ("clean", "real"):
        for i, entry in enumerate(cfg[key]):
            for name in ("path", "visibility"):
                written = entry.get(name)
                if not written or Path(resolve(written)).exists():
                    continue
                root = data_root()
                why = (f": the data folder {root} does not exist (set $CIDSTREAM_DATA to the folder of the data sets)"
                       if DATA_VAR.search(written) and not root.is_dir() else "")
                raise InputError(f"fog meter training config {config}: {key}[{i}].{name} {resolve(written)} not "
                                 f"found{why}")


def relative_beta(visibility_m: torch.Tensor, far_m: torch.Tensor) -> torch.Tensor:
    """The recipe's beta (optical thickness at the far limit, depth normalised to [0, 1]) of a visibility:
    beta per metre is 3.912 / V, and the far limit is ``far_m`` metres away."""
    return KOSCHMIEDER * far_m / visibility_m


def random_crop(rgb: np.ndarray, rng: np.random.Generator, min_area: float, size: tuple[int, int]) -> torch.Tensor:
    """A random crop of ``size``'s shape and at least ``min_area`` of the largest such crop, resized to ``size``
    (H, W): (3, H, W) float in [0, 1]. Tighter crops stand for close-up cameras the clean sources do not have,
    portrait shapes for cameras mounted upright."""
    h, w = rgb.shape[:2]
    aspect = size[1] / size[0]
    ch = min(h, round(w / aspect))
    ch = max(16, round(ch * math.sqrt(rng.uniform(min_area, 1.0))))
    cw = min(w, round(ch * aspect))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = torch.from_numpy(np.ascontiguousarray(rgb[y:y + ch, x:x + cw])).permute(2, 0, 1).float()[None] / 255.0
    out = F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return out.flip(-1) if rng.random() < 0.5 else out


def fog_steps(recipe: Recipe, x: torch.Tensor, depth: torch.Tensor, domain, beta: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    """A domain's steps with its haze step at the given per-sample relative beta (the rest drawn as usual)."""
    for step in domain.steps:
        if step.op != "haze":
            x = apply_step(x, depth, step, generator)[0]
            continue
        n = x.shape[0]
        p = {k: draw(v, n, generator) for k, v in step.params.items() if k != "beta"}
        airlight = (torch.tensor([TINTS[t] for t in p["tint"]]) * p["airlight"].view(-1, 1)).clamp(0, 1)
        x = D.haze(x, depth, beta, airlight, p["patchiness"], p["height_falloff"], generator)
    return x


def nuisance_steps(x: torch.Tensor, depth: torch.Tensor, domain, generator: torch.Generator) -> torch.Tensor:
    """A domain's steps without fog (no haze, no glow): what the camera adds in clear air."""
    for step in domain.steps:
        if step.op not in FOG_OPS:
            x = apply_step(x, depth, step, generator)[0]
    return x


def synthesize(recipe: Recipe, crops: torch.Tensor, settings: dict, generator: torch.Generator,
               group: str) -> LabelledSet:
    """Each crop becomes fog of a drawn visibility (exact label), a nuisance without fog, or stays clean
    (both at_least the clear label)."""
    n = crops.shape[0]
    out = LabelledSet()
    depth = road_prior(crops, near=settings["near"])
    u = torch.rand(n, generator=generator)
    fog = u < settings["fog_share"]
    nuisance = (~fog) & (u < settings["fog_share"] + settings["nuisance_share"])
    lo, hi = (math.log10(v) for v in settings["visibility_m"])
    log_vis = lo + (hi - lo) * torch.rand(n, generator=generator)
    flo, fhi = (math.log(v) for v in settings["far_m"])
    far_m = torch.exp(flo + (fhi - flo) * torch.rand(n, generator=generator))
    beta = relative_beta(torch.pow(10.0, log_vis), far_m)
    domains = pick_domains(recipe, n, generator)
    result = crops.clone()
    for k, domain in enumerate(recipe.domains):
        for mask, make in ((fog, "fog"), (nuisance, "nuisance")):
            idx = [i for i in range(n) if mask[i] and domains[i] == k]
            if not idx:
                continue
            if make == "fog":
                result[idx] = fog_steps(recipe, crops[idx], depth[idx], domain, beta[idx], generator)
            else:
                result[idx] = nuisance_steps(crops[idx], depth[idx], domain, generator)
    small = small_copy((result.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1))
    clear = math.log10(settings["clear_label_m"])
    for i in range(n):
        if fog[i]:
            out.add(small[i], float(log_vis[i]), "exact", f"{group} fog")
        else:
            out.add(small[i], clear, "at_least", f"{group} {'nuisance' if nuisance[i] else 'clear'}")
    return out


def clean_frames(entries: list[dict]) -> list[tuple[np.ndarray, str]]:
    """(RGB, source name) of the clear sources: videos every ``step``-th frame (``part: select`` keeps the
    first half, the half the clear check selects on; the second half is its report half), image folders whole."""
    frames = []
    for entry in entries:
        path = Path(resolve(entry["path"]))
        if path.is_dir():
            frames += [(read_image(Path(p))[0], path.name) for p in list_images(str(path))]
            continue
        video = read_every(path, int(entry.get("step", 6)))
        if entry.get("part", "all") == "select":
            video = video[:len(video) // 2]
        frames += [(f, path.stem) for f in video]
    return frames


def synthetic_set(recipe: Recipe, entries: list[dict], settings: dict, seed: int,
                  progress: Callable[[int, int], None] | None = None) -> LabelledSet:
    """``variants`` random crops of every clean frame, each degraded by ``synthesize``, in batches."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    frames = clean_frames(entries)
    jobs = [(rgb, name) for rgb, name in frames for _ in range(settings["variants"])]
    order = rng.permutation(len(jobs))
    out = LabelledSet()
    batch = 16
    sizes = list(WORK_SIZES)
    weights = np.array(list(WORK_SIZES.values()))
    for start in range(0, len(order), batch):
        chunk = [jobs[i] for i in order[start:start + batch]]
        size = sizes[rng.choice(len(sizes), p=weights / weights.sum())]   # one shape per batch
        crops = torch.stack([random_crop(rgb, rng, settings["min_crop_area"], size) for rgb, _ in chunk])
        made = synthesize(recipe, crops, settings, generator, "synthetic")
        for j, (_, name) in enumerate(chunk):  # name the source in the group for the counts
            made.groups[j] = made.groups[j].replace("synthetic", f"synthetic {name}")
        out.extend(made)
        if progress:
            progress(min(start + batch, len(order)), len(order))
    return out


def real_set(entries: list[dict], progress: Callable[[int, int], None] | None = None
             ) -> LabelledSet:
    """Real images: ``visibility`` tables give exact labels (at_least at the meter's 20 km limit), else
    ``at_most_m`` makes every image weak fog and ``at_least_m`` weak clear."""
    out = LabelledSet()
    items = []
    for entry in entries:
        spec = {k: v for k, v in entry.items() if k in ("path", "split", "split_by", "leave_out") and v}   # the images
        root = Path(resolve(entry["path"]))
        table = visibility_table(resolve(entry["visibility"])) if entry.get("visibility") else None
        for p in source_specs([spec]):
            items.append((Path(p), root, table, entry))
    for k, (p, root, table, entry) in enumerate(items):
        rgb = read_image(p)[0]
        small = small_copy(torch.from_numpy(np.ascontiguousarray(rgb))[None])[0]
        name = entry.get("name") or root.name
        if table is not None:   # a measurement at the meter's limit says only "at least"
            v = table[p.relative_to(root).as_posix()]
            out.add(small, math.log10(min(v, VIS_MAX_M)), "at_least" if v >= VIS_MAX_M else "exact", name)
        elif entry.get("at_most_m"):
            out.add(small, math.log10(entry["at_most_m"]), "at_most", name)
        else:
            out.add(small, math.log10(entry["at_least_m"]), "at_least", name)
        if progress:
            progress(k + 1, len(items))
    return out
