"""Dehazing networks, the registry that finds every model (the dehazers, the gate's fog meter) by name or weights
path, and the weights files they are shipped in."""
from .base import DehazeModel, Normalization
from .cid import CIDNet
from .cid_lite import CIDLite
from .dcp import DarkChannelPrior
from .exported import ExportedModel, load_exported
from .registry import (ARCHITECTURES, MODELS, LoadedModel, ModelEntry, bundled_weights, build, canonical_name,
                       load_model, model_names)
from .weights import DEHAZER, FOG_METER, WeightsFile, read_weights, save_weights

__all__ = [
    "ARCHITECTURES", "CIDLite", "CIDNet", "DEHAZER", "FOG_METER", "MODELS", "DarkChannelPrior", "DehazeModel",
    "ExportedModel", "LoadedModel", "ModelEntry", "Normalization", "WeightsFile", "build", "bundled_weights",
    "canonical_name", "load_exported", "load_model", "model_names", "read_weights", "save_weights",
]
