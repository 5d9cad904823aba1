"""One small call, forward and backward, of every kernel: the program compute-sanitizer runs.

``python -m istd_kernels.tools.gpu_check.sanitize_calls [--device cuda] [--backends cuda triton]``
prints one ``ok`` line per call and, last, ``sanitize_calls: all N calls ran``. Sizes are odd
and tiny so that tile edges and masks are exercised and the sanitizer's slow-down stays small.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from istd_kernels import use_backend
from istd_kernels.ops import component_stats, connected_components, depthwise_conv2d, measure_components
from models import LCRNet

DONE = "sanitize_calls: all {} calls ran"
#: Backends of the components ops (they have no Triton kernel).
COMPONENT_BACKENDS = ("torch", "cpp", "cuda")


def _depthwise(device: str, backend: str, dtype: torch.dtype, k: int, stride: int, dilation: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 19, 23, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(5, 1, k, k, generator=g).to(device, dtype)
    b = torch.randn(5, generator=g).to(device, dtype)
    leaves = [t.requires_grad_() for t in (x, w, b)]
    y = depthwise_conv2d(*leaves, stride, dilation * (k // 2), dilation, backend=backend)
    torch.autograd.grad(y, leaves, torch.ones_like(y))


def _lcrnet(device: str, backend: str) -> None:
    # Two levels of C2FBlocks: hlk_conv, multiscale_maxpool and split_attention, both passes.
    torch.manual_seed(0)
    model = LCRNet(channels=(16, 32), depths=(1, 1)).to(device)
    x = torch.rand(1, 1, 28, 36, device=device)
    with use_backend(backend):
        model(x, return_logits=True).sum().backward()


def _components(device: str, backend: str) -> None:
    mask = torch.rand(2, 37, 41, generator=torch.Generator().manual_seed(0)) > 0.6
    mask = mask.to(device)
    labels, counts = connected_components(mask, backend=backend)
    component_stats(labels, counts, backend=backend)
    measure_components(mask, backend=backend)


def calls(device: str, backends: list[str]) -> list[tuple[str, Callable[[], None]]]:
    """``(name, call)`` for every kernel of every backend in ``backends``."""
    out = []
    for b in backends:
        out += [(f"{b} depthwise float32 3x3", lambda b=b: _depthwise(device, b, torch.float32, 3, 1, 1)),
                (f"{b} depthwise float16 7x7 stride 2 dilation 2",
                 lambda b=b: _depthwise(device, b, torch.float16, 7, 2, 2)),
                (f"{b} LCRNet forward+backward", lambda b=b: _lcrnet(device, b))]
        if b in COMPONENT_BACKENDS:
            out.append((f"{b} connected_components, component_stats, measure_components",
                        lambda b=b: _components(device, b)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backends", nargs="+", default=["cuda", "triton"])
    args = parser.parse_args(argv)
    todo = calls(args.device, args.backends)
    for name, fn in todo:
        fn()
        if args.device == "cuda":
            torch.cuda.synchronize()  # an asynchronous fault is reported against this call
        print("ok", name, flush=True)
    print(DONE.format(len(todo)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
