"""The user's cache folder: detectors made by `cidstream train detector`, graphs made for a CPU runtime."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CIDSTREAM_CACHE"


def cache_root() -> Path:
    """$CIDSTREAM_CACHE, else $XDG_CACHE_HOME/cidstream, else ~/.cache/cidstream."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "cidstream"
