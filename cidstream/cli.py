"""Command line: ``cidstream run``, ``cidstream bench``, ``cidstream models``."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import CidstreamError, ConfigError, OutputError

EXAMPLES_RUN = """examples:
  cidstream run samples/hazy_traffic.mp4                     # -> hazy_traffic_dehazed.mp4 (dcp)
  cidstream run traffic.mp4 -o out/clear.mp4 --model cid-lite --batch 8
  cidstream run frames/ -o frames_clear/                     # same file names out
  cidstream run "shots/*.png" -o clear/ --device cpu
  cidstream run rtsp://camera/stream -o cam.mp4 --max-frames 3000
  cidstream run in.mp4 --set model.dcp.omega=0.9 --set output.crf=18
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", help="model name (dcp, cid-lite, cid) or weights file path [config: model.name]")
    p.add_argument("--device", "-d", help="auto, cpu, cuda or cuda:N [config: engine.device]")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="compute precision [engine.precision]")
    p.add_argument("--batch", "-b", type=int, help="frames per temporal batch [engine.batch]")
    p.add_argument("--config", "-c", help="YAML config file (keys as in configs/default.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set engine.max_latency_ms=50 (repeatable)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cidstream",
        description="Remove haze from traffic video (files, image folders, camera streams) so vehicle detectors "
                    "see more. Models: dcp (classical baseline), cid-lite (real-time network), cid (the paper's).",
        epilog="Run 'cidstream COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"cidstream {__version__}")
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="dehaze a video file, image folder/glob or stream URL",
                         description="Dehaze INPUT and write the result. A video in gives an H.264 video out with "
                                     "the same frame count, frame rate, timestamps and audio; an image folder in "
                                     "gives a folder out with the same file names.",
                         epilog=EXAMPLES_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("input", help="video file, image folder, glob pattern (quote it), image file, or URL")
    run.add_argument("-o", "--output", help="output: a .mp4/.mkv/.mov path, a folder, an image path, or 'null' "
                                            "(default: INPUT name + '_dehazed' in the current folder)")
    run.add_argument("--max-frames", type=int, help="stop after this many frames")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (still prints the summary)")
    _common(run)

    bench = sub.add_parser("bench", help="measure decode, model, encode and end-to-end speed on an input",
                           description="Times each stage alone (decode; model on frames already on the device; "
                                       "H.264 encode) and the whole pipeline, on the first --frames frames of "
                                       "INPUT, and reports end-to-end / slowest stage. Learned models without "
                                       "weights run with random weights (speed is the same).")
    bench.add_argument("input", help="video file or image folder")
    bench.add_argument("--frames", type=int, default=90, help="frames to use (default 90)")
    bench.add_argument("--repeats", type=int, default=3, help="runs per stage; the median is reported (default 3)")
    bench.add_argument("--json", nargs="?", const="-", metavar="FILE",
                       help="also write the result as JSON to FILE (or stdout with no FILE)")
    _common(bench)

    sub.add_parser("models", help="list the available models and whether they have weights")
    return parser


def make_config(args):
    from .config import load_config, parse_assignment

    overrides = [parse_assignment(s) for s in args.set]
    flags = {}
    if args.model:
        flags.setdefault("model", {})["name"] = args.model
    for key in ("device", "precision", "batch"):
        if getattr(args, key, None) is not None:
            flags.setdefault("engine", {})[key] = getattr(args, key)
    overrides.append(flags)
    return load_config(args.config, overrides)


def default_output(spec: str) -> str:
    from .io import is_url
    from .io.sources import is_image_input

    if is_url(spec):
        return "stream_dehazed.mp4"
    path = Path(spec.rstrip("/"))
    if any(c in spec for c in "*?["):
        return "images_dehazed"
    if is_image_input(spec) and path.is_file():
        return f"{path.stem}_dehazed{path.suffix}"
    if is_image_input(spec):
        return f"{path.name}_dehazed"
    return f"{path.stem}_dehazed.mp4"


def _same_place(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def cmd_run(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from .engine import Dehazer, run_pipeline
    from .io import sink_from_config, source_from_config
    from .report import print_run_summary

    cfg = make_config(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames must be at least 1")
    output = args.output or default_output(args.input)
    if _same_place(output, args.input.rstrip("/")):
        raise OutputError(f"output {output} is the input itself: choose another output path")
    dehazer = Dehazer.from_config(cfg)
    progress = Progress(TextColumn("[bold]dehazing[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]:.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), console=console, disable=args.no_progress, transient=True)
    error = None
    stats = None
    with source_from_config(args.input, cfg.input, args.max_frames) as source:
        sink = sink_from_config(output, source.info, cfg.output)
        total = source.info.frame_count
        with progress:
            task = progress.add_task("run", total=total, fps=0.0)
            try:
                stats = run_pipeline(source, dehazer, sink, batch=cfg.engine.batch,
                                     max_latency_ms=cfg.engine.max_latency_ms, queue_size=cfg.input.queue_size,
                                     on_batch=lambda s: progress.update(task, completed=s.frames, fps=s.fps))
            except CidstreamError as exc:
                error = exc
    print_run_summary(console, args.input, sink, dehazer, stats, total, error)
    if error is not None:
        raise _Reported(error)
    return 130 if stats.interrupted else 0


class _Reported(Exception):
    """An error already shown in the run summary; only the exit code is left to give."""

    def __init__(self, error: CidstreamError):
        super().__init__(str(error))
        self.error = error


def cmd_bench(args, console) -> int:
    from .bench import run_bench
    from .report import print_bench

    cfg = make_config(args)
    if args.frames < 1 or args.repeats < 1:
        raise ConfigError("--frames and --repeats must be at least 1")
    with console.status("benchmarking") as status:
        result = run_bench(args.input, cfg, frames=args.frames, repeats=args.repeats,
                           progress=lambda label: status.update(f"benchmarking: {label}"))
    print_bench(console, result)
    if args.json:
        text = json.dumps(result.to_dict(), indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(text + "\n")
    return 0


def cmd_models(args, console) -> int:
    from rich.table import Table

    from .models import DESCRIPTIONS, bundled_weights, model_names

    table = Table(title="cidstream models")
    for col in ("name", "weights", "description"):
        table.add_column(col)
    for name in model_names():
        if name == "dcp":
            weights = "none needed"
        else:
            path = bundled_weights(name)
            weights = path.name if path else "[yellow]not bundled[/]"
        table.add_row(name, weights, DESCRIPTIONS[name])
    console.print(table)
    console.print("Any weights file works too: --model path/to/weights.pt (cidstream format or official CID .pk).")
    return 0


COMMANDS = {"run": cmd_run, "bench": cmd_bench, "models": cmd_models}


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    from rich.console import Console

    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    if args.command is None:
        parser.print_help()
        return 2
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args, console)
    except _Reported as rep:
        if args.debug:
            raise rep.error from None
        return rep.error.exit_code
    except CidstreamError as exc:
        if args.debug:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:  # a bug, not a user error: say so, briefly
        if args.debug:
            raise
        console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                      "Run again with --debug for the traceback.", highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
