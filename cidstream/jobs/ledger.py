"""The job ledger: each file's state in OUT_DIR/ledger.json, rewritten atomically after every change,
so a batch killed at any moment leaves a ledger that says what is finished."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from ..errors import OutputError
from ..io.atomic import OutputLock, write_atomic
from .staging import TMP_DIR

LEDGER_NAME = "ledger.json"
LOCK_NAME = ".cidstream-batch.lock"
REPORT_NAMES = ("batch_report.json", "batch_report.html")  # overview.write_batch_report's
# What a batch keeps in OUT_DIR beside the outputs (TMP_DIR: outputs being written); no output takes these.
BATCH_FILES = (LEDGER_NAME, LOCK_NAME, TMP_DIR, *REPORT_NAMES)
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
REFUSED = "refused"  # its output exists and no batch into OUT_DIR wrote it: left alone, checked again next run


def now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


class Ledger:
    """``entries[key]`` holds: input, output, state, fingerprint, settings, and when done the output
    checksums (``outputs``: relative path -> {sha256, bytes}), frames, seconds and the detection summary;
    when failed the error."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LEDGER_NAME
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = data["files"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise OutputError(f"the ledger {self.path} is unreadable ({exc}); move it away to start the batch "
                                  "over") from None

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def update(self, key: str, **fields) -> None:
        entry = self.entries.setdefault(key, {})
        entry.update(fields, updated=now())
        self.save()

    def save(self) -> None:
        write_atomic(self.path, json.dumps({"version": 1, "files": self.entries}, indent=1))

    def foreign(self, output: str) -> Path | None:
        """A file at or under OUT_DIR/``output`` that no batch into this folder wrote (the outputs of its
        entries, kept while a file is redone), which publishing the output would destroy; None when
        there is nothing there or all of it is the batches'. A symlink is never theirs."""
        final = self.folder / output
        if final.is_symlink():
            return final
        if not final.exists():
            return None
        written = self._written()
        if not final.is_dir():
            return None if output in written else final
        for p in final.rglob("*"):
            if (p.is_symlink() or not p.is_dir()) and str(p.relative_to(self.folder)) not in written:
                return p
        return None

    def _written(self) -> set[str]:
        return {rel for e in self.entries.values() for rel in (e.get("outputs") or {})}

    def outputs_intact(self, entry: dict, verify: bool = False) -> bool:
        """Every recorded output is there with its size (and, with ``verify``, its checksum)."""
        from .staging import sha256_file

        outputs = entry.get("outputs") or {}
        if not outputs:
            return False
        for rel, meta in outputs.items():
            path = self.folder / rel
            try:
                if path.stat().st_size != meta["bytes"]:
                    return False
            except OSError:
                return False
            if verify and sha256_file(path) != meta["sha256"]:
                return False
        return True


def check_batch_files(folder: Path) -> None:
    """Refuse (OutputError) an OUT_DIR where a name the batch keeps (BATCH_FILES) holds what no batch made:
    a folder or link instead of a file, or reports without a ledger beside them. Writing there would
    replace it or fail part-way."""
    has_ledger = (folder / LEDGER_NAME).is_file()
    for name in BATCH_FILES:
        path = folder / name
        if not os.path.lexists(path):
            continue
        kind_ok = path.is_dir() if name == TMP_DIR else path.is_file()
        if path.is_symlink() or not kind_ok:
            why = ("a link" if path.is_symlink() else "a folder" if path.is_dir() else
                   "a file" if path.is_file() else "a special file")
            raise OutputError(f"{path} is {why}, not what a batch writes there: move it away or choose another "
                              "output folder")
        if name in REPORT_NAMES and not has_ledger:
            raise OutputError(f"{path} is there without a {LEDGER_NAME}: not a report of a batch into {folder}; "
                              "move it away or choose another output folder")


class BatchLock(OutputLock):
    """One batch at a time per output folder: an ``OutputLock`` whose file lies inside the folder
    (LOCK_NAME); the kernel drops it if the holder dies, and the file is removed when the batch ends."""

    def __init__(self, folder: Path):
        super().__init__(folder, file=Path(folder).absolute() / LOCK_NAME)

    def clean(self) -> None:
        """Nothing: a batch's unfinished outputs live in its staging folder, which the batch clears itself."""

    def busy_message(self, pid: str) -> str:
        return f"another batch is writing into {self.output} (pid {pid}); wait for it or choose another output folder"
