"""Which runtime runs a network on a CPU: PyTorch, or a graph of it in OpenVINO or onnxruntime.

On the 2-core machines we measured (benchmarks/cpu_runtimes.py, docs/benchmarking.md) both graph runtimes run
cid-lite's network and the YOLO detector well ahead of PyTorch at fp32 with the same outputs; ``auto`` takes
the one measured fastest for each network that is installed. The graphs are made from the loaded weights on
first use and kept in the user's cache (named by the weights and versions), so a run pays for an export once.
Graph files are data: loading one runs no code from it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import torch

from .config import CPU_RUNTIMES
from .errors import ConfigError
from .user_cache import cache_root

RUNTIMES = CPU_RUNTIMES.values  # the words of engine.cpu_runtime and detect.cpu_runtime (config.py)


def graphs_dir() -> Path:
    """Where graphs made for a CPU runtime are kept."""
    return cache_root() / "cpu-graphs"


def installed(runtime: str) -> bool:
    return runtime == "torch" or importlib.util.find_spec(runtime) is not None


def resolve_cpu_runtime(name: str, device: torch.device | str, precision: str = "fp32",
                        order: tuple[str, ...] = ("onnxruntime", "openvino")) -> str:
    """'torch', 'openvino' or 'onnxruntime' for a network on ``device`` at ``precision``; ``auto`` takes the
    first of ``order`` that is installed: each network passes the order measured for it (FASTEST beside its
    graph code), and the default puts the dependency first.

    Graph runtimes take over only on a CPU at fp32: on CUDA, and for bf16 (CPUs with native bf16 pick it under
    precision auto), PyTorch runs as configured."""
    name = (name or "auto").lower()
    if name not in RUNTIMES:
        raise ConfigError(f"unknown CPU runtime '{name}' (use {', '.join(RUNTIMES)})")
    if name != "auto" and not installed(name):
        raise ConfigError(f"CPU runtime '{name}' is not installed: pip install {name}, or use auto or torch")
    if torch.device(device).type != "cpu" or precision != "fp32" or name == "torch":
        return "torch"
    if name == "auto":
        return next(r for r in order if installed(r))
    return name


def fingerprint(*parts) -> str:
    """A short hash naming a cached graph: the weights (tensors' bytes), its input size and the versions that
    made it, so any change makes a new file instead of reusing a stale one."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):  # a state dict, or a config
            for key, value in sorted(part.items()):
                h.update(str(key).encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes() if isinstance(value, torch.Tensor)
                         else repr(value).encode())
        else:
            h.update(repr(part).encode())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:20]


def say(message: str) -> None:
    """A line about making a graph, on stderr (stdout stays the run's)."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    say(f"warning: {message}")
