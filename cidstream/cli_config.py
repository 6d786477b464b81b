"""The config of one command: --config, a cameras file's settings, --set and the flags, in that order.

Its own module so that every command (those of cli.py, export, the training plugin) builds it the same way."""
from __future__ import annotations

from .config import check_flags, load_config, parse_assignment


def make_config(args, settings: dict | None = None):
    """Config from --config, then ``settings`` (e.g. a cameras file's), then --set, then the flags; the flags
    that are no setting are held to their ranges (config.FLAG_RANGES) here, once for every command."""
    check_flags(args)
    overrides = ([settings] if settings else []) + [parse_assignment(s) for s in args.set]
    flags = {}
    if args.model and isinstance(args.model, str):
        flags.setdefault("model", {})["name"] = args.model
    for key in ("device", "precision", "batch"):
        if getattr(args, key, None) is not None:
            flags.setdefault("engine", {})[key] = getattr(args, key)
    if getattr(args, "cpu_runtime", None):
        flags.setdefault("engine", {})["cpu_runtime"] = args.cpu_runtime
        flags.setdefault("detect", {})["cpu_runtime"] = args.cpu_runtime
    for key in ("workers", "engine", "address"):
        if getattr(args, key, None) is not None:
            flags.setdefault("batch", {})[key] = getattr(args, key)
    detect = {}
    if getattr(args, "detector", None):
        detect["detector"] = args.detector
    if getattr(args, "classes", None):
        detect["classes"] = [] if args.classes.strip().lower() == "all" else \
            [c.strip() for c in args.classes.split(",") if c.strip()]
    if getattr(args, "conf", None) is not None:
        detect["conf"] = args.conf
    if getattr(args, "track", False):
        detect["track"] = True
    for key in ("fog_detector", "fog_view", "detector_b", "fuse"):
        if getattr(args, key, None):
            detect[key] = getattr(args, key)
    if detect:
        flags.setdefault("detect", {}).update(detect)
    if getattr(args, "no_video", False):
        flags["output"] = {"video": False}
    if getattr(args, "no_temporal", False):
        flags["temporal"] = {"enabled": False}
    if getattr(args, "gate", None):
        flags["gate"] = {"policy": args.gate}
    if getattr(args, "fog_meter", None):
        flags.setdefault("gate", {})["meter"] = args.fog_meter
    overrides.append(flags)
    return load_config(args.config, overrides)
