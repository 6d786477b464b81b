"""The three-phase runner: pretrain (semi-supervised), adapt (subspace alignment), finetune
(invariant features), with checkpoints, resume, logs and validation."""
from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cidstream.detect.safe_load import load_plain
from cidstream.errors import ConfigError
from cidstream.models import build, save_weights
from cidstream.models.cid_lite import DISPLAY_SETTINGS

from . import losses as L
from .datasets import load_frames, random_crop
from ..synthetic.depth import DepthSource
from ..synthetic.generate import degrade_batch, depth_source
from ..synthetic.recipe import Recipe, load_recipe
from ..data_entries import resolve, source_specs
from .train_config import read_train_config

PHASES = ("pretrain", "adapt", "finetune")
TARGETS_FORMAT = 2  # real_targets caches hold tensors (plain data); format 1 held numpy arrays


def load_train_config(path: str | Path) -> dict:
    """Checked against training/dehazer/train_config.py, where each key's default and range are declared."""
    return read_train_config(path)


class PairSampler:
    """Random crops of in-memory clean frames, degraded as a batch by the recipe (depth from the
    whole frame, computed once per frame)."""

    def __init__(self, frames: list[np.ndarray], recipe: Recipe, crop: int, device):
        self.frames, self.recipe, self.crop, self.device = frames, recipe, crop, device
        depth: DepthSource = depth_source(recipe)
        self.depth = [depth(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0)[0] for f in frames]

    def batch(self, n: int, generator: torch.Generator):
        """(clean, hazy, truth): truth holds each sample's ``domain``, transmission ``t`` and ``airlight``."""
        cleans, depths = [], []
        for _ in range(n):
            i = int(torch.randint(len(self.frames), (1,), generator=generator))
            img = torch.from_numpy(self.frames[i]).permute(2, 0, 1).float() / 255.0
            c, d = random_crop([img, self.depth[i]], self.crop, generator)
            cleans.append(c)
            depths.append(d)
        clean = torch.stack(cleans).to(self.device)
        truth: dict = {}
        hazy, truth["domains"], _ = degrade_batch(self.recipe, clean, torch.stack(depths).to(self.device), generator,
                                                  truth)
        return clean, hazy, truth


class RealSampler:
    """Random crops of unlabeled real hazy frames; with ``teachers`` (one image per frame, e.g. the
    classical DCP's output on the whole frame) also the teacher's crop of the same region, and with
    ``transmissions`` (one H x W x 1 uint8 map per frame, DCP's transmission) that map's crop."""

    def __init__(self, frames: list[np.ndarray], crop: int, device, teachers: list[np.ndarray] | None = None,
                 transmissions: list[np.ndarray] | None = None):
        self.frames, self.crop, self.device, self.teachers = frames, crop, device, teachers
        self.transmissions = transmissions

    def _crops(self, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        out = []
        for _ in range(n):
            i = int(torch.randint(len(self.frames), (1,), generator=generator))
            imgs = [torch.from_numpy(self.frames[i]).permute(2, 0, 1).float() / 255.0]
            for extra in (self.teachers, self.transmissions):
                if extra is not None:
                    imgs.append(torch.from_numpy(extra[i]).permute(2, 0, 1).float() / 255.0)
            out.append(random_crop(imgs, self.crop, generator))
        return [torch.stack(t).to(self.device) for t in zip(*out)]

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._crops(n, generator)[0]

    def batch_with_teacher(self, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        """[real, teacher image, teacher transmission], without the ones this sampler was not given."""
        return self._crops(n, generator)


class LabelledRealSampler:
    """Random square crops (a multiple of 32, as the detector needs) of real frames with their
    pseudo-label boxes moved into the crop."""

    def __init__(self, frames: list[np.ndarray], boxes: list[np.ndarray], crop: int, device):
        self.frames, self.boxes, self.device = frames, boxes, device
        self.crop = max(32, min([crop] + [min(f.shape[:2]) for f in frames]) // 32 * 32)

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, list[np.ndarray]]:
        from .pseudo_labels import crop_boxes

        imgs, boxes = [], []
        for _ in range(n):
            i = int(torch.randint(len(self.frames), (1,), generator=generator))
            h, w = self.frames[i].shape[:2]
            top = int(torch.randint(h - self.crop + 1, (1,), generator=generator))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=generator))
            patch = self.frames[i][top:top + self.crop, left:left + self.crop]
            imgs.append(torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float() / 255.0)
            boxes.append(crop_boxes(self.boxes[i], top, left, self.crop))
        return torch.stack(imgs).to(self.device), boxes


