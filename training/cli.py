"""`cidstream train ...`: registered as a cidstream command plugin (entry point group
"cidstream.commands"), so the runtime finds it without importing `training` itself."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cidstream.config import data_root

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "configs" / "train" / "generate.yaml"
DATA_VIDEOS = data_root() / "videos"
CLEAN_VIDEOS = ["highway_720p.mp4", "highway2_720p.mp4", "traffic_cam_640x360.mp4"]


def register(sub) -> None:
    train = sub.add_parser("train", help="training data and models (multi-domain haze generation, statistics)",
                           description="Training tools: generate synthetic hazy pairs, compare haze statistics.")
    tsub = train.add_subparsers(dest="train_command", metavar="STEP", required=True)

    gen = tsub.add_parser("generate", help="write clean/hazy training pairs from clean videos or images",
                          description="Degrade clean frames by a multi-domain recipe (configs/train/generate.yaml) "
                                      "into OUT/clean, OUT/hazy (PNG, same names), OUT/metadata.jsonl (domain, "
                                      "source, frame and every drawn parameter per pair) and OUT/contact_sheet.png.",
                          epilog="examples:\n  cidstream train generate --out data/pairs --count 300 "
                                 "clear_clips/*.mp4\n  cidstream train generate --out data/pairs --count 20   "
                                 "# no sources: a built-in clean road scene (for trying the tools)",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("sources", nargs="*", help="clean videos, image folders or globs (default: the clear-weather "
                                                "videos in $CIDSTREAM_DATA/videos, else the clean road scene "
                                                "samples/make_sample.py draws)")
    gen.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe YAML (default configs/train/generate.yaml)")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--count", type=int, default=300, help="pairs to write (default 300)")
    gen.add_argument("--stride", type=int, default=5, help="use every Nth video frame (default 5)")
    gen.add_argument("--dedup", type=float, default=2.0,
                     help="skip frames whose 32x18 thumbnail differs from the last kept by less than this "
                          "(mean abs, 0-255; default 2, 0 keeps all)")
    gen.add_argument("--seed", type=int, help="override the recipe's seed")
    gen.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    gen.set_defaults(func=cmd_generate)

    st = tsub.add_parser("stats", help="haze statistics of real vs synthetic sets, with distances",
                         description="Per-image dark channel, contrast, saturation, brightness, colour cast and "
                                     "noise for the pooled REAL sets and each --synthetic set; distribution plots "
                                     "(stats.png) and per-statistic 1-D Wasserstein distances in units of the real "
                                     "set's standard deviation (stats.json).")
    st.add_argument("--real", nargs="+", required=True, help="real hazy videos, image folders or globs")
    st.add_argument("--synthetic", nargs="+", action="append", required=True, metavar="DIR",
                    help="a generated folder (or images); repeat the flag to compare several synthetic sets")
    st.add_argument("-o", "--out", default="stats_out", help="output folder (default stats_out)")
    st.add_argument("--stride", type=int, default=10, help="use every Nth video frame (default 10)")
    st.add_argument("--max-images", type=int, default=300, help="at most this many images per source (default 300)")
    st.set_defaults(func=cmd_stats)

    default_cfg = str(REPO / "configs" / "train" / "cid_lite.yaml")
    for name, phases, text in (("pretrain", ["pretrain"], "phase 1: semi-supervised pretraining"),
                               ("adapt", ["adapt"], "phase 2: unsupervised subspace alignment (encoder frozen)"),
                               ("finetune", ["finetune"], "phase 3: invariant features, sample weights (encoder frozen)"),
                               ("all", ["pretrain", "adapt", "finetune"], "all three phases in order")):
        ph = tsub.add_parser(name, help=text, description=f"{text}. Checkpoints go to RUN_DIR/checkpoint.pt every "
                             "checkpoint_every steps (atomically) and RUN_DIR/after_<phase>.pt at each phase's end; "
                             "the log to RUN_DIR/log.csv and log.jsonl, with validation (PSNR/SSIM on held-apart "
                             "synthetic pairs, dark channel of dehazed real haze) every validate_every steps.")
        ph.add_argument("--config", default=default_cfg, help="training YAML (default configs/train/cid_lite.yaml)")
        ph.add_argument("--run-dir", default="runs/cid_lite", help="checkpoints and logs (default runs/cid_lite)")
        ph.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
        ph.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
        ph.add_argument("--steps-scale", type=float, default=1.0, help="multiply every phase's steps (smoke runs)")
        ph.set_defaults(func=cmd_train, phases=phases)

    fog = tsub.add_parser("detector", help="fine-tune an Ultralytics detector for fog (no human labels)",
                         description="Fine-tune an Ultralytics detection model with Ultralytics' own trainer on clean "
                                     "frames and their multi-domain degraded copies (labels: the frozen base "
                                     "detector's confident boxes on the clean frame, every class, its class ids) "
                                     "plus real fog frames with pseudo-labels, then check it on clear frames it "
                                     "never saw. The result is a normal Ultralytics .pt (YOLO(path), or cidstream "
                                     "--fog-detector / --detector path) with our metadata under the key "
                                     "'cidstream', kept in the user cache under NAME (and written to --out). The "
                                     "training set, Ultralytics' run (weights/last.pt, results.csv) and train.log "
                                     "go to RUN_DIR. The base detector, the pseudo-labels and the training run on "
                                     "the GPU when there is one.",
                         epilog="examples:\n  cidstream train detector                   # kept as 'fog': "
                                "cidstream run VIDEO --detect --fog-detector fog\n"
                                "  cidstream train detector --detector "
                                "$CIDSTREAM_DATA/weights/yolo11n_coco_from_int8_unfused.pt --out fog_yolo11n.pt",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    fog.add_argument("--detector", help="base Ultralytics detection model, unfused (default: the config's detector)")
    fog.add_argument("--config", default=str(REPO / "configs" / "train" / "detector.yaml"),
                    help="detector training YAML (default configs/train/detector.yaml)")
    fog.add_argument("--name", default="fog",
                     help="short name to keep it under in the user cache ($CIDSTREAM_CACHE, else ~/.cache/cidstream): "
                          "--fog-detector NAME finds the last one made (default %(default)s)")
    fog.add_argument("--out", help="also write the adapted detector here, e.g. fog_yolo11n.pt")
    fog.add_argument("--run-dir", default="runs/detector", help="training set, checkpoints, logs (default %(default)s)")
    fog.add_argument("--resume", action="store_true", help="continue from RUN_DIR/yolo/weights/last.pt")
    fog.add_argument("--epochs", type=int, help="override the config's train.epochs")
    fog.add_argument("--device", default="auto", help="auto (the GPU when there is one, else the CPU), cpu, cuda or "
                                                     "a GPU index (default auto)")
    fog.set_defaults(func=cmd_detector)

    hz = tsub.add_parser("fog-meter", aliases=["haze"],  # haze: its first name, kept for scripts that use it
                         help="train the fog meter the haze gate reads (visibility with an uncertainty)",
                         description="Train the fog meter (cidstream/engine/fog_meter.py) on synthetic fog of known "
                                     "visibility over clear frames, the generator's nuisances without fog labelled "
                                     "clear, real frames with measured visibility, and real haze as weak labels "
                                     "(configs/train/haze.yaml says which halves of which sets). Shows the build "
                                     "and training progress with time left. OUT holds the "
                                     "weights and what they saw; the training sets are cached in RUN_DIR.",
                         epilog="examples:\n  cidstream train fog-meter                       # writes runs/haze/fog_meter.pt"
                                "\n  cidstream train fog-meter --out cidstream/weights/fog_meter.pt   # the bundled "
                                "meter\n  cidstream run in.mp4 --fog-meter runs/haze/fog_meter.pt     # use another",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    hz.add_argument("--config", default=str(REPO / "configs" / "train" / "haze.yaml"),
                    help="fog meter training YAML (default configs/train/haze.yaml)")
    hz.add_argument("--out", default="runs/haze/fog_meter.pt", help="weights to write (default %(default)s)")
    hz.add_argument("--run-dir", default="runs/haze", help="cached training sets and the loss log (default %(default)s)")
    hz.add_argument("--steps", type=int, help="override the config's train.steps")
    hz.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu or cuda (default auto)")
    hz.set_defaults(func=cmd_haze)

    ex = tsub.add_parser("export", help="runtime weights (with metadata) from a training checkpoint",
                         description="Write a cidstream weights file (architecture, normalisation, training config, "
                                     "data, metrics, date) from RUN_DIR/checkpoint.pt or after_<phase>.pt.")
    ex.add_argument("checkpoint")
    ex.add_argument("-o", "--output", required=True, help="weights file to write, e.g. cid_lite.pt")
    ex.add_argument("--display-from", metavar="CONFIG",
                    help="take cid-lite's display settings (keep_brightness, detail_eps: training switches them off) "
                         "from this training config instead of the checkpoint's; the rest of its model section "
                         "must match the checkpoint's")
    ex.set_defaults(func=cmd_export)

    va = tsub.add_parser("validate", help="PSNR/SSIM of models on the held-apart synthetic pairs",
                         description="Builds the training config's validation pairs (a recipe not used for "
                                     "training, fixed seed) and measures each --model through the runtime.")
    va.add_argument("--config", default=default_cfg)
    va.add_argument("--model", action="append", required=True, help="model name or weights file; repeat")
    va.add_argument("--json", help="also write the table as JSON")
    va.set_defaults(func=cmd_validate)


def cmd_generate(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cidstream.engine.device import select_device
    from cidstream.io.atomic import check_writable_folder
    from cidstream.errors import ConfigError, InputError
    from cidstream.progress import progress_view

    from .synthetic.generate import BUILTIN_SCENE, builtin_available, generate
    from .synthetic.recipe import load_recipe

    device = str(select_device(args.device))
    recipe = load_recipe(args.recipe)
    if args.seed is not None:
        recipe.seed = args.seed
    if args.count < 1:
        raise ConfigError("--count must be at least 1")
    if args.stride < 1:
        raise ConfigError("--stride must be at least 1")
    if args.dedup < 0:
        raise ConfigError("--dedup must not be negative")
    check_writable_folder(args.out, "output folder (--out)")
    sources = args.sources or [str(DATA_VIDEOS / v) for v in CLEAN_VIDEOS if (DATA_VIDEOS / v).exists()]
    if not sources and builtin_available():
        sources = [BUILTIN_SCENE]
        console.print(f"no sources given and no clear-weather videos in {DATA_VIDEOS}: using the clean road "
                      "scene samples/make_sample.py draws (synthetic; for training data pass your own clear-weather "
                      "videos, image folders or globs)", highlight=False)
    if not sources:
        raise InputError(f"no sources given and the default clean videos are not in {DATA_VIDEOS}: pass "
                         "clear-weather videos, image folders or globs, e.g. cidstream train generate --out "
                         "data/pairs clips/*.mp4")
    with progress_view(console, TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as progress:
        task = progress.add_task("generating", total=args.count, unit="pairs")
        try:
            summary = generate(recipe, sources, Path(args.out), args.count, stride=args.stride, dedup=args.dedup,
                               device=device, progress=lambda k: progress.update(task, completed=k))
        except ValueError as exc:  # bad depth settings in the recipe
            raise ConfigError(f"recipe {args.recipe}: {exc}") from exc
    console.print(f"wrote {summary['pairs']} pairs to {summary['out']} "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(summary['domains'].items()))})")
    console.print(f"contact sheet: {summary['contact_sheet']}")
    if summary["pairs"] == 0:
        raise InputError(f"no frames could be read from {', '.join(sources)}")
    return 0


def cmd_train(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cidstream.engine.device import select_device
    from cidstream.progress import progress_view

    from .dehazer.trainer import Trainer, load_train_config

    device = str(select_device(args.device))
    cfg = load_train_config(args.config)
    with progress_view(console, TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                       TimeRemainingColumn()) as progress:
        task = progress.add_task("training", total=None, unit="steps", loss=0.0)  # the phase once it runs
        trainer = Trainer(cfg, Path(args.run_dir), device=device, scale=args.steps_scale,
                          log=lambda msg: progress.console.print(msg, highlight=False))
        summary = trainer.run(args.phases, resume=args.resume, progress=lambda phase, step, total, loss:
                              progress.update(task, description=phase, completed=step, total=total, loss=loss))
    console.print(f"done: {summary['metrics']}; checkpoints in {summary['run_dir']}")
    return 0


def _step_progress(console, unit: str = ""):
    """A progress view (cidstream.progress: bars on a terminal, lines in a log) with one bar (done of total,
    time left) per named step, and the callback ``step(name, done, total)`` that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cidstream.progress import progress_view

    view = progress_view(console, TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TimeRemainingColumn())
    tasks: dict = {}

    def step(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = view.add_task(name, total=total, unit=unit)
        view.update(tasks[name], completed=done, total=total)

    return view, step


def train_device(spec: str) -> tuple[str, str]:
    """(torch device, Ultralytics device) for --device, resolved by select_device like every command; a bare
    GPU index (Ultralytics' spelling) is cuda:N. A ConfigError, as this flag's errors always were."""
    from cidstream.engine.device import select_device
    from cidstream.errors import ConfigError, DeviceError

    try:
        device = select_device(f"cuda:{spec}" if spec.isdigit() else spec)
    except DeviceError as exc:
        raise ConfigError(str(exc)) from None
    if device.type == "cpu":
        return "cpu", "cpu"
    index = device.index or 0
    return f"cuda:{index}", str(index)


def check_cache_name(name: str) -> None:
    """Refuse, before any work, a --name that `--fog-detector NAME` would not look up in the cache (it takes
    a word with a file suffix for a path), and a cache the detector could not be kept in at the end."""
    from cidstream.detect.cache import detectors_dir, is_short_name
    from cidstream.user_cache import CACHE_ENV
    from cidstream.errors import ConfigError, OutputError
    from cidstream.io.atomic import check_writable_folder

    if not is_short_name(name):
        hint = f"; to also write a file, add --out {name}" if Path(name).suffix else ""
        raise ConfigError(f"--name {name!r}: use a short name of letters, digits, '_' or '-' with no file suffix "
                          f"(at most 64; --fog-detector NAME finds it in the cache){hint}")
    try:
        check_writable_folder(detectors_dir(name), "detector cache folder")
    except OutputError as exc:
        raise OutputError(f"{exc} (set ${CACHE_ENV} to a writable folder)") from None


def cmd_detector(args, console) -> int:
    import datetime as dt
    import shutil

    from cidstream.detect.cache import new_entry
    from cidstream.io.atomic import check_writable_folder
    from cidstream.errors import ConfigError
    from cidstream.progress import ProgressLines

    from .detector.detector_train import load_detector_config, prepare, resolve_base, train_detector

    cfg = load_detector_config(args.config)
    spec = args.detector or cfg.get("detector")
    if not spec:
        raise ConfigError("no base detector: pass --detector or set 'detector' in the config")
    base = resolve_base(spec)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError("--epochs must be at least 1")
        cfg["train"] = {**(cfg.get("train") or {}), "epochs": args.epochs}
    device, yolo_device = train_device(args.device)
    check_cache_name(args.name)
    run_dir = Path(args.run_dir)
    check_writable_folder(run_dir, "run folder (--run-dir)")
    out = Path(args.out) if args.out else None
    if out is not None:
        check_writable_folder(out.parent if str(out.parent) else Path("."), "output folder (--out)")
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = (run_dir / "train.log").open("a", encoding="utf-8")

    def log(msg: str) -> None:
        console.print(msg, highlight=False)
        log_file.write(f"{dt.datetime.now().isoformat(timespec='seconds')} {msg}\n")
        log_file.flush()

    made = run_dir / "detector.pt"
    try:
        log(f"base detector {base}, config {args.config}, run folder {run_dir}, device {device}")
        view, step = _step_progress(console, "frames")
        with view:
            data = prepare(cfg, base, run_dir, log=log, progress=step, device=device)
        # Ultralytics draws its own bar per epoch on a terminal: there the training's Rich view is never started,
        # so it draws nothing; in a log it is ProgressLines, whose lines are the training's only progress
        train_view, train_step = _step_progress(console, "batches")
        view, step = _step_progress(console, "frames")
        meta = train_detector(cfg, base, data, made, run_dir, device=yolo_device, resume=args.resume, log=log,
                              progress=step, view=view, check_device=device, train_progress=train_step,
                              train_view=train_view if isinstance(train_view, ProgressLines) else None)
    except KeyboardInterrupt:
        log(f"interrupted: Ultralytics keeps {run_dir / 'yolo' / 'weights' / 'last.pt'} at each epoch's end; "
            "continue with --resume")
        return 130
    finally:
        log_file.close()
    cached = new_entry(args.name)
    shutil.copyfile(made, cached)
    if out is not None:
        shutil.copyfile(made, out)
    m = meta["metrics"]
    console.print(f"wrote {out or cached} ({made.stat().st_size / 1e6:.1f} MB)"
                  + (f", also kept as {cached}" if out is not None else "")
                  + f": validation on held-out adaptation frames {m.get('adaptation_val')}; clear-weather check "
                  f"{m.get('clear_check')}. Detect through fog with it: cidstream run VIDEO --detect --fog-detector "
                  f"{args.name}", highlight=False)
    return 0


def cmd_haze(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cidstream.engine.device import select_device
    from cidstream.engine.fog_meter import save_meter
    from cidstream.errors import ConfigError
    from cidstream.io.atomic import check_writable_folder
    from cidstream.progress import progress_view

    from .fog_meter.haze_data import check_sources
    from .fog_meter.haze_train import build_sets, read_haze_config, train_meter, trained_on

    cfg = read_haze_config(args.config)
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError("--steps must be at least 1")
        cfg["train"]["steps"] = args.steps
    device = str(select_device(args.device))
    check_sources(cfg, args.config)
    out, run_dir = Path(args.out), Path(args.run_dir)
    check_writable_folder(run_dir, "run folder (--run-dir)")
    check_writable_folder(out.parent if str(out.parent) else Path("."), "output folder (--out)")
    columns = (TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with progress_view(console, *columns) as progress:
        tasks: dict = {}

        def building(what: str, k: int, n: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=n, note="", unit="samples")
            progress.update(tasks[what], completed=k, total=n)

        synthetic, real = build_sets(cfg, run_dir, building)
        task = progress.add_task("training", total=cfg["train"]["steps"], note="", unit="steps")
        model, log = train_meter(cfg, synthetic, real, device, lambda step, total, loss: progress.update(
            task, completed=step, note=f"loss {loss:.3f}"))
    save_meter(model, out, config_file=str(args.config), trained_on=trained_on(cfg, synthetic, real), **log)
    (run_dir / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    console.print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) from {len(synthetic)} synthetic and {len(real)} "
                  f"real samples; final loss {log['loss'][-1]['loss']}. Measure it: python benchmarks/fog_measures.py "
                  f"--meter {out}", highlight=False)
    return 0


def saved_kind(path: Path) -> str:
    """What a file holds: 'weights' (cidstream weights, what export writes), 'checkpoint' (of cidstream train
    pretrain/adapt/finetune/all) or 'other'. Read as plain data: no pickled code runs."""
    from cidstream.detect.safe_load import load_plain
    from cidstream.errors import WeightsError
    from cidstream.models.weights import FORMAT

    try:
        state = load_plain(path, "training checkpoint")
    except WeightsError:
        return "other"
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return "weights"
    return "checkpoint" if isinstance(state, dict) and {"model", "config", "phase", "done"} <= set(state) else "other"


def check_checkpoint(checkpoint: Path) -> None:
    """Refuse what is no training checkpoint (a shipped weights file, a detector) by what it holds, not by a
    KeyError from inside export."""
    from cidstream.errors import InputError, WeightsError

    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}" if not checkpoint.exists() else
                         f"checkpoint {checkpoint} is a folder: give RUN_DIR/checkpoint.pt or after_<phase>.pt")
    kind = saved_kind(checkpoint)
    if kind == "weights":
        raise WeightsError(f"{checkpoint} is already cidstream weights (what train export writes), not a training "
                           f"checkpoint: use it as it is, e.g. cidstream run VIDEO --model {checkpoint}")
    if kind != "checkpoint":
        raise WeightsError(f"{checkpoint} is not a training checkpoint of cidstream train (pretrain, adapt, finetune, "
                           "all): give RUN_DIR/checkpoint.pt or after_<phase>.pt")


