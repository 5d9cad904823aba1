"""Drop-in ``nn.Module`` layers built on :mod:`istd_kernels.ops`."""

from .depthwise import DepthwiseConv2d
from .dlc import C2FBlock, DLCAttention
from .hlk import HLKConv
from .rrca import DIAAM, RuCB, ChannelAttention, ResidualBlock

__all__ = ["C2FBlock", "ChannelAttention", "DIAAM", "DLCAttention", "DepthwiseConv2d", "HLKConv", "ResidualBlock", "RuCB"]
