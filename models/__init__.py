"""LCRNet and RRCA-Net, built from istd_kernels layers (added by later work)."""
