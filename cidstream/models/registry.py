"""Models by name (``cid``, ``cid-lite``, ``dcp``) or by weights path."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WeightsError
from .base import DehazeModel
from .cid import CIDNet
from .cid_lite import CIDLite
from .dcp import DarkChannelPrior
from .exported import exported_format, load_exported
from .weights import WeightsFile, load_state, read_weights

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelEntry:
    """One model by name: its class, what it is, and the weights shipped inside the package for it (None: none
    needed or none bundled; a listed file that is missing means "not trained yet")."""

    cls: type[DehazeModel]
    description: str
    bundled: Path | None = None


MODELS: dict[str, ModelEntry] = {
    "cid": ModelEntry(CIDNet, "the paper's CID network (Res2Net-101 encoder); needs the official weights file"),
    "cid-lite": ModelEntry(CIDLite, "real-time CID variant (light encoder, scattering head: one transmission map, "
                                    "one airlight)", WEIGHTS_DIR / "cid_lite.pt"),
    "cid-lite-affine": ModelEntry(CIDLite, "cid-lite of rounds 1-4 (free affine head; its training saw every dawn_fog "
                                           "image unlabeled)", WEIGHTS_DIR / "cid_lite_affine.pt"),
    "dcp": ModelEntry(DarkChannelPrior, "dark channel prior + guided filter (training-free baseline)"),
}
ARCHITECTURES: dict[str, type[DehazeModel]] = {name: entry.cls for name, entry in MODELS.items()}  # name -> class
WEIGHT_SUFFIXES = (".pt", ".pth", ".pk", ".pkl", ".ckpt", ".bin")


@dataclass
class LoadedModel:
    model: DehazeModel
    name: str
    weights: Path | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name if self.weights is None else f"{self.name} ({self.weights.name})"


def model_names() -> list[str]:
    return list(MODELS)


def canonical_name(spec: str) -> str:
    """The registry name ``spec`` stands for in any case ('DCP' is dcp), unless a file or folder of that
    name exists (then it is a weights path); other specs unchanged."""
    spec = str(spec)
    name = spec.lower()
    if spec != name and name in ARCHITECTURES and not os.path.lexists(spec):
        return name
    return spec


def bundled_weights(name: str) -> Path | None:
    entry = MODELS.get(canonical_name(name))
    path = entry.bundled if entry is not None else None
    return path if path is not None and path.exists() else None


def build(arch: str, **config) -> DehazeModel:
    if arch not in ARCHITECTURES:
        raise WeightsError(f"unknown architecture '{arch}' (known: {', '.join(ARCHITECTURES)})")
    try:
        return ARCHITECTURES[arch](**config)
    except TypeError as exc:
        raise WeightsError(f"bad configuration for architecture '{arch}': {exc}") from exc


def from_weights(weights: WeightsFile) -> DehazeModel:
    model = build(weights.arch, **weights.config)
    load_state(model, weights)
    model.normalization = weights.normalization
    return model


def looks_like_path(spec: str) -> bool:
    return Path(spec).suffix.lower() in WEIGHT_SUFFIXES or "/" in spec or "\\" in spec or Path(spec).exists()


def load_model(spec: str, *, random_init: bool = False, dcp: dict | None = None) -> LoadedModel:
    """Resolve ``spec`` (registry name, weights path or exported .onnx/.ts graph) to a ready model in eval mode.

    ``random_init`` allows a learned model without weights (speed benchmarks only).
    ``dcp`` holds the DCP parameters from the config.
    """
    spec = canonical_name(spec)
    if spec in ARCHITECTURES:
        if spec == "dcp":
            return LoadedModel(build("dcp", **(dcp or {})).eval(), "dcp")
        path = bundled_weights(spec)
        if path is not None:
            wf = read_weights(path)
            return LoadedModel(from_weights(wf).eval(), spec, path, wf.metadata)
        if random_init:
            return LoadedModel(build(spec).eval(), spec, None, {"weights": "random (speed tests only)"})
        hint = ("the official weights are not bundled: pass --model path/to/official.pk"
                if spec == "cid" else
                "no trained weights are bundled with this version yet: pass --model path/to/weights.pt")
        raise WeightsError(f"model '{spec}' has no weights: {hint}, or use --model dcp (training-free)")
    if exported_format(spec) is not None:  # a graph written by `cidstream export`
        exported = load_exported(spec)
        return LoadedModel(exported, exported.metadata.get("model") or exported.arch, Path(spec), exported.metadata)
    if not looks_like_path(spec):
        raise WeightsError(f"unknown model '{spec}': not a model name ({', '.join(ARCHITECTURES)}) "
                           "and not a weights file path")
    wf = read_weights(spec)
    return LoadedModel(from_weights(wf).eval(), wf.arch, Path(spec), wf.metadata)
