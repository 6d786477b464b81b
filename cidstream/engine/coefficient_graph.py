"""cid-lite's network (``CIDLite.coefficients``) as a graph in OpenVINO or onnxruntime, for a CPU.

Only the network moves. The pooling to the working size before it, and the temporal smoothing, guided
upsample and affine apply after it stay in torch: video keeps its smoothing (an exported whole graph loses it)
and the dehazed frames stay within a level of torch's. One graph with free sizes takes every working size that
is a multiple of 16 (frames with a short side under 720, padded: image sets of many sizes need no export per
size); larger frames are pooled to sizes where cid-lite's resizes are exact only as traced, so each of those
gets a graph of its own. Graphs are kept in the user cache and checked against torch each time a process loads
one; one that fails leaves its sizes to torch with a warning.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..cpu_runtime import fingerprint, graphs_dir, say, warn
from ..io.atomic import partial_path

OPSET = 18
# what engine.cpu_runtime auto takes, in order: onnxruntime ran this graph faster than OpenVINO on the 2-core
# machines we measured (benchmarks/cpu_runtimes.py; docs/benchmarking.md "CPU runtimes")
FASTEST = ("onnxruntime", "openvino")
MULTIPLE = 16      # working sizes the graph with free sizes is exact for (cid-lite's total stride)
TOLERANCE = 1e-3   # largest difference from torch's (a, b) maps a loaded graph may show (measured: ~2e-6)


class _Coefficients(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, work: torch.Tensor) -> torch.Tensor:
        return self.net.coefficients(work)[0]


class CoefficientGraph:
    """Callable like ``net.coefficients(work)[0]``: float (N, 3, h, w) working frames -> (N, 6, h/4, w/4) maps."""

    def __init__(self, net, runtime: str):
        self.net, self.runtime = net, runtime
        self._name = f"cid-lite-{fingerprint(net.state_dict(), net.config(), OPSET)}"   # one file for both runtimes
        self._runs: dict[object, object] = {}   # graph key -> runner, or None: torch for its sizes

    def __call__(self, work: torch.Tensor) -> torch.Tensor:
        key = self.key(*work.shape[-2:])
        if key not in self._runs:
            self._runs[key] = self._prepare(work, key)
        run = self._runs[key]
        if run is None:
            return self.net.coefficients(work)[0]
        return torch.from_numpy(run(work.float().contiguous().numpy()))

    @staticmethod
    def key(h: int, w: int):
        """'any' for the graph with free sizes, else the (h, w) a graph of its own is traced at."""
        return "any" if h % MULTIPLE == 0 and w % MULTIPLE == 0 else (h, w)

    def path(self, key) -> Path:
        return graphs_dir() / (f"{self._name}-any.onnx" if key == "any" else f"{self._name}-{key[1]}x{key[0]}.onnx")

    def _prepare(self, work: torch.Tensor, key):
        with torch.inference_mode(False), torch.no_grad():
            example = work[:1].float().contiguous().clone()   # a normal tensor: export cannot trace inference ones
            reference = self.net.coefficients(example)[0].numpy()
        path = self.path(key)
        error = None
        for attempt in range(2):   # a cached file that does not load or match is made again, once
            try:
                if not path.is_file():
                    self._export(example, path, free_size=key == "any")
                run = self._load(path)
                diff = float(np.abs(run(example.numpy()) - reference).max())
                if not diff <= TOLERANCE:
                    raise ValueError(f"its maps differ from torch's by {diff:.2g}")
                return run
            except Exception as exc:  # noqa: BLE001  any failure leaves this size to torch, never the run
                error = exc
                with contextlib.suppress(OSError):
                    path.unlink()
        sizes = f"{work.shape[-1]}x{work.shape[-2]} working frames" + (" and other multiples of 16" if key == "any" else "")
        warn(f"cid-lite runs in torch for {sizes}: its {self.runtime} graph failed ({type(error).__name__}: "
             f"{error}); engine.cpu_runtime torch silences this")
        return None

    def _export(self, example: torch.Tensor, path: Path, free_size: bool) -> None:
        from torch.export import Dim

        h, w = example.shape[-2:]
        dims = {0: Dim("batch", min=1, max=4096)}
        if free_size:
            dims.update({2: MULTIPLE * Dim("h16", min=1, max=512), 3: MULTIPLE * Dim("w16", min=1, max=512)})
        what = "working frames of sides that are multiples of 16" if free_size else f"{w}x{h} working frames"
        say(f"preparing cid-lite for {self.runtime}, {what} (once per weights; kept in {path.parent})")
        t0 = time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        pair = example.expand(2, -1, -1, -1).contiguous()   # a batch of 1 would fix the batch size
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_Coefficients(self.net), (pair,), None, dynamo=True, opset_version=OPSET,
                                        input_names=["work"], output_names=["ab"],
                                        dynamic_shapes={"work": dims},
                                        external_data=False, optimize=True)
        tmp = partial_path(path)
        try:
            program.save(str(tmp), external_data=False)
            os.replace(tmp, path)   # whole or absent, also with two processes making it at once
        finally:
            tmp.unlink(missing_ok=True)
        say(f"  made in {time.perf_counter() - t0:.0f} s")

    def _load(self, path: Path):
        threads = max(1, torch.get_num_threads())
        if self.runtime == "openvino":
            import openvino as ov

            compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
            # the output buffer is reused by the next call, and temporal smoothing keeps the maps: copy them
            return lambda x: np.array(compiled([x])[0], copy=True)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # its threads wait passively between runs, as torch's do: spinning, they slow the torch work that follows
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"work": x})[0]
