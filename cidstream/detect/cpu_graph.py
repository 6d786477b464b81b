"""A detector's graph for a CPU runtime (onnxruntime or OpenVINO), made once from its PyTorch weights with
Ultralytics' own exporter and kept in the user's cache (cidstream.cpu_runtime.graphs_dir()).

A graph is exported in a temporary folder beside the cache's files and moved into place in one rename, so a
graph under its final name is always whole: two processes that make the same graph at once each install a
complete one (the last file wins; an OpenVINO folder already in place stays), and a reader never sees a
half-written one. A cached graph that does not load is removed and made again (see Detector._use_graph)."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from functools import partial
from pathlib import Path

import torch

from ..cpu_runtime import fingerprint, graphs_dir, say

# what detect.cpu_runtime auto takes, in order: OpenVINO ran YOLO11n fastest on the 2-core machines we measured
# (benchmarks/cpu_runtimes.py; docs/benchmarking.md "CPU runtimes")
FASTEST = ("openvino", "onnxruntime")
# Ultralytics' export format for each graph runtime
EXPORT_FORMATS = {"onnxruntime": "onnx", "openvino": "openvino"}
# Ultralytics' model format (AutoBackend) -> the runtime that runs it
FORMAT_RUNTIMES = {"pt": "torch", "onnx": "onnxruntime", "openvino": "openvino"}


def graph_path(state_dict: dict, names: dict, runtime: str, imgsz: int) -> Path:
    """Where the graph of these weights for ``runtime`` is kept: named by the weights' bytes, their class names,
    the input size and the versions that make it, so any change makes a new graph instead of reusing a stale one."""
    import ultralytics

    fmt = EXPORT_FORMATS[runtime]
    versions = [ultralytics.__version__]
    if fmt == "openvino":
        import openvino

        versions.append(openvino.__version__)
    name = f"detector-{fingerprint(state_dict, sorted(names.items()), fmt, int(imgsz), *versions)}"
    return graphs_dir() / (f"{name}.onnx" if fmt == "onnx" else f"{name}_openvino_model")


@contextlib.contextmanager
def quiet():
    """Keep what Ultralytics, torch's tracer and the converters say while exporting or loading out of our
    terminal: Ultralytics logs its errors to stdout, and the tracer warns on stderr. Failures still raise."""
    logger = logging.getLogger("ultralytics")
    disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled


def make_graph(weights: str | Path, runtime: str, imgsz: int, dest: Path) -> Path:
    """Export the Ultralytics .pt ``weights`` for ``runtime`` (dynamic batch and size) and install it at ``dest``.

    The weights are copied into a temporary folder first: Ultralytics writes an export beside its source."""
    from ultralytics import YOLO

    fmt = EXPORT_FORMATS[runtime]
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep(dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=".making-", dir=dest.parent))  # same file system: the move is one rename
    say(f"preparing the detector {Path(weights).name} for {runtime} (once; cached in {dest.parent})")
    threads = torch.get_num_threads()  # Ultralytics' device selection changes torch's thread count
    try:
        copy = tmp / "model.pt"  # a neutral name: Ultralytics swaps some YOLOv5 file names for others
        shutil.copyfile(weights, copy)
        extra = {"simplify": False} if fmt == "onnx" else {}
        with quiet():
            out = YOLO(str(copy), task="detect").export(format=fmt, dynamic=True, imgsz=imgsz, device="cpu",
                                                        batch=1, half=False, int8=False, verbose=False, **extra)
        out = Path(out)
        if not out.exists():
            raise FileNotFoundError(f"the {fmt} export wrote nothing at {out}")
        try:
            os.replace(out, dest)  # a file replaces a file atomically; a folder moves only where none is yet
        except OSError:
            if not dest.exists():
                raise
            # another process installed the same graph meanwhile: keep theirs
        return dest
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep(folder: Path, older_than_s: float = 6 * 3600) -> None:
    """Remove what an export or a removal killed midway left behind (long after any export would have ended)."""
    import time

    for entry in folder.glob(".[mr]*-*"):
        with contextlib.suppress(OSError):
            if entry.name.startswith((".making-", ".removing-")) and time.time() - entry.stat().st_mtime > older_than_s:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def remove_graph(path: Path) -> None:
    """Remove a cached graph (a file, or an OpenVINO folder: renamed away first, so no one loads half of it)."""
    if path.is_dir():
        away = path.with_name(f".removing-{os.getpid()}-{path.name}")
        try:
            os.replace(path, away)
        except OSError:
            away = path
        shutil.rmtree(away, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def runtime_of(model) -> str:
    """The runtime an Ultralytics model (a module, or the path of an exported model) runs on."""
    if isinstance(model, torch.nn.Module):
        return "torch"
    try:
        from ultralytics.nn.autobackend import AutoBackend

        fmt = AutoBackend._model_type(str(model))
    except Exception:
        return "unknown"
    return FORMAT_RUNTIMES.get(fmt, fmt)


def match_threads(backend, path: str | Path, threads: int) -> None:
    """Run a loaded graph (Ultralytics' ONNX or OpenVINO backend, on a CPU) on ``threads`` threads, the number
    torch uses: Ultralytics leaves both runtimes at their own default (all physical cores), which oversubscribes
    a CPU that a run shares among workers (each worker sets torch's thread count to its share). An onnxruntime
    session is made again for it (Ultralytics takes no session options); OpenVINO recompiles only where its
    thread count differs."""
    if getattr(backend, "_cidstream_threads", None) == threads:
        return
    device = getattr(backend, "device", None)
    if not isinstance(device, torch.device) or device.type != "cpu":
        return
    if hasattr(backend, "session") and getattr(backend, "format", "onnx") == "onnx":  # onnxruntime
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # its threads wait passively between runs, as torch's do here (see tests/test_cpu_threads.py): spinning,
        # they take the CPU from the dehazer that runs next (measured: its work 5-8% slower, the detector 3-9% faster)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = backend.session.get_providers()
        if providers != ["CPUExecutionProvider"]:
            return
        backend.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        backend.output_names = [x.name for x in backend.session.get_outputs()]
    elif hasattr(backend, "ov_compiled_model"):  # OpenVINO
        compiled = backend.ov_compiled_model
        on_cpu = list(compiled.get_property("EXECUTION_DEVICES")) == ["CPU"]
        if getattr(backend, "read_model", None) is not None or not on_cpu:
            return  # a static-shape INT8 model Ultralytics recompiles per shape, or not on the CPU: as it is
        if int(compiled.get_property("INFERENCE_NUM_THREADS")) != threads:
            import openvino as ov

            p = Path(path)
            xml = p if p.is_file() else next(p.glob("*.xml"))
            core = ov.Core()
            config = {**backend.compile_model.keywords.get("config", {}), "INFERENCE_NUM_THREADS": threads}
            backend.compile_model = partial(core.compile_model, device_name="CPU", config=config)
            backend.ov_compiled_model = backend.compile_model(core.read_model(model=str(xml),
                                                                              weights=str(xml.with_suffix(".bin"))))
    else:
        return
    backend._cidstream_threads = threads


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__

