"""Loading of the compiled extensions, with the reason when one cannot be used.

``istd_kernels._C`` (C++ CPU kernels) and ``istd_kernels._cuda`` (CUDA kernels) are
compiled against one torch. An extension built for another torch may import and then
crash on an ABI difference, so it is refused with "built for X, running Y".
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass
from types import ModuleType

import torch

_REBUILD = "rebuild with `pip install --no-build-isolation -e .` in the source tree"


@dataclass(frozen=True)
class Extension:
    """An extension module, or why it is missing."""

    name: str
    module: ModuleType | None
    reason: str

    @property
    def available(self) -> bool:
        return self.module is not None


def build_info() -> dict:
    """What setup.py recorded at build time (empty if the package was never built)."""
    path = os.path.join(os.path.dirname(__file__), "_build_info.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _load(name: str) -> Extension:
    info = build_info()
    built_for = info.get("torch_version")
    running = torch.__version__
    try:
        module = importlib.import_module(f"istd_kernels.{name}")
    except ImportError as err:
        if built_for and built_for != running:
            return Extension(name, None, f"built for torch {built_for}, running torch {running}: {_REBUILD}")
        if name == "_cuda" and info.get("cuda_extension", "").startswith(("not built", "skipped")):
            return Extension(name, None, f"CUDA extension {info['cuda_extension']}")
        if not info:
            return Extension(name, None, f"the package was not built ({err}): {_REBUILD}")
        return Extension(name, None, f"cannot import istd_kernels.{name} ({err}): {_REBUILD}")
    compiled_for = module.torch_version()
    if compiled_for != running:
        return Extension(name, None, f"built for torch {compiled_for}, running torch {running}: {_REBUILD}")
    return Extension(name, module, "built")


@functools.cache
def cpu_extension() -> Extension:
    """The C++ CPU extension ``istd_kernels._C``."""
    return _load("_C")


@functools.cache
def cuda_extension() -> Extension:
    """The CUDA extension ``istd_kernels._cuda``."""
    return _load("_cuda")
