"""Progress where stderr is not a terminal (issue 37): Rich bars draw nothing in a log, so every long command
prints plain lines with a rate and the time left, through cidstream.progress; on a terminal, Rich bars."""
import io
import re

import pytest
from rich.console import Console
from rich.progress import Progress, TextColumn

import cidstream.progress as progress_module
from cidstream.progress import ProgressLines, progress_view

from .conftest import SAMPLE, run_cli_subprocess
from .test_training_phases import tiny_config  # noqa: F401  (a fixture)


class Clock:
    """A stand-in for the time module in cidstream.progress: time moves only when the test says."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_module, "time", c)
    return c


def log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=400), out


def lines_of(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


# ---- ProgressLines --------------------------------------------------------------------------------------

def test_a_line_on_the_first_update_then_throttled_with_rate_and_time_left(clock):
    console, out = log_console()
    with ProgressLines(console, every_s=5.0) as view:
        task = view.add_task("job", total=100, unit="steps")
        assert lines_of(out) == ["job: started"]
        clock.now = 1.0
        view.update(task, completed=10)  # the first update: a line, no rate yet (nothing measured)
        clock.now = 2.0
        view.update(task, completed=20)  # within 5 s of the last line: none
        clock.now = 6.0
        view.update(task, completed=60)  # 50 steps in the 5 s since the first update
        clock.now = 7.0
        view.update(task, completed=70)
        assert lines_of(out) == ["job: started", "job: 10/100 steps (10%), 1 s",
                                 "job: 60/100 steps (60%), 10.0 steps/s, 6 s, ETA 4 s"]
        clock.now = 9.0
    # at the end, the state no line showed yet
    assert lines_of(out)[3:] == ["job: 70/100 steps (70%), 7.5 steps/s, 9 s, ETA 4 s"]


def test_every_update_that_moves_prints_with_the_interval_at_zero(clock, monkeypatch):
    monkeypatch.setattr(progress_module, "LINE_EVERY_S", 0.0)  # read when the view is made
    console, out = log_console()
    view = progress_view(console, TextColumn("{task.description}"))
    assert isinstance(view, ProgressLines) and view.every_s == 0.0
    with view:
        task = view.add_task("dehazing", total=None, unit="frames", fps=0.0)
        view.update(task, total=12)  # only the total: no line, but the rate is measured from here
        for k in (4, 8, 12):
            clock.now += 1.0
            view.update(task, completed=k, fps=99.0)
    assert re.findall(r"dehazing: (\d+)/12 frames", out.getvalue()) == ["4", "8", "12"]
    assert lines_of(out)[1] == "dehazing: 4/12 frames (33%), 4.0 fps, 1 s, ETA 2 s"
    assert all(line.count("fps") <= 1 for line in lines_of(out))  # the Rich bar's fps field is not printed again
    assert lines_of(out)[-1] == "dehazing: 12/12 frames (100%), 4.0 fps, 3 s, ETA 0 s"  # nothing new at the end


def test_updates_of_total_or_fields_alone_print_nothing_and_nothing_is_repeated_at_the_end(clock):
    console, out = log_console()
    with ProgressLines(console, every_s=5.0) as view:
        task = view.add_task("evaluating", total=None, unit="images")
        clock.now = 1.0
        view.update(task, completed=2, total=10)
        clock.now = 2.0
        view.update(task, total=12, note="still going", loss=0.5)
        view.update(task, completed=2)
    assert lines_of(out) == ["evaluating: started", "evaluating: 2/10 images (20%), 1 s",
                             "evaluating: 2/12 images (17%), 0.0 images/s, 2 s, still going, loss 0.5"]
    console, out = log_console()
    with ProgressLines(console, every_s=5.0) as view:
        task = view.add_task("evaluating", total=4, unit="images")
        view.update(task, completed=4)
    assert lines_of(out) == ["evaluating: started", "evaluating: 4/4 images (100%), 0 s, ETA 0 s"]  # once


def test_a_resumed_training_is_not_taken_for_a_fast_one(clock):
    console, out = log_console()
    with ProgressLines(console, every_s=5.0) as view:
        task = view.add_task("training", total=1000, unit="steps")
        clock.now = 10.0
        view.update(task, completed=300)  # the checkpoint's step, after one step of 1 s: no rate from 0
        clock.now = 20.0
        view.update(task, completed=400)
    assert lines_of(out)[1:] == ["training: 300/1000 steps (30%), 10 s",
                                 "training: 400/1000 steps (40%), 10.0 steps/s, 20 s, ETA 60 s"]


def test_markup_unknown_totals_fields_and_removed_tasks(clock):
    console, out = log_console()
    with ProgressLines(console, every_s=60.0) as view:
        files = view.add_task("[bold]files[/]", total=2, note="", unit="files")
        clip = view.add_task("  clip[1].mp4", total=None, note="")
        view.update(clip, completed=5)
        clock.now = 5.0
        view.update(clip, advance=5)
        view.remove_task(clip)  # its last state, once
        view.remove_task(clip)
        view.update(files, advance=1, note="1 done, 0 failed", loss=0.123456)
    assert lines_of(out) == ["files: started", "clip[1].mp4: started", "clip[1].mp4: 5, 0 s",
                             "clip[1].mp4: 10, 1.0 /s, 5 s",
                             "files: 1/2 files (50%), 5 s, 1 done, 0 failed, loss 0.1235"]


def test_a_new_description_is_a_new_phase(clock):
    console, out = log_console()
    with ProgressLines(console, every_s=60.0) as view:
        task = view.add_task("training", total=None, unit="steps", loss=0.0)
        for step in range(1, 5):
            clock.now += 1.0
            view.update(task, description="pretrain", completed=step, total=4, loss=1.0 / step)
        clock.now += 1.0
        view.update(task, description="adapt", completed=1, total=2, loss=0.2)
    assert lines_of(out) == ["training: started", "pretrain: 1/4 steps (25%), 1 s, loss 1",
                             "pretrain: 4/4 steps (100%), 1.0 steps/s, 4 s, ETA 0 s, loss 0.25",
                             "adapt: 1/2 steps (50%), 1 s, loss 0.2"]


def test_progress_view_is_rich_on_a_terminal_and_lines_elsewhere():
    terminal = Console(force_terminal=True, file=io.StringIO(), width=120)
    view = progress_view(terminal, TextColumn("[bold]{task.description}[/]"), transient=True)
    assert isinstance(view, Progress)
    log, out = log_console()
    assert isinstance(progress_view(log, TextColumn("{task.description}"), every_s=2.0), ProgressLines)
    assert progress_view(log, every_s=2.0).every_s == 2.0
    quiet = progress_view(log, TextColumn("{task.description}"), disable=True)  # --no-progress: nothing at all
    assert isinstance(quiet, Progress)
    with quiet:
        task = quiet.add_task("dehazing", total=4, unit="frames")
        quiet.update(task, completed=4)
    assert out.getvalue() == ""


def test_batch_progress_in_a_log_and_on_a_terminal(clock):
    from cidstream.config import Config
    from cidstream.jobs.jobs import Job
    from cidstream.jobs.view import BatchProgress

    jobs = [Job(key=f"/in/{name}", input=f"/in/{name}", output=name, cfg=Config(), frames_hint=10)
            for name in ("a[x].mp4", "b.mp4")]

    def drive(view):
        with view:
            view.started(jobs[0])
            clock.now = 1.0
            view.progress(jobs[0].key, 0, 10)
            clock.now = 2.0
            view.progress(jobs[0].key, 4, 10)
            clock.now = 3.0
            view.finished(jobs[0], {"state": "done", "frames": 10})
            clock.now = 4.0
            view.started(jobs[1])
            view.finished(jobs[1], {"state": "failed", "error": "unreadable"})

    console, out = log_console()
    drive(BatchProgress(console, jobs))
    text = out.getvalue()
    assert "a[x].mp4: started" in text
    assert "a[x].mp4: 10/10 frames (100%), 5.0 fps, 3 s, ETA 0 s" in text  # its last count as it ended
    assert "frames: 4/20 frames (20%), 4.0 fps, 2 s, ETA 4 s" in text  # the rate once, not again in a note
    assert "failed /in/b.mp4: unreadable" in text
    assert "files: 2/2 files (100%), 1.0 files/s, 4 s, ETA 0 s, 1 done, 1 failed" in text
    terminal = Console(force_terminal=True, file=io.StringIO(), width=120)
    view = BatchProgress(terminal, jobs)
    assert isinstance(view.bars, Progress)
    drive(view)
    assert view.done == 1 and view.failed == 1


def test_detector_training_reports_batches_through_ultralytics_callbacks():
    from training.detector.detector_train import report_batches

    class Model:
        def __init__(self):
            self.callbacks = {}

        def add_callback(self, event, fn):
            self.callbacks.setdefault(event, []).append(fn)

    class Trainer:  # a training resumed at its second of 3 epochs of 4 batches
        epochs, start_epoch, train_loader, epoch = 3, 1, [0] * 4, 1

    model, seen, trainer = Model(), [], Trainer()
    report_batches(model, lambda *a: seen.append(a))
    assert set(model.callbacks) == {"on_train_epoch_start", "on_train_batch_end"}
    for epoch in (1, 2):
        trainer.epoch = epoch
        for fn in model.callbacks["on_train_epoch_start"]:
            fn(trainer)
        for _ in range(4):
            for fn in model.callbacks["on_train_batch_end"]:
                fn(trainer)
    assert [done for _, done, _ in seen] == [4, 5, 6, 7, 8, 8, 9, 10, 11, 12]
    assert {(name, total) for name, _, total in seen} == {("training", 12)}


# ---- the commands, with stderr a pipe (not a terminal) ---------------------------------------------------

@pytest.mark.slow
def test_eval_prints_progress_lines_in_a_log(shared_data, yolo_weights, tmp_path):
    proc = run_cli_subprocess("eval", shared_data / "dawn_fog" / "JPEGImages", "--labels",
                              shared_data / "dawn_fog" / "Annotations", "--max-images", "3", "--model", "dcp",
                              "--detector", yolo_weights, "-o", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    assert "evaluating: started" in proc.stderr
    assert re.search(r"^evaluating: \d+/6 images \(\d+%\), [\d.]+ images/s, \d+ s, ETA \d+ s$", proc.stderr,
                     re.M), proc.stderr


@pytest.mark.slow
def test_batch_prints_progress_lines_in_a_log_and_none_with_no_progress(tmp_path):
    proc = run_cli_subprocess("batch", SAMPLE, "-o", tmp_path / "out", "--model", "dcp", "--max-frames", "12")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^frames: \d+/12 frames \(\d+%\), [\d.]+ fps, \d+ s, ETA \d+ s$", proc.stderr, re.M), \
        proc.stderr
    assert re.search(r"^files: 1/1 files \(100%\), .*1 done, 0 failed$", proc.stderr, re.M), proc.stderr
    assert "hazy_traffic.mp4: started" in proc.stderr
    quiet = run_cli_subprocess("batch", SAMPLE, "-o", tmp_path / "quiet", "--model", "dcp", "--max-frames", "4",
                               "--no-progress")
    assert quiet.returncode == 0, quiet.stderr
    assert "frames:" not in quiet.stderr and "started" not in quiet.stderr


@pytest.mark.slow
def test_train_prints_step_lines_with_time_left_in_a_log(tiny_config, tmp_path):  # noqa: F811
    proc = run_cli_subprocess("train", "all", "--config", tiny_config, "--run-dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "training: started" in proc.stderr  # before the data and models are loaded
    for phase, steps in (("pretrain", 6), ("adapt", 2), ("finetune", 2)):
        assert re.search(rf"^{phase}: {steps}/{steps} steps \(100%\), [\d.]+ steps/s, \d+ s, ETA 0 s, loss [\d.]+$",
                         proc.stderr, re.M), proc.stderr
