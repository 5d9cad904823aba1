"""Triton kernels of istd_kernels (imported lazily by the dispatch layer)."""
