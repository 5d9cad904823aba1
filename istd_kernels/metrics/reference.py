"""The community's per-image evaluation loop (docs/metrics.md §2-§4), written the plain way.

scikit-image labels and regionprops, Python lists, one image at a time: what ISTD repositories
run today. It shares no code with the batched metrics of this package, so the tests use it as
their oracle and the benchmarks as their baseline. Needs scikit-image (the ``test`` extra).
"""

from __future__ import annotations

import math

import numpy as np
from skimage import measure as skimage_measure


def greedy_match(truths, candidates, distance=3.0):
    """docs/metrics.md §4's matching as the community loop runs it: for each target centroid (row, col)
    in order, the first remaining candidate centroid closer than ``distance`` is taken.
    Returns the indices of the taken candidates, in the order they were taken."""
    remaining = list(range(len(candidates)))
    taken = []
    for tr, tc in truths:
        for k, j in enumerate(remaining):
            # The community code takes np.linalg.norm of the difference; its rounding at a
            # distance of exactly `distance` depends on the BLAS (fused multiply-add or
            # not). Every multiply and add rounded on its own is reproducible everywhere,
            # and it is what the batched implementation computes.
            dr = candidates[j][0] - tr
            dc = candidates[j][1] - tc
            if math.sqrt(dr * dr + dc * dc) < distance:
                taken.append(remaining.pop(k))
                break
    return taken


def oracle_pdfa(pred, target, distance=3.0, legacy=False, connectivity=8):
    """docs/metrics.md §4 Pd/Fa counts for binary numpy masks [N, H, W], one image at a time."""
    conn = 2 if connectivity == 8 else 1
    detected = targets = false_pixels = 0
    for p, t in zip(pred, target):
        predicted = skimage_measure.regionprops(skimage_measure.label(p, connectivity=conn))
        truths = skimage_measure.regionprops(skimage_measure.label(t, connectivity=conn))
        targets += len(truths)
        taken = set(greedy_match([c.centroid for c in truths], [c.centroid for c in predicted], distance))
        detected += len(taken)
        if legacy:
            matched_areas = [predicted[j].area for j in taken]
            false_pixels += sum(int(c.area) for c in predicted if c.area not in matched_areas)
        else:
            false_pixels += sum(int(c.area) for j, c in enumerate(predicted) if j not in taken)
    return {"detected": detected, "targets": targets, "false_pixels": false_pixels,
            "pixels": int(np.prod(pred.shape))}


def oracle_pixels(pred, target, empty_as=0.0):
    """(sum of intersections, sum of unions, nIoU) of binary numpy masks [N, H, W]."""
    inter = [int((p & t).sum()) for p, t in zip(pred, target)]
    union = [int((p | t).sum()) for p, t in zip(pred, target)]
    per_image = [i / u if u else empty_as for i, u in zip(inter, union)]
    return sum(inter), sum(union), (sum(per_image) / len(per_image) if per_image else 0.0)


def reference_metrics(pred, target, distance=3.0):
    """IoU, nIoU, Pd and Fa of binary numpy masks ``[N, H, W]`` by the per-image loop."""
    inter, union, niou = oracle_pixels(pred, target)
    c = oracle_pdfa(pred, target, distance)
    return {"iou": inter / union if union else 0.0, "niou": niou,
            "pd": c["detected"] / c["targets"] if c["targets"] else 0.0, "fa": c["false_pixels"] / c["pixels"]}
