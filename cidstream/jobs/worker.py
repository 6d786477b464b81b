"""The per-file task, the same for every engine: process one input into staging, checksum, publish.

A worker keeps its loaded models between files. The result is a plain dict (it crosses process and
machine boundaries): ``state`` is done, failed, interrupted, settings_error (the model or detector
could not be loaded: no file would succeed) or refused (its output appeared meanwhile: not replaced)."""
from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..detect.arms import Arm
from ..errors import CidstreamError
from .jobs import Job, model_settings
from .staging import checksums, publish, staging_dir

PROGRESS_EVERY_S = 0.5
ORPHAN_GRACE_S = 3.0


@dataclass
class WorkerControl:
    """What the driver lends a worker: a queue for (key, frames done, frames total) progress, an event
    that asks it to stop, the driver's pid (a worker process whose driver died must not publish),
    and a lock when threads share one model."""

    progress: object = None
    stop: object = None
    driver_pid: int | None = None
    model_lock: object = None


class DriverGone(Exception):
    pass


class FileWorker:
    def __init__(self):
        self._models: dict[tuple, tuple] = {}
        self._loading = threading.Lock()

    def models(self, job: Job):
        """(dehazer, detectors or None), loaded once per distinct model setting."""
        from ..detect.detectors import Detectors
        from ..engine import Dehazer

        key = model_settings(job.cfg, job.detect)  # the specs the models are built from, gate and temporal too
        with self._loading:
            if key not in self._models:
                dehazer_spec, detector_spec = key
                dehazer = Dehazer.from_spec(dehazer_spec)
                detectors = Detectors.from_spec(detector_spec, dehazer.device) if detector_spec else None
                self._models[key] = (dehazer, detectors)
            return self._models[key]

    def run(self, job: Job, out_dir: str, control: WorkerControl | None = None) -> dict:
        from ..run_input import process_input

        control = control or WorkerControl()
        out_dir = Path(out_dir)
        start = time.perf_counter()
        stage = None
        base = {"key": job.key, "host": os.uname().nodename, "pid": os.getpid()}
        try:
            stage = staging_dir(out_dir, job.output)
            item = stage / Path(job.output).name
            try:
                dehazer, detectors = self.models(job)
            except CidstreamError as exc:  # the settings' fault, not the file's: the driver stops the batch
                return {**base, "state": "settings_error", "error": str(exc)}
            reporter = _Reporter(job.key, control)
            run = process_input(job.input, item, job.cfg, dehazer, detectors, job.compare, job.max_frames,
                                on_start=reporter.start, on_batch=reporter.batch, model_lock=control.model_lock)
            if run.error is not None:
                return {**base, "state": "failed", "error": str(run.error), "frames": run.sink.written,
                        "seconds": time.perf_counter() - start}
            if run.stats.interrupted:
                return {**base, "state": "interrupted", "seconds": time.perf_counter() - start}
            final = out_dir / job.output
            if os.path.lexists(final) and not job.replaces:  # made while the batch ran: not the batch's to replace
                return {**base, "state": "refused", "error": f"{final} appeared while the batch ran: left as it is; "
                                                              "move it away and run again"}
            outputs = checksums(item, out_dir, final)
            _check_driver(control)
            publish(item, final)
            stats = run.stats
            return {**base, "state": "done", "outputs": outputs, "frames": stats.frames,
                    "seconds": time.perf_counter() - start, "pipeline_seconds": stats.seconds,
                    "device": str(dehazer.device), "model": dehazer.name,
                    "summary": _detection_summary(run.report)}
        except CidstreamError as exc:
            return {**base, "state": "failed", "error": str(exc), "seconds": time.perf_counter() - start}
        except (KeyboardInterrupt, DriverGone):
            return {**base, "state": "interrupted", "seconds": time.perf_counter() - start}
        except Exception as exc:  # a bug or an unexpected library error: record it, keep the batch going
            return {**base, "state": "failed", "error": f"internal error: {type(exc).__name__}: {exc}",
                    "seconds": time.perf_counter() - start}
        finally:
            if stage is not None:
                shutil.rmtree(stage, ignore_errors=True)


def _check_driver(control: WorkerControl) -> None:
    if control.driver_pid is not None and os.getppid() != control.driver_pid:
        raise DriverGone()


class _Reporter:
    """Sends throttled progress and turns a stop request (or a dead driver) into an interrupt."""

    def __init__(self, key: str, control: WorkerControl):
        self.key, self.control = key, control
        self.total = None
        self._last = 0.0

    def _put(self, frames: int) -> None:
        if self.control.progress is not None:
            try:
                self.control.progress.put_nowait((self.key, frames, self.total))
            except Exception:  # progress is best-effort; a full or closed queue must not fail the file
                pass

    def start(self, info) -> None:
        self.total = info.frame_count
        self._put(0)

    def batch(self, stats) -> None:
        if self.control.stop is not None and self.control.stop.is_set():
            raise KeyboardInterrupt
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            try:
                _check_driver(self.control)
            except DriverGone:
                raise KeyboardInterrupt from None
            self._put(stats.frames)


def _detection_summary(report: dict | None) -> dict | None:
    if not report:
        return None
    totals = report["totals"]
    out = {"frames": report["frames"], Arm.DEHAZED: totals[Arm.DEHAZED]["vehicles"]}
    if Arm.RAW in totals:
        out[Arm.RAW] = totals[Arm.RAW]["vehicles"]
        out["difference"] = out[Arm.DEHAZED] - out[Arm.RAW]
    if report.get("unique_vehicles"):
        out["unique_vehicles"] = report["unique_vehicles"]
    return out


# One worker per process: process pools and Ray tasks reuse it, so models load once per process.
_PROCESS_WORKER: FileWorker | None = None
_PROCESS_CONTROL = WorkerControl()


def _exit_when_orphaned(driver_pid: int) -> None:
    """An idle pool worker would wait for work forever once its driver is gone; a busy one stops at its
    next batch (see ``_Reporter``), so give it a moment to clean up, then leave."""
    while True:
        time.sleep(1.0)
        if os.getppid() != driver_pid:
            time.sleep(ORPHAN_GRACE_S)
            os._exit(0)


def init_process(threads: int, progress, stop, driver_pid: int) -> None:
    """Initializer of local worker processes: Ctrl-C reaches them through ``stop``, not as a signal."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(max(1, threads))
    threading.Thread(target=_exit_when_orphaned, args=(driver_pid,), daemon=True, name="orphan-watch").start()
    global _PROCESS_WORKER, _PROCESS_CONTROL
    _PROCESS_WORKER = FileWorker()
    _PROCESS_CONTROL = WorkerControl(progress=progress, stop=stop, driver_pid=driver_pid)


def run_in_process(job: Job, out_dir: str) -> dict:
    return _PROCESS_WORKER.run(job, out_dir, _PROCESS_CONTROL)


def run_in_ray_task(job: Job, out_dir: str, threads: int, progress=None) -> dict:
    """Body of the Ray task (Ray kills a job's tasks when its driver exits, so no driver check)."""
    import torch

    global _PROCESS_WORKER
    if _PROCESS_WORKER is None:
        _PROCESS_WORKER = FileWorker()
    torch.set_num_threads(max(1, threads))
    return _PROCESS_WORKER.run(job, out_dir, WorkerControl(progress=progress))
