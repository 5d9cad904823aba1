"""The ops: public functions with a plain-PyTorch reference (``*_ref``) and fast backends."""

from .depthwise import depthwise_conv2d, depthwise_conv2d_ref

__all__ = ["depthwise_conv2d", "depthwise_conv2d_ref"]
