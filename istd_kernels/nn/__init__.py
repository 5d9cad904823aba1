"""Drop-in ``nn.Module`` layers built on :mod:`istd_kernels.ops`."""

from .depthwise import DepthwiseConv2d

__all__ = ["DepthwiseConv2d"]
