"""`cidstream export`: the dehazer as one ONNX or TorchScript graph, for runtimes without cidstream.

The graph is ``Dehazer.process`` itself: uint8 RGB frames (N, H, W, 3) in, dehazed uint8 frames out.
It runs the dehazer's own ``frames_to_input`` (÷255, padding to the network's multiple, input
normalisation) and ``output_to_frames`` (output mapping, crop back, clamp, ×255 + 0.5, uint8), on
the model with its BatchNorms folded (``fuse_for_inference``), so DeepStream, TensorRT, Triton or
OpenVINO users feed decoded frames as they are. What the file is and how it was made is stored in
it: ONNX ``metadata_props`` (key ``cidstream``: the whole record as JSON; readable keys beside it),
TorchScript the extra file ``cidstream.json``.

ONNX goes through ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript): the TorchScript-
based exporter (``dynamo=False``) turns frame sizes into tensors, which DCP's size-dependent radius
(``round``) cannot take. TorchScript files are traced (``torch.jit.trace``) at one size.
"""
from __future__ import annotations

import argparse
import builtins
import contextlib
import datetime as _dt
import io
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import ConfigError, OutputError, WeightsError
from .io.atomic import check_not_input, check_writable_folder, partial_path

DEFAULT_SIZE = (360, 640)    # height, width: the size of most traffic cameras we see
MAX_SIDE = 8192              # frame sides of a fixed-size graph: 8K and below (larger ones exhaust memory)
CHECK_FRAMES = 2             # frames the graph is traced and checked with (_check_frames)
OPSET = 18                   # TensorRT 8.6+/10, OpenVINO 2023+, onnxruntime 1.14+ read it
FORMATS = ("onnx", "torchscript")

EXAMPLES = """examples:
  cidstream export --model cid-lite -o cid_lite_360p.onnx                 # 640x360, fp32
  cidstream export --model cid-lite -o cid_lite.onnx --dynamic            # any frame size (see below)
  cidstream export --model dcp -o dcp_720p.onnx --height 720 --width 1280
  cidstream export --model path/to/official.pk -o cid_fp16.onnx --half --device cuda
  cidstream export --model cid-lite --format torchscript -o model.pt      # Triton's libtorch name
  cidstream run traffic.mp4 --model cid_lite_360p.onnx                    # run it (onnxruntime)

The graph takes input 'frames': uint8 (N, H, W, 3) RGB and returns 'dehazed', the same shape and type;
N is free. Fixed-size graphs take exactly HxW frames. --dynamic graphs (cid-lite, cid; dcp per size)
take any size from the model's minimum side (cid-lite 16, cid 32 px) and, for cid-lite, up to a
short side of 719 px (larger frames are pooled by a factor fixed at export: export their size).
"""


def _onnx_round(self, ndigits=None):
    """Python's ``round`` on a symbolic size (DCP's radius) in ONNX: Round is half-to-even, as Python's."""
    from onnxscript import DOUBLE, INT64
    from onnxscript import opset18 as op

    return op.Cast(op.Round(op.Cast(self, to=DOUBLE.dtype)), to=INT64.dtype)


def dynamic_limits(net) -> dict:
    """Frame sizes a --dynamic graph of ``net`` is exact for (traced at DEFAULT_SIZE).

    Reflection padding needs sides of at least the padding multiple; cid-lite pools frames whose
    short side is at least 2 x work_short_side, by a factor that stays as traced (1).
    """
    from .models import CIDLite

    limits = {"min_side": max(net.pad_multiple, net.min_size), "max_short_side": None}
    if isinstance(net, CIDLite) and net.work_short_side:
        limits["max_short_side"] = 2 * net.work_short_side - 1
    return limits


