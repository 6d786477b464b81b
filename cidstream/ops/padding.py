"""Padding frames to a network's size multiple without artificial edges."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> torch.Tensor:
    """Pad right/bottom so H and W are multiples of ``multiple`` and at least ``min_size``.

    Reflection where the frame is large enough (no artificial edges for the network),
    replication otherwise. The caller crops back, so no pixel is lost.
    """
    h, w = x.shape[-2:]
    if not (isinstance(h, int) and isinstance(w, int)):
        # Symbolic sizes (a graph exported with --dynamic): the graph needs frames of at least
        # max(multiple, min_size) pixels per side, and for those this is the branch below (reflect).
        return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="reflect")

    def target(n: int) -> int:
        n = max(n, min_size)
        return -(-n // multiple) * multiple

    ph, pw = target(h) - h, target(w) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
