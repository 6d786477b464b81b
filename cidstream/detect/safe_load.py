"""Torch pickle files (detectors, training checkpoints, caches) read without running code from them.

A .pt file is a pickle, and loading a pickle may call any importable function (os.system included);
Ultralytics unpickles detector files in full (weights_only=False). So a detector file is read here
first with torch's weights_only unpickler, where the network classes a detection checkpoint holds are
inert stand-ins: a file that needs any other global, that calls a network class instead of restoring it,
or whose model description Ultralytics would evaluate as Python, is refused before any of it runs. A file
this accepts makes the full unpickler call only the same globals in the same way, so it is then safe to
hand to Ultralytics. The allow-list is a rule (network layer classes of torch.nn and ultralytics.nn), not
a list of today's layers, plus the few plain-data classes checkpoints hold."""
from __future__ import annotations

import ast
import functools
import inspect
import pickle
import sys
import threading
from pathlib import Path

import torch

from ..errors import WeightsError

_NETWORK_MODULES = ("torch.nn.modules.", "ultralytics.nn.")  # nn.Module classes defined under these
_HELPER_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")  # training helpers an EMA may carry
_YOLOV5_MODULES = ("models.", "utils.")  # github.com/ultralytics/yolov5 pickles its own packages
_RENAMED = {  # names old checkpoints use for today's classes (Ultralytics maps them the same way)
    "ultralytics.nn.modules.block.Silence": "torch.nn.modules.linear.Identity",
    "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
    "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",
}
_LOCK = threading.Lock()  # torch's allow-list is process-wide: one load with extra globals at a time
_PASSED: set = set()  # files found safe in this process, by identity: a detector loaded again is not re-read


class UnsafeFileError(WeightsError):
    """A file that would run code (or does what a saved network never does) while loading."""


class _Refused(Exception):
    pass


class _Inert:
    """Stands for a network class while a file is checked: takes its saved state, refuses to be called
    (restoring a saved module never calls its class; calling one runs its constructor)."""

    _real: type = object

    def __init__(self, *args, **kwargs):
        raise _Refused(f"loading it calls {_name(self._real)}(...) instead of restoring one")

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _Method:
    """What a looked-up method is while a file is checked: it may be stored, never called."""


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _network_class(name: str, trusted: tuple[str, ...] = ()) -> type | None:
    """The class ``name`` stands for when it is a network layer (an nn.Module subclass defined in
    torch.nn.modules, ultralytics.nn or a ``trusted`` module) or a training helper of
    ultralytics.utils.loss/tal; else None. Only modules already imported are looked in: checking a file
    never imports anything."""
    module, _, attr = _RENAMED.get(name, name).rpartition(".")
    cls = getattr(sys.modules.get(module), attr, None)
    if not isinstance(cls, type) or cls.__module__ != module or cls.__new__ is not object.__new__:
        return None
    if (module.startswith(_NETWORK_MODULES) or module in trusted) and issubclass(cls, torch.nn.Module):
        return cls
    return cls if module in _HELPER_MODULES else None


@functools.cache
def _data_globals() -> dict[str, object]:
    """Plain-data classes and functions detection checkpoints hold (training arguments, numbers,
    paths, our config mappings); constructing any of them runs no code of the file's choosing."""
    import pathlib
    from collections import OrderedDict

    import numpy as np
    from ultralytics.utils import IterableSimpleNamespace

    from ..config import Mark

    scalar, reconstruct = np.float64(0).__reduce__()[0], np.zeros(1).__reduce__()[0]
    out: dict[str, object] = {"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray,
                              # our YAML mappings, in metadata older `train detector` runs wrote: read as the
                              # one dict subclass the weights_only unpickler fills
                              "cidstream.config.Located": OrderedDict, "cidstream.config.Mark": Mark}
    for prefix in ("ultralytics.utils", "ultralytics.yolo.utils"):
        out[f"{prefix}.IterableSimpleNamespace"] = IterableSimpleNamespace
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[f"{prefix}.scalar"], out[f"{prefix}._reconstruct"] = scalar, reconstruct
    for prefix in ("pathlib", "pathlib._local"):
        for cls in ("PosixPath", "WindowsPath"):
            out[f"{prefix}.{cls}"] = type(pathlib.Path())
    for cls in vars(np.dtypes).values():
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            out[_name(cls)] = cls
    return out