def check_export_output(checkpoint: Path, output: str) -> None:
    """Refuse, before export writes anything, an output that is not a weights file name, a folder, the
    checkpoint itself (by file identity, as `cidstream run` refuses writing over its input) or an existing
    file that is not weights (another checkpoint): export would replace it."""
    import os

    from cidstream.errors import ConfigError, OutputError
    from cidstream.io.atomic import check_writable_folder
    from cidstream.models.exported import SUFFIXES
    from cidstream.models.registry import WEIGHT_SUFFIXES

    out = Path(output)
    target = Path(os.path.realpath(out))  # where it lands once export makes its folders (sub/../ck.pt is ck.pt)
    if output.endswith(("/", os.sep)) or target.is_dir():
        raise OutputError(f"output {output} is a folder: give a weights file name, e.g. {out / 'cid_lite.pt'}")
    suffix = out.suffix.lower()
    if suffix in SUFFIXES:
        pt = out.with_suffix(".pt")
        raise ConfigError(f"output {output}: train export writes cidstream weights (.pt); for a {suffix} file export "
                          f"those: cidstream train export {checkpoint} -o {pt} && cidstream export --model {pt} -o "
                          f"{output}")
    if suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"output {output}: a weights file name ends in {', '.join(WEIGHT_SUFFIXES)} (cidstream run "
                          "--model takes it by that), e.g. cid_lite.pt")
    if target.exists() and os.path.samefile(checkpoint, target):
        raise OutputError(f"output {output} is the checkpoint itself ({checkpoint}"
                          f"{', by another name' if str(checkpoint) != output else ''}): choose another output path")
    if target.is_file() and saved_kind(target) != "weights":
        raise OutputError(f"output {output} exists and is not cidstream weights (export would replace it): choose "
                          "another output path")
    check_writable_folder(out.parent, "output folder")


