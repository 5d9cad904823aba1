"""Drop-in ``nn.Module`` layers built on :mod:`istd_kernels.ops`, and :func:`accelerate` for
swapping them into other people's models."""

from .accelerate import AccelerateReport, Decision, accelerate, accelerate_report, restore
from .depthwise import DepthwiseConv2d
from .dlc import C2FBlock, DLCAttention
from .hlk import HLKConv
from .rrca import DIAAM, ChannelAttention, ResidualBlock, RuCB

__all__ = ["AccelerateReport", "C2FBlock", "ChannelAttention", "DIAAM", "DLCAttention", "Decision",
           "DepthwiseConv2d", "HLKConv", "ResidualBlock", "RuCB", "accelerate", "accelerate_report", "restore"]
