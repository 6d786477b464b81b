"""Outputs are made under a temporary name inside OUT_DIR and renamed into place only when complete."""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path


TMP_DIR = ".cidstream-tmp"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def staging_dir(out_dir: Path, output: str) -> Path:
    """A fresh folder on the same file system as the final output (so the rename is atomic);
    unique per attempt, so a leftover worker of a killed batch never writes into a new attempt's files."""
    name = output.replace("/", "__").replace(os.sep, "__")
    if len(os.fsencode(name)) > 100:  # a long output name: the file inside takes it, this folder need not
        name = name[:40]
    path = Path(out_dir) / TMP_DIR / f"{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def checksums(item: Path, rel_to: Path, final: Path) -> dict[str, dict]:
    """sha256 and size of the file ``item`` or of every file under the folder ``item``,
    keyed by where each will be after publishing, relative to the output folder ``rel_to``."""
    files = [item] if item.is_file() else sorted(p for p in item.rglob("*") if p.is_file())
    out = {}
    for f in files:
        dest = final if f == item else final / f.relative_to(item)
        out[str(dest.relative_to(rel_to))] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    return out


def publish(item: Path, final: Path) -> None:
    """Move a finished file or folder to its final name, replacing an older version.

    A reader sees the old complete output, then (for an instant) none, then the new complete one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        old = item.with_name(item.name + ".replaced")
        os.replace(final, old)
        os.replace(item, final)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(item, final)


def remove_staging_if_empty(out_dir: Path) -> None:
    try:
        (Path(out_dir) / TMP_DIR).rmdir()
    except OSError:  # not empty (a worker of ours still finishing) or already gone
        pass


def clear_staging(out_dir: Path) -> int:
    """Remove what killed batches left in the staging folder; returns how many attempts it held."""
    tmp = Path(out_dir) / TMP_DIR
    if not tmp.is_dir():
        return 0
    leftovers = list(tmp.iterdir())
    shutil.rmtree(tmp, ignore_errors=True)
    return len(leftovers)
