"""ISTD evaluation metrics (docs/metrics.md): IoU, nIoU, Pd/Fa and threshold sweeps.

All metrics take batched ``[N, 1, H, W]`` or ``[N, H, W]`` predictions (probabilities, or
logits with ``logits=True``, or bool maps) and binary targets, keep their counts on the
inputs' device, and read them back only in ``compute()``.

    >>> from istd_kernels.metrics import ISTDMetrics
    >>> m = ISTDMetrics()
    >>> for image, mask in loader:
    ...     m.update(model(image).sigmoid(), mask)
    >>> m.compute()    # {"iou": ..., "niou": ..., "pd": ..., "fa": ..., raw counts}
"""

from .bootstrap import BASIC_METRICS, SummedMetric, bootstrap, bootstrap_arrays, paired_bootstrap, ratio_metric
from .bundle import ISTDMetrics
from .hiou import HIoU
from .pdfa import PdFa
from .pixel import IoU, NIoU
from .pixel_curves import PixelMetrics
from .roc import ROC

__all__ = ["IoU", "NIoU", "PdFa", "HIoU", "PixelMetrics", "ROC", "ISTDMetrics", "BASIC_METRICS", "SummedMetric",
           "bootstrap", "bootstrap_arrays", "paired_bootstrap", "ratio_metric"]
