"""`cidstream train detector`: fine-tune an Ultralytics detector on the fog-adaptation set with
Ultralytics' own trainer, check it on clear frames it never saw, and write a normal Ultralytics .pt
with our metadata under the checkpoint key "cidstream"."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from pathlib import Path

import torch

from cidstream.config import data_root, plain as plain_data
from cidstream.detect.safe_load import load_detector_checkpoint
from cidstream.errors import ConfigError, InputError

from .detector_data import build_dataset
from ..data_entries import resolve

CONFIG_KEYS = {"detector", "data", "train", "output", "clear_check", "consistency"}
# Ultralytics train() arguments a config may set (the rest are fixed by us: data, project, name, device).
TRAINING_MODULES = ("training.detector.detector_consistency",)  # Ultralytics pickles its model class into last.pt
TRAIN_KEYS = {"epochs", "imgsz", "batch", "workers", "optimizer", "lr0", "lrf", "cos_lr", "warmup_epochs", "momentum",
              "weight_decay", "mosaic", "close_mosaic", "mixup", "hsv_h", "hsv_s", "hsv_v", "degrees", "translate",
              "scale", "fliplr", "patience", "seed", "freeze", "amp", "cache", "val"}


def load_detector_config(path: str) -> dict:
    from cidstream.config import read_yaml

    cfg = read_yaml(path, "detector training config") or {}
    unknown = set(cfg) - CONFIG_KEYS
    if unknown or "data" not in cfg:
        raise ConfigError(f"{path}: needs a 'data' section and may have {', '.join(sorted(CONFIG_KEYS))}"
                          + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    check = cfg.get("clear_check")
    if check is not None and not (isinstance(check, dict) and isinstance(check.get("sources"), list)
                                  and all(isinstance(x, dict) and "path" in x for x in check["sources"])):
        raise ConfigError(f"{path}: clear_check needs 'sources', a list of {{path, step}} entries")
    if cfg.get("consistency") is not None and not isinstance(cfg["consistency"], dict):
        raise ConfigError(f"{path}: consistency needs a mapping (weight, taps, share)")
    if set(cfg.get("output") or {}) - {"base_share"}:
        raise ConfigError(f"{path}: output: the only key is base_share")
    share = (cfg.get("output") or {}).get("base_share", 0.0)
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share < 1:
        raise ConfigError(f"{path}: output.base_share must be in [0, 1), got {share!r}")
    bad = set(cfg.get("train") or {}) - TRAIN_KEYS
    if bad:
        raise ConfigError(f"{path}: train: unknown keys {', '.join(sorted(bad))} (known: {', '.join(sorted(TRAIN_KEYS))})")
    return cfg


def check_trainable(path: str) -> None:
    """Ultralytics rebuilds the model from its YAML and copies matching weights: a fused model (BatchNorm
    folded into the convolutions) would lose them silently."""
    from cidstream.detect.detector import load_yolo

    yolo = load_yolo(path)
    if getattr(yolo, "task", "detect") != "detect":
        raise ConfigError(f"{Path(path).name} is a {yolo.task} model; cidstream train detector fine-tunes detection "
                          "models")
    if not any(isinstance(m, torch.nn.BatchNorm2d) for m in yolo.model.modules()):
        raise ConfigError(f"{Path(path).name} is fused (its BatchNorm layers are folded into the convolutions), so "
                          "Ultralytics' trainer cannot start from it: pass the unfused weights (e.g. "
                          f"{data_root() / 'weights' / 'yolo11n_coco_from_int8_unfused.pt'})")


def _train_args(cfg: dict, device: str) -> dict:
    args = {"epochs": 6, "imgsz": 640, "batch": 8, "workers": 2, "optimizer": "AdamW", "lr0": 0.0002,
            "warmup_epochs": 0.5, "mosaic": 0.5, "close_mosaic": 2, "patience": 100, "seed": 0, "amp": False}
    args.update(cfg.get("train") or {})
    args.update(device=device, plots=False, exist_ok=True, verbose=True)
    return args


@contextlib.contextmanager
def ultralytics_verbose():
    """The runtime keeps Ultralytics quiet (YOLO_VERBOSE=False); its trainer's per-epoch progress bars
    and validation tables are what a user watching a training wants to see."""
    import ultralytics.utils as uu

    level, verbose = uu.LOGGER.level, uu.VERBOSE
    uu.LOGGER.setLevel(logging.INFO)
    uu.VERBOSE = True
    try:
        yield
    finally:
        uu.LOGGER.setLevel(level)
        uu.VERBOSE = verbose


def _resumable(last: Path) -> bool:
    """An unfinished run's last.pt keeps the optimizer and the epoch; a finished one has neither (and
    Ultralytics, asked to resume it, would start a new training on its default dataset instead). Read
    with the checks Ultralytics' own loading lacks: it is the file Ultralytics resumes from."""
    ckpt = load_detector_checkpoint(last, "resume checkpoint", TRAINING_MODULES)
    return ckpt.get("optimizer") is not None and ckpt.get("epoch", -1) >= 0


