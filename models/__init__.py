"""The networks, built from istd_kernels layers: LCRNet (RRCA-Net to come)."""

from .lcrnet import LCRNet

__all__ = ["LCRNet"]
