"""RRCA-Net's layers (docs/networks.md §4): channel attention, DIAAM, residual blocks and RuCB.

Attribute names follow the official RRCA-Net code so that its checkpoints load unchanged:
``ChannelAttention.fc1/fc2``, ``DIAAM.pwconv1/pwconv2/ca``, ``ResidualBlock.conv1/bn1/conv2/bn2/
shortcut``, ``RuCBPass.operator/shortcut``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops._checks import check_positive_int

__all__ = ["ChannelAttention", "DIAAM", "ResidualBlock", "RuCB", "RuCBPass", "check_shared_copies"]


def _check_input(x: object, channels: int, name: str = "x") -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape [N, {channels}, H, W]; got {shape}")


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``[N, dim, H, W]`` -> weights ``[N, dim, 1, 1]`` in (0, 1).

    ``sigmoid(fc2(relu(fc1(maxpool(x)))) + fc2(relu(fc1(avgpool(x)))))`` with one bias-free MLP
    (two 1x1 convs, ``dim -> dim // reduction -> dim``) shared by both pooled descriptors. The
    hidden width is at least 1, so ``dim < reduction`` still works (RRCA-Net's 8-channel level
    has a 1-wide bottleneck). Returns the weights, not ``x * weights``, as DIAAM needs them.
    """

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(reduction, "reduction")
        self.dim = dim
        hidden = max(1, dim // reduction)
        self.fc1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.dim)
        # Both descriptors go through the MLP as one batch of two: half the kernel launches.
        n = x.shape[0]
        pooled = torch.cat([torch.amax(x, dim=(2, 3), keepdim=True), torch.mean(x, dim=(2, 3), keepdim=True)])
        y = self.fc2(self.relu(self.fc1(pooled)))
        return torch.sigmoid(y[:n] + y[n:])


class DIAAM(nn.Module):
    """RRCA-Net's decoder fusion, DIAAM (``SBAM`` in the official code).

    ``low``: ``[N, low_dim, H, W]`` (encoder skip), ``high``: ``[N, high_dim, H/2, W/2]`` (the
    deeper decoder output) -> ``[N, low_dim, H, W]``::

        h = pwconv2(up(high))            # up = bilinear x2, align_corners=True
        h = h * ca(h)                    # channel attention on the upsampled map
        h = h * sigmoid(pwconv1(low))    # spatial gate from the skip
        out = low + h

    ``pwconv1`` (``low_dim -> low_dim``) and ``pwconv2`` (``high_dim -> low_dim``) are 1x1 convs
    with bias; ``ca`` is :class:`ChannelAttention` with reduction 8 on ``low_dim``. ``high`` must
    be exactly half of ``low``'s size (the caller pads inputs to a multiple of 2 per level).
    The 1x1 runs after the upsampling as docs/networks.md §4.2 writes it; the two commute (bilinear weights sum
    to 1), so running it first would be the same map at a quarter of the cost.
    """

    def __init__(self, low_dim: int, high_dim: int, reduction: int = 8):
        super().__init__()
        self.low_dim = check_positive_int(low_dim, "low_dim")
        self.high_dim = check_positive_int(high_dim, "high_dim")
        self.pwconv1 = nn.Conv2d(low_dim, low_dim, 1)
        self.pwconv2 = nn.Conv2d(high_dim, low_dim, 1)
        self.ca = ChannelAttention(low_dim, reduction)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        _check_input(low, self.low_dim, "low")
        _check_input(high, self.high_dim, "high")
        if low.shape[0] != high.shape[0] or low.shape[2] != 2 * high.shape[2] or low.shape[3] != 2 * high.shape[3]:
            raise ValueError(f"high must have shape [N, {self.high_dim}, H/2, W/2] for low of shape "
                             f"{tuple(low.shape)}; got {tuple(high.shape)}")
        h = self.pwconv2(F.interpolate(high, scale_factor=2.0, mode="bilinear", align_corners=True))
        h = h * self.ca(h)
        h = h * torch.sigmoid(self.pwconv1(low))
        return low + h


class ResidualBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``: ``[N, in, H, W]`` -> ``[N, out, H, W]``.

    3x3 convs with bias (as in the official code, although BN follows); the shortcut is a 1x1
    conv (with bias) + BN where ``in_channels != out_channels``, else the identity
    (``shortcut`` is then ``None``, so the state_dict has no shortcut keys).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Sequential | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels)
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _shared_convs(in_channels: int, out_channels: int, num_blocks: int) -> list[nn.Conv2d]:
    convs = []
    for b in range(num_blocks):
        convs.append(nn.Conv2d(in_channels if b == 0 else out_channels, out_channels, 3, padding=1))
        convs.append(nn.Conv2d(out_channels, out_channels, 3, padding=1))
    return convs


