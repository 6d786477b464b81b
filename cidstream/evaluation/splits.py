"""Fixed select/report halves of any labelled set, so choices are made on one half and figures
reported on the other.

The half an item belongs to depends on its name only (a hash), so it never changes as files are
added, and every tool (eval, training, benchmarks) agrees without a shared list. The committed lists
in configs/splits/ record the halves of the project's sets; a test checks they follow this rule.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

SPLITS = ("select", "report")
ALL = "all"  # no split: every item
SPLIT_CHOICES = (ALL, *SPLITS)  # what a --split flag takes


def split_of(name: str) -> str:
    """'select' or 'report' for a file name (the name without folders; for grouped data such as one
    camera's days, pass the group's name, e.g. the day folder)."""
    return SPLITS[hashlib.sha256(Path(name).name.encode("utf-8")).digest()[0] % 2]


def in_split(paths, split: str | None) -> list:
    """The paths whose name falls into ``split`` (None or 'all': every path)."""
    if split in (None, ALL):
        return list(paths)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use select, report or all")
    return [p for p in paths if split_of(Path(p).name) == split]
