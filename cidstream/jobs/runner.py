"""The batch driver: plan against the ledger, hand files to an engine, record every result as it lands."""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import BatchConfig
from ..io.probe import announced_frames
from .executors import Engine
from .jobs import Job
from .ledger import DONE, FAILED, PENDING, REFUSED, RUNNING, Ledger, now

POLL_S = 0.25


@dataclass
class Plan:
    todo: list[Job]
    skipped: list[Job]          # done earlier with the same settings, outputs intact
    failed_before: list[Job]    # failed earlier with the same settings (not retried without --retry-failed)
    redo: dict = field(default_factory=dict)  # key -> why a finished file is done again
    refused: list = field(default_factory=list)  # (job, why): its output is there and no batch here wrote it


def make_plan(jobs: list[Job], ledger: Ledger, retry_failed: bool = False, verify: bool = False) -> Plan:
    """What to do of ``jobs``; a job whose output exists is redone only over what batches into this folder
    wrote (Ledger.foreign), else refused."""
    plan = Plan([], [], [])
    for job in jobs:
        entry = ledger.get(job.key)
        same = entry is not None and entry.get("fingerprint") == job.fingerprint
        if same and entry["state"] == DONE:
            if ledger.outputs_intact(entry, verify):
                plan.skipped.append(job)
                continue
            plan.redo[job.key] = "outputs missing or changed"
        elif same and entry["state"] == FAILED and not retry_failed:
            plan.failed_before.append(job)
            continue
        elif entry is not None and entry.get("state") == DONE:
            plan.redo[job.key] = "settings or input changed"
        foreign = ledger.foreign(job.output)
        if foreign is not None:
            plan.redo.pop(job.key, None)
            plan.refused.append((job, refusal(ledger.folder, job.output, foreign)))
            continue
        job.replaces = (ledger.folder / job.output).exists()
        plan.todo.append(job)
    return plan


def refusal(out_dir: Path, output: str, foreign: Path) -> str:
    """Why a job's output is left alone."""
    final = out_dir / output
    what = f"{final} exists" if foreign == final else f"{final} holds {foreign.relative_to(final)}"
    return (f"{what}, which no batch into {out_dir} wrote: left as it is; move it away (or give the file "
            "another output) and run again")


@dataclass
class JobsResult:
    done: list = field(default_factory=list)       # (job, result) finished in this run
    failed: list = field(default_factory=list)     # (job, error) in this run
    refused: list = field(default_factory=list)    # (job, why): its output is there and no batch here wrote it
    interrupted: bool = False
    fatal: str | None = None   # a settings error (model, detector, device) that stopped the batch
    seconds: float = 0.0
    retries: int = 0
    overhead_s: list = field(default_factory=list)  # per file: driver-observed time minus the task's own

    @property
    def frames(self) -> int:
        return sum(r["frames"] for _, r in self.done)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Callbacks:
    """What the progress view hears about; the defaults ignore everything."""

    def started(self, job: Job) -> None: ...
    def progress(self, key: str, frames: int, total: int | None) -> None: ...
    def finished(self, job: Job, result: dict) -> None: ...


def _ledger_fields(job: Job, result: dict, before: dict) -> dict:
    fields = {"state": DONE if result["state"] == "done" else FAILED, "fingerprint": job.fingerprint,
              "attempts": job.attempts, "seconds": round(result.get("seconds", 0.0), 3),
              "host": result.get("host"), "finished": now()}
    if result["state"] == "done":
        fields.update(outputs=result["outputs"], frames=result["frames"], error=None,
                      pipeline_seconds=round(result["pipeline_seconds"], 3),
                      model=result.get("model"), device=result.get("device"), summary=result.get("summary"))
    else:
        # what an earlier run published stays there (nothing is published on failure), and stays the batch's
        fields.update(error=result["error"], outputs=before.get("outputs"), frames=result.get("frames", 0),
                      summary=None)
    return fields


