"""RRCA-Net (docs/networks.md §4): a recurrent U-Net whose encoder convolutions are reused on every pass.

Layout (ResNet-18 variant, channels ``C = (8, 16, 32, 64)``, blocks per level ``(3, 2, 2, 2)``)::

    x --pad--> conv0_0 (residual block in_chans -> 8, not reused)
    for pass i in 0..iterations:                       # iterations=2 -> 3 passes
        e0 = enc[i][0](input_i)                        # input_0 = stem output, input_i = d0 of pass i-1
        e1 = enc[i][1](maxpool(e0)); e2 = ...; e3 = enc[i][3](maxpool(e2))
        d2 = DIAAM_i0(e2, e3); d1 = DIAAM_i1(e1, d2); d0 = DIAAM_i2(e0, d1)   # 8 ch, full res
    logits = final(post_transform_conv_block(cat(d0 of every pass)))         # 24 -> 8 -> 1

Choices where the paper is silent (docs/networks.md §4), each fixed by the official parameter
counts (202,089 / 102,489 / 363,161) and state_dict size (539 entries) that they reproduce exactly:

- The decoder has no conv blocks: a decoder level is one DIAAM, ``d_l = DIAAM(low=e_l,
  high=d_{l+1})`` (``d_3 = e_3``); its ``low + h`` residual is the skip connection. Any decoder
  conv would add parameters and state_dict entries the official counts do not have.
- Encoder level 0 maps 8 -> 8 (its input is the stem's or the previous pass's 8-channel map),
  so it has no shortcut; level ``l >= 1`` maps ``C[l-1] -> C[l]`` after the max-pool, and only
  its first residual unit uses the 1x1 + BN shortcut.
- Every 3x3 conv and every 1x1 conv (shortcuts, DIAAM ``pwconv1/2``, ``final``) has a bias;
  only the channel-attention MLP (``ca.fc1/fc2``, hidden width ``C // 8``, at least 1) has none.
- DIAAM ``iteration{i}_layer{j}_decoders_SBAM``: ``j = 0`` is the deepest step (64 -> 32),
  ``j = 2`` the full-resolution one (16 -> 8).
- Feature stacking concatenates the passes in pass order.
- Input padding: ``H`` and ``W`` are zero-padded at the bottom and right to a multiple of 8
  (three 2x2 max-pools) and the output is cropped back, so any ``H, W >= 1`` works; zero
  padding is also what every 3x3 conv assumes at the border, and it works for sizes smaller
  than the pad (reflect padding does not). Inputs that are multiples of 8 are not touched.
- ``deep_supervision=True``: ``forward`` returns a list of ``iterations + 2`` maps
  ``[pass_0, ..., pass_n, fused]``, each ``[N, 1, H, W]``; ``pass_i = final(d0 of pass i)``
  reuses the fused head's 1x1 conv so that no parameter is added (counts and checkpoints stay
  those of the official model), and the fused (main) output is last, as in DNANet-style code.
- Weights use PyTorch's default init; the paper trains from Xavier init, which its training
  script applies (it is no part of the checkpoint format).

The state_dict uses the official keys, so an official checkpoint loads with
``load_state_dict(sd, strict=True)``; :func:`convert_official_state_dict` only unwraps the
containers a training script may have saved it in. The shared convs appear under every pass's
key (``iteration{i}_layer{l}_encoder_convs.operator.{6b,6b+3}.*``) but are one Parameter each;
loading refuses a state_dict whose copies of one shared tensor differ.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from istd_kernels.nn.rrca import DIAAM, ResidualBlock, RuCB, check_shared_copies

from ._input import check_and_pad
from ._probe import probe_forward

__all__ = ["BACKBONES", "CHANNELS", "RRCANet", "convert_official_state_dict", "count_flops"]

CHANNELS = (8, 16, 32, 64)
# Residual units per encoder level; the names are the paper's (ResNet-style depth labels).
BACKBONES: dict[str, tuple] = {
    "resnet10": (2, 1, 1, 1),
    "resnet18": (3, 2, 2, 2),
    "resnet34": (4, 4, 6, 3),
}


class RRCANet(nn.Module):
    """RRCA-Net. ``forward(x, return_logits=False)``: ``[N, in_chans, H, W]`` -> ``[N, 1, H, W]``.

    Args:
        backbone: ``"resnet10"``, ``"resnet18"`` or ``"resnet34"`` (residual units per level).
        iterations: extra recurrent passes ``n``; the network runs ``n + 1`` encoder-decoder
            passes (docs/networks.md §4.1: n = 2, three passes).
        deep_supervision: return ``[pass_0, ..., pass_n, fused]`` instead of ``fused`` (see the
            module docstring).
        in_chans: input channels (1 for infrared images).

    Returns sigmoid probabilities, or logits with ``return_logits=True``.
    """

    def __init__(self, backbone: str = "resnet18", iterations: int = 2, deep_supervision: bool = False,
                 in_chans: int = 1):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}; got {backbone!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be an int >= 0; got {iterations!r}")
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int; got {in_chans!r}")
        self.backbone, self.iterations, self.in_chans = backbone, iterations, in_chans
        self.deep_supervision = bool(deep_supervision)
        self.num_passes = iterations + 1
        self.blocks = BACKBONES[backbone]
        self.levels = len(CHANNELS)
        self.multiple = 2 ** (self.levels - 1)

        c = CHANNELS
        self.conv0_0 = nn.Sequential(ResidualBlock(in_chans, c[0]))
        self.pool = nn.MaxPool2d(2, 2)
        # The RuCBs own the shared convs; their passes are registered under the official names
        # (not the RuCBs themselves) so that the state_dict keys are the official ones.
        rucbs = [RuCB(c[max(l - 1, 0)], c[l], self.blocks[l], self.num_passes) for l in range(self.levels)]
        self._rucbs = tuple(rucbs)  # a tuple is not registered: no second set of keys
        self._enc: list[list[nn.Module]] = []
        self._dec: list[list[DIAAM]] = []
        for i in range(self.num_passes):
            self._enc.append([])
            for l, rucb in enumerate(rucbs):
                setattr(self, f"iteration{i}_layer{l}_encoder_convs", rucb.passes[i])
                self._enc[i].append(rucb.passes[i])
        for i in range(self.num_passes):
            self._dec.append([])
            for j in range(self.levels - 1):
                low, high = c[self.levels - 2 - j], c[self.levels - 1 - j]
                sbam = DIAAM(low, high)
                setattr(self, f"iteration{i}_layer{j}_decoders_SBAM", sbam)
                self._dec[i].append(sbam)
        self.post_transform_conv_block = nn.Sequential(ResidualBlock(c[0] * self.num_passes, c[0]))
        self.final = nn.Conv2d(c[0], 1, 1)
        self._register_load_state_dict_pre_hook(self._check_shared_copies)

    def shared_conv_groups(self, prefix: str = "") -> list[list[str]]:
        """For every shared encoder tensor, its state_dict keys (one per pass)."""
        groups = []
        for l, rucb in enumerate(self._rucbs):
            for group in rucb.shared_conv_groups():
                # "passes.{i}.operator.{k}.{name}" -> "iteration{i}_layer{l}_encoder_convs.operator.{k}.{name}"
                groups.append([prefix + f"iteration{i}_layer{l}_encoder_convs." + key.split(".", 2)[2]
                               for i, key in enumerate(group)])
        return groups

    def _check_shared_copies(self, state_dict, prefix, *args) -> None:
        check_shared_copies(state_dict, self.shared_conv_groups(prefix))

    def forward(self, x: Tensor, return_logits: bool = False) -> Tensor | list[Tensor]:
        x, h, w = check_and_pad(x, self.in_chans, self.multiple)
        feat = self.conv0_0(x)
        outs = []
        for i in range(self.num_passes):
            skips = []
            for l in range(self.levels):
                if l:
                    feat = self.pool(feat)
                feat = self._enc[i][l](feat)
                skips.append(feat)
            d = skips[-1]
            for j in range(self.levels - 1):
                d = self._dec[i][j](skips[self.levels - 2 - j], d)
            outs.append(d)
            feat = d
        logits = self.final(self.post_transform_conv_block(torch.cat(outs, 1)))[:, :, :h, :w]
        if not self.deep_supervision:
            return logits if return_logits else torch.sigmoid(logits)
        maps = [self.final(o)[:, :, :h, :w] for o in outs] + [logits]
        return maps if return_logits else [torch.sigmoid(t) for t in maps]


def convert_official_state_dict(sd: Mapping[str, object]) -> dict[str, Tensor]:
    """An official RRCA-Net checkpoint's state_dict, ready for ``RRCANet.load_state_dict(strict=True)``.

    RRCANet already uses the official keys, so this only unwraps what training scripts add: a
    ``{"state_dict": ...}`` / ``{"net": ...}`` / ``{"model": ...}`` container, and a
    ``module.`` (DataParallel) or ``model.`` (BasicIRSTD's ``Net`` wrapper) prefix shared by every
    key. Values are not copied.
    """
    if not isinstance(sd, Mapping):
        raise ValueError(f"sd must be a mapping of key -> tensor; got {type(sd).__name__}")
    for wrapper in ("state_dict", "net", "model"):
        inner = sd.get(wrapper)
        if isinstance(inner, Mapping):
            sd = inner
            break
    out = dict(sd)
    stripped = True
    while stripped and out:
        stripped = False
        for prefix in ("module.", "model."):
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                stripped = True
    return out


def count_flops(model: nn.Module, h: int = 256, w: int = 256, in_chans: int | None = None,
                shared_once: bool = False) -> int:
    """Multiply-adds (MACs) of convolutions in one forward pass on a ``[1, in_chans, h, w]`` input.

    Per output element of each ``nn.Conv2d`` call: ``in_channels / groups * kh * kw``. Not
    counted: biases, BatchNorm, activations, pooling, upsampling, attention products and other
    element-wise ops (thop/fvcore report this MAC number as "FLOPs"; the "2 x MACs" convention is
    twice it). ``shared_once=False`` counts what runs: a shared RuCB conv counts on every pass.
    ``shared_once=True`` counts each conv module on its first call only (a reused conv counted
    once, as a per-module counter that does not accumulate over calls would): for RRCA-Net
    ResNet-18 at 256x256 this is the convention that comes near the paper's 1.04 G (see the
    report in the tests).
    """
    in_chans = in_chans if in_chans is not None else getattr(model, "in_chans", 1)
    total = [0]
    seen = set()

    def conv_hook(m, inp, out):
        if shared_once:
            if id(m) in seen:
                return
            seen.add(id(m))
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    probe_forward(model, in_chans, h, w, handles)
    return total[0]