def resume_args(data_yaml: Path) -> dict:
    """What Ultralytics would otherwise take from the resumed checkpoint's own arguments: our training set,
    no teacher model (a file named there would be unpickled unchecked, a data YAML's download script run)."""
    return {"data": str(data_yaml), "distill_model": None}


def report_batches(model, progress) -> None:
    """Ultralytics' bars say nothing in a log: callbacks on ``model`` that report its training as
    ``progress("training", batches done, batches in all epochs)``, at each epoch's start and each batch's end
    (a resumed training starts at its first epoch's batches)."""
    seen = [0]  # batches of the current epoch

    def report(trainer) -> None:
        per_epoch = len(trainer.train_loader)
        progress("training", trainer.epoch * per_epoch + seen[0], trainer.epochs * per_epoch)

    def epoch_start(trainer) -> None:
        seen[0] = 0
        report(trainer)

    def batch_end(trainer) -> None:
        seen[0] += 1
        report(trainer)

    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_batch_end", batch_end)


def ultralytics_train(base: str, data_yaml: Path, run_dir: Path, args: dict, resume: bool, log,
                      consistency=None, progress=None) -> Path:
    """Train (or resume) under RUN_DIR/yolo, with the feature-consistency term when ``consistency`` is
    given (training/detector/detector_consistency.py), reporting ``progress("training", done, total)`` in batches;
    returns the best checkpoint (last if no best was saved)."""
    from ultralytics import YOLO

    from . import detector_consistency

    weights = run_dir / "yolo" / "weights"
    last = weights / "last.pt"
    threads = torch.get_num_threads()
    extra = {"trainer": detector_consistency.trainer_class(consistency)} if consistency is not None else {}

    def model(path: str):
        yolo = YOLO(path)
        if progress is not None:
            report_batches(yolo, progress)
        return yolo

    try:
        with ultralytics_verbose():
            if resume and last.is_file() and not _resumable(last):
                log(f"nothing left to train in {last} (Ultralytics strips a finished run's optimizer state): "
                    "going on to the checks")
            elif resume and last.is_file():
                log(f"resuming Ultralytics training from {last}")
                model(str(last)).train(resume=True, **resume_args(data_yaml), **extra)
            else:
                if resume:
                    log(f"no {last} to resume from: starting a new training")
                # absolute: Ultralytics puts a relative project under its own runs/ folder
                model(base).train(data=str(data_yaml), project=str(run_dir.resolve()), name="yolo", **args, **extra)
    finally:
        detector_consistency._ACTIVE = None
        torch.set_num_threads(threads)  # Ultralytics' CPU device selection changes it for the process
    best = weights / "best.pt"
    if best.is_file():
        return best
    if last.is_file():
        return last
    raise InputError(f"Ultralytics wrote no weights into {weights}")


def ultralytics_metrics(run_dir: Path) -> dict:
    """The last row of Ultralytics' results.csv (validation on the held-out adaptation frames)."""
    import csv

    path = run_dir / "yolo" / "results.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    last = {k.strip(): v for k, v in rows[-1].items()}
    out = {k: round(float(last[k]), 4) for k in ("epoch", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
                                                  "metrics/precision(B)", "metrics/recall(B)") if k in last}
    if "time" in last:  # Ultralytics' training time so far, over resumes too
        out["train_seconds"] = round(float(last["time"]), 1)
    return out


def blend_with_base(ckpt: dict, base: str, share: float) -> None:
    """Weight-space ensembling (WiSE-FT): the model's floating-point weights and BatchNorm statistics
    become (1 - share) x adapted + share x base. Fine-tuning moves the weights a short way from the base,
    so points between the two keep much of the fog gain while drifting less on clear frames."""
    if not 0 <= share < 1:
        raise ConfigError(f"output.base_share must be in [0, 1), got {share}")
    if share == 0:
        return
    model = ckpt["model"]
    base_state = load_detector_checkpoint(base, "base detector")["model"].state_dict()
    state = model.state_dict()
    for k, v in state.items():
        if v.is_floating_point():
            state[k] = ((1 - share) * v.float() + share * base_state[k].float()).to(v.dtype)
    model.load_state_dict(state)