def cmd_export(args, console) -> int:
    from .dehazer.trainer import export

    check_checkpoint(Path(args.checkpoint))
    check_export_output(Path(args.checkpoint), args.output)
    path = export(args.checkpoint, args.output, args.display_from)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def cmd_stats(args, console) -> int:
    from rich.table import Table

    from .stats import STATS, compare_sets

    synthetic = {}
    for group in args.synthetic:
        name = Path(group[0]).name or "synthetic"
        while name in synthetic or name == "real":
            name += "'"
        synthetic[name] = group
    with console.status("measuring haze statistics") as status:
        count = [0]

        def tick():
            count[0] += 1
            status.update(f"measuring haze statistics: {count[0]} images")

        result = compare_sets(args.real, synthetic, Path(args.out), args.stride, args.max_images, tick)
    table = Table(title="real vs synthetic: W1 distance / real std (lower is closer)")
    table.add_column("statistic")
    table.add_column("real mean", justify="right")
    for name in synthetic:
        table.add_column(f"{name} mean", justify="right")
        table.add_column(f"{name} dist", justify="right")
    for stat in list(STATS) + ["mean"]:
        row = [stat, "" if stat == "mean" else f"{result['sets']['real'][stat]['mean']:.3f}"]
        for name in synthetic:
            row += ["" if stat == "mean" else f"{result['sets'][name][stat]['mean']:.3f}",
                    f"{result['distances'][name][stat]:.3f}"]
        table.add_row(*row)
    console.print(table)
    console.print(f"written {Path(args.out) / 'stats.json'} and {Path(args.out) / 'stats.png'}")
    return 0




