"""The paper's alignment idea applied to the detector's own features: during Ultralytics' training, each
training image is degraded again on the fly by the multi-domain recipe, and the backbone's features of
the degraded copy are pulled towards those of the image itself (stop-gradient), so fog, blur, noise and
glow stop moving what the neck and head see. Our own training step around Ultralytics' model: the
detection loss is Ultralytics' own, the term is added to it.

The model class used during training is a subclass of Ultralytics' DetectionModel; ``plain`` turns a
checkpoint's model back into a DetectionModel, so the output loads wherever Ultralytics does (the
runtime never imports this package)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cidstream.errors import ConfigError

KEYS = {"weight", "taps", "share"}


@dataclass
class Consistency:
    """weight: the term's weight beside Ultralytics' loss (per image, as its loss is); taps: backbone
    layers compared (YOLO11: 4, 6, 10 feed the neck); share: the part of each batch degraded again."""

    recipe: object
    weight: float = 1.0
    taps: tuple = (4, 6, 10)
    share: float = 0.5
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    @classmethod
    def from_config(cls, section: dict, recipe) -> "Consistency":
        bad = set(section) - KEYS
        if bad:
            raise ConfigError(f"consistency: unknown keys {', '.join(sorted(bad))} (known: {', '.join(sorted(KEYS))})")
        weight, share = float(section.get("weight", 1.0)), float(section.get("share", 0.5))
        taps = tuple(int(t) for t in section.get("taps", (4, 6, 10)))
        if weight <= 0 or not 0 < share <= 1 or not taps:
            raise ConfigError("consistency: weight must be > 0, share in (0, 1], taps a list of layer indices")
        return cls(recipe, weight, taps, share)

    def degrade(self, img: torch.Tensor) -> torch.Tensor:
        """A fresh degraded copy of (N, 3, H, W) images in [0, 1], one recipe domain per image."""
        from ..synthetic.generate import degrade_batch, depth_source

        cpu = img.detach().float().cpu()
        hazy, _, _ = degrade_batch(self.recipe, cpu, depth_source(self.recipe)(cpu), self.generator)
        return hazy.clamp(0, 1).to(img.device, img.dtype)


_ACTIVE: Consistency | None = None   # set while a training with the term runs (kept off the pickled model)


def _detection_model():
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel


def _consistent_class():
    DetectionModel = _detection_model()

    class ConsistentDetectionModel(DetectionModel):
        def loss(self, batch, preds=None):
            setting = _ACTIVE
            if setting is None or not self.training or preds is not None:
                return super().loss(batch, preds)
            img = batch["img"]
            feats: dict[int, torch.Tensor] = {}
            hooks = [self.model[i].register_forward_hook(lambda m, a, out, i=i: feats.__setitem__(i, out))
                     for i in setting.taps]
            try:
                preds = self.forward(img)
            finally:
                for h in hooks:
                    h.remove()
            total, items = super().loss(batch, preds)
            n = max(1, round(img.shape[0] * setting.share))
            with torch.no_grad():
                x = setting.degrade(img[:n])
            term = img.new_zeros(())
            for i, layer in enumerate(self.model[: max(setting.taps) + 1]):
                x = layer(x)
                if i in setting.taps:
                    target = feats[i][:n].detach()
                    term = term + (x - target).abs().mean() / target.abs().mean().clamp(min=1e-3)
            term = term / len(setting.taps)
            return total.sum() + setting.weight * term * img.shape[0], {**items, "cons": term.detach()}

    ConsistentDetectionModel.__module__ = __name__
    ConsistentDetectionModel.__qualname__ = "ConsistentDetectionModel"
    return ConsistentDetectionModel


def __getattr__(name):  # the class is made on first use (Ultralytics is imported late); pickles find it here
    if name == "ConsistentDetectionModel":
        cls = _consistent_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def trainer_class(setting: Consistency):
    """An Ultralytics DetectionTrainer whose model adds the term; the setting is active while it exists."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    global _ACTIVE
    _ACTIVE = setting
    model_class = __getattr__("ConsistentDetectionModel")

    class ConsistencyTrainer(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):
            model = super().get_model(cfg, weights, verbose)
            model.__class__ = model_class
            return model

    return ConsistencyTrainer


def plain(ckpt: dict) -> None:
    """The checkpoint's model (and EMA) as Ultralytics' own DetectionModel."""
    DetectionModel = _detection_model()
    for key in ("model", "ema"):
        m = ckpt.get(key)
        if m is not None and isinstance(m, DetectionModel) and type(m) is not DetectionModel:
            m.__class__ = DetectionModel
