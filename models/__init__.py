"""The networks, built from istd_kernels layers: LCRNet and RRCA-Net."""

from .lcrnet import LCRNet
from .rrcanet import RRCANet

__all__ = ["LCRNet", "RRCANet"]
