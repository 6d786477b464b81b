"""The terminal view of a batch: bars over files and frames, a line per file in flight, and the summary."""
from __future__ import annotations

import time
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..progress import progress_view
from .jobs import Job
from .runner import JobsResult, Callbacks, Plan


class BatchProgress(Callbacks):
    """Bars over files, frames and each file in flight on a terminal; plain lines in a log."""

    def __init__(self, console, jobs: list[Job], disable: bool = False):
        self.bars = progress_view(console, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                  TimeRemainingColumn(), disable=disable, transient=True)
        self._fps_note = isinstance(self.bars, Progress)  # a log's lines have their own rate
        self._start = time.monotonic()
        known = [j.frames_hint for j in jobs if j.frames_hint]
        self.files = self.bars.add_task("[bold]files[/]", total=len(jobs), note="", unit="files")
        self.frames = self.bars.add_task("[bold]frames[/]", total=sum(known) if known else None, note="",
                                         unit="frames")
        self._tasks: dict[str, int] = {}
        self._frames_by_file: dict[str, int] = {}
        self.done = self.failed = 0

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        self.bars.__exit__(*exc)

    def started(self, job: Job) -> None:
        self._tasks[job.key] = self.bars.add_task(f"  {escape(Path(job.input).name)}", total=job.frames_hint,
                                                  note="", unit="frames")

    def progress_update(self, key: str, frames: int) -> None:
        self._frames_by_file[key] = frames
        total_done = sum(self._frames_by_file.values())
        elapsed = time.monotonic() - self._start
        fps = total_done / elapsed if elapsed > 0 else 0.0
        self.bars.update(self.frames, completed=total_done, note=f"{fps:.1f} fps" if self._fps_note else "")

    def progress(self, key: str, frames: int, total: int | None) -> None:
        if key in self._tasks:
            self.bars.update(self._tasks[key], completed=frames, total=total)
        self.progress_update(key, frames)

    def finished(self, job: Job, result: dict) -> None:
        task = self._tasks.pop(job.key, None)
        state = result["state"]
        if task is not None:
            if state == "done":  # its last count, for the file's last line in a log
                self.bars.update(task, completed=result["frames"])
            self.bars.remove_task(task)
        if state == "done":
            self.done += 1
            self.progress_update(job.key, result["frames"])
        elif state in ("failed", "refused"):
            self.failed += 1
            self.bars.console.print(f"[red]{state}[/] {job.input}: {result['error']}", highlight=False,
                                    soft_wrap=True)
        if state in ("done", "failed", "refused"):
            self.bars.update(self.files, advance=1, note=f"{self.done} done, {self.failed} failed")


def print_plan(console, plan: Plan, total: int) -> None:
    parts = [f"{total} file{'s' if total != 1 else ''}", f"{len(plan.todo)} to do"]
    if plan.redo:
        parts.append(f"{len(plan.redo)} of them redone (settings, input or outputs changed)")
    if plan.skipped:
        parts.append(f"{len(plan.skipped)} already done (skipped)")
    if plan.failed_before:
        parts.append(f"{len(plan.failed_before)} failed earlier (--retry-failed to try again)")
    if plan.refused:
        parts.append(f"{len(plan.refused)} refused (their output is there and no batch here wrote it)")
    console.print(", ".join(parts), highlight=False)


def print_batch_summary(console, report: dict, result: JobsResult, report_paths, ledger_path,
                        refused=()) -> None:
    t, r = report["totals"], report["this_run"]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if result.fatal:
        status = f"[red]stopped[/]: {result.fatal}"
    elif result.interrupted:
        status = "[yellow]interrupted[/] (files in flight stay pending; run again to finish)"
    elif refused:
        status = f"[red]{len(refused)} file(s) refused[/]"
    elif t["failed"]:
        status = f"[red]{t['failed']} file(s) failed[/]"
    elif t["pending"]:
        status = f"[yellow]{t['pending']} file(s) pending[/]"
    else:
        status = "[green]all done[/]"
    table.add_row("status", status)
    table.add_row("files", f"{t['done']} done, {t['failed']} failed, {t['pending']} pending of {t['files']}")
    speed = (f"{r['frames']} frames in {r['seconds']:.1f} s ({r['fps']:.1f} fps over the batch)" if r["fps"] is not None
             else "no frames processed")
    table.add_row("this run", f"{r['files_done']} done, {r['files_failed']} failed, {speed}"
                  + (f", {r['worker_retries']} retried after a worker died" if r["worker_retries"] else ""))
    table.add_row("engine", report["engine"])
    v = t["vehicles"]
    if v and "raw" in v:
        table.add_row("vehicles", f"raw {v['raw']}, dehazed {v['dehazed']} ({v['difference']:+d} detections; "
                                  "without labels extra boxes may be false: cidstream eval measures accuracy)")
    elif v:
        table.add_row("vehicles", f"{v['dehazed']} detections (dehazed)")
    for f in report["files"]:
        if f["state"] == "failed":
            table.add_row("[red]failed[/]", f"{f['input']}: {f['error']}")
    for job, why in refused:
        table.add_row("[red]refused[/]", f"{job.input}: {why}")
    table.add_row("ledger", str(ledger_path))
    table.add_row("report", f"{report_paths[0]} and {report_paths[1].name}")
    console.print(table)
