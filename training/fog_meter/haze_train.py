"""`cidstream train fog-meter`: train the fog meter (cidstream/engine/fog_meter.py) from configs/train/haze.yaml.

Losses: Gaussian negative log-likelihood of log10 visibility where it is known (the meter learns its own
uncertainty), squared hinges where only a bound is known (clear: at least; weak fog: at most), and the paper's
alignment idea as (bounded) CORAL between the features of synthetic and of real frames, so what the head learns on
synthetic fog transfers to real cameras.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Optional

import torch
import torch.nn.functional as F

from cidstream.config import VIS_MAX_M, OneOf, Range, check_rules, config_error, mark_of, merge, plain, read_yaml
from cidstream.detect.safe_load import load_plain
from cidstream.engine.fog_meter import STAT_SETS, FogMeter
from cidstream.evaluation.splits import SPLITS

from ..data_entries import resolve
from .haze_data import KINDS, LabelledSet, real_set, synthetic_set
from ..dehazer.losses import coral_bounded, unit_scale
from ..synthetic.recipe import load_recipe

WHAT = "fog meter training config"
SET_VERSION = 2          # raise when training/fog_meter/haze_data.py makes different sets from the same config
HINGE_SCALE = 0.15       # decades: a bound missed by this much costs as much as one standard deviation


@dataclass
class SyntheticSection:
    variants: Annotated[int, Range(1)] = 10
    fog_share: Annotated[float, Range(0, 1)] = 0.6
    nuisance_share: Annotated[float, Range(0, 1)] = 0.3
    visibility_m: list[float] = field(default_factory=lambda: [20.0, VIS_MAX_M])
    far_m: list[float] = field(default_factory=lambda: [200.0, 1000.0])
    near: Annotated[float, Range(0, 1, lo_open=True)] = 0.05
    min_crop_area: Annotated[float, Range(0, 1, lo_open=True)] = 0.3


@dataclass
class CleanEntry:
    path: str = ""
    step: Annotated[int, Range(1)] = 6
    part: Annotated[str, OneOf("all", "select")] = "all"


@dataclass
class RealEntry:
    path: str = ""
    split: Annotated[str, OneOf(*SPLITS, "all")] = "all"
    split_by: Annotated[str, OneOf("name", "folder")] = "name"
    visibility: str = ""
    at_most_m: Annotated[Optional[float], Range(1, lo_open=True)] = None
    at_least_m: Annotated[Optional[float], Range(1, lo_open=True)] = None
    leave_out: list[str] = field(default_factory=list)   # folders (split_by folder) or names kept out


@dataclass
class ModelSection:
    widths: list[int] = field(default_factory=lambda: [16, 32, 48])   # convolutions; []: frame statistics only
    hidden: Annotated[int, Range(1)] = 48
    stats: Annotated[str, OneOf(*STAT_SETS)] = "nss"   # frame statistics: classic, or classic + fog-aware NSS


@dataclass
class TrainSection:
    steps: Annotated[int, Range(1)] = 2500
    batch: Annotated[int, Range(2)] = 48
    real_batch: Annotated[int, Range(0)] = 32
    lr: Annotated[float, Range(0, lo_open=True)] = 0.003
    weight_decay: Annotated[float, Range(0)] = 0.0001
    adapt_weight: Annotated[float, Range(0)] = 0.5
    real_weight: Annotated[float, Range(0)] = 3.0   # a real sample's weight in the label loss (synthetic: 1)
    threads: Annotated[int, Range(0)] = 0


@dataclass
class HazeTrainConfig:
    recipe: str = "configs/train/generate.yaml"
    seed: int = 0
    clear_label_m: Annotated[float, Range(100, VIS_MAX_M)] = 10000.0
    model: ModelSection = field(default_factory=ModelSection)
    synthetic: SyntheticSection = field(default_factory=SyntheticSection)
    clean: list[dict] = field(default_factory=list)
    real: list[dict] = field(default_factory=list)
    train: TrainSection = field(default_factory=TrainSection)


def read_haze_config(path: str | Path) -> dict:
    """The config as plain data, every default filled in and every entry checked (file, line, column)."""
    data = read_yaml(path, WHAT)
    cfg = HazeTrainConfig()
    merge(cfg, data)
    check_rules(cfg)
    for key, kind in (("clean", CleanEntry), ("real", RealEntry)):
        entries = []
        for i, written in enumerate(getattr(cfg, key)):
            entry = kind()
            merge(entry, written, f"{key}[{i}]")
            check_rules(entry, f"{key}[{i}].")
            if not entry.path:
                raise config_error(f"{key}[{i}] needs a path", mark_of(written))
            if kind is RealEntry and not (entry.visibility or entry.at_most_m or entry.at_least_m):
                raise config_error(f"{key}[{i}] needs visibility, at_most_m or at_least_m", mark_of(written))
            entries.append(plain(dataclasses.asdict(entry)))
        setattr(cfg, key, entries)
    if not cfg.clean:
        raise config_error(f"{WHAT} {path}: 'clean' lists no clear sources", mark_of(data))
    for key in ("visibility_m", "far_m"):
        lo, hi = getattr(cfg.synthetic, key)
        if not 0 < lo < hi:
            raise config_error(f"synthetic.{key} must be [low, high] with 0 < low < high, got {[lo, hi]}",
                               mark_of(data.get("synthetic"), key))
    return plain(dataclasses.asdict(cfg))


def sets_file(cfg: dict, cache: Path) -> Path:
    """Where ``build_sets`` keeps the sets of ``cfg``: named by a hash of the data settings only."""
    keyed = {k: cfg[k] for k in ("recipe", "seed", "clear_label_m", "synthetic", "clean", "real")}
    keyed["set_version"] = SET_VERSION
    return cache / f"haze_sets_{hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]}.pt"


def build_sets(cfg: dict, cache: Path | None, progress: Callable[[str, int, int], None] | None = None
               ) -> tuple[LabelledSet, LabelledSet]:
    """(synthetic, real) training sets; kept in ``cache`` under a hash of the data settings, so a rerun with
    other training settings does not rebuild them."""
    path = sets_file(cfg, cache) if cache else None
    if path and path.is_file():
        saved = load_plain(path, "training cache")
        return LabelledSet(**saved["synthetic"]), LabelledSet(**saved["real"])
    tick = (lambda what: (lambda k, n: progress(what, k, n))) if progress else (lambda what: None)
    recipe = load_recipe(resolve(cfg["recipe"]))
    synthetic = synthetic_set(recipe, cfg["clean"], {**cfg["synthetic"], "clear_label_m": cfg["clear_label_m"]},
                              cfg["seed"], tick("synthetic fog and clear nuisances"))
    real = real_set(cfg["real"], tick("real frames"))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"synthetic": dataclasses.asdict(synthetic), "real": dataclasses.asdict(real)}, path)
    return synthetic, real


def buckets(s: LabelledSet, shapes: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
    """Samples grouped by shape, as float batches: shape -> ((N, 3, h, w), (N,) targets, (N,) kind index).
    A sample of another shape joins the bucket nearest its aspect ratio, resized."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(s.images):
        h, w = im.shape[-2:]
        shape = min(shapes, key=lambda sh: abs(math.log((w / h) / (sh[1] / sh[0]))))
        groups.setdefault(shape, []).append(i)
    out = {}
    for shape, idx in groups.items():
        imgs = [s.images[i].float()[None] / 255.0 for i in idx]
        imgs = [im if tuple(im.shape[-2:]) == shape else
                F.interpolate(im, size=shape, mode="bilinear", align_corners=False, antialias=True) for im in imgs]
        out[shape] = (torch.cat(imgs), torch.tensor([s.targets[i] for i in idx], dtype=torch.float32),
                      torch.tensor([KINDS.index(s.kinds[i]) for i in idx]))
    return out


