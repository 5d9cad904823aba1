"""Where ``auto`` prefers one path to another, measured: the registry's preferences.

``supports()`` of a record says what CAN run a call; the preferences here say what ``auto``
SHOULD run, where a path measured slower than another that can run the same call
(:func:`istd_kernels.ops._dispatch.prefer`). They bind ``auto`` only: a backend named with
``backend=``, ``use_backend()`` or ``ISTD_BACKEND`` runs wherever its ``supports`` takes the
call. ``python -m istd_kernels.info --explain OP`` prints the preference that skipped a backend.
"""

from __future__ import annotations

from . import _dispatch
from .depthwise import OP as DEPTHWISE
from .group_norm import CPP_MIN_ELEMENTS
from .group_norm import OP as GROUP_NORM
from .hlk_conv import OP as HLK_CONV
from .residual import OP as RESIDUAL

# The CPU (docs/performance.md, "The default path on the CPU"): on the project's 2-core x86-64
# machine the fused cpp HLKConv forward lost to oneDNN's convolution chain above 16x16 (its
# per-pixel pointwise step cannot match a blocked matmul), while the composed cpp path (the cpp
# depthwise kernels, then two batched matmuls) measured faster than both at every LCRNet
# HLKConv shape from 2x2 to 256x256 (forward, one thread, in-process medians: 1.05-1.5x the
# fused kernel up to 16x16 and 2.4-9.7x above, 1.3-2.5x the torch chain). The cpp
# split_attention, multiscale_maxpool and depthwise kernels have no preference: they measured
# at least as fast as PyTorch at every LCRNet level.
_dispatch.prefer(HLK_CONV, "cpu", "cpp-composed", over=("cpp",),
                 why="the cpp depthwise kernels with batched matmuls measured faster than the fused cpp HLKConv (and "
                     "than oneDNN's convolutions) at every LCRNet shape on the CPU (docs/performance.md)")

# The cpp group norm + SiLU measured faster than ATen's from 64 x 64 x 64 elements up at
# LCRNet's levels (forward, 2 threads; the norm alone about level; docs/performance.md); below
# CPP_MIN_ELEMENTS ATen won, and calls that are traced, transformed, profiled or recorded by
# autograd keep torch (the cpp path is an autograd.Function: a graph break under
# torch.compile, and its backward is ATen's).
_dispatch.prefer(GROUP_NORM, "cpu", "torch", over=("cpp",),
                 why=f"ATen's group norm for calls below {CPP_MIN_ELEMENTS} elements or not plain eager without "
                     "autograd (the cpp kernel measured faster only for the others; docs/performance.md)",
                 when=lambda plain=True, elements=CPP_MIN_ELEMENTS, **_: not plain or elements < CPP_MIN_ELEMENTS)

# The cpp residual is an autograd.Function too (a graph break under torch.compile), and with
# matching layouts addcmul is as fast; auto takes it for plain eager calls with a channels_last y
# (1.87 -> 0.43 ms at C16 256 x 256; docs/performance.md).
_dispatch.prefer(RESIDUAL, "cpu", "torch", over=("cpp",),
                 why="torch.addcmul unless the call is plain eager without autograd and y is channels_last (the "
                     "cpp path is an autograd.Function; it measured faster only for mixed layouts)",
                 when=lambda plain=True, channels_last_y=False, **_: not plain or not channels_last_y)

# CUDA (benchmarks/results/nvidia-h200/2026-12-04-machine/report.md: H200, torch 2.11, Triton
# 3.6, forward float32 at batch 8 on LCRNet's four levels, medians of 7; backward was not
# measured on a GPU): depthwise 3x3 and dilation-2 convolutions ran at 0.15-0.54x (cuda) and
# 0.06-0.72x (triton) of F.conv2d's speed, the fused HLKConv at 0.22-0.40x (cuda) and
# 0.16-0.56x (triton) of the nn.Conv2d chain; so cuDNN runs them. split_attention and
# multiscale_maxpool keep the cuda kernels: with them LCRNet's forward took 207 ms against
# eager's 231 ms (1.11x), while triton's 257 ms lost.
_H200 = "benchmarks/results/nvidia-h200/2026-12-04-machine/report.md; forward float32 only, backward not measured"
_dispatch.prefer(DEPTHWISE, "cuda", "torch", over=("cuda", "triton"),
                 why=f"cuDNN's depthwise convolution measured 1.4-17x faster on an H200 ({_H200})")
_dispatch.prefer(HLK_CONV, "cuda", "torch", over=("cuda", "triton"),
                 why=f"the cuDNN nn.Conv2d chain measured 1.8-6x faster than the fused kernels on an H200 ({_H200})")
