"""Files that are replaced whole: readers (and a crash, or a full disk) see the old or the new version, never half.

Outputs are written under a hidden temporary name beside their final one (the same file system, so the
rename is atomic), and a run claims each output with ``OutputLock`` so two runs never write one at once."""
from __future__ import annotations

import errno
import fcntl
import glob
import os
import re
import tempfile
from pathlib import Path

from ..errors import OutputError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_PARTIAL = re.compile(r"^\..+\.\d+\.tmp(\.[^.]+)?$")  # what partial_path names, from any process


def partial_path(path: Path) -> Path:
    """Where ``path`` is written until it is complete; the suffix is kept, as encoders choose the format by it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: Path, data: str | bytes, sync: bool = True) -> None:
    """Write ``data`` under a temporary name and rename it to ``path``; on failure nothing is left.
    ``sync`` (fsync before the rename) also makes it whole after a power cut."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        with tmp.open("wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _mount_point(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


def write_error(path: Path, exc: BaseException) -> OutputError:
    """The OutputError for a failed write of ``path``: a full disk says so, and which one, whatever layer
    (Python, FFmpeg, OpenCV) reported it."""
    if getattr(exc, "errno", None) in NO_SPACE:
        return OutputError(f"no space left on {_mount_point(path)} (writing {path}): free some space there "
                           "or write elsewhere")
    return OutputError(f"writing {path} failed: {getattr(exc, 'strerror', None) or exc}")


def remove_partials(output: Path) -> None:
    """Remove what killed runs left of ``output`` under partial_path names: beside a file, anywhere in a folder.
    Only the holder of the output's lock calls it, so no live run is writing them."""
    output = Path(output)
    found = output.rglob(".*.tmp*") if output.is_dir() else output.parent.glob(f".{glob.escape(output.name)}.*.tmp*")
    for p in found:
        if _PARTIAL.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)


class OutputLock:
    """A run's claim on an output (a file or a folder) while it writes it: ``flock`` on ``.NAME.lock``
    beside it, holding the owner's pid. The kernel drops the lock when its process dies, so a killed
    run never blocks the next one; the file itself is removed on release."""

    def __init__(self, output: str | Path, file: str | Path | None = None):
        """``file``: the lock file, when not ``.NAME.lock`` beside the output (a batch keeps its own inside)."""
        self.output = Path(output)
        target = Path(os.path.abspath(output))
        self.file = Path(file) if file is not None else target.with_name(f".{target.name}.lock") if target.name \
            else None
        self._fd: int | None = None

    def _refuse(self, fd: int) -> OutputError:
        try:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        except OSError:
            pid = "unknown"
        return OutputError(self.busy_message(pid))

    def busy_message(self, pid: str) -> str:
        return (f"{self.output} is being written by another cidstream run (pid {pid}): wait for it to end or "
                "choose another output path")

    def check(self) -> None:
        """Raise OutputError now if another run holds the lock; takes nothing (runs before any model is loaded)."""
        if self.file is None:
            return
        try:
            fd = os.open(self.file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # no lock file: nobody is writing it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._refuse(fd) from None
        finally:
            os.close(fd)

    def acquire(self) -> "OutputLock":
        """Take the lock or raise OutputError naming the run that holds it. Where no lock file can be
        created, the output cannot be either: opening it will say why, so this takes nothing."""
        if self.file is None:
            return self
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._lock()
        except OSError:
            return self
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: locked all the same, the other run's message says "pid unknown"
            pass
        self.clean()
        return self

    def clean(self) -> None:
        """What the holder tidies once the lock is its own: partial files killed runs left."""
        remove_partials(self.output)

    def _lock(self) -> int:
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = self._refuse(fd)
                os.close(fd)
                raise error from None
            # The owner before us may have removed the file between our open and our lock: lock the one there.
            try:
                here, ours = os.stat(self.file), os.fstat(fd)
                if (here.st_dev, here.st_ino) == (ours.st_dev, ours.st_ino):
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.file.unlink(missing_ok=True)  # while still locked: a waiting run then locks a new file
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def file_ids(paths) -> dict[tuple[int, int], Path]:
    """The identity (device, inode) of each of ``paths`` that exists, mapped to it: two names of one file
    (a hard link, a symlink, another relative path, a case-folding file system) have one identity."""
    ids = {}
    for p in paths:
        try:
            st = os.stat(p)
        except (OSError, ValueError):  # ValueError: a NUL in the name
            continue
        ids[(st.st_dev, st.st_ino)] = Path(p)
    return ids


def same_file(target: str | Path, ids: dict[tuple[int, int], Path]) -> Path | None:
    """The path of ``ids`` (see file_ids) that ``target`` is, whatever its name; None when none is or it is
    not there yet (a new file cannot be an input)."""
    try:
        st = os.stat(target)
    except (OSError, ValueError):
        return None
    return ids.get((st.st_dev, st.st_ino))


def check_not_input(output: str | Path, inputs) -> None:
    """Refuse (OutputError), before any work, an output that is one of the files the command reads."""
    source = same_file(output, file_ids(inputs))
    if source is not None:
        other = "" if os.path.normpath(source) == os.path.normpath(output) else " by another name"
        raise OutputError(f"output {output} is the input {source} (the same file{other}): choose another "
                          "output path")


def check_writable_file(path: str | Path, inputs=(), what: str = "output") -> None:
    """Refuse (OutputError), before any work, a file output that is a folder, lies where no file can be
    written (check_writable_folder on its folder) or is one of ``inputs``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder: give a file name")
    check_writable_folder(path.parent, f"folder of the {what}")
    check_not_input(path, inputs)


def check_writable_folder(folder: str | Path, what: str = "output folder") -> None:
    """Raise OutputError unless ``folder`` is a folder we can write into, or one we could create there.

    Called before any work (batch, eval, train generate), so a wrong -o costs nothing. It tries to
    create (and at once removes) a file where the first file would go (the folder, or its nearest
    existing parent), so it also catches what permission bits do not show: root on a read-only mount,
    /proc, a full or read-only file system. Nothing is left behind."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"the {what} {folder} exists and is a file, not a folder")
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create the {what} {folder}: {probe} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".cidstream-probe-"):
            pass
    except OSError as exc:
        where = "" if probe == folder else f" (creating a file in {probe} failed)"
        raise OutputError(f"the {what} {folder} is not writable: {exc.strerror or exc}{where}") from None