def dcp_teacher(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The runtime's DCP on each whole frame (airlight from the whole frame, not from a crop)."""
    from cidstream.engine import Dehazer

    dcp = Dehazer("dcp", device="cpu")
    return [dcp(f[None])[0] for f in frames]


@torch.no_grad()
def dcp_transmission(frames: list[np.ndarray]) -> list[np.ndarray]:
    """DCP's refined transmission of each whole frame (sky guard included), H x W x 1 uint8: a prior on real
    fog for the scattering head, without DCP's airlight and so without its casts."""
    from cidstream.models import DarkChannelPrior

    dcp = DarkChannelPrior()
    out = []
    for f in frames:
        t, _ = dcp.transmission(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0)
        out.append((t[0].permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy())
    return out


@dataclass
class Validation:
    hazy: torch.Tensor
    clean: torch.Tensor
    real: torch.Tensor

    @torch.no_grad()
    def __call__(self, model) -> dict:
        was_training = model.training
        model.eval()
        out = model(self.hazy).clamp(0, 1)
        real = model(self.real).clamp(0, 1)
        model.train(was_training)
        return {"psnr": round(float(L.psnr(out, self.clean).mean()), 3),
                "ssim": round(float(L.ssim(out, self.clean).mean()), 4),
                "psnr_input": round(float(L.psnr(self.hazy, self.clean).mean()), 3),
                "real_dark_channel": round(float(L.dark_channel_prior_loss(real)), 4),
                "real_dark_channel_input": round(float(L.dark_channel_prior_loss(self.real)), 4),
                "real_brightness": round(float(real.mean()), 4)}


def validation_set(v: dict, clean: list[np.ndarray], target: list[np.ndarray], device="cpu") -> Validation:
    """Held-apart pairs from a recipe not used for training (fixed seed) and fixed real hazy crops."""
    recipe = load_recipe(resolve(v["recipe"]))
    recipe.seed = int(v["seed"])
    g = torch.Generator().manual_seed(recipe.seed)
    sampler = PairSampler(clean[::max(1, len(clean) // int(v["pairs"]))][: int(v["pairs"])], recipe,
                          int(v["crop"]), device)
    c, h, _ = sampler.batch(int(v["pairs"]), g)
    real = RealSampler(target, int(v["crop"]), device).batch(int(v["real"]), g)
    return Validation(h, c, real)


def load_data(cfg: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    d = cfg["data"]
    clean = load_frames(source_specs(d["clean"]), int(d["short_side"]), stride=int(d["clean_stride"]))
    target = load_frames(source_specs(d["target"]), int(d["short_side"]), stride=int(d["target_stride"]), dedup=0.5)
    return clean, target


class Trainer:
    def __init__(self, cfg: dict, run_dir: Path, device: str = "cpu", scale: float = 1.0, log=print):
        self.cfg, self.run_dir, self.scale, self.log = cfg, Path(run_dir), scale, log
        self.device = torch.device(device)
        t = cfg["train"]
        if t["threads"]:
            torch.set_num_threads(int(t["threads"]))
        torch.manual_seed(int(t["seed"]))
        self.model = build(cfg["model"]["arch"], **cfg["model"]["config"]).to(self.device)
        if getattr(self.model, "head_kind", None) == "scattering":
            # The brightness-keeping gain and the unamplified detail are display steps on top of the physics:
            # training learns t and A without them (with the gain, the restoration loss would fight it by
            # dehazing less); export builds the model from the config again, so the shipped weights keep the
            # config's values.
            for key in DISPLAY_SETTINGS:
                setattr(self.model, key, 0.0)
        d = cfg["data"]
        self.recipe = load_recipe(resolve(d["recipe"]))
        self.log("loading clean and real frames")
        clean, target = load_data(cfg)
        self.pairs = PairSampler(clean, self.recipe, int(t["crop"]), self.device)
        teachers, labels, transmissions = self._real_targets(target)
        self.real = RealSampler(target, int(t["crop"]), self.device, teachers, transmissions)
        self.detection = None
        if self._any_phase("pseudo_label_weight"):
            from .pseudo_labels import DetectionLoss

            self.detection = DetectionLoss(resolve(t["detector"])).to(self.device)
        self.labelled = LabelledRealSampler(target, labels, int(t["pseudo_crop"]), self.device)
        self.features = None
        if float(t["detector_weight"]) > 0:
            from .detector_features import DetectorFeatures

            self.features = DetectorFeatures(resolve(t["detector"])).to(self.device)
        self.validation = self._validation_set(clean, target)
        self.data_summary = {"clean_frames": len(clean), "target_frames": len(target), "clean": d["clean"],
                             "target": d["target"], "recipe": d["recipe"]}
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _real_targets(self, target: list[np.ndarray]) -> tuple[list | None, list[np.ndarray], list | None]:
        """DCP teacher outputs, pseudo-labels and DCP transmissions of the real frames. They take minutes on a CPU and
        depend only on the frames and the detector settings, so they are cached beside the run
        (RUN_DIR/../.cache), keyed by a hash of the frames and those settings: phases rerun from a
        copied run directory start at once."""
        t = self.cfg["train"]
        want_teacher = self._any_phase("teacher_weight") or self._any_phase("pseudo_label_weight")
        want_labels = self._any_phase("pseudo_label_weight")
        want_t = self._any_phase("transmission_teacher_weight")
        empty = [np.zeros((0, 5), np.float32)] * len(target)
        if not want_teacher:
            return None, empty, dcp_transmission(target) if want_t else None
        key = hashlib.sha256(json.dumps([t["detector"], t["pseudo_conf"], t["pseudo_iou"], want_labels,
                                         TARGETS_FORMAT] + ([want_t] if want_t else [])).encode())
        for frame in target:
            key.update(frame.tobytes())
        cache = self.run_dir.parent / ".cache" / f"real_targets_{key.hexdigest()[:20]}.pt"
        if cache.exists():
            self.log(f"DCP teacher and pseudo-labels from {cache}")
            stored = load_plain(cache, "training cache")
            maps = [m.numpy() for m in stored["transmissions"]] if want_t else None
            return [t.numpy() for t in stored["teachers"]], [b.numpy() for b in stored["labels"]], maps
        self.log("DCP teacher on the real frames")
        teachers = dcp_teacher(target)
        labels = empty
        if want_labels:
            from .pseudo_labels import pseudo_labels

            self.log("pseudo-labels: the detector on the real frames and on their DCP output")
            labels = pseudo_labels(resolve(t["detector"]), target, teachers, conf=float(t["pseudo_conf"]),
                                   iou=float(t["pseudo_iou"]))
            self.log(f"pseudo-labels: {sum(map(len, labels))} boxes on {len(labels)} real frames")
        maps = dcp_transmission(target) if want_t else None
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"teachers": [torch.from_numpy(t) for t in teachers],
                    "labels": [torch.from_numpy(b) for b in labels],
                    "transmissions": [torch.from_numpy(m) for m in maps or []]}, tmp)
        tmp.replace(cache)
        return teachers, labels, maps

    def _any_phase(self, key: str) -> bool:
        return any(ph is not None and float(ph[key]) > 0 for ph in self.cfg["phases"].values())

    def _validation_set(self, clean, target) -> Validation:
        return validation_set(self.cfg["validation"], clean, target, self.device)

    # ---- phases -------------------------------------------------------------------------------
    def _freeze_encoder(self, frozen: bool) -> None:
        for module in self.model.encoder_modules():
            for p in module.parameters():
                p.requires_grad_(not frozen)
            module.train(not frozen)  # frozen BatchNorm statistics too

    def _supervised(self, out, clean) -> torch.Tensor:
        """Per-sample supervised loss on synthetic pairs: restoration, plus (with train.detector_weight)
        the detector-feature term."""
        loss = L.restoration_loss(out, clean)
        if self.features is not None:
            from .detector_features import feature_loss

            loss = loss + float(self.cfg["train"]["detector_weight"]) * feature_loss(self.features, out, clean)
        return loss

    def _synthetic(self, p, hazy, clean, truth):
        """Dehazed synthetic batch, its bottleneck map and the per-sample supervised loss; with
        ``physics_weight`` (scattering head) the generator's transmission and airlight are supervised too."""
        physics_w = float(p["physics_weight"])
        if physics_w <= 0:
            out, mid = self.model.forward_with_map(hazy)
            return out, mid, self._supervised(out, clean), {}
        maps = self.model.scattering_maps(hazy)
        out = self.model.apply_coefficients(maps["ab"], maps["work"], hazy)
        physics = L.scattering_supervision(maps, truth)
        return out, maps["mid"], self._supervised(out, clean) + physics_w * physics, {
            "physics": float(physics.detach().mean())}

    def _real(self, p, n: int, g):
        """A batch of real hazy crops, its dehazed version and map, and the teacher-student terms: L1 to the
        classical DCP's output on the whole frame (``teacher_weight``) and, for the scattering head, L1 of
        its transmission to DCP's (``transmission_teacher_weight``)."""
        teacher_w, t_w = float(p["teacher_weight"]), float(p["transmission_teacher_weight"])
        crops = self.real.batch_with_teacher(n, g)
        real = crops[0]
        teacher = crops[1] if self.real.teachers is not None else None
        total, extra = real.new_zeros(()), {}
        if t_w > 0:
            maps = self.model.scattering_maps(real)
            out_r, mid_r = self.model.apply_coefficients(maps["ab"], maps["work"], real), maps["mid"]
            dcp_t = F.adaptive_avg_pool2d(crops[-1], maps["t"].shape[-2:])
            t_loss = (maps["t"] - dcp_t).abs().mean()
            total, extra["t_teacher"] = total + t_w * t_loss, float(t_loss.detach())
        else:
            out_r, mid_r = self.model.forward_with_map(real)
        if teacher_w > 0:
            consistency = (out_r - teacher).abs().mean()
            total, extra["teacher"] = total + teacher_w * consistency, float(consistency.detach())
        return real, out_r, mid_r, total, extra

    def _step_pretrain(self, p, clean, hazy, truth, g):
        _, _, supervised, extra = self._synthetic(p, hazy, clean, truth)
        real, out_r, _, teach, more = self._real(p, hazy.shape[0], g)
        unsup = (p["dark_channel_weight"] * L.dark_channel_prior_loss(out_r, inp=real)
                 + p["tv_weight"] * L.total_variation(out_r)
                 + p["balance_weight"] * L.colour_balance(out_r, real))
        return (supervised.mean() + p["unsupervised_weight"] * unsup + teach,
                {"unsup": float(unsup.detach()), **extra, **more})

    def _step_adapt(self, p, clean, hazy, truth, g):
        _, mid_s, supervised, extra = self._synthetic(p, hazy, clean, truth)
        _, _, mid_t, teach, more = self._real(p, hazy.shape[0], g)
        coral = L.coral_bounded(L.unit_scale(L.spatial_samples(mid_s)), L.unit_scale(L.spatial_samples(mid_t)))
        return supervised.mean() + p["coral_weight"] * coral + teach, {"coral": float(coral.detach()), **extra, **more}

    def _step_finetune(self, p, clean, hazy, truth, g):
        out, mid, supervised, extra = self._synthetic(p, hazy, clean, truth)
        weights = self.learner(mid.mean(dim=(2, 3)))
        loss = (weights.to(out) * supervised).mean()
        extra = {"w_max": float(weights.max()), **extra}
        if float(p["teacher_weight"]) > 0 or float(p["transmission_teacher_weight"]) > 0:
            _, _, _, teach, more = self._real(p, hazy.shape[0], g)  # real haze keeps its anchor while the head adapts
            loss, extra = loss + teach, {**extra, **more}
        return loss, extra

    def _large_real_crop_terms(self, p, n: int, g) -> tuple[torch.Tensor, dict]:
        """Terms on detector-sized real crops: the frozen detector's loss against the pseudo-labels
        (``pseudo_label_weight``, pseudo_labels.py) and the smoothness of the coefficient maps in flat
        regions (``smooth_weight``, losses.coefficient_smoothness)."""
        det_w, smooth_w = float(p["pseudo_label_weight"]), float(p["smooth_weight"])
        if det_w <= 0 and smooth_w <= 0:
            return torch.zeros((), device=self.device), {}
        real, boxes = self.labelled.batch(n, g)
        total, terms = torch.zeros((), device=self.device), {}
        if smooth_w > 0:  # cid-lite only: the term is on its coefficient maps
            ab, work, _ = self.model.coefficient_maps(real)
            out = self.model.apply_coefficients(ab, work, real)
            smooth = L.coefficient_smoothness(ab, work)
            total, terms["smooth"] = total + smooth_w * smooth, float(smooth.detach())
        else:
            out = self.model(real)
        if det_w > 0:
            det = self.detection(out, boxes)
            total, terms["detection"] = total + det_w * det, float(det.detach())
        return total, terms

    def run(self, phases: list[str], resume: bool = False, progress=None) -> dict:
        state = self._load() if resume else None
        done = state["done"] if state else []
        self.done = list(done)
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.log(f"resuming {state['phase']} at step {state['step']} (done: {', '.join(done) or 'none'})")
        for phase in phases:
            if phase in done:
                continue
            p = self.cfg["phases"].get(phase)
            if p is None:
                raise ConfigError(f"the training config has no '{phase}' phase")
            start = state["step"] if state and state["phase"] == phase else 0
            self._run_phase(phase, p, start, state if start else None, progress)
            done = done + [phase]
            self.done = list(done)
            state = None
            self._save(phase, int(p["steps"] * self.scale), done, None, final=True)
        return self.summary()

    def _run_phase(self, phase, p, start, state, progress):
        steps = max(1, int(p["steps"] * self.scale))
        t = self.cfg["train"]
        self.model.train()
        self._freeze_encoder(phase != "pretrain")
        if phase == "finetune":
            self.learner = L.SampleWeightLearner(self.model.widths[-1], k=int(p["rff"]), steps=int(p["learner_steps"]),
                                                 penalty=float(p["penalty"]), memory=int(p["memory"]),
                                                 seed=int(t["seed"]))
        params = [q for q in self.model.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=float(p["lr"]))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=float(p["lr"]) * 0.05)
        if state is not None:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        step_fn = getattr(self, f"_step_{phase}")
        t0 = time.perf_counter()
        for step in range(start, steps):
            g = torch.Generator().manual_seed((int(t["seed"]) * 7919 + PHASES.index(phase)) * 1_000_003 + step)
            clean, hazy, truth = self.pairs.batch(int(t["batch"]), g)
            loss, extra = step_fn(p, clean, hazy, truth, g)
            more, terms = self._large_real_crop_terms(p, int(t["pseudo_batch"]), g)
            loss, extra = loss + more, {**extra, **terms}
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            row = None
            if (step + 1) % int(t["log_every"]) == 0 or step + 1 == steps:
                row = {"phase": phase, "step": step + 1, "loss": round(float(loss.detach()), 5),
                       "lr": round(sched.get_last_lr()[0], 7), "seconds": round(time.perf_counter() - t0, 1),
                       **{k: round(v, 5) for k, v in extra.items()}}
            if (step + 1) % int(t["validate_every"]) == 0 or step + 1 == steps:
                row = (row or {"phase": phase, "step": step + 1}) | self.validation(self.model)
            if row is not None:
                self._append_log(row)
            if (step + 1) % int(t["checkpoint_every"]) == 0 and step + 1 < steps:
                self._save(phase, step + 1, self.done, (opt, sched))
            if progress is not None:
                progress(phase, step + 1, steps, float(loss.detach()))
        self.phase_seconds = getattr(self, "phase_seconds", {}) | {phase: round(time.perf_counter() - t0, 1)}

    # ---- files --------------------------------------------------------------------------------
    def _append_log(self, row: dict) -> None:
        with (self.run_dir / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        path = self.run_dir / "log.csv"
        fields = ["phase", "step", "loss", "lr", "seconds", "psnr", "ssim", "psnr_input", "real_dark_channel",
                  "real_dark_channel_input", "real_brightness", "unsup", "teacher", "coral", "w_max", "detection", "smooth",
                  "physics", "t_teacher"]
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        self.log(" ".join(f"{k}={v}" for k, v in row.items()))

    def _save(self, phase, step, done, opt_sched, final=False) -> None:
        payload = {"phase": phase, "step": step, "done": done, "model": self.model.state_dict(),
                   "config": self.cfg, "data": self.data_summary, "metrics": self.validation(self.model),
                   "phase_seconds": getattr(self, "phase_seconds", {})}
        if opt_sched is not None:
            payload["optimizer"], payload["scheduler"] = opt_sched[0].state_dict(), opt_sched[1].state_dict()
        tmp = self.run_dir / "checkpoint.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(self.run_dir / "checkpoint.pt")  # atomic: a kill never leaves half a checkpoint
        if final:
            torch.save(payload, self.run_dir / f"after_{phase}.pt")

    def _load(self) -> dict | None:
        path = self.run_dir / "checkpoint.pt"
        if not path.exists():
            self.log(f"no checkpoint in {self.run_dir}: starting fresh")
            return None
        state = load_plain(path, "training checkpoint")
        self.phase_seconds = state.get("phase_seconds", {})
        return state

    def summary(self) -> dict:
        return {"run_dir": str(self.run_dir), "metrics": self.validation(self.model),
                "phase_seconds": getattr(self, "phase_seconds", {})}


def export(checkpoint: str | Path, out: str | Path, display_from: str | Path | None = None) -> Path:
    """Runtime weights with metadata from a training checkpoint (checkpoint.pt or after_<phase>.pt).
    ``display_from``: a training config whose model display settings (cid_lite.DISPLAY_SETTINGS, which training
    switches off) replace the checkpoint's; every other model setting must be the checkpoint's."""
    state = load_plain(checkpoint, "training checkpoint")
    cfg = state["config"]
    if display_from is not None:
        cfg = display_settings_from(cfg, load_train_config(display_from), display_from)
    model = build(cfg["model"]["arch"], **cfg["model"].get("config", {}))
    model.load_state_dict(state["model"])
    phases = state["done"] or [state["phase"]]
    return save_weights(model, out, training={"phases": phases, "config": cfg,
                                              "phase_seconds": state.get("phase_seconds", {})},
                        data=state.get("data", {}), metrics=state.get("metrics", {}))


def display_settings_from(cfg: dict, other: dict, where) -> dict:
    """``cfg`` with the model display settings of ``other`` (the same model otherwise, or a ConfigError)."""
    mine, theirs = cfg["model"], other["model"]
    learned = lambda m: {k: v for k, v in m.get("config", {}).items() if k not in DISPLAY_SETTINGS}  # noqa: E731
    if mine["arch"] != theirs["arch"] or learned(mine) != learned(theirs):
        raise ConfigError(f"{where}: its model section differs from the checkpoint's in more than the display "
                          f"settings ({', '.join(DISPLAY_SETTINGS)}): export the checkpoint without it")
    display = {k: v for k, v in theirs.get("config", {}).items() if k in DISPLAY_SETTINGS}
    return {**cfg, "model": {**mine, "config": {**mine.get("config", {}), **display}}}