class RuCBPass(nn.Module):
    """One recurrent pass through a :class:`RuCB`: ``[N, in, H, W]`` -> ``[N, out, H, W]``.

    ``operator`` is a flat ``nn.Sequential`` of ``[conv, BN, ReLU] x (2 * num_blocks)`` (the
    official layout: index ``6b`` / ``6b+3`` are unit ``b``'s two 3x3 convs, ``6b+1`` / ``6b+4``
    its BNs). The convs are the module objects handed in (shared between passes); BNs and the
    ``shortcut`` (1x1 conv + BN, only when ``in != out``, used by unit 0 only, later units use
    the identity) belong to this pass. It is not run as a Sequential: unit ``b`` computes
    ``relu(bn(conv(relu(bn(conv(x))))) + shortcut_or_identity(x))`` with the ReLU at ``6b+5``
    applied after the residual sum.
    """

    def __init__(self, convs: Sequence[nn.Conv2d], in_channels: int, out_channels: int):
        super().__init__()
        if len(convs) == 0 or len(convs) % 2:
            raise ValueError(f"convs must hold two 3x3 convs per residual unit; got {len(convs)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_blocks = len(convs) // 2
        layers: list[nn.Module] = []
        for conv in convs:
            layers += [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True)]
        self.operator = nn.Sequential(*layers)
        self.shortcut: nn.Sequential | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels)
        op = self.operator
        for b in range(self.num_blocks):
            k = 6 * b
            identity = self.shortcut(x) if (b == 0 and self.shortcut is not None) else x
            out = op[k + 2](op[k + 1](op[k](x)))
            out = op[k + 4](op[k + 3](out))
            x = op[k + 5](out + identity)
        return x


def check_shared_copies(state_dict: dict[str, Tensor], key_groups: Sequence[Sequence[str]]) -> None:
    """Raise ``ValueError`` if the copies of one shared tensor in ``state_dict`` differ.

    ``state_dict`` lists a shared conv once per pass; loading copies every entry into the same
    Parameter, so differing copies would silently keep the last one. Missing keys are ignored
    (``strict`` loading reports those).
    """
    for keys in key_groups:
        present = [k for k in keys if k in state_dict]
        for k in present[1:]:
            a, b = state_dict[present[0]], state_dict[k]
            if a.shape != b.shape or not torch.equal(a, b.to(a.dtype)):
                raise ValueError(f"state_dict entries {present[0]!r} and {k!r} hold one shared tensor "
                                 "but their values differ")


class RuCB(nn.Module):
    """Reusable-convolution block: a residual encoder stage whose 3x3 convs serve every pass.

    ``num_blocks`` residual units (``in_channels -> out_channels``, then ``out -> out``); their
    ``2 * num_blocks`` 3x3 convs (with bias) are created once, and each of ``passes`` recurrent
    passes (``self.passes[i]``, a :class:`RuCBPass`) runs them with its own BatchNorms and its own
    1x1 + BN shortcut. ``forward(x, pass_index)``: ``[N, in, H, W]`` -> ``[N, out, H, W]``.

    To add the recurrence to another U-Net, replace each encoder stage with a ``RuCB`` and run
    the whole encoder-decoder ``passes`` times, calling stage ``l`` as ``rucb_l(x, i)`` in pass
    ``i`` (RRCANet feeds pass ``i + 1`` the full-resolution decoder output of pass ``i``).
    Parameters: the convs count once; ``parameters()`` yields each once. The state_dict lists
    the shared tensors under every pass (``passes.{i}.operator.{6b,6b+3}.*``); loading refuses
    copies that differ.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 1, passes: int = 3):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        check_positive_int(num_blocks, "num_blocks")
        check_positive_int(passes, "passes")
        convs = _shared_convs(in_channels, out_channels, num_blocks)
        self.passes = nn.ModuleList(RuCBPass(convs, in_channels, out_channels) for _ in range(passes))
        self._register_load_state_dict_pre_hook(self._check_copies)

    def shared_conv_groups(self, prefix: str = "") -> list[list[str]]:
        """For every shared tensor, its state_dict keys across passes."""
        groups = []
        for k in range(0, 6 * self.passes[0].num_blocks, 3):
            for name in ("weight", "bias"):
                groups.append([f"{prefix}passes.{i}.operator.{k}.{name}" for i in range(len(self.passes))])
        return groups

    def _check_copies(self, state_dict, prefix, *args) -> None:
        check_shared_copies(state_dict, self.shared_conv_groups(prefix))

    def forward(self, x: Tensor, pass_index: int = 0) -> Tensor:
        return self.passes[pass_index](x)
