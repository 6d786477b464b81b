"""Weights files of every kind of model (dehazers, the gate's fog meter): a state dict plus the metadata
needed to rebuild and trust the model, written by ``save_weights`` and read by ``read_weights``.

A file is a plain dict saved with ``torch.save`` and read with ``weights_only=True`` (no pickled code runs on
load); its ``format`` tag says what kind of model it holds (``KINDS``). Official CID checkpoints
(``{'model': state_dict}`` saved from ``nn.DataParallel``) are recognised too, and mapped to the ``cid``
architecture.
"""
from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Config, merge, validate
from ..errors import ConfigError, WeightsError
from .base import Normalization

DEHAZER, FOG_METER = "dehazer", "fog-meter"          # the kinds of model a weights file holds
KIND_NAMES = {DEHAZER: "dehazer", FOG_METER: "fog meter"}
FORMAT = "cidstream-weights"        # a dehazer: arch, config, normalisation, the date it was made
FORMAT_VERSION = 1
# The fog meter's files keep their own tag and layout (no arch: one network; no date: `cidstream train
# fog-meter` reproduces the bundled file bit for bit, and the bytes follow the layout).
METER_FORMAT = "cidstream-fog-meter"
METER_FORMAT_VERSION = 1
KINDS = {FORMAT: DEHAZER, METER_FORMAT: FOG_METER}                 # format tag -> kind of model
VERSIONS = {FORMAT: FORMAT_VERSION, METER_FORMAT: METER_FORMAT_VERSION}
OFFICIAL_CID_NORMALIZATION = Normalization(input="symmetric", output="clamp")
# Network sizes a weights file's config may hold: key -> (how many integers, 1 for a single one; the
# least each may be). cid-lite's work_short_side 0 (or null) means "never downscale".
ARCH_SIZES = {"cid-lite": {"widths": (4, 1), "work_short_side": (1, 0), "refine_radius": (1, 1)},
              "cid": {"layers": (3, 1)}}
# Other settings a weights file's config may hold: key -> the words it may be, or the (low, high) range of a number.
ARCH_SETTINGS = {"cid-lite": {"head": ("affine", "scattering"), "t_min": (0.01, 1.0), "sky_tolerance": (0.0, 1.0),
                              "keep_brightness": (0.0, 1.0), "max_gain": (1.0, 4.0), "detail_eps": (0.0, 1.0),
                              "airlight_colour": ("network", "frame")}}


@dataclass
class WeightsFile:
    arch: str
    state_dict: dict
    config: dict = field(default_factory=dict)
    normalization: Normalization = field(default_factory=Normalization)
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    kind: str = DEHAZER


def weights_payload(model, metadata: dict) -> dict:
    """What the weights file of ``model`` holds, by its kind (``model.kind``, a dehazer when it has none), in
    the order it is written."""
    from .. import __version__

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if getattr(model, "kind", DEHAZER) == FOG_METER:
        return {"format": METER_FORMAT, "format_version": METER_FORMAT_VERSION, "config": model.config(),
                "cidstream_version": __version__, "metadata": metadata, "state_dict": state}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "config": model.config(),
        "normalization": model.normalization.to_dict(),
        "cidstream_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "metadata": metadata,
        "state_dict": state,
    }


def save_weights(model, path: str | Path, **metadata) -> Path:
    """Write ``model`` (a dehazer or the fog meter) with what rebuilds it: its architecture, constructor config
    and normalisation; ``metadata`` is what it was trained on and how (plain data: the file loads with
    weights_only). Written whole: a stop mid-write leaves the old file, never half a new one."""
    from ..io.atomic import write_atomic   # here: importing cidstream.io loads PyAV, which loading models never needs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(weights_payload(model, metadata), buffer)
    write_atomic(path, buffer.getvalue())
    return path


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def check_config(arch: str, config, path: Path) -> dict:
    """``config`` as stored for ``arch``, refused unless it fits: dcp's settings within the ranges of the
    config's model.dcp section, network sizes positive integers. A weights file is handed around like
    data: a value out of range would give washed-out frames or an internal error later."""
    if not isinstance(config, dict):
        raise WeightsError(f"weights {path}: its config is a {type(config).__name__}, not a mapping")
    if arch == "dcp":
        try:
            cfg = Config()
            merge(cfg, {"model": {"dcp": config}})
            validate(cfg)
        except ConfigError as exc:
            raise WeightsError(f"weights {path}: {exc} (stored in the weights file)") from None
    for key, (count, least) in ARCH_SIZES.get(arch, {}).items():
        if key not in config or (count == 1 and config[key] is None):
            continue
        value = config[key]
        values = [value] if count == 1 else value
        if not (isinstance(values, (list, tuple)) and len(values) == count
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in values)):
            what = f"{count} positive integers" if count > 1 else f"an integer of at least {least}"
            raise WeightsError(f"weights {path}: {arch} {key} must be {what}, got {value!r} "
                               "(stored in the weights file)")
    for key, allowed in ARCH_SETTINGS.get(arch, {}).items():
        if key not in config:
            continue
        value = config[key]
        if isinstance(allowed[0], str):
            ok, what = value in allowed, "one of " + ", ".join(allowed)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and allowed[0] <= value <= allowed[1]
            what = f"a number from {allowed[0]} to {allowed[1]}"
        if not ok:
            raise WeightsError(f"weights {path}: {arch} {key} must be {what}, got {value!r} (stored in the weights file)")
    return config


