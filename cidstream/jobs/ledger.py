"""The job ledger: each file's state in OUT_DIR/ledger.json, rewritten atomically after every change,
so a batch killed at any moment leaves a ledger that says what is finished."""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path

from ..errors import OutputError
from ..io.atomic import write_atomic

LEDGER_NAME = "ledger.json"
LOCK_NAME = ".cidstream-batch.lock"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


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


class BatchLock:
    """One batch at a time per output folder; the kernel drops the lock if the holder dies."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._fh = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise OutputError(f"another batch is writing into {self.path.parent} (pid {holder}); wait for it "
                              "or choose another output folder") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
