"""Device and precision choice, done once so every stage agrees."""
from __future__ import annotations

import torch

from ..errors import DeviceError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_available() -> bool:
    """The one place cidstream asks whether a CUDA GPU is there (the batch engines, training and the benchmarks
    ask through here; tests/test_import_map.py holds it to that)."""
    return torch.cuda.is_available()


def device_word(name) -> str:
    """A device setting as every rule here reads it: none given is auto; case and spaces do not count."""
    return str(name or "auto").strip().lower()


def is_auto(name) -> bool:
    """Whether a device setting leaves the choice to select_device (auto, or none given)."""
    return device_word(name) == "auto"


def means_cuda(name: str, gpus: float | None = None) -> bool:
    """Whether a device setting (auto, cpu, cuda, cuda:N) runs on a GPU: here, or where ``gpus`` GPUs are (a Ray
    cluster's count; auto takes one if there is any). Existence is select_device's check."""
    if is_auto(name):
        return cuda_available() if gpus is None else gpus > 0
    return device_word(name).startswith("cuda")


def select_device(name: str = "auto") -> torch.device:
    asked, name = str(name).strip(), device_word(name)
    if name == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not cuda_available():
            raise DeviceError(f"device '{asked}' requested but no CUDA GPU is available (use --device cpu or auto)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise DeviceError(f"device '{asked}' requested but this machine has {count} CUDA GPU(s): {have}")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device '{name}' (use auto, cpu, cuda or cuda:N)")
    return device


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_precision(requested: str, device: torch.device) -> str:
    """Resolve 'auto'; refuse a precision the device cannot run rather than silently slowing down."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_supports_bf16() else "fp32"
    if requested not in DTYPES:
        raise DeviceError(f"unknown precision '{requested}' (use auto, fp32, bf16 or fp16)")
    if requested == "fp16" and device.type == "cpu":
        raise DeviceError("fp16 is not supported on the CPU here (use bf16, fp32 or auto)")
    return requested
