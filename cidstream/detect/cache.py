"""Detectors made by `cidstream train detector`, kept in the user's cache under a short name, so that
`--fog-detector fog` finds the last one made wherever the training wrote its run folder.

Layout: CACHE/detectors/NAME/YYYYmmdd-HHMMSS.pt; a name resolves to its newest file. Nothing is
overwritten: an earlier training stays there until the user removes it."""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from ..user_cache import cache_root
from ..errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def detectors_dir(name: str) -> Path:
    if not NAME.match(name):
        raise ConfigError(f"detector name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return cache_root() / "detectors" / name


def is_short_name(spec: str) -> bool:
    """A word with no folder and no file suffix ('fog'), as opposed to a path or 'yolo11n.pt'."""
    return bool(spec) and "/" not in spec and os.sep not in spec and not Path(spec).suffix and bool(NAME.match(spec))


def new_entry(name: str) -> Path:
    """Where a new detector of this name goes (the folder is made)."""
    folder = detectors_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}.pt"
    k = 1
    while path.exists():
        path, k = folder / f"{stamp}-{k}.pt", k + 1
    return path


def latest(name: str) -> Path | None:
    folder = detectors_dir(name)
    made = sorted(folder.glob("*.pt"), key=_made_order) if folder.is_dir() else []
    return made[-1] if made else None


def _made_order(path: Path) -> tuple:
    """STAMP.pt, then STAMP-1.pt, STAMP-2.pt ... (a plain name sort puts '-1' before '.pt')."""
    parts = path.stem.split("-")
    return parts[:2], int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0


def cached_label(path: str) -> str | None:
    """'NAME (FILE)' for a file of the cache, so reports say which short name a run used; else None."""
    p = Path(path)
    inside = p.parent.parent.resolve() == (cache_root() / "detectors").resolve()
    return f"{p.parent.name} ({p.name})" if inside else None


def resolve_cached(spec: str, role: str = "--fog-detector") -> str:
    """A path stays as it is; a short name becomes the newest file made under it, or a clear error that
    says how to make one."""
    if not is_short_name(spec) or Path(spec).exists():
        return spec
    found = latest(spec)
    if found is None:
        raise ConfigError(f"{role} {spec}: no detector of that name in {cache_root() / 'detectors'}. Make one "
                          f"with `cidstream train detector --name {spec}` (33-41 minutes on a 2-core CPU), or "
                          "pass the path of an Ultralytics .pt file")
    return str(found)
