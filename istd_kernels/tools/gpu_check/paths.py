"""Where the source tree is, and the environment of the interpreters a run starts."""

from __future__ import annotations

import os

#: The checkout that holds ``istd_kernels/``, ``tests/``, ``setup.py`` and ``csrc/``.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def child_env(**extra: str) -> dict:
    """This process's environment with the source tree first on PYTHONPATH (so a child imports
    this istd_kernels even where it is not installed), plus ``extra``."""
    path = os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, **extra)