def _guarded_getattr(obj, name):
    """Checkpoints store a fused layer's ``forward = forward_fuse`` as getattr(layer, 'forward_fuse'):
    only that, a forward method of a network layer, is looked up."""
    real = type(obj)._real if isinstance(obj, _Inert) else type(obj)
    method = inspect.getattr_static(real, name, None) if isinstance(name, str) else None
    if not (issubclass(real, torch.nn.Module) and (name == "forward" or name.startswith("forward_"))
            and inspect.isfunction(method)):
        raise _Refused(f"loading it looks up {_name(real)}.{name}")
    return _Method() if isinstance(obj, _Inert) else method.__get__(obj)


_INERT: dict[type, type] = {}


def _inert(cls: type) -> type:
    if cls not in _INERT:
        _INERT[cls] = type(f"Inert{cls.__name__}", (_Inert,), {"_real": cls})
    return _INERT[cls]


def _allowed(names: list[str] | None, inert: bool, trusted: tuple[str, ...] = ()) -> list:
    """torch allow-list entries for the globals ``names`` (None: not known, every plain-data one):
    network classes (as stand-ins when ``inert``), plain-data globals, the guarded getattr. Only those
    the file names: torch's unpickler walks the whole list at each object it builds."""
    data = _data_globals()
    wanted = set(data) | {"builtins.getattr"} if names is None else set(names)
    if "numpy.dtype" in wanted:  # numpy.dtype(...) returns an instance of one of these, then restores it
        wanted |= {k for k in data if k.startswith("numpy.dtypes.")}
    entries: list = [(v, k) for k, v in data.items() if k in wanted]
    if "builtins.getattr" in wanted:
        entries.append((_guarded_getattr, "builtins.getattr"))
    for name in names or []:
        cls = _network_class(name, trusted)
        if cls is not None:
            entries.append((_inert(cls) if inert else cls, name))
    return entries


def _offending(names, trusted: tuple[str, ...] = ()) -> list[str]:
    data = _data_globals()
    return [n for n in sorted(names) if n != "builtins.getattr" and n not in data
            and _network_class(n, trusted) is None]


def _load(path: Path, entries: list):
    with _LOCK, torch.serialization.safe_globals(entries):
        return torch.load(path, map_location="cpu", weights_only=True)


def _refuse(what: str, path, how: str, holds: str) -> UnsafeFileError:
    return UnsafeFileError(f"refused {what} {path}: {how}, which can run any code; it was not loaded ({holds})")


_DETECTOR_HOLDS = "a detector file holds only PyTorch/Ultralytics network layers and plain data"


def _unreadable(what: str, path, exc: Exception) -> WeightsError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return WeightsError(f"cannot load {what} {path}: not a readable PyTorch checkpoint ({first})")


def _restricted_load(path: Path, what: str, entries: list, holds: str):
    """torch.load(weights_only=True) with ``entries`` allowed; every refusal worded for the user."""
    try:
        return _load(path, entries)
    except _Refused as exc:
        raise _refuse(what, path, str(exc), holds) from None
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL " in text:  # "Unsupported global: GLOBAL os.system was not an allowed global ..."
            name = text.split("GLOBAL ", 1)[1].split()[0]
            raise _refuse(what, path, f"loading it would call {name}", holds) from None
        reason = next((line.strip() for line in text.splitlines() if "Trying" in line or "Can only" in line
                       or "Unsupported" in line), "does what a saved network never does")
        raise _refuse(what, path, f"loading it does what a saved network never does ({reason[:160]})", holds) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:  # zip damage, a text file, a cut-off file
        raise _unreadable(what, path, exc) from None


def _scan(path: Path) -> list[str] | None:
    """The globals the file names (torch's scan of its pickle); None for the pre-zip format."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, EOFError):
        return None


def _check_descriptions(ckpt, what: str, path) -> None:
    """The descriptions (``model.yaml``) of a checkpoint's model and EMA, checked as Ultralytics would read them."""
    for key in ("model", "ema"):
        spec = getattr(ckpt.get(key), "__dict__", {}).get("yaml") if isinstance(ckpt, dict) else None
        if spec is not None:
            check_description(spec, what, path)


