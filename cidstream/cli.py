"""Command line: ``cidstream run|eval|batch|live|bench|export|models``, each a thin parser over the pipeline;
``train`` comes from the training package through the "cidstream.commands" entry point (the runtime never
imports it)."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from . import __version__
from .cli_config import make_config
from .config import AP_CONF, BatchConfig, DetectConfig, EngineConfig, GateConfig, words
from .errors import CidstreamError, ConfigError, OutputError
from .evaluation.labels import LABEL_FORMATS
from .evaluation.splits import ALL, SPLIT_CHOICES
from .redact import redact_url  # the last net: no printed error shows a camera's password

EXAMPLES_RUN = """examples:
  cidstream run samples/hazy_traffic.mp4                     # -> hazy_traffic_dehazed.mp4 ({model})
  cidstream run traffic.mp4 -o out/clear.mp4 --model dcp --batch 8
  cidstream run frames/ -o frames_clear/                     # same file names out
  cidstream run "shots/*.png" -o clear/ --device cpu
  cidstream run rtsp://camera/stream -o cam.mp4 --duration 600
  cidstream run in.mp4 --set model.dcp.omega=0.9 --set output.crf=18
"""

EXAMPLES_BATCH = """examples:
  cidstream batch archive/ -o out/                          # every video under archive/, 1 worker
  cidstream batch "archive/**/*.mp4" -o out/ --workers 2 --compare
  cidstream batch manifest.csv -o out/ --retry-failed       # columns: path[,output,max_frames,model,...]
  cidstream batch archive/ -o out/ --engine ray --address auto   # on the Ray cluster this machine is part of
"""

EXAMPLES_LIVE = """examples:
  cidstream live configs/cameras.yaml                       # until Ctrl-C
  cidstream live configs/cameras.yaml -o /data/live --detect --duration 3600
  cidstream live cams.yaml --set live.segment_s=600 --set live.watchdog_s=10