def cmd_validate(args, console) -> int:
    """PSNR/SSIM of runtime models on the held-apart synthetic pairs, through the runtime's uint8 path."""
    import torch
    from rich.table import Table

    from cidstream.engine import Dehazer

    from .dehazer import losses as L
    from .dehazer.trainer import load_data, load_train_config, validation_set

    cfg = load_train_config(args.config)
    clean, target = load_data(cfg)
    v = validation_set(cfg["validation"], clean, target)
    to_u8 = lambda t: (t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)  # noqa: E731
    rows = {"raw": v.hazy}
    for spec in args.model:
        out = Dehazer(spec, device="cpu")(to_u8(v.hazy))
        rows[spec] = out.permute(0, 3, 1, 2).float() / 255.0
    table = Table(title=f"held-apart synthetic pairs ({len(v.clean)}, recipe {cfg['validation']['recipe']})")
    for col in ("model", "PSNR", "SSIM"):
        table.add_column(col, justify="left" if col == "model" else "right")
    result = {}
    for name, out in rows.items():
        result[name] = {"psnr": round(float(L.psnr(out, v.clean).mean()), 3),
                        "ssim": round(float(L.ssim(out, v.clean).mean()), 4)}
        table.add_row(name, f"{result[name]['psnr']:.2f}", f"{result[name]['ssim']:.4f}")
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0
