"""`cidstream batch`: many files, resumable through a ledger, on local workers or a Ray cluster."""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import ConfigError, OutputError
from .jobs import Job, collect_jobs
from .ledger import REFUSED, BatchLock, Ledger, check_batch_files
from ..io.atomic import check_writable_folder
from .staging import clear_staging, remove_staging_if_empty
from .runner import JobsResult, make_plan, probe_frames, resolve_paths, run_jobs

EXIT_OK, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 130  # refused outputs: OutputError, exit 2

__all__ = ["JobsResult", "Job", "Ledger", "collect_jobs", "make_plan", "run_batch", "run_jobs"]


def run_batch(inputs: list[str], out_dir: Path, cfg, console, detect: bool = False, compare: bool = False,
              max_frames: int | None = None, retry_failed: bool = False, verify: bool = False,
              dry_run: bool = False, show_progress: bool = True) -> int:
    """The whole command; returns the exit code (0 all done, 1 some failed, 130 interrupted). A file whose
    output is there and was not written by a batch into ``out_dir`` is not processed (the others are),
    and the batch then ends with an OutputError (exit 2)."""
    from .executors import make_engine
    from .overview import build_batch_report, write_batch_report
    from .view import BatchProgress, print_batch_summary, print_plan

    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"the output {out_dir} exists and is not a folder")
    check_writable_folder(out_dir)  # before anything is read or loaded
    check_batch_files(out_dir)
    resolve_paths(cfg, out_dir)
    jobs = [j for j in collect_jobs(inputs, cfg, detect, compare, max_frames)
            if not Path(j.key).is_relative_to(out_dir.resolve())]  # never our own outputs
    if not jobs:
        raise ConfigError(f"nothing to process in {', '.join(inputs)} (only files inside the output folder)")
    for job in jobs:
        resolve_paths(job.cfg, out_dir)
    with BatchLock(out_dir):
        ledger = Ledger(out_dir)
        leftovers = clear_staging(out_dir)
        if leftovers:
            console.print(f"removed {leftovers} unfinished output(s) of an earlier, interrupted batch")
        plan = make_plan(jobs, ledger, retry_failed, verify)
        print_plan(console, plan, len(jobs))
        if dry_run:
            for job in plan.todo:
                state = (ledger.get(job.key) or {}).get("state")
                why = plan.redo.get(job.key) or {None: "new", "failed": "failed before: retry",
                                                  REFUSED: "refused before: its output is free now"}.get(state,
                                                                                                        "not finished")
                console.print(f"  {job.input} -> {job.output} ({why})", highlight=False)
            for job, why in plan.refused:
                console.print(f"  {job.input} -> {job.output} (refused: {why})", highlight=False)
            _raise_refused(plan.refused, out_dir)
            return EXIT_OK
        for job, why in plan.refused:  # recorded, so that the next run checks again
            ledger.entries.setdefault(job.key, {}).update(input=job.input, output=job.output, state=REFUSED,
                                                          error=why, fingerprint=job.fingerprint)
        if plan.refused:
            ledger.save()
        result = JobsResult()
        label, engine_start = "nothing to run", 0.0
        if plan.todo:
            with console.status("reading file headers"):
                for job in plan.todo:
                    job.frames_hint = probe_frames(job.input)
                    if job.max_frames and job.frames_hint:
                        job.frames_hint = min(job.frames_hint, job.max_frames)
            t0 = time.perf_counter()
            engine = make_engine(cfg.batch, cfg.engine.device, str(out_dir))
            label, engine_start = engine.label, time.perf_counter() - t0
            try:
                with BatchProgress(console, plan.todo, disable=not show_progress) as view:
                    result = run_jobs(plan.todo, engine, ledger, cfg.batch.max_attempts, view)
            finally:
                engine.close()
                remove_staging_if_empty(out_dir)
        meta = {"inputs": [str(i) for i in inputs], "output_dir": str(out_dir), "engine": label,
                "model": cfg.model.name, "detect": detect, "compare": compare, "engine_start_s": engine_start}
        report = build_batch_report(jobs, ledger, result, meta)
        paths = write_batch_report(out_dir, report)
    refused = plan.refused + result.refused
    print_batch_summary(console, report, result, paths, ledger.path, refused)
    if result.fatal:
        raise ConfigError(result.fatal)
    if result.interrupted:
        return EXIT_INTERRUPTED
    _raise_refused(refused, out_dir)
    return EXIT_FAILURES if report["totals"]["failed"] or report["totals"]["pending"] else EXIT_OK


def _raise_refused(refused: list, out_dir: Path) -> None:
    if refused:
        raise OutputError(f"{len(refused)} file(s) not processed: their output is there and no batch into {out_dir} "
                          "wrote it (listed above); move it away and run again")