def save_checkpoint(ckpt: dict, out: Path) -> Path:
    """An Ultralytics checkpoint dict (YOLO(out) loads it), written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return out


def prepare(cfg: dict, base: str, run_dir: Path, log=print, progress=None, device: str = "cpu") -> dict:
    """Check the base model and build (or reuse) the training set on ``device``; returns the set's summary."""
    check_trainable(base)
    run_dir.mkdir(parents=True, exist_ok=True)
    return build_dataset(cfg["data"], base, run_dir / "dataset", log=log, progress=progress, device=device)


def train_detector(cfg: dict, base: str, data: dict, out: Path, run_dir: Path, device: str = "cpu",
                   resume: bool = False, log=print, progress=None, view=None, check_device: str = "cpu",
                   train_progress=None, train_view=None) -> dict:
    """Ultralytics training on the set ``prepare`` built (``device`` as Ultralytics names it), the
    clear-weather check on ``check_device`` (``progress(step, done, total)`` inside the context ``view``),
    the output file. The training reports ``train_progress("training", batches, total)`` (default:
    ``progress``), inside the context ``train_view`` when given (leave it out where Ultralytics draws its own
    bars: on a terminal)."""
    from cidstream.evaluation.clear_check import clear_check

    from .detector_consistency import Consistency, plain
    from ..synthetic.recipe import load_recipe

    args = _train_args(cfg, device)
    section = cfg.get("consistency")
    consistency = Consistency.from_config(section, load_recipe(resolve(cfg["data"]["recipe"]))) \
        if section is not None else None
    if consistency is not None:
        log(f"feature consistency: weight {consistency.weight}, layers {list(consistency.taps)}, "
            f"{consistency.share:.0%} of each batch degraded again")
    with train_view if train_view is not None else contextlib.nullcontext():
        best = ultralytics_train(base, run_dir / "dataset" / "data.yaml", run_dir, args, resume, log, consistency,
                                 progress=train_progress if train_progress is not None else progress)
    # Ultralytics' validation is of the trained weights, before any blending with the base
    metrics = {"adaptation_val": ultralytics_metrics(run_dir)}
    base_share = float((cfg.get("output") or {}).get("base_share", 0.0))
    ckpt = load_detector_checkpoint(best, "trained detector", TRAINING_MODULES)
    plain(ckpt)  # the output is Ultralytics' own model class
    blend_with_base(ckpt, base, base_share)
    final = best
    if base_share:
        final = save_checkpoint(ckpt, run_dir / "blended.pt")  # what the clear-weather check loads
        log(f"output weights: {1 - base_share:g} x adapted + {base_share:g} x base (output.base_share)")
    elif consistency is not None:  # best.pt holds the training's own model class, which the runtime refuses
        final = save_checkpoint(ckpt, run_dir / "adapted.pt")
    check = cfg.get("clear_check")
    if check:
        log("clear-weather check: the adapted detector against the base detector's boxes on clean frames it never "
            "saw")
        with view if view is not None else contextlib.nullcontext():
            metrics["clear_check"] = clear_check({"base": base, "adapted": str(final)},
                                                 [dict(s, path=resolve(s["path"])) for s in check["sources"]],
                                                 reference=base, ref_conf=float(check.get("ref_conf", 0.25)),
                                                 imgsz=int(args["imgsz"]), log=log, device=check_device,
                                                 progress=progress)
    meta = {"base_model": str(base), "created": dt.datetime.now().isoformat(timespec="seconds"),
            "recipe": cfg["data"]["recipe"], "dataset_fingerprint": data["fingerprint"],
            "data": {k: v for k, v in data.items() if k != "fingerprint"},
            "train_args": {k: v for k, v in args.items() if k not in ("plots", "exist_ok", "verbose")},
            "base_share": base_share, "consistency": section, "metrics": metrics, "device": device}
    ckpt["cidstream"] = meta = plain_data(meta)  # plain dicts: the file loads without this package's classes
    save_checkpoint(ckpt, out)
    (run_dir / "metadata.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def resolve_base(spec: str) -> str:
    path = Path(resolve(spec)) if not Path(spec).exists() else Path(spec)
    if not path.is_file():
        raise InputError(f"detector weights not found: {spec}")
    return str(path)