def check_description(spec, what: str, path) -> None:
    """Ultralytics builds a model from its description (a model YAML, or ``model.yaml`` of a checkpoint it
    trains from): the activation is passed to eval() and each layer name looked up in its module and
    called. Only a literal ``nn.Name(constants)`` activation and layer names that are network classes
    are accepted."""
    from ultralytics.nn import tasks

    if not isinstance(spec, dict):
        raise _refuse(what, path, "its model description is a file for Ultralytics to read", _DETECTOR_HOLDS)
    act = spec.get("activation")
    if act and not _literal_layer_call(act):
        raise _refuse(what, path, f"its model description has activation {str(act)[:80]!r} for Ultralytics to eval()",
                      _DETECTOR_HOLDS)
    for layer in [x for part in ("backbone", "head") for x in (spec.get(part) or [])]:
        name = str(layer[2]) if isinstance(layer, (list, tuple)) and len(layer) > 2 else ""
        cls = _layer_class(name, tasks)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise _refuse(what, path, f"its model description names layer {name[:80]!r} for Ultralytics to call",
                          _DETECTOR_HOLDS)


def _layer_class(name: str, tasks):
    """What Ultralytics' parse_model calls for a layer name: torch.nn's, torchvision.ops' or one of its
    layers (not its model classes, whose constructors read another description)."""
    for prefix, where in (("nn.", torch.nn), ("torchvision.ops.", None)):
        if name.startswith(prefix):
            if where is None:
                import torchvision

                where = torchvision.ops
            return getattr(where, name[len(prefix):], None)
    cls = getattr(tasks, name, None)
    return cls if getattr(cls, "__module__", "").startswith("ultralytics.nn.modules.") else None


def _literal_layer_call(text) -> bool:
    """``nn.SiLU()``, ``torch.nn.LeakyReLU(0.1)``: a torch.nn layer with constant arguments."""
    try:
        call = ast.parse(str(text).strip(), mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(call, ast.Call):
        return False
    parts, node = [], call.func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(getattr(node, "id", ""))
    dotted = ".".join(reversed(parts))
    layer = getattr(torch.nn, parts[0], None)
    args = list(call.args) + [k.value for k in call.keywords]
    return (dotted in (f"nn.{parts[0]}", f"torch.nn.{parts[0]}") and isinstance(layer, type)
            and issubclass(layer, torch.nn.Module)
            and all(isinstance(a, ast.Constant) or (isinstance(a, ast.UnaryOp) and isinstance(a.operand, ast.Constant))
                    for a in args))


def check_model_yaml(path, what: str = "detector") -> None:
    """Refuse a model YAML Ultralytics would run code from when it builds the model."""
    from ultralytics.nn.tasks import yaml_model_load

    check_description(yaml_model_load(path), what, path)


def check_detector_file(path, what: str = "detector", trusted: tuple[str, ...] = ()) -> None:
    """Refuse a torch detector file (.pt) that would run code when Ultralytics loads it. ``trusted``:
    more modules (already imported) whose network classes the file may hold, e.g. a training's own."""
    import ultralytics.nn.tasks  # noqa: F401 - the network classes a file may name are the ones imported

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} file not found: {path}")
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, trusted)
    if key in _PASSED:
        return
    names = _scan(path)
    if names is not None:
        bad = _offending(names, trusted)
        if bad and all(n.startswith(_YOLOV5_MODULES) for n in bad):
            raise WeightsError(f"cannot load {what} {path}: it is a YOLOv5 model from github.com/ultralytics/yolov5 "
                               "(an older format this Ultralytics cannot read); use a YOLOv8/YOLO11 .pt file, or "
                               "train or export one with a current Ultralytics")
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise _refuse(what, path, f"loading it would call {', '.join(bad[:3])}{more}", _DETECTOR_HOLDS)
    ckpt = _restricted_load(path, what, _allowed(names, True, trusted), _DETECTOR_HOLDS)
    _check_descriptions(ckpt, what, path)
    _PASSED.add(key)


def load_detector_checkpoint(path, what: str = "detector", trusted: tuple[str, ...] = ()) -> dict:
    """The checkpoint dict of an Ultralytics detector file (its modules real), once it passed
    ``check_detector_file``."""
    check_detector_file(path, what, trusted)
    return _restricted_load(Path(path), what, _allowed(_scan(Path(path)), False, trusted), _DETECTOR_HOLDS)


def load_plain(path, what: str):
    """A file of tensors and plain data (our training checkpoints and caches), loaded with torch's
    weights_only unpickler; anything else is refused, not run."""
    return _restricted_load(Path(path), what, [], f"{what} files hold only tensors and plain data")
