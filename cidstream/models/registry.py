"""Models by name (``cid``, ``cid-lite``, ``dcp``, the gate's ``fog-meter``) or by weights path.

One record per model (``ModelEntry``, in the spirit of torchvision's weights enums): what kind of model it is,
what it is, the weights file shipped for it in cidstream/weights/ with its sha256, what made that file and from
what, and the input it expects. The file itself holds the full training record (``read_weights(path).metadata``);
every kind is written and read by models/weights.py (plain data, ``weights_only``).
"""
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
from .weights import DEHAZER, FOG_METER, KIND_NAMES, WeightsFile, load_state, read_weights

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelEntry:
    """One model by name. ``cls``: a dehazer's network (None for the fog meter, which engine/fog_meter.py
    builds: models sits below engine). ``bundled``: the weights shipped inside the package (None: none needed or
    none bundled; a listed file that is missing means "not trained yet"), ``sha256`` its digest (tests hold the
    file to it), ``trained_by`` the commands that made it, ``trained_on`` what it saw; ``input`` what it reads."""

    cls: type[DehazeModel] | None
    description: str
    bundled: Path | None = None
    kind: str = DEHAZER
    sha256: str | None = None
    trained_by: str = ""
    trained_on: str = ""
    input: str = ""


_FRAMES = "RGB frames in [0, 1], any size"
_CID_LITE_INPUT = (_FRAMES + "; the encoder sees them average-pooled by the integer factor short side // 360 "
                   "(work_short_side; 1 below 720 px), the full frame is rebuilt")
MODELS: dict[str, ModelEntry] = {
    "cid": ModelEntry(
        CIDNet, "the paper's CID network (Res2Net-101 encoder); needs the official weights file",
        input=_FRAMES + ", scaled to [-1, 1] (the official checkpoint's normalisation), at full size"),
    "cid-lite": ModelEntry(
        CIDLite, "real-time CID variant (light encoder, scattering head: one transmission map, one airlight)",
        WEIGHTS_DIR / "cid_lite.pt",
        sha256="003e29e3afc6f8b9f05bc2ac89cbd7e51dd067b41910d821887401a4ac3a9f8c",
        trained_by="cidstream train all --config configs/train/cid_lite.yaml --run-dir runs/v5; cidstream train "
                   "export runs/v5/after_pretrain.pt -o cidstream/weights/cid_lite.pt --display-from "
                   "configs/train/cid_lite.yaml (round 5, docs/training.md)",
        trained_on="the multi-domain synthetic haze of configs/train/generate.yaml over clear traffic video; real fog "
                   "unlabeled (dawn_fog and highway_fog_cam select halves, real_hazy, smog_street, foggy_road_real)",
        input=_CID_LITE_INPUT),
    "cid-lite-affine": ModelEntry(
        CIDLite, "cid-lite of rounds 1-4 (free affine head; its training saw every dawn_fog image unlabeled)",
        WEIGHTS_DIR / "cid_lite_affine.pt",
        sha256="ad4c7780a50ba25b38007ba452a9ba899d514e859a36671aa45a84de308b3815",
        trained_by="cidstream train all with round 4's configs/train/cid_lite.yaml (pretrain, adapt, finetune), "
                   "then cidstream train export",
        trained_on="the multi-domain synthetic haze of configs/train/generate.yaml over three clear traffic videos; "
                   "real fog unlabeled (every dawn_fog image, real_hazy, foggy_road_real)",
        input=_CID_LITE_INPUT),
    "dcp": ModelEntry(
        DarkChannelPrior, "dark channel prior + guided filter (training-free baseline)",
        input=_FRAMES + "; settings from the config's model.dcp"),
    "fog-meter": ModelEntry(
        None, "the gate's fog meter, not a dehazer: each frame's visibility in metres and its uncertainty "
              "(gate.measure learned; another file: --fog-meter)",
        WEIGHTS_DIR / "fog_meter.pt", kind=FOG_METER,
        sha256="8a7aefa2102392b69f54f593504cf2f377cbbfd36f4d3af9daa85220eabe73a4",
        trained_by="cidstream train fog-meter --out cidstream/weights/fog_meter.pt (configs/train/haze.yaml; "
                   "reproduces the file bit for bit)",
        trained_on="synthetic fog of known visibility over clear traffic scenes, the generator's nuisances without "
                   "fog labelled clear, and real fog (highway_fog_cam select days, real_hazy); never the report "
                   "halves (its metadata's trained_on.never_seen)",
        input="the gate's small copy of each frame (engine/haze.small_copy): RGB in [0, 1], about 90 px on the "
              "short side"),
}
# dehazer name -> network class: a view of MODELS (build() and weights files name these), not a second table
ARCHITECTURES: dict[str, type[DehazeModel]] = {name: e.cls for name, e in MODELS.items() if e.cls is not None}
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


def model_names(kind: str | None = None) -> list[str]:
    """Every registry name, or those of one kind (dehazer, fog-meter)."""
    return [name for name, entry in MODELS.items() if kind is None or entry.kind == kind]


def not_a_dehazer(name: str) -> WeightsError:
    """The refusal when a dehazer is asked for by a record of another kind (``--model fog-meter``)."""
    return WeightsError(f"'{name}' is the {KIND_NAMES[MODELS[name].kind]}, not a dehazer: the haze gate reads it "
                        f"(gate.measure learned; another file: --fog-meter); dehazers: {', '.join(ARCHITECTURES)}")


def canonical_name(spec: str) -> str:
    """The registry name ``spec`` stands for in any case ('DCP' is dcp), unless a file or folder of that
    name exists (then it is a weights path); other specs unchanged."""
    spec = str(spec)
    name = spec.lower()
    if spec != name and name in MODELS and not os.path.lexists(spec):
        return name
    return spec


def bundled_weights(name: str) -> Path | None:
    entry = MODELS.get(canonical_name(name))
    path = entry.bundled if entry is not None else None
    return path if path is not None and path.exists() else None


def build(arch: str, **config) -> DehazeModel:
    if arch in MODELS and arch not in ARCHITECTURES:
        raise not_a_dehazer(arch)
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
    if spec in MODELS and MODELS[spec].kind != DEHAZER:
        raise not_a_dehazer(spec)
    if spec in ARCHITECTURES:
        if spec == "dcp":
            return LoadedModel(build("dcp", **(dcp or {})).eval(), "dcp")
        path = bundled_weights(spec)
        if path is not None:
            wf = read_weights(path, DEHAZER)
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
    wf = read_weights(spec, DEHAZER)
    return LoadedModel(from_weights(wf).eval(), wf.arch, Path(spec), wf.metadata)
