"""LCRNet's token mixer and block: DLC-Attention and C2FBlock (docs/networks.md §3.1, §3.2).

Every large-kernel convolution runs through :class:`~istd_kernels.nn.HLKConv`; the
multi-scale pooling and the split-attention combination run through the fused
:func:`~istd_kernels.ops.multiscale_maxpool` and :func:`~istd_kernels.ops.split_attention`
ops (in :meth:`DLCAttention._pool_levels` and :meth:`DLCAttention._split_attention`), so
the whole module follows the backend selection; with ``backend="torch"`` every step is
plain PyTorch. ``backend=`` of a module goes to every op it runs, each of which has all four
backends.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops._checks import check_positive_int
from ..ops.group_norm import group_norm_silu, silu_of_fresh
from ..ops.multiscale_maxpool import multiscale_maxpool
from ..ops.residual import scaled_residual
from ..ops.split_attention import split_attention
from .hlk import HLKConv
from .pointwise import conv1x1


def _norm(dim: int) -> nn.GroupNorm:
    # One group: statistics over (C, H, W) per sample, as PoolFormer/MetaFormer blocks do.
    # Batch-independent, so batch 1 inference and N = 0 behave like training.
    return nn.GroupNorm(1, dim)


def norm_silu(norm: nn.Module, x: Tensor, silu: bool = True, channels_last: bool = False) -> Tensor:
    """``SiLU(norm(x))`` (``norm(x)`` when ``silu`` is False), the same shape as ``x``; ``norm``
    must return a new tensor (a norm layer). ``channels_last``: the result feeds a convolution,
    so a path that writes channels_last at no extra pass may (``group_norm_silu``'s hint).

    An ``nn.GroupNorm`` runs as the routed ``istd.group_norm_silu`` op
    (:mod:`istd_kernels.ops.group_norm`: on the CPU a multi-threaded kernel with the SiLU
    fused for eager calls without autograd). Any other norm runs itself, then the SiLU; both
    overwrite the norm's fresh output with the SiLU when autograd is not recording
    (``no_grad``/``inference_mode``) instead of allocating a second plane, which measured
    faster on the CPU (docs/performance.md); with autograd it stays out of place (an in-place
    SiLU would make autograd keep a copy of its input).
    """
    if isinstance(norm, nn.GroupNorm):
        return group_norm_silu(x, norm.num_groups, norm.weight, norm.bias, norm.eps, silu,
                               channels_last=channels_last)
    y = norm(x)
    return silu_of_fresh(y) if silu else y


class LayerScale(nn.Module):
    """Learnable per-channel scale ``gamma[c] * x[:, c]``: ``[N, dim, H, W]`` -> same shape."""

    def __init__(self, dim: int, init_value: float = 1e-2):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((check_positive_int(dim, "dim"),), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.view(1, -1, 1, 1)

    def residual(self, x: Tensor, y: Tensor, into: str | None = None) -> Tensor:
        """``x + gamma[c] * y[:, c]``, both ``[N, dim, H, W]`` -> same shape, in one pass;
        ``into`` as :func:`~istd_kernels.ops.residual.scaled_residual`'s (the result may be
        written into the operand the caller hands over).

        The routed ``istd.scaled_residual`` op (``torch.addcmul`` on its torch path) instead of
        ``x + self(y)``: no intermediate for the scaled branch and one pass over the plane
        fewer; its cpp path reads a channels_last ``y`` (a branch ending in a channels_last
        convolution) without a layout copy (docs/performance.md).
        """
        return scaled_residual(x, y, self.gamma, into=into)


class PreActBlock(nn.Module):
    """Pre-activation unit ``conv3x3(SiLU(GroupNorm(x)))``: ``[N, dim, H, W]`` -> same shape.

    The conv has no bias: in a BasicBlock the first unit's output is normalised by the second
    unit, and the second unit's output enters a LayerScaled residual that the next block
    normalises again, so a bias would be (almost) dead weight.
    """

    def __init__(self, dim: int):
        super().__init__()
        check_positive_int(dim, "dim")
        self.norm = _norm(dim)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # channels_last: oneDNN's 3x3 convolution measured 1.25-1.65x faster in it at LCRNet's
        # levels, and the cpp norm writes it in the same pass; the output then stays
        # channels_last (docs/performance.md).
        return self.conv(norm_silu(self.norm, x, channels_last=True))


class DLCAttention(nn.Module):
    """Dynamic local context attention (LCRNet, docs/networks.md §3.2): ``Z = SiLU(A) * SiLU(V)``.

    Shapes: ``x`` ``[N, dim, H, W]`` -> ``[N, dim, H, W]``, any ``N >= 0``, ``H, W >= 1``.
    With ``c = dim / (groups * radix)`` channels per branch and group:

    1. ``v = V(x)``: 1x1 conv ``dim -> dim`` with bias.
    2. ``u = T(x)``: the per-group transform, a 1x1 conv ``dim -> dim`` with ``groups``
       groups (both 1x1s run by :func:`~istd_kernels.nn.pointwise.conv1x1`: a batched matmul
       on the CPU); ``u`` is group-major: channel ``(k * radix + j) * c + i`` is channel ``i`` of
       branch ``j`` of group ``k``.
    3. ``logits = S(u)``: ``HLKConv(dim, out_dim=groups*radix, groups=groups)``, one logit per
       group, branch and pixel (``[N, groups*radix, H, W]``, group-major).
    4. For ``j = 1..radix``: branch ``j`` of every group is gathered into one contiguous
       ``[N, groups*c, H, W]`` chunk (radix-major), max-pooled by ``s = 2**j``
       (:meth:`_pool_levels`) and passed through ``B_j = HLKConv(groups*c, out_dim=dim,
       groups=groups)``: a 7x7 HLKConv per group that maps the group's ``c`` branch channels
       to the group's full ``dim / groups`` width, at the pooled resolution.
    5. ``A[k] = sum_j softmax_j(logits[k, j] / tau) * up(B_j)[k] + u[k]`` per group ``k``, and
       ``Z = SiLU(A) * SiLU(v)`` (:meth:`_split_attention`).

    Choices where the paper is silent, and why:

    - Per-group transform = grouped 1x1 (``dim^2 / groups`` weights). ResNeSt's per-group
      spatial conv is replaced here by the pooled HLKConvs, so only the channel mixing inside
      a group is left; a dense 1x1 would overshoot the published parameter count.
    - Branch ``j`` (1-based, as the paper's ``1 <= j <= r``) is pooled by ``2**j``: 1/2 ...
      1/16; no branch stays at full resolution, the residual carries full-resolution detail.
    - Pooling is ``max_pool2d(kernel=s, stride=s, ceil_mode=True)``: window ``p`` covers rows
      ``[p*s, min((p+1)*s, H))``, so a map smaller than ``s`` still gives one pixel (floor
      pooling would give an empty map inside the U-Net's deepest level for small inputs).
      Upsampling is its exact inverse, ``up(b)[y, x] = b[y // s, x // s]`` (nearest by ``s``,
      then cropped to ``H x W``): every pixel reads the window it was pooled into.
      ``F.interpolate(size=(H, W))`` would disagree with the window layout when ``s`` does
      not divide ``H``.
    - Each branch's HLKConv widens ``c -> dim / groups`` channels per group, so the
      softmax-weighted *sum* over the branches (ResNeSt's split attention) has the group's
      full width and ``A`` has ``dim`` channels for the gate with ``V``.
    - Logits come from ``u`` at full resolution (not from the upsampled branches), so the
      combination never needs the upsampled branches materialised: a fused op can read the
      low-resolution branches directly.
    - Residual: the group's own transformed input ``u[k]`` (same width and layout as the
      weighted sum) is added after the weighting, so no branch weight can switch the group's
      output off entirely (the over-confidence the paper guards against).
    - Temperature: one learnable scalar per module, stored as ``log_temperature`` with
      ``tau = exp(log_temperature)``, initialised to ``tau = 1``. The log keeps ``tau > 0``
      without clamping, and weight decay pulls it toward the neutral ``tau = 1`` instead of
      toward 0 (an ever sharper softmax).
    - No output projection after the gate: the block's LayerScale and 3x3 convs follow
      directly, and a ``dim x dim`` projection would put the model about 4 % over the
      published parameter counts.

    Parameters: ``1.75 dim^2 + 54 dim + 17`` for the defaults
    (``groups = radix = 4``, ``kernel_size = 7``).
    """

    def __init__(self, dim: int, groups: int = 4, radix: int = 4, kernel_size: int = 7,
                 backend: str | None = None):
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(groups, "groups")
        check_positive_int(radix, "radix")
        if dim % (groups * radix):
            raise ValueError(f"dim={dim} must be divisible by groups * radix = {groups * radix}")
        self.dim, self.groups, self.radix, self.backend = dim, groups, radix, backend
        self.branch_dim = dim // (groups * radix)
        self.v = nn.Conv2d(dim, dim, 1)
        self.transform = nn.Conv2d(dim, dim, 1, groups=groups)
        self.score = HLKConv(dim, kernel_size, out_dim=groups * radix, groups=groups, backend=backend)
        self.branches = nn.ModuleList(
            HLKConv(groups * self.branch_dim, kernel_size, out_dim=dim, groups=groups, backend=backend)
            for _ in range(radix))
        self.log_temperature = nn.Parameter(torch.zeros(()))

    @property
    def temperature(self) -> Tensor:
        """The softmax temperature ``tau = exp(log_temperature)`` (0-dim, differentiable)."""
        return self.log_temperature.exp()

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [N, {self.dim}, H, W] for DLCAttention(dim={self.dim}); got {shape}")
        v = conv1x1(self.v, x)
        u = conv1x1(self.transform, x)
        logits = self.score(u)
        pooled = self._pool_levels(u)
        branches = [conv(p) for conv, p in zip(self.branches, pooled)]
        return self._split_attention(branches, logits, self.temperature, u, v)

    def _pool_levels(self, u: Tensor) -> list[Tensor]:
        """Gather each branch across the groups and max-pool it by its level's stride.

        Args:
            u: ``[N, dim, H, W]``, group-major (channel ``(k*radix + j)*c + i``).

        Returns:
            ``radix`` tensors; entry ``j - 1`` (``j = 1..radix``) is
            ``[N, groups*c, ceil(H / 2**j), ceil(W / 2**j)]``, radix-major inside (channel
            ``k*c + i`` is channel ``i`` of branch ``j`` of group ``k``), each value the max
            over its ``2**j x 2**j`` window (windows clipped at the bottom/right edge).
        """
        # The fused op (one read of u for every level); its torch backend is the F.max_pool2d chain.
        return multiscale_maxpool(u, self.groups, self.radix, backend=self.backend)

    def _split_attention(self, branches: list[Tensor], logits: Tensor, temperature: Tensor, residual: Tensor,
                         v: Tensor) -> Tensor:
        """Residual split attention over the upsampled branches, then the SiLU gate.

        Args:
            branches: ``radix`` tensors; entry ``j - 1`` is ``[N, dim, ceil(H / 2**j),
                ceil(W / 2**j)]``, group-major (group ``k`` owns channels
                ``[k*dim/groups, (k+1)*dim/groups)``).
            logits: ``[N, groups*radix, H, W]``; channel ``k*radix + j - 1`` is the logit of
                branch ``j`` in group ``k``.
            temperature: 0-dim, positive; the softmax runs over ``logits / temperature``.
            residual: ``[N, dim, H, W]``, group-major, added after the weighted sum.
            v: ``[N, dim, H, W]``, the value path.

        Returns:
            ``Z = SiLU(A) * SiLU(v)``, ``[N, dim, H, W]``, with
            ``A[k] = sum_j w[k, j] * up_j(branches[j-1])[k] + residual[k]`` and
            ``w[k, :] = softmax(logits[k, :] / temperature)`` per pixel, where
            ``up_j(b)[y, x] = b[y // 2**j, x // 2**j]``.
        """
        # The fused op (no upsampled branch is materialised); its torch backend is the
        # reference: softmax, index-gather upsampling and the weighted sum in plain PyTorch.
        return split_attention(branches, logits, temperature, residual, v, self.groups, backend=self.backend)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, groups={self.groups}, radix={self.radix}"


class C2FBlock(nn.Module):
    """LCRNet's block (docs/networks.md §3.1): ``[N, dim, H, W]`` -> ``[N, dim, H, W]``.

    ``x' = x + l1 * DLCAttention(GroupNorm(x))``;
    ``x'' = x' + l2 * preBlock(preBlock(x'))`` with ``preBlock = conv3x3(SiLU(GroupNorm(.)))``
    (a pre-activation BasicBlock without its own shortcut: the LayerScaled residual is it).

    Choices: GroupNorm with one group everywhere (batch-independent; PoolFormer's choice for
    the same token-mixer/channel-mixer layout); SiLU as the BasicBlock activation, the same
    nonlinearity DLC-Attention uses; LayerScale initialised to ``layer_scale_init = 1e-2``
    (not the 1e-5/1e-6 of deep transformers: a LCRNet level has at most 2L+1 = 7 blocks, and a
    tiny scale would shrink every gradient reaching DLC-Attention by the same factor).
    Parameters: ``19.75 dim^2 + 62 dim + 17`` for the default DLC-Attention.
    """

    def __init__(self, dim: int, backend: str | None = None, layer_scale_init: float = 1e-2, groups: int = 4,
                 radix: int = 4, kernel_size: int = 7):
        super().__init__()
        check_positive_int(dim, "dim")
        if not (isinstance(layer_scale_init, (int, float)) and math.isfinite(layer_scale_init)):
            raise ValueError(f"layer_scale_init must be a finite number; got {layer_scale_init!r}")
        self.dim = dim
        self.norm = _norm(dim)
        self.attn = DLCAttention(dim, groups, radix, kernel_size, backend=backend)
        self.scale1 = LayerScale(dim, layer_scale_init)
        self.ffn = nn.Sequential(PreActBlock(dim), PreActBlock(dim))
        self.scale2 = LayerScale(dim, layer_scale_init)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [N, {self.dim}, H, W] for C2FBlock(dim={self.dim}); got {shape}")
        # Each residual may reuse a fresh operand for its result (the attention's output, then
        # the first residual's): never x, the caller's tensor (a U-Net skip holds it).
        x = self.scale1.residual(x, self.attn(norm_silu(self.norm, x, silu=False)), into="y")
        return self.scale2.residual(x, self.ffn(x), into="x")
