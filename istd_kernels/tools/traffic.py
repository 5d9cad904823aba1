"""Memory-traffic model: the bytes an op moves to and from device memory, fused vs unfused.

The model counts each kernel reading its inputs once and writing its outputs once (perfect
on-chip reuse inside a kernel, none between kernels), which is what a well-tiled kernel
approaches on a GPU and what separates a fused chain from an unfused one. Halo re-reads of
neighbouring tiles are assumed to hit in cache. Weights are counted once per kernel.

Divide the bytes by a measured time to get the achieved bandwidth; compare with the device's
peak to see how close a memory-bound kernel runs.

``python -m istd_kernels.tools.traffic`` prints the table for LCRNet's HLKConv shapes.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

from ..ops.hlk_conv import decompose

#: LCRNet's HLKConv shapes at a 512x512 input: (channels, side) per level.
LCRNET_LEVELS = ((16, 512), (32, 256), (64, 128), (64, 64))


@dataclass(frozen=True)
class Traffic:
    """Bytes read and written, with the per-kernel steps that make them up."""

    steps: tuple[tuple[str, int, int], ...]  # (kernel, bytes read, bytes written)

    @property
    def read(self) -> int:
        return sum(r for _, r, _ in self.steps)

    @property
    def written(self) -> int:
        return sum(w for _, _, w in self.steps)

    @property
    def total(self) -> int:
        return self.read + self.written

    @property
    def kernels(self) -> int:
        return len(self.steps)


def _steps(plane_bytes: int, dtype_bytes: int, spec: Iterable[tuple[str, float, float, int]]) -> Traffic:
    # spec rows: (kernel, activation planes read, planes written, weight elements read)
    return Traffic(tuple((name, int(round(reads * plane_bytes)) + weights * dtype_bytes,
                          int(round(writes * plane_bytes))) for name, reads, writes, weights in spec))


def hlk_conv(n: int, c: int, h: int, w: int, k_size: int = 7, cout: int | None = None, groups: int = 1,
             dtype_bytes: int = 4, fused: bool = True, direction: str = "forward") -> Traffic:
    """Modeled traffic of one HLKConv on ``[n, c, h, w]`` input.

    Args:
        cout: output channels (default ``c``). groups: pointwise groups.
        dtype_bytes: 4 for float32, 2 for float16/bfloat16.
        fused: the fused op (reads x, writes y) or the unfused eager chain
            (conv0, conv_spatial, cat, conv1, as ``nn.Conv2d`` layers run it).
        direction: ``"forward"``, ``"backward"`` (all grads) or ``"saved"`` (the
            activations kept for the backward, in ``written``; ``read`` is 0).

    The fused backward is counted as the Triton backend runs it: one kernel that reads
    ``grad_y`` and ``x`` and writes ``grad_x``, and one that reads them again for the weight
    gradients (partials are per tile and negligible).
    """
    cout = c if cout is None else cout
    k1, k2, _ = decompose(k_size)
    plane = n * h * w * dtype_bytes  # one channel of one activation
    w0, w1, wpw = c * (k1 * k1 + 1), c * (k2 * k2 + 1), cout * (2 * c // groups + 1)  # with biases
    if direction == "saved":
        kept = c if fused else 4 * c  # unfused: x (conv0), a (conv_spatial), cat (conv1)
        return Traffic((("saved activations", 0, kept * plane),))
    if direction == "forward":
        if fused:
            spec = [("hlk_conv", c, cout, w0 + w1 + wpw)]
        else:
            spec = [("conv0", c, c, w0), ("conv_spatial", c, c, w1), ("cat", 2 * c, 2 * c, 0),
                    ("conv1", 2 * c, cout, wpw)]
    elif direction == "backward":
        if fused:
            spec = [("hlk_conv_backward grad_x", cout + c, c, w0 + w1 + wpw),
                    ("hlk_conv_backward weights", cout + c, 0, w0 + w1 + wpw)]
        else:
            spec = [("conv1 grad_input", cout, 2 * c, wpw), ("conv1 grad_weight", cout + 2 * c, 0, 0),
                    ("conv_spatial grad_input", c, c, w1), ("conv_spatial grad_weight", 2 * c, 0, 0),
                    ("grad_a accumulate", 2 * c, c, 0), ("conv0 grad_input", c, c, w0),
                    ("conv0 grad_weight", 2 * c, 0, 0)]
    else:
        raise ValueError(f"direction must be 'forward', 'backward' or 'saved'; got {direction!r}")
    return _steps(plane, dtype_bytes, spec)


def lcrnet_table(batch: int = 8, dtype_bytes: int = 4, k_size: int = 7):
    """Rows (channels, side, direction, unfused bytes, fused bytes, fused/unfused) for LCRNet."""
    rows = []
    for c, side in LCRNET_LEVELS:
        for direction in ("forward", "backward", "saved"):
            un = hlk_conv(batch, c, side, side, k_size, dtype_bytes=dtype_bytes, fused=False, direction=direction)
            fu = hlk_conv(batch, c, side, side, k_size, dtype_bytes=dtype_bytes, fused=True, direction=direction)
            rows.append((c, side, direction, un.total, fu.total, fu.total / un.total))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype-bytes", type=int, default=4, choices=(2, 4, 8))
    parser.add_argument("--k-size", type=int, default=7)
    args = parser.parse_args(argv)
    print("| C | H=W | pass | unfused MB | fused MB | fused/unfused |")
    print("|---|---|---|---|---|---|")
    for c, side, direction, un, fu, ratio in lcrnet_table(args.batch, args.dtype_bytes, args.k_size):
        print(f"| {c} | {side} | {direction} | {un / 1e6:.1f} | {fu / 1e6:.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def dlc_attention(n: int, c: int, h: int, w: int, groups: int = 4, radix: int = 4, dtype_bytes: int = 4,
                  fused: bool = True) -> Traffic:
    """Modeled forward traffic of one DLCAttention on ``[n, c, h, w]``.

    Reference (eager): V and the group transform (1x1 convs), the score HLKConv (unfused
    chain), per branch a gather copy, a max-pool, an unfused HLKConv at low resolution, a
    nearest upsampling and the weighted accumulation; the softmax, then ``SiLU(A) * SiLU(V)``
    as three element-wise kernels. Fused: the 1x1 convs, fused HLKConvs, one pooling kernel
    that reads ``u`` once, and one split-attention kernel that reads the low-resolution
    branches, the logits, ``u`` and ``v`` and writes ``Z``.
    """
    plane = n * h * w * dtype_bytes
    logits = groups * radix
    scales = [2 ** j for j in range(1, radix + 1)]
    branch_c = c // radix  # channels of one branch over all groups
    steps = [("v 1x1", c, c, c * c + c), ("transform 1x1", c, c, c * c // groups + c)]

    def hlk(name, cin, cout, area):
        t = hlk_conv(n, cin, h, w, 7, cout, groups, dtype_bytes, fused)
        return [(f"{name} {s}", r / plane * area, wr / plane * area, 0) for s, r, wr in
                ((s, r, wr) for s, r, wr in t.steps)]

    steps += hlk("score", c, logits, 1.0)
    if fused:
        steps.append(("multiscale_maxpool", c, sum(branch_c / s ** 2 for s in scales), 0))
        for s in scales:
            steps += hlk(f"branch/{s}", branch_c, c, 1 / s ** 2)
        steps.append(("split_attention", sum(c / s ** 2 for s in scales) + logits + 2 * c, c, 0))
    else:
        for s in scales:
            steps += [(f"gather/{s}", branch_c, branch_c, 0), (f"max_pool/{s}", branch_c, branch_c / s ** 2, 0)]
            steps += hlk(f"branch/{s}", branch_c, c, 1 / s ** 2)
            steps += [(f"upsample/{s}", c / s ** 2, c, 0), (f"weight*branch/{s}", c + logits, c, 0),
                      (f"accumulate/{s}", 2 * c, c, 0)]
        steps += [("logits/temperature", logits, logits, 0), ("softmax", logits, logits, 0),
                  ("silu(A)", c, c, 0), ("silu(v)", c, c, 0), ("product", 2 * c, c, 0)]
    # Weights are small next to the activations; they are left out of the HLK steps here.
    return Traffic(tuple((name, int(round(r * plane)) + wt * dtype_bytes, int(round(wr * plane)))
                         for name, r, wr, wt in steps))
