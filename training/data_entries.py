"""Data entries of a training config: plain paths, or image sets restricted to one half of a
labelled set (so the report half never reaches training) and to a visibility range."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from cidstream.config import data_root
from cidstream.evaluation.splits import SPLITS, split_of
from cidstream.errors import ConfigError
from cidstream.io.sources import list_images

REPO = Path(__file__).resolve().parents[1]
ENTRY_KEYS = {"path", "split", "split_by", "visibility", "max_visibility_m", "min_visibility_m", "leave_out"}
DATA_VAR = re.compile(r"\$(?:\{CIDSTREAM_DATA\}|CIDSTREAM_DATA\b)")  # $CIDSTREAM_DATA or ${CIDSTREAM_DATA}


def resolve(p: str) -> str:
    """A config path as a file name. ``$CIDSTREAM_DATA`` is cidstream.config.data_root(), whether the
    variable is set or not (unset: ../shared/data beside the checkout), so the shipped configs work on
    any machine; other environment variables and ``~`` are expanded; a relative path is relative to
    the repository root, not to the working directory."""
    text = DATA_VAR.sub(lambda _: str(data_root()), os.fspath(p))
    q = Path(os.path.expanduser(os.path.expandvars(text)))
    return str(q if q.is_absolute() else (REPO / q))


def visibility_table(path: str) -> dict[str, float]:
    """frame (path relative to the visibility file's folder) -> metres, from a two-column TSV."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except OSError as exc:
        raise ConfigError(f"cannot read the visibility table {path}: {exc.strerror or exc}") from None
    return {r[0]: float(r[1]) for r in rows[1:] if len(r) >= 2}


def _entry_images(entry: dict) -> list[str]:
    unknown = set(entry) - ENTRY_KEYS
    if unknown or "path" not in entry:
        raise ConfigError(f"training data entry {entry}: needs 'path' and may have {', '.join(sorted(ENTRY_KEYS - {'path'}))}"
                          + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    split, split_by = entry.get("split", "all"), entry.get("split_by", "name")
    if split not in (*SPLITS, "all") or split_by not in ("name", "folder"):
        raise ConfigError(f"training data entry {entry['path']}: split must be select, report or all and split_by "
                          f"name or folder")
    root = Path(resolve(entry["path"]))
    pattern = str(root / "**" / "*") if split_by == "folder" else str(root)
    images = [Path(p) for p in list_images(pattern)]
    if split != "all":
        images = [p for p in images if split_of(p.parent.name if split_by == "folder" else p.name) == split]
    left_out = set(entry.get("leave_out") or ())   # folders or names kept out, e.g. days held out to tune on
    key = (lambda p: p.parent.name) if split_by == "folder" else (lambda p: p.name)
    unmatched = left_out - {key(p) for p in images}
    if unmatched:   # a misspelt day would otherwise stay in training unnoticed
        raise ConfigError(f"training data entry {entry['path']}: leave_out names {', '.join(sorted(unmatched))}, "
                          f"which {'is' if len(unmatched) == 1 else 'are'} not among its {split_by}s")
    images = [p for p in images if key(p) not in left_out]
    if "visibility" in entry:  # keys are paths below the set's root (DAY/frame.jpg)
        table = visibility_table(resolve(entry["visibility"]))
        low = float(entry.get("min_visibility_m", 0.0))
        high = float(entry.get("max_visibility_m", float("inf")))
        images = [p for p in images if low <= table.get(p.relative_to(root).as_posix(), float("inf")) < high]
    elif {"min_visibility_m", "max_visibility_m"} & set(entry):
        raise ConfigError(f"training data entry {entry['path']}: a visibility range needs a 'visibility' table")
    if not images:
        raise ConfigError(f"training data entry {entry['path']}: no images left after the split/visibility filters")
    return [str(p) for p in images]


def source_specs(entries: list) -> list[str]:
    """Config entries (strings, or dicts with path/split/split_by/visibility/min_/max_visibility_m) -> the
    source specs ``load_frames`` reads: whole videos and folders, or the chosen single images."""
    out: list[str] = []
    for entry in entries:
        out += _entry_images(entry) if isinstance(entry, dict) else [resolve(entry)]
    return out
