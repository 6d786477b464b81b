"""Dehazing networks and the registry that finds them by name or weights path."""
from .base import DehazeModel, Normalization
from .cid import CIDNet
from .cid_lite import CIDLite
from .dcp import DarkChannelPrior
from .exported import ExportedModel, load_exported
from .registry import (ARCHITECTURES, MODELS, LoadedModel, bundled_weights, build, canonical_name, load_model,
                       model_names)
from .weights import WeightsFile, read_weights, save_weights

__all__ = [
    "ARCHITECTURES", "CIDLite", "CIDNet", "MODELS", "DarkChannelPrior", "DehazeModel", "ExportedModel",
    "LoadedModel", "Normalization", "WeightsFile", "build", "bundled_weights", "canonical_name", "load_exported",
    "load_model",
    "model_names", "read_weights", "save_weights",
]