def label_loss(mu: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor, kind: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch (weighted per sample when ``weight`` is given): NLL where exact, squared hinge where
    a bound."""
    exact = 0.5 * ((y - mu) / sigma) ** 2 + sigma.log()
    at_least = 0.5 * (F.relu(y - mu) / HINGE_SCALE) ** 2
    at_most = 0.5 * (F.relu(mu - y) / HINGE_SCALE) ** 2
    per_sample = torch.stack([exact, at_least, at_most], 1).gather(1, kind.view(-1, 1))[:, 0]
    return per_sample.mean() if weight is None else (per_sample * weight).sum() / weight.sum()


def train_meter(cfg: dict, synthetic: LabelledSet, real: LabelledSet, device: str = "cpu",
                progress: Callable[[int, int, float], None] | None = None) -> tuple[FogMeter, dict]:
    """Train from the two sets; returns the model (eval mode, CPU) and a log of the losses."""
    t = cfg["train"]
    if t["threads"]:
        torch.set_num_threads(t["threads"])
    torch.manual_seed(cfg["seed"])
    shapes = sorted({tuple(im.shape[-2:]) for im in synthetic.images})
    synth, reals = buckets(synthetic, shapes), buckets(real, shapes)
    shapes = list(synth)
    share = torch.tensor([len(synth[sh][0]) for sh in shapes], dtype=torch.float)
    model = FogMeter(tuple(cfg["model"]["widths"]), cfg["model"]["hidden"], cfg["model"]["stats"]).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t["lr"], total_steps=t["steps"], pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg["seed"])
    log, running = [], None
    for step in range(1, t["steps"] + 1):
        shape = shapes[int(torch.multinomial(share, 1, generator=gen))]   # one shape per step
        xs, ys, ks = synth[shape]
        i = torch.randint(len(xs), (t["batch"],), generator=gen)
        x, y, k = xs[i], ys[i], ks[i]
        n_real = t["real_batch"] if len(reals.get(shape, ((),))[0]) >= 2 else 0
        if n_real:
            xr, yr, kr = reals[shape]
            j = torch.randint(len(xr), (n_real,), generator=gen)
            x, y, k = torch.cat([x, xr[j]]), torch.cat([y, yr[j]]), torch.cat([k, kr[j]])
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(device)
        feats = model.embed(x)
        mu, sigma = model.predict(feats)
        weight = torch.ones(len(x), device=device)
        weight[t["batch"]:] = t["real_weight"]
        loss = label_loss(mu, sigma, y.to(device), k.to(device), weight)
        if t["adapt_weight"] > 0 and n_real > 1:
            b = t["batch"]
            loss = loss + t["adapt_weight"] * coral_bounded(unit_scale(feats[:b]), unit_scale(feats[b:]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = loss.item()
        running = value if running is None else 0.95 * running + 0.05 * value
        if step % 50 == 0 or step == t["steps"]:
            log.append({"step": step, "loss": round(running, 4)})
        if progress:
            progress(step, t["steps"], running)
    return model.cpu().eval(), {"loss": log}


def trained_on(cfg: dict, synthetic: LabelledSet, real: LabelledSet) -> dict:
    """What the weights saw, for their metadata: sources, parts, sample counts."""
    return {"clean_sources": [{k: e[k] for k in ("path", "step", "part")} for e in cfg["clean"]],
            "real_sources": [{k: v for k, v in e.items() if v not in (None, "")} for e in cfg["real"]],
            "samples": {**synthetic.counts(), **real.counts()},
            "synthetic": cfg["synthetic"], "clear_label_m": cfg["clear_label_m"], "train": cfg["train"],
            "never_seen": "the clear-check videos' second halves, the dawn_fog and smog_street report halves, "
                          "the highway_fog_cam report days and videos/foggy_road_real.mp4"}

