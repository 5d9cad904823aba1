"""Test setup: Triton runs in its interpreter on CPU tensors when there is no GPU.

TRITON_INTERPRET must be set before any Triton kernel is defined, hence here, before the
test modules import istd_kernels.
"""

import os

# Under pytest-xdist each worker gets an equal share of the cores: torch's intra-op pool and
# the extension's OpenMP loops would otherwise each start one thread per core in every
# worker, and 2 workers x 2 threads on 2 cores spend their time preempting each other.
# OpenMP reads OMP_NUM_THREADS once, at its first use, hence before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))

import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
