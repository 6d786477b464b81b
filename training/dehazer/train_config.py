"""The three-phase trainer's config (configs/train/cid_lite.yaml) as dataclasses: the keys the trainer
reads, their defaults and ranges, declared once and checked by cidstream.config's machinery, so a wrong
key or value names its file, line and column like a runtime config does.

The trainer and its checkpoints keep a plain dict (``read_train_config``): checkpoints stay readable
without these classes, and every key is filled in, so a default lives here and nowhere else."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

from cidstream.config import OneOf, Range, check_rules, config_error, mark_of, merge, plain, read_yaml
from cidstream.errors import ConfigError
from cidstream.evaluation.splits import SPLITS

WHAT = "training config"
REQUIRED = {"required": True}  # field metadata: the file must give it (no default would be right for every run)
Entry = typing.Union[str, dict]  # a path (video, folder, glob) or a DataEntry mapping


@dataclass
class DataEntry:
    """A data entry written as a mapping (training/data_entries.py): images of one half of a labelled set, in a
    visibility range."""
    path: str = field(default=None, metadata=REQUIRED)
    split: Annotated[str, OneOf(*SPLITS, "all")] = "all"
    split_by: Annotated[str, OneOf("name", "folder")] = "name"  # folder: one split per sub-folder (per day)
    visibility: str = ""        # two-column TSV: frame (below path) and metres
    min_visibility_m: Annotated[Optional[float], Range(0)] = None  # keep frames at or above this ...
    max_visibility_m: Annotated[Optional[float], Range(0, lo_open=True)] = None  # ... and below this


@dataclass
class ModelSection:
    arch: str = field(default=None, metadata=REQUIRED)  # cidstream.models registry name (cid-lite)
    config: dict = field(default_factory=dict)  # its constructor arguments (widths, work_short_side)


@dataclass
class DataSection:
    recipe: str = field(default=None, metadata=REQUIRED)  # synthetic pairs made on the fly (synthetic/recipe.py)
    clean: list[Entry] = field(default=None, metadata=REQUIRED)  # clear-weather sources
    clean_stride: Annotated[int, Range(1)] = 4
    target: list[Entry] = field(default=None, metadata=REQUIRED)  # unlabeled real haze
    target_stride: Annotated[int, Range(1)] = 2
    short_side: Annotated[int, Range(32, 4096)] = 360


@dataclass
class ValidationSection:
    recipe: str = field(default=None, metadata=REQUIRED)  # a recipe not used for training
    seed: int = 123
    pairs: Annotated[int, Range(1)] = field(default=None, metadata=REQUIRED)
    crop: Annotated[int, Range(16)] = field(default=None, metadata=REQUIRED)
    real: Annotated[int, Range(1)] = field(default=None, metadata=REQUIRED)  # real hazy crops (no-reference measure)


@dataclass
class TrainSection:
    crop: Annotated[int, Range(16)] = field(default=None, metadata=REQUIRED)
    batch: Annotated[int, Range(1)] = field(default=None, metadata=REQUIRED)
    seed: int = 0
    threads: Annotated[int, Range(0, 1024)] = 0  # 0: torch's default
    log_every: Annotated[int, Range(1)] = 25
    validate_every: Annotated[int, Range(1)] = 250
    checkpoint_every: Annotated[int, Range(1)] = 100
    detector: Optional[str] = None  # frozen detector: needed by detector_weight and pseudo_label_weight
    detector_weight: Annotated[float, Range(0)] = 0.0  # supervised loss += this x detector-feature distance
    pseudo_conf: Annotated[float, Range(0, 1)] = 0.3  # pseudo-labels: boxes above this confidence ...
    pseudo_iou: Annotated[float, Range(0, 1, lo_open=True)] = 0.6  # ... merged by NMS at this IoU
    pseudo_crop: Annotated[int, Range(32)] = 352  # real crops for the detection term (rounded to a multiple of 32)
    pseudo_batch: Annotated[int, Range(1)] = 4


@dataclass
class Phase:
    steps: Annotated[int, Range(1)] = field(default=None, metadata=REQUIRED)
    lr: Annotated[float, Range(0, lo_open=True)] = field(default=None, metadata=REQUIRED)
    teacher_weight: Annotated[float, Range(0)] = 0.0  # L1 to the classical DCP's output on real frames
    pseudo_label_weight: Annotated[float, Range(0)] = 0.0  # detection loss on dehazed real crops
    smooth_weight: Annotated[float, Range(0)] = 0.0  # cid-lite: smooth coefficient maps in flat regions
    physics_weight: Annotated[float, Range(0)] = 0.0  # scattering head: L1 to the generator's t and airlight
    transmission_teacher_weight: Annotated[float, Range(0)] = 0.0  # scattering head: L1 to DCP's t on real frames


@dataclass
class Pretrain(Phase):
    unsupervised_weight: Annotated[float, Range(0)] = 0.1
    dark_channel_weight: Annotated[float, Range(0)] = 1.0
    tv_weight: Annotated[float, Range(0)] = 0.5
    balance_weight: Annotated[float, Range(0)] = 1.0


@dataclass
class Adapt(Phase):
    coral_weight: Annotated[float, Range(0)] = 1.0


@dataclass
class Finetune(Phase):
    rff: Annotated[int, Range(1)] = 2               # StableNet: random Fourier features per channel
    learner_steps: Annotated[int, Range(1)] = 10
    penalty: Annotated[float, Range(0)] = 0.05
    memory: Annotated[int, Range(1)] = 4


@dataclass
class Phases:
    pretrain: Optional[Pretrain] = None
    adapt: Optional[Adapt] = None
    finetune: Optional[Finetune] = None


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    train: TrainSection = field(default_factory=TrainSection)
    phases: Phases = field(default_factory=Phases)


def _check_required(obj, data, where: str) -> None:
    for f in dataclasses.fields(obj):
        if f.metadata.get("required") and getattr(obj, f.name) is None:
            raise config_error(f"{where} needs '{f.name}'", mark_of(data))


def read_train_config(path: str | Path) -> dict:
    """The config file as the trainer reads it: checked, every default filled in, plain dicts and lists."""
    data = read_yaml(path, WHAT)
    for key in (f.name for f in dataclasses.fields(TrainConfig)):
        if key not in data:
            raise ConfigError(f"{WHAT} {path} lacks the '{key}' section")
    cfg = TrainConfig()
    merge(cfg, data)
    check_rules(cfg)
    phases = {name: p for name in ("pretrain", "adapt", "finetune") if (p := getattr(cfg.phases, name)) is not None}
    sections = [(name, getattr(cfg, name), data[name]) for name in ("model", "data", "validation", "train")]
    for where, section, written in sections + [(f"phases.{n}", p, data["phases"][n]) for n, p in phases.items()]:
        _check_required(section, written, where)
    for key in ("clean", "target"):  # mapping entries against DataEntry; they stay as written (sources.py)
        for i, entry in enumerate(getattr(cfg.data, key)):
            if isinstance(entry, dict):
                checked = DataEntry()
                merge(checked, entry, f"data.{key}[{i}]")
                check_rules(checked, f"data.{key}[{i}].")
                _check_required(checked, entry, f"data.{key}[{i}]")
    t = cfg.train
    if not t.detector and (t.detector_weight > 0 or any(p.pseudo_label_weight > 0 for p in phases.values())):
        raise config_error("train.detector is needed by train.detector_weight and pseudo_label_weight",
                           mark_of(data["train"]))
    return plain(dataclasses.asdict(cfg))
