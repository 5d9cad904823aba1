"""Optimizers the training recipes need and PyTorch does not ship."""

from .adan import Adan

__all__ = ["Adan"]
