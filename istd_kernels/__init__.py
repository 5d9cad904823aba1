"""istd-kernels: fused kernels for infrared small target detection.

    >>> import istd_kernels
    >>> istd_kernels.backends()            # {name: (available, reason)}
    >>> with istd_kernels.use_backend("torch"):
    ...     y = istd_kernels.ops.depthwise_conv2d(x, w, padding=1)
"""

import importlib

from .backend import BackendUnavailableError, backends, use_backend

__version__ = "0.1.0"

__all__ = ["BackendUnavailableError", "backends", "use_backend", "ops", "nn", "metrics", "__version__"]

# Imported on first use (PEP 562): `istd --help` and a command that scores saved predictions
# then never pay for the layers and networks they do not touch.
_SUBPACKAGES = ("metrics", "nn", "ops")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES))
