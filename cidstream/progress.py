"""Progress of the long commands, one way for all of them: Rich bars on a terminal, plain lines with a rate
and time left where stderr is not a terminal (a log file, CI, nohup), since Rich draws nothing there and a
long run would otherwise say nothing for minutes."""
from __future__ import annotations

import threading
import time

LINE_EVERY_S = 5.0  # a task's progress line at most this often (after its first) when not on a terminal

_NOT_PRINTED = ("unit", "fps", "note")  # unit: in the count; fps: the Rich bar's own rate (the line has its rate)


def progress_view(console, *columns, disable: bool = False, transient: bool = False, every_s: float | None = None):
    """A Rich ``Progress`` with ``columns`` on a terminal (or when ``disable``: it then shows nothing), else
    ``ProgressLines``, which takes the same calls. Give each task a ``unit`` field ("frames", "images")."""
    if disable or console.is_terminal:
        from rich.progress import Progress

        return Progress(*columns, console=console, disable=disable, transient=transient)
    return ProgressLines(console, every_s)


def _plain(description: str) -> str:
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(description).plain.strip()
    except MarkupError:
        return description.strip()


def _number(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return f"{x:.4g}" if isinstance(x, float) else str(x)


class _Task:
    def __init__(self, description: str, total, completed, fields: dict, now: float):
        self.description, self.total, self.completed, self.fields = description, total, completed, fields
        self.started = self.last_event = now
        self.base = None  # (time, completed) of the first update: the rate is measured from there
        self.printed_at = None  # time of the last line printed (None: none yet)
        self.printed_state = None


class ProgressLines:
    """The part of Rich's ``Progress`` our commands use, printed as plain lines for logs: a line when a task
    is added ("NAME: started"), one on its first update that moves it, then at most one every ``every_s``
    seconds per task, and on ``remove_task``, at the end and when a new description starts a new phase of
    the task, the last state if no line showed it yet. A line:
    ``dehazing: 8/12 frames (67%), 12.3 fps, 1 s, ETA 0 s``. Rate and time left are measured from a task's
    first update on, so a resumed training that starts at step 300 is not taken for a fast one. Lines are
    printed whether or not the view is entered (an entered Rich view draws; one never entered stays blank)."""

    def __init__(self, console, every_s: float | None = None):
        self.console = console
        self.every_s = LINE_EVERY_S if every_s is None else every_s
        self._tasks: dict[int, _Task] = {}
        self._next_id = 0
        self._lock = threading.RLock()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            for task in list(self._tasks.values()):
                self._final(task)

    def add_task(self, description: str, total=None, completed=0, **fields) -> int:
        with self._lock:
            task_id, self._next_id = self._next_id, self._next_id + 1
            task = self._tasks[task_id] = _Task(description, total, completed, fields, time.monotonic())
            self._print(f"{_plain(description)}: started")
            task.printed_state = self._state(task)
            return task_id

    def update(self, task_id: int, *, completed=None, total=None, advance=None, description=None, **fields) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            now = time.monotonic()
            before = task.completed
            renamed = description is not None and description != task.description
            if renamed:  # a new phase of the task: the last one's end, then its own time and rate
                if task.base is not None and self._state(task) != task.printed_state:
                    self._line(task, task.last_event)
                task.description, task.started, task.base, task.printed_at = description, task.last_event, None, None
            if total is not None:
                task.total = total
            if completed is not None:
                task.completed = completed
            if advance is not None:
                task.completed += advance
            task.fields.update(fields)
            task.last_event = now
            if task.base is None:
                task.base = (now, task.completed)
            if task.completed == before and not renamed:
                return  # only the total or fields: no line
            if task.printed_at is None or now - task.printed_at >= self.every_s:
                self._line(task, now)

    def remove_task(self, task_id: int) -> None:
        with self._lock:
            task = self._tasks.pop(task_id, None)
            if task is not None:
                self._final(task)

    # ---- lines ---------------------------------------------------------------------------------------
    @staticmethod
    def _state(task: _Task) -> tuple:
        return task.description, task.completed, task.total

    def _final(self, task: _Task) -> None:
        if self._state(task) != task.printed_state:
            self._line(task, time.monotonic())

    def _line(self, task: _Task, now: float) -> None:
        task.printed_at, task.printed_state = now, self._state(task)
        self._print(self.format_line(task, now))

    @staticmethod
    def format_line(task: _Task, now: float) -> str:
        unit = str(task.fields.get("unit") or "")
        count = f"{_number(task.completed)}{f' {unit}' if unit else ''}"
        known = task.total is not None and task.total > 0
        parts = [f"{_plain(task.description)}: "
                 + (f"{_number(task.completed)}/{_number(task.total)}{f' {unit}' if unit else ''} "
                    f"({task.completed / task.total:.0%})" if known else count)]
        rate = None
        if task.base is not None and now > task.base[0]:
            rate = max(0.0, (task.completed - task.base[1]) / (now - task.base[0]))
            parts.append(f"{rate:.1f} {'fps' if unit == 'frames' else f'{unit}/s'}")
        parts.append(f"{now - task.started:.0f} s")
        if known and task.completed >= task.total:
            parts.append("ETA 0 s")
        elif known and rate:
            parts.append(f"ETA {(task.total - task.completed) / rate:.0f} s")
        note = task.fields.get("note")
        if isinstance(note, str) and note:
            parts.append(note)
        parts += [f"{name} {_number(value)}" for name, value in task.fields.items()
                  if name not in _NOT_PRINTED and value is not None and value != ""]
        return ", ".join(parts)

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)