def _check_frames(h: int, w: int, seed: int = 0):
    """CHECK_FRAMES deterministic hazy-looking frames for the post-export check (gradient sky, texture, noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 13.0) * (yy / max(h, 1))
    img = np.stack([base, 0.9 * base + 0.05, 0.8 * base + 0.1], axis=-1)
    img = 0.6 * img + 0.3 + rng.normal(0, 0.02, (CHECK_FRAMES, h, w, 3))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _check_output(output: Path, fmt: str, reads=()) -> Path:
    """The file to write: not a folder, not a file the export reads, its folder creatable and writable;
    the format fits the name."""
    from .models.exported import SUFFIXES

    suffix = output.suffix.lower()
    if fmt == "onnx" and suffix != ".onnx":
        raise ConfigError(f"an ONNX file's name ends in .onnx (cidstream run and other runtimes go by it), got {output}"
                          + (": for TorchScript add --format torchscript" if suffix == ".pt" else ""))
    if fmt == "torchscript" and suffix not in (".ts", ".torchscript", ".pt"):
        raise ConfigError(f"a TorchScript file's name ends in .ts, .torchscript or .pt (Triton), got {output}"
                          + (": use --format onnx" if suffix in SUFFIXES else ""))
    if output.is_dir():
        raise OutputError(f"output {output} is an existing directory: give a file name, e.g. {output / 'model'}"
                          f"{'.onnx' if fmt == 'onnx' else '.ts'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder of {output}: {exc.strerror or exc}") from exc
    check_writable_folder(output.parent)
    if output.exists() and not os.access(output, os.W_OK):
        raise OutputError(f"cannot write {output}: permission denied")
    check_not_input(output, reads)
    return output


def _check_memory(net, size: tuple[int, int], device) -> None:
    """Refuse a frame size whose tracing and check would take more memory than the machine has (the
    estimate ``cidstream run`` sizes its batches by, for CHECK_FRAMES frames)."""
    from .config import Config
    from .engine.memory import GB, SHARE, available_bytes, needs

    total = sum(needs(Config(), size, net.arch, batch=CHECK_FRAMES)["engine.batch"])
    have = available_bytes(device)
    if have is not None and total > SHARE * have:
        raise ConfigError(f"a {size[1]}x{size[0]} {net.arch} graph needs about {total / GB:.1f} GB to export and "
                          f"check, more than the {SHARE * have / GB:.1f} GB free on {device.type}: export a "
                          "smaller --height/--width" + (" or --dynamic" if net.arch != "dcp" else ""))


def build_metadata(loaded, net, fmt: str, size, dynamic: bool, precision: str, device, limits: dict) -> dict:
    import torch

    from . import __version__

    h, w = size
    dims = ["N", "H", "W", 3] if dynamic else ["N", h, w, 3]
    weights = None
    if loaded.weights is not None:
        weights = loaded.weights.name
    elif loaded.metadata.get("weights"):
        weights = loaded.metadata["weights"]   # "random (speed tests only)"
    norm = net.normalization
    return {
        "format": "cidstream-export", "format_version": 1,
        "model": loaded.name, "arch": net.arch, "config": net.config(),
        "weights": weights,
        "weights_metadata": {k: v for k, v in loaded.metadata.items() if k != "weights"},
        "normalization": {
            "input": norm.input, "output": norm.output,
            "inside_graph": "x = frames / 255, padded right/bottom to a multiple of "
                            f"{net.pad_multiple} (reflect), " + ("x * 2 - 1" if norm.input == "symmetric" else "as is")
                            + " into the network; its output " + ("(y + 1) / 2, " if norm.output == "tanh_unit" else "")
                            + "cropped back, clamped to [0, 1], * 255 + 0.5, truncated to uint8",
        },
        "input": {"name": "frames", "dtype": "uint8", "layout": "NHWC", "channels": "RGB", "shape": dims},
        "output": {"name": "dehazed", "dtype": "uint8", "layout": "NHWC", "channels": "RGB", "shape": dims},
        "input_size": None if dynamic else {"height": h, "width": w},
        "pad_multiple": net.pad_multiple,
        "min_side": limits["min_side"] if dynamic else 1,
        "max_short_side": limits["max_short_side"] if dynamic else None,
        "cidstream_version": __version__,
        "export": {
            "format": fmt, "dynamic": dynamic, "height": None if dynamic else h, "width": None if dynamic else w,
            "traced_at": [h, w], "precision": precision, "device": device.type,
            "exporter": "torch.onnx.export(dynamo=True)" if fmt == "onnx" else "torch.jit.trace",
            "opset": OPSET if fmt == "onnx" else None, "torch": torch.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def _readable_props(meta: dict) -> dict:
    """Flat keys for tools that list metadata (Netron, Triton's model config page...)."""
    text = lambda v: v if isinstance(v, str) else json.dumps(v, default=str)  # noqa: E731
    return {
        "model": text(meta["model"]), "arch": text(meta["arch"]), "weights": text(meta["weights"]),
        "training_phases": text(meta["weights_metadata"].get("training", {}).get("phases")),
        "normalization": text(meta["normalization"]),
        "input": text(meta["input"]), "output": text(meta["output"]),
        "cidstream_version": meta["cidstream_version"], "export": text(meta["export"]),
    }


def _export_onnx(graph, example, dynamic: bool, meta: dict, path: Path, debug: bool) -> None:
    import torch
    from torch.export import Dim

    from .models.exported import INPUT_NAME, METADATA_KEY, OUTPUT_NAME

    dims = {0: Dim("batch", min=1, max=4096)}
    if dynamic:
        dims.update({1: Dim.DYNAMIC, 2: Dim.DYNAMIC})
    chatter = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stdout if debug else chatter):
        if not debug:
            warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, (example,), None, dynamo=True, opset_version=OPSET,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes={"frames": dims}, external_data=False, optimize=True,
                                    custom_translation_table={builtins.round: _onnx_round})
    props = program.model.metadata_props
    props.update(_readable_props(meta))
    props[METADATA_KEY] = json.dumps(meta, default=str)
    program.model.producer_name = "cidstream"
    program.model.producer_version = meta["cidstream_version"]
    program.save(str(path), external_data=False)


