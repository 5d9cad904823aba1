"""istd-kernels: fused kernels for infrared small target detection.

    >>> import istd_kernels
    >>> istd_kernels.backends()            # {name: (available, reason)}
    >>> with istd_kernels.use_backend("torch"):
    ...     y = istd_kernels.ops.depthwise_conv2d(x, w, padding=1)
"""

from . import metrics, nn, ops
from .backend import BackendUnavailableError, backends, use_backend

__version__ = "0.1.0"

__all__ = ["BackendUnavailableError", "backends", "use_backend", "ops", "nn", "metrics", "__version__"]
