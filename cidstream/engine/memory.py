"""What a run's batches and queues take in memory, checked against what the machine has before any frame
is processed: a setting like engine.batch 100000 or detect.imgsz 4096 would otherwise take the machine's
memory from everything else, or fail part-way with an allocation error."""
from __future__ import annotations

import torch

from ..config import setting
from ..errors import ConfigError

SHARE = 0.8  # a run may take this share of the memory available when it starts (the rest: its own code, others)
# Float32 copies of a frame that each model holds per frame at its peak, measured on a CPU at 640x360 in
# batches of 4 and 16: dcp 5.5, cid-lite 12, cid 44. Other models (exported graphs): cid's, the largest.
FLOAT_COPIES = {"dcp": 6, "cid-lite": 12, "cid": 45}
# The detector at its peak, per letterboxed pixel: yolo11n measured 115-165 bytes on a CPU (imgsz 640 to 4096),
# plus its attention block's float32 matrix and softmax over the stride-32 cells, quadratic in the pixel count
# (8 bytes per pair of cells: 0.7 GB per frame at imgsz 4096). Larger detectors need more: this is a floor.
DETECTOR_BYTES_PER_PIXEL = 140
ATTENTION_BYTES_PER_PAIR = 8
HINTS = {"engine.batch": "--batch", "detect.imgsz": "detect.imgsz", "input.queue_size": "input.queue_size",
         "output.queue_size": "output.queue_size"}
GB = 1e9


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a run on ``device`` now: the GPU's free memory on CUDA, else the host's available
    memory (psutil, else /proc/meminfo); None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def needs(cfg, size: tuple[int, int] | None, arch: str = "", detect: bool = False, compare: bool = False,
          batch: int | None = None) -> dict[str, tuple[int, int]]:
    """Bytes (on the device, on the host) that each setting sizes, for frames of ``size`` (h, w); without a
    size (a camera not yet connected, images of any size) only the detector's share, at its largest (square)."""
    from ..detect.detector import letterbox_params, stride_multiple

    n = cfg.engine.batch if batch is None else batch
    out: dict[str, tuple[int, int]] = {}
    if size:
        frame = 3 * size[0] * size[1]  # one RGB frame, uint8
        copies = FLOAT_COPIES.get(arch, max(FLOAT_COPIES.values()))
        # the batch on the device: raw and dehazed frames and the model's float copies; its frames on the host
        out["engine.batch"] = (n * frame * (2 + 4 * copies), n * frame)
        out["input.queue_size"] = (0, cfg.input.queue_size * frame)  # decoded frames waiting for the model
        # results waiting for the encoder (raw ones too when compared): output.queue_size frames, or one batch
        waiting = max(n, cfg.output.queue_size) * frame * (2 if compare else 1)
        key = "engine.batch" if n >= cfg.output.queue_size else "output.queue_size"
        dev, host = out.get(key, (0, 0))
        out[key] = (dev, host + waiting)
    if detect:
        imgsz = stride_multiple(cfg.detect.imgsz)
        _, (nh, nw), (top, bottom, left, right) = letterbox_params(*(size or (imgsz, imgsz)), imgsz)
        pixels = (nh + top + bottom) * (nw + left + right)
        out["detect.imgsz"] = (n * (pixels * DETECTOR_BYTES_PER_PIXEL
                                    + (pixels // 1024) ** 2 * ATTENTION_BYTES_PER_PAIR), 0)
    return out


def check_memory(cfg, device: torch.device, size: tuple[int, int] | None = None, arch: str = "",
                 detect: bool = False, compare: bool = False, batch: int | None = None) -> None:
    """Refuse (ConfigError) settings whose batches and queues need more than SHARE of the memory available:
    on CUDA the device's part against the GPU's free memory and the queues against the host's; on a CPU
    all of it against the host's. ``batch`` overrides engine.batch where a command sizes its batches otherwise."""
    size = size if size and all(size) else None
    n = cfg.engine.batch if batch is None else batch
    parts = needs(cfg, size, arch, detect, compare, n)
    if device.type == "cuda":  # the batch lies on the GPU, the queues on the host
        pools = {device: {k: d for k, (d, _) in parts.items()},
                 torch.device("cpu"): {k: h for k, (_, h) in parts.items()}}
    else:
        pools = {device: {k: d + h for k, (d, h) in parts.items()}}
    for where, share in pools.items():
        total = sum(share.values())
        have = available_bytes(where) if total else None
        if have is None or total <= SHARE * have:
            continue
        culprit = max(share, key=share.get)
        what = f"{culprit} {setting(cfg, culprit)}"
        if culprit == "detect.imgsz":
            what += f" in batches of {n} frames" if n > 1 else " one frame at a time"
        if size:
            what += f" at {size[1]}x{size[0]}"
        room = (f"on {where} ({SHARE:.0%} of the {have / GB:.1f} GB free there)" if where.type == "cuda" else
                f"here ({SHARE:.0%} of the {have / GB:.1f} GB this machine has available)")
        raise ConfigError(f"{what} needs about {total / GB:.1f} GB of memory, more than the {SHARE * have / GB:.1f} "
                          f"GB a run may take {room}: use a smaller {HINTS[culprit]}")