def _export_torchscript(graph, example, meta: dict, path: Path, debug: bool) -> None:
    import torch

    from .models import DarkChannelPrior
    from .models.exported import TORCHSCRIPT_EXTRA

    net = graph.net
    if isinstance(net, DarkChannelPrior) and net.radius is None:
        # The tracer turns sizes into tensors, which round() cannot take: fix the radius DCP would
        # compute for this size (the same number; the trace is for this size only anyway).
        net.radius = max(4, round(min(example.shape[1:3]) / 18))
    with torch.no_grad(), warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(meta, default=str)})


def _verify(path: Path, graph, device, sizes: list) -> dict:
    """Run the written file (as cidstream run would) and the PyTorch graph on the same frames."""
    import numpy as np
    import torch

    from .models.exported import load_exported

    model = load_exported(path)
    run_on = model.use_device(device, explicit=False)
    worst = {}
    for h, w in sizes:
        frames = torch.from_numpy(_check_frames(h, w))
        with torch.inference_mode():
            ref = graph(frames.to(device)).cpu().numpy().astype(np.int16)
            got = model(frames.to(run_on)).cpu().numpy().astype(np.int16)
        worst[f"{w}x{h}"] = int(np.abs(ref - got).max())
    return worst


def export_model(spec: str, output: str | Path, fmt: str = "onnx", height: int | None = None,
                 width: int | None = None, dynamic: bool = False, half: bool = False, device: str = "cpu",
                 dcp: dict | None = None, random_init: bool = False, verify: bool = True,
                 debug: bool = False, config_file: str | None = None) -> dict:
    """Write ``spec`` (model name or weights path) as an ONNX/TorchScript graph; returns its metadata,
    with ``check`` (max abs difference to PyTorch per checked size) and ``notes`` added. The output is
    never one of the files it reads (the weights, ``config_file``)."""
    import torch

    from .engine.device import select_device
    from .models import DarkChannelPrior, ExportedModel, load_model
    from .models.exported import FramesGraph
    from .models.registry import bundled_weights

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}' (use {' or '.join(FORMATS)})")
    if dynamic and (height is not None or width is not None):
        raise ConfigError("--dynamic exports one graph for any frame size; it takes no --height/--width")
    if (height is None) != (width is None):
        raise ConfigError("give both --height and --width (or neither, for 640x360)")
    if height is not None and not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ConfigError(f"--height and --width must be from 1 to {MAX_SIDE}, got {height}x{width}")
    if dynamic and fmt == "torchscript":
        raise ConfigError("TorchScript files are traced at one frame size: --dynamic needs --format onnx")
    weights = bundled_weights(spec) or Path(spec)
    output = _check_output(Path(output), fmt, [weights] + ([config_file] if config_file else []))
    dev = select_device(device)
    loaded = load_model(spec, random_init=random_init, dcp=dcp)
    if isinstance(loaded.model, ExportedModel):
        raise WeightsError(f"{spec} is already an exported graph: export from the model name or weights file")
    if dynamic and isinstance(loaded.model, DarkChannelPrior):
        # Its guided-filter radius and airlight pick depend on the frame size; a traced-once graph gave up
        # to 4 levels off PyTorch at other sizes (tests/test_export.py), so dcp is exported per size.
        raise ConfigError("dcp cannot be exported with --dynamic: export each frame size with --height/--width")
    net = loaded.model.to(dev).eval().fuse_for_inference()
    notes = []
    precision = "fp32"
    if half:
        if net.low_precision_ok:
            net.half()
            precision = "fp16"
        else:
            notes.append(f"--half ignored: {net.arch} computes in fp32 (as in cidstream run)")
    graph = FramesGraph(net, half=precision == "fp16").eval()
    size = (height, width) if height is not None else DEFAULT_SIZE
    _check_memory(net, size, dev)
    limits = dynamic_limits(net)
    meta = build_metadata(loaded, net, fmt, size, dynamic, precision, dev, limits)
    # Batch 2 when tracing: torch.export would fix a batch of 1 as a constant.
    example = torch.from_numpy(_check_frames(*size)).to(dev)
    tmp = partial_path(output)
    try:
        if fmt == "onnx":
            _export_onnx(graph, example, dynamic, meta, tmp, debug)
        else:
            _export_torchscript(graph, example, meta, tmp, debug)
        check = {}
        if verify:
            sizes = [size]
            if dynamic:  # a second, odd size (padding, other shapes) within the graph's limits
                sizes.append(tuple(max(limits["min_side"], n * 3 // 4 + 1) for n in size))
            check = _verify(tmp, graph, dev, sizes)
        os.replace(tmp, output)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    if check and precision == "fp32" and max(check.values()) > 1:
        why = (" (dcp: where dark-channel values tie at the top-0.1 % cut, PyTorch and ONNX's TopK may pick different "
               "pixels for the airlight)" if net.arch == "dcp" else "")
        notes.append(f"the file differs from PyTorch by more than 1 level on the check frames{why}: "
                     "compare on your own frames before relying on it")
    if precision == "fp16" and fmt == "onnx" and dev.type == "cpu":
        notes.append("fp16 graph: onnxruntime's CPU provider runs it by casting to fp32 where it lacks fp16 kernels "
                     "(correct, not faster); fp16 pays off on GPU runtimes (TensorRT, onnxruntime-gpu)")
    return dict(meta, check=check, notes=notes, path=str(output), bytes=output.stat().st_size)


def register(sub) -> None:
    ex = sub.add_parser("export", help="write the dehazer as an ONNX or TorchScript graph for other runtimes",
                        description="Export a model (name or weights file) as one graph that takes uint8 RGB frames "
                                    "(N, H, W, 3) and returns them dehazed: normalisation, padding to the network's "
                                    "multiple, crop, clamp and rounding are inside, exactly as in 'cidstream run'. "
                                    "For DeepStream, TensorRT, Triton, OpenVINO or onnxruntime. The model, weights "
                                    "(and their training metadata), normalisation, layout and export settings are "
                                    "stored in the file. After writing, the file is run once and compared with "
                                    "PyTorch.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("--model", "-m", help="model name (cid-lite, dcp, cid) or weights file path [model.name]")
    ex.add_argument("--format", "-f", choices=FORMATS, help="onnx (default; from a .ts/.torchscript name: "
                                                            "torchscript)")
    ex.add_argument("-o", "--output", required=True,
                    help="file to write: NAME.onnx, or NAME.ts / NAME.pt (TorchScript)")
    ex.add_argument("--height", type=int, help="frame height of a fixed-size graph (default 360)")
    ex.add_argument("--width", type=int, help="frame width of a fixed-size graph (default 640)")
    ex.add_argument("--dynamic", action="store_true", help="any frame size (ONNX only; see the limits below)")
    ex.add_argument("--half", action="store_true",
                    help="fp16 weights and compute inside (input and output stay uint8); for GPU runtimes. "
                         "dcp stays fp32")
    ex.add_argument("--device", "-d", default="cpu", help="device to export on: cpu (default) or cuda; TorchScript "
                                                          "files run on the device they were exported on")
    ex.add_argument("--random-init", action="store_true",
                    help="a learned model without weights gets random ones (tests of the export path only)")
    ex.add_argument("--no-verify", action="store_true", help="skip running the written file against PyTorch")
    ex.add_argument("--config", "-c", help="YAML config file (model.dcp settings are exported with dcp)")
    ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set model.dcp.omega=0.9 (repeatable)")
    ex.add_argument("--debug", action="store_true", help="show tracebacks of errors and the exporter's output")
    ex.set_defaults(func=run_export)


def run_export(args, console) -> int:
    from .cli_config import make_config
    from .models.exported import SUFFIXES

    cfg = make_config(args)
    fmt = args.format or SUFFIXES.get(Path(args.output).suffix.lower(), "onnx")
    with console.status(f"exporting {cfg.model.name} to {fmt}"):
        result = export_model(cfg.model.name, args.output, fmt, args.height, args.width, args.dynamic, args.half,
                              args.device, dcp=vars(cfg.model.dcp), random_init=args.random_init,
                              verify=not args.no_verify, debug=args.debug, config_file=args.config)
    exp = result["export"]
    size = "any size" if exp["dynamic"] else f"{exp['width']}x{exp['height']}"
    console.print(f"wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB): {result['model']}"
                  f"{' (' + str(result['weights']) + ')' if result['weights'] else ''}, {fmt}, {size}, "
                  f"{exp['precision']}; input 'frames' / output 'dehazed': uint8 (N, H, W, 3) RGB", highlight=False)
    if result["check"]:
        checked = ", ".join(f"{k}: {v}" for k, v in result["check"].items())
        console.print(f"checked against PyTorch, max abs difference in levels: {checked}", highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    return 0