def read_weights(path: str | Path, kind: str | None = None) -> WeightsFile:
    """Load a weights file, telling the user what is wrong with it when it cannot be used. ``kind``: the kind of
    model the caller needs (dehazer, fog-meter): a file of another kind is refused, saying what it holds; None:
    any kind (``WeightsFile.kind`` says which)."""
    path = Path(path)
    noun = "fog meter weights" if kind == FOG_METER else "weights"
    if not path.exists():
        raise WeightsError(f"{noun} file not found: {path}")
    if path.is_dir():
        raise WeightsError(f"{noun} path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{noun} file is empty (0 bytes): {path}")
    with path.open("rb") as fh:
        magic = fh.read(4)
    # torch.save writes a zip archive; very old checkpoints are a bare pickle (protocol byte 0x80).
    if not (magic.startswith(b"PK") or magic[:1] == b"\x80"):
        raise WeightsError(f"cannot read {noun} file {path}: not a PyTorch checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        # torch names the global: "Unsupported global: GLOBAL os.system was not ..." or (torch >= 2.6 for a
        # blocked module) "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
        if "GLOBAL " in text or "Unsupported global" in text:
            name = text.split("GLOBAL ", 1)[1].split()[0] if "GLOBAL " in text else "a Python object"
            raise WeightsError(f"cannot read {noun} file {path}: it holds Python objects ({name}) besides tensors "
                               "and plain data; they are not loaded, for safety") from exc
        raise WeightsError(f"cannot read {noun} file {path}: corrupt or truncated PyTorch checkpoint "
                           f"({type(exc).__name__})") from exc

    tag = obj.get("format") if isinstance(obj, dict) else None
    if isinstance(tag, str) and tag in KINDS:
        found = KINDS[tag]
        if kind is not None and found != kind:
            raise _other_kind(path, found, obj)
        version = obj.get("format_version")
        if version != VERSIONS[tag]:
            raise WeightsError(f"{path}: {'fog meter ' if found == FOG_METER else ''}weights format version {version} "
                               f"is not supported by this cidstream (expects {VERSIONS[tag]})")
        missing = [k for k in (("arch", "state_dict") if found == DEHAZER else ("state_dict",)) if k not in obj]
        if missing:
            raise WeightsError(f"{path}: cidstream {KIND_NAMES[found]} weights file lacks {', '.join(missing)}")
        arch = obj["arch"] if found == DEHAZER else FOG_METER   # the fog meter is one network
        try:
            norm = Normalization(**obj.get("normalization", {}))
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"{path}: bad normalization metadata: {exc}") from exc
        meta = dict(obj.get("metadata") or {})
        meta.update({k: obj[k] for k in ("cidstream_version", "created") if k in obj})
        config = check_config(arch, obj.get("config") or {}, path)
        return WeightsFile(arch, obj["state_dict"], dict(config), norm, meta, path, found)
    if kind == FOG_METER:
        raise WeightsError(f"{path} is not a fog meter weights file (made by cidstream train fog-meter)")

    # Official CID checkpoint: {'model': state_dict} with DataParallel's 'module.' prefix.
    state = obj.get("model") if isinstance(obj, dict) and "model" in obj else obj
    if _is_state_dict(state):
        state = _strip_prefix(state, "module.")
        if any(k.startswith("encoder.") for k in state) and any(k.startswith("mid_conv.") for k in state):
            return WeightsFile("cid", state, {}, OFFICIAL_CID_NORMALIZATION,
                               {"source": "official CID checkpoint"}, path)
        sample = ", ".join(sorted({k.split(".")[0] for k in state})[:6])
        raise WeightsError(f"{path}: a bare state dict, but not the CID layout (top-level modules: {sample}); "
                           "expected a cidstream weights file or an official CID checkpoint")
    keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise WeightsError(f"{path}: not a cidstream weights file nor an official CID checkpoint (found: {keys})")


def _other_kind(path: Path, found: str, obj: dict) -> WeightsError:
    if found == FOG_METER:
        return WeightsError(f"{path} is a fog meter weights file, not a dehazer's: the haze gate reads it "
                            "(--fog-meter, gate.meter)")
    return WeightsError(f"{path} is a dehazer's weights file ({obj.get('arch')}), not a fog meter weights file "
                        "(made by cidstream train fog-meter)")


def load_state(model, weights: WeightsFile) -> None:
    """Strictly load ``weights`` into ``model``; a mismatch names the keys and shapes involved."""
    own = model.state_dict()
    state = dict(weights.state_dict)
    # The official encoder class also defines layer4/fc, which the decoder never uses.
    ignored = [k for k in state if k not in own and k.startswith(("encoder.layer4.", "encoder.fc."))]
    for k in ignored:
        del state[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k, got, want = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: file {list(got)} vs model {list(want)})")
        src = weights.path or "weights"
        raise WeightsError(f"{src} does not fit architecture '{weights.arch}': " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
