"""Models as other people write them, for the accelerate() tests and benchmarks.

Plain PyTorch only: nothing here imports istd_kernels. Each builder takes the channel count
and returns a module that maps ``[N, C, H, W]`` to ``[N, C', H', W']``.
"""

import torch
from torch import nn


class PublishedHLKConv(nn.Module):
    """LCRNet's HLKConv written the way the authors' HLKConv.py lays it out (docs/networks.md §2): one
    branch per k_size, attribute names conv0 / conv_spatial / conv1, and the concat."""

    def __init__(self, dim, k_size):
        super().__init__()
        if k_size == 7:
            self.conv0 = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)
            self.conv_spatial = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=2, groups=dim, dilation=2)
        elif k_size == 11:
            self.conv0 = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)
            self.conv_spatial = nn.Conv2d(dim, dim, kernel_size=5, stride=1, padding=4, groups=dim, dilation=2)
        elif k_size == 23:
            self.conv0 = nn.Conv2d(dim, dim, kernel_size=5, stride=1, padding=2, groups=dim)
            self.conv_spatial = nn.Conv2d(dim, dim, kernel_size=7, stride=1, padding=9, groups=dim, dilation=3)
        elif k_size == 35:
            self.conv0 = nn.Conv2d(dim, dim, kernel_size=5, stride=1, padding=2, groups=dim)
            self.conv_spatial = nn.Conv2d(dim, dim, kernel_size=11, stride=1, padding=15, groups=dim, dilation=3)
        elif k_size == 41:
            self.conv0 = nn.Conv2d(dim, dim, kernel_size=5, stride=1, padding=2, groups=dim)
            self.conv_spatial = nn.Conv2d(dim, dim, kernel_size=13, stride=1, padding=18, groups=dim, dilation=3)
        elif k_size == 53:
            self.conv0 = nn.Conv2d(dim, dim, kernel_size=5, stride=1, padding=2, groups=dim)
            self.conv_spatial = nn.Conv2d(dim, dim, kernel_size=17, stride=1, padding=24, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim * 2, dim, 1)

    def forward(self, x):
        attn = self.conv0(x)
        attn1 = self.conv_spatial(attn)
        attn = torch.cat([attn, attn1], dim=1)
        attn = self.conv1(attn)
        return attn


class HLKStage(nn.Module):
    """A user's stage around the published layer: norm, HLKConv, activation, residual."""

    def __init__(self, dim, k_size=7):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.hlk = PublishedHLKConv(dim, k_size)
        self.act = nn.GELU()

    def forward(self, x):
        return x + self.act(self.hlk(self.norm(x)))


class LKA(nn.Module):
    """VAN-style large-kernel attention: 5x5 depthwise, 7x7 dilation-3 depthwise, 1x1, gate.

    Same child names as HLKConv but a C -> C 1x1 and no concat: not an HLKConv."""

    def __init__(self, dim):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        u = x.clone()
        attn = self.conv0(x)
        attn = self.conv_spatial(attn)
        attn = self.conv1(attn)
        return u * attn


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, BN, ReLU6, 3x3 depthwise (bias-free), BN, ReLU6, 1x1 project, BN."""

    def __init__(self, inp, oup, stride=1, expand_ratio=4):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MultiDilationBlock(nn.Module):
    """HCF-Net-style multi-dilation block: depthwise-separable branches (3x3 depthwise with
    dilation 1, 2, 3 and 'same' padding, each followed by a 1x1 in one nn.Sequential),
    concatenated and fused by a 1x1, plus a residual."""

    def __init__(self, dim, dilations=(1, 2, 3)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding="same", dilation=d, groups=dim), nn.Conv2d(dim, dim, 1))
            for d in dilations)
        self.fuse = nn.Sequential(nn.Conv2d(dim * len(dilations), dim, 1), nn.BatchNorm2d(dim), nn.SiLU())

    def forward(self, x):
        return x + self.fuse(torch.cat([b(x) for b in self.branches], 1))


class LookAlikeHLKConv(PublishedHLKConv):
    """Published names and shapes, but conv_spatial reads x instead of conv0's output."""

    def forward(self, x):
        return self.conv1(torch.cat([self.conv0(x), self.conv_spatial(x)], 1))


class DetachedHLKConv(PublishedHLKConv):
    """The published forward values, but no gradient flows through conv_spatial's input:
    fusing it would change training."""

    def forward(self, x):
        a = self.conv0(x)
        return self.conv1(torch.cat([a, self.conv_spatial(a.detach())], 1))


def lka_block(dim):
    return nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), LKA(dim), nn.Conv2d(dim, dim, 1))


def mobilenet_block(dim):
    return nn.Sequential(InvertedResidual(dim, dim), InvertedResidual(dim, 2 * dim, stride=2))


#: name -> builder(dim): the models accelerate() is tested and benchmarked on.
MODELS = {
    "hlkconv": lambda dim: HLKStage(dim, 7),
    "lka": lka_block,
    "mobilenetv2": mobilenet_block,
    "multidilation": MultiDilationBlock,
    "lookalike": lambda dim: LookAlikeHLKConv(dim, 7),
}