"""




def _defaults():
    """The built-in config (the dataclass defaults): help texts name their defaults from it."""
    from .config import Config

    return Config()


def _detector_args(p, conf_default: str | None = None) -> None:
    d = _defaults().detect
    p.add_argument("--detector", help="Ultralytics detection model file or name (default: $CIDSTREAM_DETECTOR, "
                                      "else yolo11n.pt, which needs a connection once) [detect.detector]")
    p.add_argument("--classes", help=f"comma-separated class names to count (default: {','.join(d.classes) or 'all'}; "
                                     "'all' for every class) [detect.classes]")
    conf = conf_default or format(d.conf, "g")
    p.add_argument("--conf", type=float, help=f"detection confidence threshold (default: {conf}) [detect.conf]")


def _fog_detector_args(p, arms: bool = True) -> None:
    """--fog-detector and --fog-view (the per-frame detector choice), and with ``arms`` --detector-b and
    --fuse, the extra arms of a comparison."""
    d = _defaults().detect
    p.add_argument("--fog-detector", metavar="MODEL",
                   help="fog-adapted detector for the frames the haze gate dehazes (clear frames go to --detector on "
                        "the raw frame): a .pt file, or the short name given to `cidstream train detector` ('fog', "
                        "its default, finds the last one made) [detect.fog_detector]")
    p.add_argument("--fog-view", choices=words(DetectConfig, "fog_view"),
                   help=f"what the fog detector sees: its boxes on the raw and the dehazed frame merged (fused), or "
                        f"one of them (default: {d.fog_view}) [detect.fog_view]")
    if not arms:
        return
    p.add_argument("--detector-b", metavar="MODEL",
                   help="a second detector with the same classes (a file or a short name, as --fog-detector): the "
                        "dehazed frames (and raw ones with --compare) go through it too, as the arms dehazed_b "
                        "(raw_b), with the same settings [detect.detector_b]")
    p.add_argument("--fuse", choices=words(DetectConfig, "fuse"),
                   help="one more arm per detector: its detections on the raw and the dehazed frame merged by "
                        "weighted box fusion or NMS (fused, fused_b) [detect.fuse]")


def _common(p: argparse.ArgumentParser, repeat_model: bool = False) -> None:
    cfg = _defaults()
    if repeat_model:
        p.add_argument("--model", "-m", action="append",
                       help=f"dehazing model to compare with the raw images; repeat for several "
                            f"(default: {cfg.model.name}) [model.name]")
    else:
        p.add_argument("--model", "-m", help=f"model name (dcp, cid-lite, cid) or weights file path "
                                             f"(default: {cfg.model.name}) [model.name]")
    p.add_argument("--device", "-d", help=f"auto, cpu, cuda or cuda:N (default: {cfg.engine.device}) [engine.device]")
    p.add_argument("--precision", choices=words(EngineConfig, "precision"),
                   help=f"compute precision (default: {cfg.engine.precision}) [engine.precision]")
    p.add_argument("--batch", "-b", type=int, help=f"frames per temporal batch (default: {cfg.engine.batch}) "
                                                   "[engine.batch]")
    p.add_argument("--cpu-runtime", choices=words(EngineConfig, "cpu_runtime"),
                   help="on a CPU at fp32, what runs cid-lite's network and the detectors: auto (the fastest "
                        "measured that is installed; docs/benchmarking.md), torch, or a graph of them in openvino or "
                        "onnxruntime, made once and cached (default: auto) [engine.cpu_runtime, detect.cpu_runtime]")
    if not repeat_model:  # eval takes independent images, which are never smoothed
        p.add_argument("--no-temporal", action="store_true",
                       help="video: dehaze every frame on its own, no smoothing over time [temporal.enabled]")
    p.add_argument("--gate", choices=words(GateConfig, "policy"),
                   help=f"haze gating by each frame's measured visibility: off (always dehaze), skip (clear frames "
                        f"stay raw), blend (strength by visibility) (default: {cfg.gate.policy}) [gate.policy]")
    p.add_argument("--fog-meter", metavar="PATH",
                   help="fog meter weights for the gate (cidstream train fog-meter; default: the bundled meter) "
                        "[gate.meter]")
    p.add_argument("--config", "-c", help="YAML config file (keys as in configs/default.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set engine.max_latency_ms=50 (repeatable)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def build_parser() -> argparse.ArgumentParser:
    defaults = _defaults()
    parser = argparse.ArgumentParser(
        prog="cidstream",
        description="Remove haze from traffic video (files, image folders, camera streams) so vehicle detectors "
                    "see more. Models: dcp (classical baseline), cid-lite (real-time network), cid (the paper's); "
                    f"default: {defaults.model.name}.",
        epilog="Run 'cidstream COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"cidstream {__version__}")
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="dehaze a video file, image folder/glob or stream URL",
                         description="Dehaze INPUT and write the result. A video in gives an H.264 video out with "
                                     "the same frame count, frame rate, timestamps and audio; an image folder in "
                                     "gives a folder out with the same file names.",
                         epilog=EXAMPLES_RUN.format(model=defaults.model.name),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("input", help="video file, image folder, glob pattern (quote it), image file, or URL")
    run.add_argument("-o", "--output", help="output: a video path (.mp4, .mkv, .mov, .m4v, .avi), a folder (a path "
                                            "without a suffix, or ending with '/'), an image path (one-frame "
                                            "inputs), or 'null' (default: INPUT name + '_dehazed' in the current "
                                            "folder)")
    run.add_argument("--max-frames", type=int, help="stop after this many frames")
    run.add_argument("--duration", type=float, metavar="SECONDS",
                     help="stop after this long (streams, or any input) and finalize the output; exit code 0")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bar, or no progress lines when not in a terminal (still prints the summary)")
    det = run.add_argument_group("detection", "With --detect or --compare, OUTPUT is a folder: dehazed video, "
                                              "detections.jsonl, COCO/MOT exports, report.json and report.html.")
    det.add_argument("--detect", action="store_true", help="run the vehicle detector on the dehazed frames")
    det.add_argument("--compare", action="store_true",
                     help="detect on raw and dehazed frames and report the difference (implies --detect; "
                          "adds side_by_side video)")
    _detector_args(det)
    _fog_detector_args(det)
    det.add_argument("--track", action="store_true", help="ByteTrack ids and unique-vehicle counts [detect.track]")
    det.add_argument("--no-video", action="store_true",
                     help="write detections and the report only, no dehazed video (analytics runs; encoding is "
                          "most of their cost) [output.video]")
    _common(run)

    bench = sub.add_parser("bench", help="measure decode, model, encode and end-to-end speed on an input",
                           description="Times each stage of the pipeline loop alone (decode; the dehazing stage: "
                                       "upload, conversion to RGB on the device and model; detector; download; "
                                       "H.264 encode) and the whole loop, writing the video and (with --detect) "
                                       "detections only, on the first --frames frames of INPUT, and reports "
                                       "end-to-end / slowest stage and the fixed cost of a run beyond its frames. "
                                       "The decode path is input.decode (--set input.decode=...). "
                                       "Learned models without weights run with random weights (speed is the same). "
                                       "It also prints the output's stability with the configured gate and temporal "
                                       "smoothing, as a run makes it: flicker = mean change of mean brightness between "
                                       "consecutive frames, output / input; warping error = mean change after moving "
                                       "the previous frame along the input's optical flow, output / input; 1 = as "
                                       "steady as the input, above 1 = unsteadiness the processing added.")
    bench.add_argument("input", help="video file or image folder")
    bench.add_argument("--frames", type=int, default=90, help="frames to use (default %(default)s)")
    bench.add_argument("--repeats", type=int, default=3,
                       help="runs per stage; the median is reported (default %(default)s)")
    bench.add_argument("--json", nargs="?", const="-", metavar="FILE",
                       help="also write the result as JSON to FILE (or stdout with no FILE)")
    bench.add_argument("--detect", action="store_true",
                       help="add the detector: its speed alone, its share of the end-to-end time, and the "
                            "end-to-end speed writing detections only")
    bench.add_argument("--streams", type=int, default=1,
                       help="process this many copies of INPUT at once, sharing the model (default %(default)s)")
    _detector_args(bench)
    _fog_detector_args(bench, arms=False)
    _common(bench)

    ev = sub.add_parser("eval", help="detection AP50 on labelled images, raw vs dehazed",
                        description="Run the detector on IMAGES as they are and after dehazing with each --model, "
                                    "and report VOC all-point AP at IoU 0.5 per class and for all vehicle classes "
                                    "together, as a table, eval.json and eval.html (with example images).",
                        epilog="example:\n  cidstream eval data/dawn_fog/JPEGImages --labels data/dawn_fog/Annotations "
                               "--model dcp --model cid-lite --detector yolo11n.pt",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("images", help="image folder or glob")
    ev.add_argument("--labels", required=True, help="folder of VOC .xml or YOLO .txt files named like the images")
    ev.add_argument("--label-format", choices=["auto", *LABEL_FORMATS], default="auto")
    ev.add_argument("--yolo-id-offset", type=int, default=None,
                    help="YOLO label ids are the detector's class ids plus this (1 for DAWN's labels_yolo); by default "
                         "0, or the offset the labels show (a warning says so)")
    ev.add_argument("-o", "--output", default="eval_out",
                    help="folder for eval.json and eval.html (default %(default)s)")
    ev.add_argument("--split", choices=SPLIT_CHOICES, default=ALL,
                    help="evaluate one fixed half of the images (by a hash of the file name; configs/splits/ lists "
                         "them): choose models and settings on 'select', report figures from 'report' "
                         "(default %(default)s)")
    ev.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                    help="bootstrap resamples of the images for 95 %% intervals of each AP and of each difference "
                         "between arms (0: none; at most 10000; default %(default)s)")
    ev.add_argument("--max-images", type=int, help="evaluate only the first N images")
    ev.add_argument("--examples", type=int, default=4, help="example images in eval.html (default %(default)s)")
    _fog_detector_args(ev)
    _detector_args(ev, conf_default=f"{AP_CONF:g} here, as AP needs the whole ranking")
    _common(ev, repeat_model=True)

    batch = sub.add_parser("batch", help="process many video files: resumable, parallel, on Ray if you like",
                           description="Dehaze (and with --detect/--compare, detect on) every video of INPUTS into "
                                       "OUT_DIR. OUT_DIR/ledger.json records each file's state: a rerun skips files "
                                       "done with the same settings, redoes changed ones, and (with --retry-failed) "
                                       "retries failures. Outputs appear under their final names only when "
                                       "complete. Exit code 0 when every file is done, 1 when some failed, "
                                       "130 when interrupted, 2 for a usage or settings error.",
                           epilog=EXAMPLES_BATCH, formatter_class=argparse.RawDescriptionHelpFormatter)
    batch.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="folder (searched recursively for videos), glob pattern (quote it), video file, or "
                            "manifest (.csv with a 'path' column, or .jsonl); manifest columns other than path, "
                            "output, max_frames, detect, compare are config keys (model, engine.batch, ...)")
    batch.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (created)")
    batch.add_argument("--detect", action="store_true", help="run the vehicle detector on the dehazed frames; "
                                                             "each file gets a folder with detections and a report")
    batch.add_argument("--compare", action="store_true", help="detect on raw and dehazed frames (implies --detect)")
    _detector_args(batch)
    _fog_detector_args(batch)
    batch.add_argument("--workers", "-w", type=int,
                       help=f"files processed at once (default: {defaults.batch.workers}) [batch.workers]")
    batch.add_argument("--engine", choices=words(BatchConfig, "engine"), help="local worker processes/threads, or Ray tasks "
                                                                   f"(default: {defaults.batch.engine}) [batch.engine]")
    batch.add_argument("--address", help="Ray cluster address ('auto' joins the cluster this machine belongs to; "
                                         "default: start Ray here) [batch.address]")
    batch.add_argument("--retry-failed", action="store_true", help="try files that failed before again")
    batch.add_argument("--verify", action="store_true",
                       help="check finished outputs against their recorded checksums before skipping them")
    batch.add_argument("--max-frames", type=int, help="process at most this many frames of each file")
    batch.add_argument("--dry-run", action="store_true", help="show what would be done and stop")
    batch.add_argument("--no-progress", action="store_true", help="no progress bars (still prints the summary)")
    _common(batch)

    live = sub.add_parser("live", help="dehaze several camera streams at once, for days",
                          description="Read every camera of CAMERAS (a YAML file like configs/cameras.yaml) in one "
                                      "process, batch their frames together on one device, and write per camera: "
                                      "video segments (one file every live.segment_s seconds, each playable), "
                                      "detections.jsonl with --detect; OUTPUT/stats.json holds live counters. "
                                      "Cameras reconnect with backoff (forever by default) and a watchdog drops "
                                      "connections that stop sending frames. Ctrl-C or SIGTERM stops reading, "
                                      "finishes the frames in flight, closes every file and exits 0.",
                          epilog=EXAMPLES_LIVE, formatter_class=argparse.RawDescriptionHelpFormatter)
    live.add_argument("cameras", metavar="CAMERAS", help="cameras YAML (name, url, options, output per camera)")
    from .live.cameras import CamerasFile

    live.add_argument("-o", "--output",
                      help=f"output folder (default: 'output' in CAMERAS, else {CamerasFile().output})")
    live.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    live.add_argument("--max-frames", type=int, help="stop each camera after this many frames")
    live.add_argument("--detect", action="store_true", help="run the vehicle detector on the dehazed frames")
    _detector_args(live)
    _fog_detector_args(live)
    live.add_argument("--track", action="store_true", help="ByteTrack ids per camera [detect.track]")
    live.add_argument("--no-video", action="store_true",
                      help="with --detect: detections and stats only, no video segments [output.video]")
    live.add_argument("--no-status", action="store_true", help="no status table or lines (stats.json is still written)")
    _common(live)

    sub.add_parser("models", help="list the available models and whether they have weights")
    from .export import register as register_export

    register_export(sub)
    _load_plugins(sub)
    return parser


def _load_plugins(sub) -> None:
    """Commands registered by installed packages under the "cidstream.commands" entry point group
    (`training` adds `train`); each gets the subparsers object and sets a ``func`` default."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="cidstream.commands"):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken plugin must not take the runtime down
            print(f"warning: command plugin '{ep.name}' failed to load: {exc}", file=sys.stderr)


