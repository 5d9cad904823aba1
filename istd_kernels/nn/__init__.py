"""Drop-in ``nn.Module`` layers built on :mod:`istd_kernels.ops`."""

from .depthwise import DepthwiseConv2d
from .dlc import C2FBlock, DLCAttention
from .hlk import HLKConv

__all__ = ["C2FBlock", "DLCAttention", "DepthwiseConv2d", "HLKConv"]
