"""One forward pass on a zero input, for counters that observe a network through hooks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def probe_forward(model: nn.Module, in_chans: int, h: int, w: int, handles: Iterable[RemovableHandle]) -> None:
    """Runs ``model`` once on a zero ``[1, in_chans, h, w]`` input on its parameters' device
    and dtype, without autograd and in eval mode (a train-mode pass would move BatchNorm
    running statistics), then restores the mode and removes ``handles``."""
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(1, in_chans, h, w, device=p.device if p is not None else None,
                        dtype=p.dtype if p is not None else None)
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