def default_output(spec: str, folder: bool = False) -> str:
    from .io import is_url
    from .io.sources import is_glob, is_image_input

    # Folders end with '/', so a name with a dot in it ("clip.v2_cidstream") is still a folder.
    if folder:  # detection runs write several files
        return "stream_cidstream/" if is_url(spec) else f"{Path(spec.rstrip('/')).stem or 'input'}_cidstream/"
    if is_url(spec):
        return "stream_dehazed.mp4"
    path = Path(spec.rstrip("/"))
    if is_glob(spec):
        return "images_dehazed/"
    if is_image_input(spec) and path.is_file():
        return f"{path.stem}_dehazed{path.suffix}"
    if is_image_input(spec):
        return f"{path.name}_dehazed/"
    return f"{path.stem}_dehazed.mp4"


def _same_place(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def cmd_run(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .engine import Dehazer
    from .sinks import output_kind
    from .io.sources import check_input_spec
    from .progress import progress_view
    from .run_input import check_output, process_input
    from .summary import print_run_summary

    cfg = make_config(args)  # also --max-frames and --duration against their ranges
    detecting = args.detect or args.compare
    if args.track and not detecting:
        raise ConfigError("--track counts the detector's vehicles: it needs --detect or --compare")
    if not cfg.output.video and not detecting:
        raise ConfigError("--no-video (output.video false) needs --detect or --compare: there would be nothing to write")
    check_input_spec(args.input)
    output = args.output or default_output(args.input, folder=detecting)
    if _same_place(output, args.input.rstrip("/")):
        raise OutputError(f"output {output} is the input itself: choose another output path")
    if detecting and output_kind(output) != "folder":
        raise OutputError(f"with --detect/--compare the output is a folder, got {output}")
    # Before any model is loaded: nothing the user has is overwritten, one image path gets one frame.
    check_output(args.input, output, detect=detecting, compare=args.compare, video=cfg.output.video,
                 max_frames=args.max_frames)
    _check_detect_flags(args, cfg, detecting)
    dehazer = Dehazer.from_config(cfg)
    detectors = None
    if detecting:
        from .detect.detectors import Detectors

        detectors = Detectors.from_config(cfg.detect, dehazer.device)
    view = progress_view(console, TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[fps]:.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
                         TimeRemainingColumn(), disable=args.no_progress, transient=True)
    task = view.add_task("dehazing", total=None, unit="frames", fps=0.0)
    on_start = lambda info: view.update(task, total=info.frame_count or None)  # noqa: E731
    on_batch = lambda s: view.update(task, completed=s.frames, fps=s.fps)  # noqa: E731
    with view:
        result = process_input(args.input, output, cfg, dehazer, detectors, compare=args.compare,
                               max_frames=args.max_frames, on_start=on_start, on_batch=on_batch,
                               duration=args.duration)
    print_run_summary(console, args.input, result.sink, dehazer, result.stats, result.total, result.error,
                      result.report, result.folder, skipped=result.skipped, duration=args.duration)
    if result.error is not None:
        raise _Reported(result.error)
    if result.stats.interrupted:
        return 130
    return 2 if result.skipped else 0  # images that could not be read: the run is not all there


class _Reported(Exception):
    """An error already shown in the run summary; only the exit code is left to give."""

    def __init__(self, error: CidstreamError):
        super().__init__(str(error))
        self.error = error


def cmd_bench(args, console) -> int:
    from .bench import check_json_output, run_bench, save_json
    from .engine.device import select_device
    from .engine.memory import check_memory
    from .summary import print_bench

    cfg = make_config(args)
    if args.frames < 1 or args.repeats < 1 or args.streams < 1:
        raise ConfigError("--frames, --repeats and --streams must be at least 1")
    _check_detect_flags(args, cfg, args.detect)
    check_memory(cfg, select_device(cfg.engine.device), detect=args.detect)  # the frame size is known only later
    check_json_output(args.json, args.input, cfg, args.config)  # before any work, as run checks its output
    with console.status("benchmarking") as status:
        result = run_bench(args.input, cfg, frames=args.frames, repeats=args.repeats, detect=args.detect,
                           streams=args.streams, progress=lambda label: status.update(f"benchmarking: {label}"))
    print_bench(console, result)
    if args.json:
        text = json.dumps(result.to_dict(), indent=2)
        if args.json == "-":
            print(text)
        else:
            save_json(args.json, text + "\n")
    return 0


def cmd_models(args, console) -> int:
    from rich.table import Table

    from .models import MODELS, bundled_weights, model_names

    table = Table(title="cidstream models")
    for col in ("name", "weights", "description"):
        table.add_column(col)
    for name in model_names():
        if name == "dcp":
            weights = "none needed"
        else:
            path = bundled_weights(name)
            weights = path.name if path else "[yellow]not bundled[/]"
        table.add_row(name, weights, MODELS[name].description)
    console.print(table)
    console.print("Any weights file works too: --model path/to/weights.pt (cidstream format or official CID .pk).")
    return 0


def _check_detect_flags(args, cfg, detecting: bool = True) -> None:
    """Detector flags that would do nothing are refused, not ignored (a config file's detect section
    applies whenever a run detects)."""
    given = [f"--{k.replace('_', '-')}" for k in ("fog_detector", "fog_view", "detector_b", "fuse")
             if getattr(args, k, None)]
    if given and not detecting:
        raise ConfigError(f"{' and '.join(given)} choose{'s' if len(given) == 1 else ''} detectors: add --detect")
    if getattr(args, "fog_view", None) and not cfg.detect.fog_detector:
        raise ConfigError("--fog-view says what the fog detector sees: add --fog-detector (or detect.fog_detector)")


def cmd_eval(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from .detect.detectors import Detectors
    from .evaluation.evaluate import VEHICLE, difference_rows, fmt_interval, run_eval, write_eval
    from .engine import Dehazer
    from .engine.memory import check_memory
    from .progress import progress_view

    cfg = make_config(args)
    if args.conf is None:
        cfg.detect.conf = AP_CONF  # AP needs the whole ranking, not just confident boxes
    _check_detect_flags(args, cfg)
    dehazers = {name: Dehazer.from_config(cfg, model=name) for name in dict.fromkeys(args.model or [cfg.model.name])}
    detectors = Detectors.from_config(cfg.detect, next(iter(dehazers.values())).device)
    check_memory(cfg, detectors.device, detect=True, batch=cfg.engine.batch)  # images of one size batched
    with progress_view(console, TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), transient=True) as progress:
        task = progress.add_task("evaluating", total=None, unit="images")
        report = run_eval(args.images, args.labels, dehazers, detectors, args.label_format, args.yolo_id_offset,
                          args.max_images, args.examples,
                          progress=lambda k, n: progress.update(task, completed=k, total=n), output_dir=args.output,
                          split=args.split, resamples=args.bootstrap, batch=cfg.engine.batch)
    json_path, html_path = write_eval(Path(args.output), report)
    variants = list(report["results"])
    table = Table(title=f"AP50 on {report['images']} images"
                        + ("" if report["split"] == "all" else f" ({report['split']} half)"),
                  caption=f"{report['detector']}"
                          + (f" ([B]: {report['detector_b']})" if report.get("detector_b") else "")
                          + (f" (per-frame: {report['fog_detector']} on {report['fog_view']})"
                             if report.get("fog_detector") else "")
                          + f", imgsz {report['imgsz']}, conf {report['conf']}, "
                          f"NMS IoU {report['iou']}; VOC all-point AP")
    table.add_column("class")
    table.add_column("GT", justify="right")
    for v in variants:
        table.add_column(v, justify="right")
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    for cls in report["classes"] + [VEHICLE]:
        table.add_row(cls if cls != VEHICLE else "[bold]vehicle (any class)[/]",
                      str(report["results"]["raw"]["per_class"][cls]["positives"]),
                      *[fmt(report["results"][v]["per_class"][cls]["ap50"]) for v in variants])
    table.add_row("[bold]mAP50[/]", "", *[f"[bold]{fmt(report['results'][v]['map50'])}[/]" for v in variants])
    if report.get("bootstrap"):
        for key, label in (("vehicle_ap50_ci", "vehicle 95 %"), ("map50_ci", "mAP50 95 %")):
            table.add_row(f"[dim]{label}[/]", "", *[f"[dim]{fmt_interval(report['results'][v].get(key))}[/]"
                                                    for v in variants])
    console.print(table)
    rows = difference_rows(report)
    if rows:
        diff = Table(title=f"differences ({report['bootstrap']['resamples']} bootstrap resamples, 95 % intervals)")
        for col in ("arms", "vehicle AP50", "interval", "mAP50", "interval"):
            diff.add_column(col, justify="left" if col == "arms" else "right")
        for r in rows:
            diff.add_row(*r)
        console.print(diff)
    console.print(f"written {json_path} and {html_path}")
    return 0


def cmd_batch(args, console) -> int:
    from .jobs import run_batch

    cfg = make_config(args)
    if not cfg.output.video:
        raise ConfigError("output.video false is for run and live; a batch always writes the dehazed videos")
    _check_detect_flags(args, cfg, args.detect or args.compare)
    return run_batch(args.inputs, Path(args.output), cfg, console, detect=args.detect or args.compare,
                     compare=args.compare, max_frames=args.max_frames, retry_failed=args.retry_failed,
                     verify=args.verify, dry_run=args.dry_run, show_progress=not args.no_progress)


def cmd_live(args, console) -> int:
    import logging

    from .engine import Dehazer
    from .engine.memory import check_memory
    from .io.atomic import OutputLock
    from .live.cameras import load_cameras
    from .live.hub import LiveHub
    from .live.view import status_line, status_table

    cameras = load_cameras(args.cameras)
    cfg = make_config(args, cameras.settings)
    if not cfg.output.video and not (args.detect or args.track):
        raise ConfigError("--no-video (output.video false) needs --detect: there would be nothing to write")
    _check_detect_flags(args, cfg, args.detect or args.track)
    root = Path(args.output or cameras.output)
    OutputLock(root).check()  # a folder another run is writing: refused before the models load
    dehazer = Dehazer.from_config(cfg)
    detectors = None
    if args.detect or args.track:
        from .detect.detectors import Detectors

        detectors = Detectors.from_config(cfg.detect, dehazer.device)
    check_memory(cfg, dehazer.device, detect=detectors is not None)  # cameras' frame sizes come with their frames
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    hub = LiveHub(cameras, cfg, root, dehazer, detectors, args.max_frames)
    console.print(f"{len(hub.cameras)} camera(s) -> {root}/ (model {dehazer.name} on {dehazer.device}); "
                  "Ctrl-C stops", highlight=False)
    signal.signal(signal.SIGTERM, lambda *_: hub.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: hub.stop_requested.set())
    if args.no_status:
        result = hub.run(args.duration)
    elif console.is_terminal:
        from rich.live import Live

        with Live(status_table([c.status() for c in hub.cameras]), console=console, refresh_per_second=2) as view:
            result = hub.run(args.duration, on_status=lambda cams: view.update(status_table(cams)))
    else:
        result = hub.run(args.duration, on_status=lambda cams: [console.print(status_line(c), highlight=False)
                                                                 for c in cams])
    console.print(status_table(result.cameras, title=f"stopped ({result.reason}) after {result.seconds:.0f} s"))
    console.print(f"stats: {hub.stats_path}")
    if result.reason == "duration" and not result.received:
        console.print(f"[bold red]error:[/] no camera delivered a frame in {args.duration:g} s", highlight=False)
        return 1
    failed = [c for c in result.cameras if c["state"] == "failed"]
    return 1 if failed and result.reason != "interrupted" else 0


COMMANDS = {"run": cmd_run, "bench": cmd_bench, "eval": cmd_eval, "batch": cmd_batch, "live": cmd_live,
            "models": cmd_models}


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
        handler = getattr(args, "func", None) or COMMANDS[args.command]
        return handler(args, console)
    except _Reported as rep:
        if args.debug:
            raise rep.error from None
        return rep.error.exit_code
    except CidstreamError as exc:
        if args.debug:
            raise
        console.print(f"[bold red]error:[/] {redact_url(exc)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:  # a bug, not a user error: say so, briefly
        if args.debug:
            raise
        console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {redact_url(exc)}\n"
                      "Run again with --debug for the traceback.", highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
