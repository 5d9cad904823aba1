"""LCRNet (docs/networks.md §3): a U-Net of C2FBlocks for infrared small target detection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from istd_kernels.nn.dlc import C2FBlock, norm_silu
from istd_kernels.nn.hlk import HLKConv

from ._input import check_and_pad
from ._probe import probe_forward


def _norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, dim)


class Downsample(nn.Module):
    """``GroupNorm -> 2x2 conv, stride 2``: ``[N, in_dim, H, W]`` -> ``[N, out_dim, H/2, W/2]`` (H, W even).

    A ConvNeXt-style patch merge: the encoder stream is an un-normalised residual stream, so
    it is normalised before the strided conv; no activation, the next block starts with a norm.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm = _norm(in_dim)
        self.conv = nn.Conv2d(in_dim, out_dim, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(norm_silu(self.norm, x, silu=False))


class Upsample(nn.Module):
    """``GroupNorm -> SiLU -> 2x2 transposed conv, stride 2``: ``[N, in_dim, H, W]`` -> ``[N, out_dim, 2H, 2W]``.

    The activation keeps the bottleneck (a down- then an up-sampling with no block between)
    from collapsing into one linear map.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm = _norm(in_dim)
        self.conv = nn.ConvTranspose2d(in_dim, out_dim, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(norm_silu(self.norm, x))


class SkipFusion(nn.Module):
    """``conv3x3(SiLU(GroupNorm(cat([skip, up]))))``: two ``[N, dim, H, W]`` -> ``[N, dim, H, W]``.

    Concatenation keeps the encoder's fine detail (small targets) separate from the decoder's
    context until a learned 3x3 mixes them; pre-activation like the C2FBlock's BasicBlock.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = _norm(2 * dim)
        self.conv = nn.Conv2d(2 * dim, dim, 3, padding=1)

    def forward(self, skip: Tensor, up: Tensor) -> Tensor:
        return self.conv(norm_silu(self.norm, torch.cat([skip, up], 1)))


def _check_tuple(value: object, name: str, n: int | None, low: int) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{name} must be a non-empty sequence of ints; got {value!r}")
    value = tuple(value)
    if n is not None and len(value) != n:
        raise ValueError(f"{name} must have {n} entries (one per level); got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value):
        raise ValueError(f"{name} must hold ints >= {low}; got {value!r}")
    return value


class LCRNet(nn.Module):
    """LCRNet (docs/networks.md §3): ``[N, in_chans, H, W]`` -> ``[N, 1, H, W]`` probabilities (or logits).

    Layout, with ``n = len(channels)`` levels (4 by default) at strides ``1, 2, ..., 2**(n-1)``::

        x -> InitConv 3x3 (in_chans -> C1)
          -> E1 (L1 blocks) -> Down -> E2 -> Down -> ... -> En (Ln blocks) -> Down     stride 2**n
          -> Up -> Fuse(En skip) -> Dn (Ln + 1 blocks) -> Up -> Fuse(E(n-1) skip) -> ...
          -> D1 (L1 + 1 blocks) -> GroupNorm -> SiLU -> OutConv 3x3 (C1 -> 1) [-> sigmoid]

    - Every level, the deepest included, has an encoder stage (``L_i`` C2FBlocks), a skip and
      a decoder stage (``L_i + 1`` C2FBlocks): ``2 L_i + 1`` blocks per level. The U-Net turns
      one stride below the deepest level (``2**n``, width ``C_n``) without blocks there: a
      Down immediately followed by an Up, so the deepest level's decoder also fuses a skip.
    - Down: GroupNorm + 2x2 stride-2 conv ``C_i -> C_(i+1)``; Up: GroupNorm + SiLU + 2x2
      stride-2 transposed conv ``C_(i+1) -> C_i``; skip fusion: concat, GroupNorm, SiLU,
      3x3 conv ``2 C_i -> C_i``. Of the arrangements considered, this one reproduces both published
      counts (1.65 M for L = 3, 854.67 K for L = 1) to within 0.5 %; placing the deepest
      level's blocks back to back at stride 8 with 3x3 down/up/fusion convs lands near -5 %
      for L = 1.
    - Inputs of any ``H, W >= 1`` are zero-padded at the bottom and right to a multiple of
      ``2**n`` and the output cropped back. Zero padding is what every conv in the network
      already assumes at the border, and unlike reflect padding it works for any size
      (reflect needs the pad to be smaller than the image).

    ``forward(x, return_logits=False)`` returns ``sigmoid(logits)``; with
    ``return_logits=True`` the logits (for ``BCEWithLogits``-style losses).
    """

    def __init__(self, in_chans: int = 1, channels: Sequence[int] = (16, 32, 64, 64),
                 depths: Sequence[int] = (3, 3, 3, 3), backend: str | None = None):
        super().__init__()
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int; got {in_chans!r}")
        channels = _check_tuple(channels, "channels", None, 1)
        depths = _check_tuple(depths, "depths", len(channels), 0)
        self.in_chans, self.channels, self.depths = in_chans, channels, depths
        self.multiple = 2 ** len(channels)
        widths = channels + (channels[-1],)
        self.init_conv = nn.Conv2d(in_chans, channels[0], 3, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(*(C2FBlock(c, backend=backend) for _ in range(d))) for c, d in zip(channels, depths))
        self.downs = nn.ModuleList(Downsample(widths[i], widths[i + 1]) for i in range(len(channels)))
        self.ups = nn.ModuleList(Upsample(widths[i + 1], widths[i]) for i in range(len(channels)))
        self.fusions = nn.ModuleList(SkipFusion(c) for c in channels)
        self.decoders = nn.ModuleList(
            nn.Sequential(*(C2FBlock(c, backend=backend) for _ in range(d + 1))) for c, d in zip(channels, depths))
        self.out_norm = _norm(channels[0])
        self.out_conv = nn.Conv2d(channels[0], 1, 3, padding=1)

    def forward(self, x: Tensor, return_logits: bool = False) -> Tensor:
        """``x``: ``[N, in_chans, H, W]`` -> ``[N, 1, H, W]``, probabilities unless ``return_logits``."""
        x, h, w = check_and_pad(x, self.in_chans, self.multiple)
        x = self.init_conv(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        for i in reversed(range(len(self.channels))):
            x = self.decoders[i](self.fusions[i](skips[i], self.ups[i](x)))
        logits = self.out_conv(norm_silu(self.out_norm, x))[:, :, :h, :w]
        return logits if return_logits else torch.sigmoid(logits)


def parameter_breakdown(model: LCRNet) -> dict[str, int]:
    """Parameter counts of an :class:`LCRNet` by part: blocks per level, sampling, fusion, stem/head."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    out = {f"level{i + 1}_blocks": count(e) + count(d)
           for i, (e, d) in enumerate(zip(model.encoders, model.decoders))}
    out["downs"] = count(model.downs)
    out["ups"] = count(model.ups)
    out["fusions"] = count(model.fusions)
    out["stem_head"] = count(model.init_conv) + count(model.out_norm) + count(model.out_conv)
    out["total"] = count(model)
    return out


def count_flops(model: nn.Module, h: int = 512, w: int = 512, in_chans: int | None = None) -> int:
    """Multiply-adds (MACs) of one forward pass on a ``[1, in_chans, h, w]`` input.

    Counted, per output element of each layer that runs: ``nn.Conv2d`` ``in/groups * kh * kw``;
    ``nn.ConvTranspose2d`` ``out/groups * kh * kw`` per *input* element; ``nn.Linear``
    ``in_features``; :class:`~istd_kernels.nn.HLKConv` its two depthwise convs
    (``k1^2`` and ``k2^2`` per element of ``a`` and ``d``) plus the 1x1 (``2C/groups`` per
    output element). Not counted: biases, norms, activations, pooling, upsampling, softmax and
    other element-wise ops. FLOPs in the "2 x MACs" convention are twice the result; counters
    such as thop/fvcore report this MAC number as "FLOPs". ``in_chans`` defaults to
    ``model.in_chans`` (or 1); an LCRNet counts its padded size.
    """
    in_chans = in_chans if in_chans is not None else getattr(model, "in_chans", 1)
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def convt_hook(m, inp, out):
        total[0] += inp[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        total[0] += out.numel() * m.in_features

    def hlk_hook(m, inp, out):
        a = inp[0].numel()
        k1, k2 = m.conv0.kernel_size[0], m.conv_spatial.kernel_size[0]
        total[0] += a * (k1 * k1 + k2 * k2) + out.numel() * (2 * m.conv0.in_channels // m.groups)

    # HLKConv hands its children's weights to a fused op and never calls them, so it is counted
    # as a whole and its children are skipped (they would otherwise count nothing, or twice).
    inside_hlk = {id(c) for m in model.modules() if isinstance(m, HLKConv) for c in m.modules() if c is not m}
    handles = []
    for m in model.modules():
        if id(m) in inside_hlk:
            continue
        if isinstance(m, HLKConv):
            handles.append(m.register_forward_hook(hlk_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(convt_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    probe_forward(model, in_chans, h, w, handles)
    return total[0]