def run_jobs(jobs: list[Job], engine: Engine, ledger: Ledger, max_attempts: int = BatchConfig.max_attempts,
             callbacks: Callbacks | None = None, on_tick: Callable[[], None] | None = None) -> JobsResult:
    """Run ``jobs`` on ``engine`` until all have a result; Ctrl-C asks running tasks to stop, waits for
    them to finalize, and leaves them pending in the ledger for the next run."""
    cb = callbacks or Callbacks()
    result = JobsResult()
    queue = deque(jobs)
    inflight: dict = {}
    start = time.perf_counter()
    for job in jobs:  # everything to do is pending from now on, even if an older output exists
        ledger.entries.setdefault(job.key, {}).update(input=job.input, output=job.output, settings=job.settings(),
                                                      state=PENDING, fingerprint=job.fingerprint)
    ledger.save()
    try:
        while queue or inflight:
            while queue and len(inflight) < engine.slots and not result.interrupted and not result.fatal:
                job = queue.popleft()
                job.attempts += 1
                ledger.update(job.key, state=RUNNING, fingerprint=job.fingerprint, started=now())
                inflight[engine.submit(job)] = (job, time.perf_counter())
                cb.started(job)
            if not inflight:
                break
            try:
                done, _ = wait(list(inflight), timeout=POLL_S, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                if result.interrupted:
                    raise  # a second Ctrl-C: stop waiting
                result.interrupted = True
                engine.request_stop()
                continue
            for key, frames, total in engine.drain_progress():
                cb.progress(key, frames, total)
            broken = False
            for fut in done:
                job, t0 = inflight.pop(fut)
                try:
                    res = fut.result()
                except BaseException as exc:  # noqa: B036 - the task's failure, whatever it is, is the file's
                    if engine.died(exc):
                        broken = True
                        if job.attempts < max_attempts and not result.interrupted:
                            result.retries += 1
                            queue.appendleft(job)
                            ledger.update(job.key, state=PENDING, error=f"worker died (attempt {job.attempts})")
                            continue
                        res = {"state": "failed", "error": f"its worker process died {job.attempts} time(s) "
                                                           f"({type(exc).__name__}); the file may crash the decoder"}
                    else:
                        res = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
                _record(job, res, time.perf_counter() - t0, ledger, result, cb)
            if broken:
                engine.recover()
            if on_tick is not None:
                on_tick()
    finally:
        for job, _ in inflight.values():  # only after a second Ctrl-C or an error in the driver itself
            ledger.entries.get(job.key, {}).update(state=PENDING)
        for job in queue:
            if ledger.entries.get(job.key, {}).get("state") == RUNNING:
                ledger.entries[job.key]["state"] = PENDING
        ledger.save()
        result.seconds = time.perf_counter() - start
    return result


def _record(job: Job, res: dict, elapsed: float, ledger: Ledger, result: JobsResult, cb: Callbacks) -> None:
    if res["state"] == "settings_error" and job.own_models:  # its manifest line's own model: only it fails
        res = {**res, "state": "failed", "error": f"manifest {job.where}: {res['error']}"}
    if res["state"] == "interrupted":
        ledger.update(job.key, state=PENDING, error=None)
        result.interrupted = True
    elif res["state"] == "settings_error":
        ledger.update(job.key, state=PENDING, error=res["error"])
        result.fatal = result.fatal or res["error"]
    elif res["state"] == "refused":
        ledger.update(job.key, state=REFUSED, error=res["error"])
        result.refused.append((job, res["error"]))
    else:
        ledger.update(job.key, **_ledger_fields(job, res, ledger.get(job.key) or {}))
        if res["state"] == "done":
            result.done.append((job, res))
            if "seconds" in res:
                result.overhead_s.append(max(0.0, elapsed - res["seconds"]))
        else:
            result.failed.append((job, res["error"]))
    cb.finished(job, res)


def probe_frames(path: str) -> int | None:
    """The frame count a file's header announces, or estimates from its duration (for the progress bar);
    None when unknown or unreadable."""
    try:
        return announced_frames(path, estimate=True)
    except Exception:  # any failure at all: the worker reports unreadable files properly
        return None


def resolve_paths(cfg, out_dir: Path) -> None:
    """Absolute model and detector paths: Ray workers do not share the driver's working folder."""
    from ..detect.cache import resolve_cached

    for key in ("fog_detector", "detector_b"):  # a short name means the cache on this machine, not a worker's
        if getattr(cfg.detect, key):
            setattr(cfg.detect, key, resolve_cached(getattr(cfg.detect, key), f"--{key.replace('_', '-')}"))
    for section, key in ((cfg.model, "name"), (cfg.detect, "detector"), (cfg.detect, "fog_detector"),
                         (cfg.detect, "detector_b")):
        value = getattr(section, key)
        if value and Path(value).exists():
            setattr(section, key, str(Path(value).resolve()))

