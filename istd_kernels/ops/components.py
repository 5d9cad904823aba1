"""Connected-component labelling of binary masks, and per-component statistics.

``connected_components(mask, connectivity)`` numbers the components of each image 1..n in
raster order of their first pixel, exactly as ``skimage.measure.label`` does (connectivity
8 is skimage's 2, 4 is its 1). The object-level metrics (Pd/Fa) match components in that
order, so the order is part of the contract, not a detail.

Labels are not differentiable and the number of components is data dependent, so the ops
dispatch to the backends directly; only under a ``torch.func`` transform does the labelling
run as the ``istd::connected_components`` custom op, whose vmap rule folds the vmapped
dimension into the batch (the statistics, sized by the data, refuse transforms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..limits import MAX_IMAGE_PIXELS
from . import _dispatch, _transforms
from ._checks import FLOAT_DTYPES, check_int, check_tensor

OP = "istd.connected_components"
STATS_OP = "istd.component_stats"
MEASURE_OP = "istd.measure_components"
WITH_STATS_OP = "istd.connected_components_with_stats"
CONNECTIVITIES = (4, 8)

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
MASK_DTYPES = (torch.bool,) + _INT_DTYPES + FLOAT_DTYPES


class ComponentStats(NamedTuple):
    """Per-component statistics; component ``k`` of image ``i`` is at ``[i, k - 1]``.

    Entries past ``counts[i]`` are zero. ``M = max(counts)`` (0 for no components).
    """

    area: Tensor  # int64 [N, M], pixels
    centroid: Tensor  # float64 [N, M, 2], (row, col)
    bbox: Tensor  # int64 [N, M, 4], (min_row, min_col, max_row + 1, max_col + 1)
    counts: Tensor  # int64 [N]


def _check_connectivity(connectivity: object) -> int:
    check_int(connectivity, "connectivity", what="the int 4 or 8")
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity}")
    return int(connectivity)


def _check_mask(mask: object) -> None:
    check_tensor(mask, "mask", 3, dtypes=MASK_DTYPES, shape_doc="[N, H, W] (squeeze a channel dimension first)")
    if mask.shape[1] * mask.shape[2] > MAX_IMAGE_PIXELS:
        raise ValueError(f"mask's images must have at most {MAX_IMAGE_PIXELS} pixels (int32 pixel indices); got "
                         f"{mask.shape[1]}x{mask.shape[2]}")


def _foreground(mask: object) -> Tensor:
    """``mask`` checked and turned into a bool ``[N, H, W]`` foreground tensor."""
    _check_mask(mask)
    if mask.dtype == torch.bool:
        return mask
    if mask.dtype.is_floating_point:
        return mask > 0.5  # a probability map; NaN is background
    return mask != 0


def _check_out(out: object, mask: Tensor) -> None:
    """``out`` must be a contiguous int32 tensor of ``mask``'s shape and device, not sharing
    ``mask``'s memory (the labelling reads the mask while it writes the labels)."""
    check_tensor(out, "out", 3, dtypes=(torch.int32,), shape_doc="[N, H, W] like mask")
    if out.shape != mask.shape:
        raise ValueError(f"out must have mask's shape {tuple(mask.shape)}; got {tuple(out.shape)}")
    if out.device != mask.device:
        raise ValueError(f"out must be on mask's device ({mask.device}); got {out.device}")
    if not out.is_contiguous():
        raise ValueError("out must be contiguous (row-major [N, H, W]); got strides "
                         f"{tuple(out.stride())}: pass a fresh torch.empty_like buffer")
    if out.numel() and mask.numel() and out.untyped_storage().data_ptr() == mask.untyped_storage().data_ptr():
        raise ValueError("out must not share memory with mask")


def _into(labels: Tensor, out: Tensor | None) -> Tensor:
    """``labels``, or ``out`` holding them when the caller gave one."""
    return labels if out is None else out.copy_(labels)


def _reference(fg: Tensor, connectivity: int, out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    n, h, w = fg.shape
    device = fg.device
    labels = torch.zeros((n, h, w), dtype=torch.int32, device=device)
    counts = torch.zeros((n,), dtype=torch.int64, device=device)
    if fg.numel() == 0:
        return _into(labels, out), counts
    # Labels are negated so that max_pool (the only windowed reduction PyTorch has for every
    # device) computes the neighbourhood minimum; float64 keeps indices exact up to 2^53.
    # Indices run over the whole batch: pooling never crosses images, and image i's labels
    # then lie in [i*h*w + 1, (i+1)*h*w], which the renumbering below relies on.
    background = torch.tensor(float("-inf"), dtype=torch.float64, device=device)
    index = torch.arange(1, n * h * w + 1, dtype=torch.float64, device=device).view(n, h, w)
    neg = torch.where(fg, -index, background)
    flat_fg = fg.reshape(-1)
    while True:
        x = neg.unsqueeze(1)
        if connectivity == 8:
            pooled = F.max_pool2d(x, 3, 1, 1)
        else:
            pooled = torch.maximum(F.max_pool2d(x, (3, 1), 1, (1, 0)), F.max_pool2d(x, (1, 3), 1, (0, 1)))
        new = torch.where(fg, pooled.squeeze(1), background).reshape(-1)
        # Pointer jumping: a label is the index of a pixel in the same component, so taking
        # that pixel's label too is still a valid label and cuts the iterations on long,
        # winding components from their length to about its logarithm.
        target = torch.where(flat_fg, -new - 1, 0).to(torch.int64)
        new = torch.where(flat_fg, torch.maximum(new, new[target]), background).view(n, h, w)
        if torch.equal(new, neg):
            break
        neg = new
    # Each component now carries the index of its smallest pixel, its first in raster order,
    # so sorting those roots gives the numbering.
    lab = (-neg[fg]).to(torch.int64)
    roots = torch.unique(lab)  # sorted
    image = (roots - 1) // (h * w)
    counts = torch.bincount(image, minlength=n)
    first = torch.cumsum(counts, 0) - counts
    number = torch.arange(1, roots.numel() + 1, device=device) - first[image]
    labels[fg] = number[torch.searchsorted(roots, lab)].to(torch.int32)
    return _into(labels, out), counts


def connected_components_ref(mask: Tensor, connectivity: int = 8) -> tuple[Tensor, Tensor]:
    """Reference labelling in plain PyTorch: iterative min-label propagation, any device.

    Every foreground pixel starts with its linear index + 1; each step replaces a label by
    the minimum over the pixel's 4- or 8-neighbourhood (restricted to foreground) until
    nothing changes; components are then numbered in order of their minimum index. Args and
    result as :func:`connected_components`. The number of steps grows with the components'
    geodesic length, so this is for testing and small inputs.
    """
    connectivity = _check_connectivity(connectivity)
    return _reference(_foreground(mask), connectivity)


def connected_components(mask: Tensor, connectivity: int = 8, backend: str | None = None, *,
                         out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Label the connected components of each image of a batch of binary masks.

    Args:
        mask: ``[N, H, W]``; bool, integer (non-zero is foreground) or floating point
            (``> 0.5`` is foreground, e.g. a probability map). ``N``, ``H`` or ``W`` may be 0.
        connectivity: 8 (diagonal neighbours connect) or 4.
        backend: ``"torch"``, ``"cpp"``, ``"cuda"``, ``"auto"`` or None (see
            :mod:`istd_kernels.backend`).
        out: optional int32 ``[N, H, W]`` contiguous tensor on ``mask``'s device, not sharing
            its memory, to write the labels into (a buffer reused across calls; every pixel
            is overwritten). Without it the ``cpp`` backend returns labels in zero pages
            from ``calloc`` and writes only the foreground, which is most of its speed-up on
            sparse masks; with it each image is cleared and then written.

    Returns:
        ``(labels, counts)``: ``labels`` (``out`` when given) int32 ``[N, H, W]`` on ``mask``'s device, 0 for
        background and 1..counts[i] for the components of image ``i``, numbered in raster
        order of their first pixel (identical to ``skimage.measure.label(m, connectivity=2
        if connectivity == 8 else 1)``); ``counts`` int64 ``[N]``.
    """
    return _label(OP, mask, connectivity, backend, out)


def _label(op: str, mask: object, connectivity: object, backend: str | None, out: Tensor | None):
    """The checks and dispatch shared by the labelling ops (``op``'s forward takes the
    foreground, the connectivity and ``out``)."""
    fg = _foreground(mask)
    connectivity = _check_connectivity(connectivity)
    if out is not None:
        _check_out(out, mask)
    # float32 stands in for the dtype: the mask's own dtype says nothing about which
    # backend can run, and a bf16 mask must not trip the Triton-interpreter rule.
    name = _dispatch.choose(op, fg.device, torch.float32, backend)
    if _transforms.transforming():
        _refuse_transform(op)
        labels, counts = _label_op(fg, connectivity, name)
        return _into(labels, out), counts
    return _dispatch.impl(op, name).forward(fg, connectivity, out)


@torch.library.custom_op("istd::connected_components", mutates_args=())
def _label_op(fg: Tensor, connectivity: int, backend: str) -> tuple[Tensor, Tensor]:
    """connected_components of a bool foreground on a selected backend (run under transforms)."""
    labels, counts = _dispatch.impl(OP, backend).forward(fg, connectivity, None)
    return labels, counts


@_label_op.register_fake
def _(fg, connectivity, backend):
    return fg.new_empty(fg.shape, dtype=torch.int32), fg.new_empty(fg.shape[:1], dtype=torch.int64)


@_label_op.register_vmap
def _(info, in_dims, fg, connectivity, backend):
    # Images are labelled independently: the vmapped dimension joins the batch.
    fg = fg.movedim(in_dims[0], 0)
    b, n = fg.shape[:2]
    labels, counts = _label_op(fg.reshape(b * n, *fg.shape[2:]), connectivity, backend)
    return (labels.reshape(b, n, *labels.shape[1:]), counts.reshape(b, n)), (0, 0)


def _refuse_transform(op: str) -> None:
    """RuntimeError for the statistics ops under a torch.func transform."""
    if op != OP:
        raise RuntimeError(f"{op} does not support torch.func.{_transforms.current()}: the size of its result "
                           "depends on the data, on every backend (backend=\"torch\" included); call it outside "
                           "the transform (its results are not differentiable)")


def _stats_torch(labels: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    n, h, w = labels.shape
    device = labels.device
    # Column 0 collects the background and is dropped at the end.
    idx = labels.reshape(n, h * w).to(torch.int64)
    rows = torch.arange(h, device=device).repeat_interleave(w).expand(n, -1)
    cols = torch.arange(w, device=device).repeat(h).expand(n, -1)

    def zeros() -> Tensor:
        return torch.zeros((n, m + 1), dtype=torch.int64, device=device)

    area = zeros().scatter_add_(1, idx, torch.ones_like(idx))
    row_sum = zeros().scatter_add_(1, idx, rows)
    col_sum = zeros().scatter_add_(1, idx, cols)
    # include_self=False leaves absent components at their initial zero.
    bounds = [zeros().scatter_reduce_(1, idx, coord, op, include_self=False)
              for op in ("amin", "amax") for coord in (rows, cols)]
    area = area[:, 1:]
    present = area > 0
    denom = area.clamp(min=1).to(torch.float64)
    centroid = torch.stack((row_sum[:, 1:] / denom, col_sum[:, 1:] / denom), dim=-1)
    centroid = torch.where(present.unsqueeze(-1), centroid, 0.0)
    min_row, min_col, max_row, max_col = (b[:, 1:] for b in bounds)
    one = present.to(torch.int64)
    bbox = torch.stack((min_row, min_col, max_row + one, max_col + one), dim=-1)
    return area, centroid, bbox


def component_stats(labels: Tensor, counts: Tensor, backend: str | None = None) -> ComponentStats:
    """Area, centroid and bounding box of every component of :func:`connected_components`'s output.

    Args:
        labels: int32 or int64 ``[N, H, W]``, 0 for background, 1..counts[i] in image ``i``.
        counts: int64 ``[N]`` on the same device.
        backend: ``"torch"`` (scatter reductions, any device), ``"cpp"`` (one pass per image,
            CPU), ``"cuda"`` (one kernel pass; lanes of a warp that hold the same label
            combine their pixels before one of them issues the atomics), ``"auto"`` or None.

    Returns:
        :class:`ComponentStats`. Centroids are exact: integer coordinate sums divided by the
        area in float64, so they match skimage's ``regionprops`` and OpenCV bit for bit.
    """
    check_tensor(labels, "labels", 3, dtypes=(torch.int32, torch.int64), shape_doc="[N, H, W]")
    check_tensor(counts, "counts", 1, dtypes=(torch.int64,), shape_doc="[N]")
    if _transforms.transforming():
        _refuse_transform(STATS_OP)  # before the checks below read values on the host
    n = labels.shape[0]
    if counts.shape[0] != n:
        raise ValueError(f"counts must have shape ({n},) to match labels' batch; got {tuple(counts.shape)}")
    if counts.device != labels.device:
        raise ValueError(f"counts must be on labels' device ({labels.device}); got {counts.device}")
    m = int(counts.max()) if n > 0 else 0
    if n > 0 and int(counts.min()) < 0:
        raise ValueError(f"counts must be >= 0 (numbers of components); got a minimum of {int(counts.min())}")
    if labels.numel() > 0:
        low, high = torch.aminmax(labels)
        if int(low) < 0 or int(high) > m:
            raise ValueError(f"labels must lie in [0, max(counts)] = [0, {m}]; got [{int(low)}, {int(high)}]")
    name = _dispatch.choose(STATS_OP, labels.device, torch.float32, backend)
    return _measure_labels(labels, counts, m, name)


def _measure_labels(labels: Tensor, counts: Tensor, m: int, name: str) -> ComponentStats:
    """component_stats after its checks: labels in [0, m], ``name`` a selected backend."""
    return ComponentStats(*_dispatch.impl(STATS_OP, name).forward(labels, m), counts)


def connected_components_with_stats(mask: Tensor, connectivity: int = 8, backend: str | None = None, *,
                                    out: Tensor | None = None) -> tuple[Tensor, ComponentStats]:
    """Labels and statistics of the components of each image, what OpenCV's
    ``connectedComponentsWithStats`` returns: ``connected_components`` followed by
    ``component_stats``, bit for bit, on every backend.

    The ``cpp`` backend does both in one pass: it labels runs of foreground pixels, sums the
    statistics over the runs and writes each run's label once, so it never reads the label
    image back (``component_stats`` on its own must read every label).

    Args:
        mask, connectivity, backend, out: as for :func:`connected_components`.

    Returns:
        ``(labels, stats)``: int32 ``[N, H, W]`` labels (``out`` when given) and
        :class:`ComponentStats`, components in raster order of their first pixel.
    """
    return _label(WITH_STATS_OP, mask, connectivity, backend, out)


def scanner_input(value: Tensor, threshold: float, binarize: Callable[[Tensor], Tensor]
                  ) -> tuple[Tensor, float | None]:
    """``value`` as the C++ run scanner reads it, foreground where ``value > threshold``:
    contiguous float32 with the threshold (applied on the fly), or contiguous uint8 bytes
    where non-zero is foreground. Bool and uint8 maps with a threshold in [0, 1) are that
    already and are viewed, not copied; other dtypes go through ``binarize`` first."""
    if value.dtype == torch.float32:
        return value.contiguous(), threshold
    if value.dtype in (torch.bool, torch.uint8) and 0.0 <= threshold < 1.0:
        return value.contiguous().view(torch.uint8), None
    return binarize(value).contiguous().view(torch.uint8), None


def measure_components(mask: Tensor, connectivity: int = 8, backend: str | None = None) -> ComponentStats:
    """Area, centroid and bounding box of the connected components of each image, without
    returning labels: equivalent to ``component_stats(*connected_components(mask,
    connectivity))``, bit for bit, on every backend.

    The ``cpp`` backend never builds a label image: it reduces each row to runs of
    foreground pixels, joins touching runs with a union-find and sums the runs, so its
    memory grows with the number of runs, not of pixels, and a sparse infrared mask costs
    about one read (a float32 mask is thresholded on the fly). ``torch`` and ``cuda`` label
    first and then measure.

    Args:
        mask: ``[N, H, W]``, as for :func:`connected_components` (bool, integer non-zero, or
            floating point ``> 0.5``).
        connectivity: 8 or 4.
        backend: ``"torch"``, ``"cpp"``, ``"cuda"``, ``"auto"`` or None.

    Returns:
        :class:`ComponentStats` on ``mask``'s device, components in raster order of their
        first pixel.
    """
    _check_mask(mask)
    connectivity = _check_connectivity(connectivity)
    name = _dispatch.choose(MEASURE_OP, mask.device, torch.float32, backend)
    if _transforms.transforming():
        _refuse_transform(MEASURE_OP)
    return _dispatch.impl(MEASURE_OP, name).forward(mask, connectivity)


# ---------------------------------------------------------------------------------------
# The implementation records (forward only: nothing here is differentiable).


def _as_bytes(fg: Tensor) -> Tensor:
    """A bool foreground as contiguous uint8, viewed rather than copied where it can be."""
    return fg.contiguous().view(torch.uint8)


def _label_and_measure_cpp(fg: Tensor, connectivity: int, out: Tensor | None) -> tuple[Tensor, ComponentStats]:
    labels, counts, area, centroid, bbox = _dispatch.extension_kernel("cpp", "connected_components")(
        _as_bytes(fg), connectivity, out, True)
    return labels, ComponentStats(area, centroid, bbox, counts)


def _label_cpp(fg: Tensor, connectivity: int, out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    labels, counts = _dispatch.extension_kernel("cpp", "connected_components")(_as_bytes(fg), connectivity, out)
    return labels, counts


def _label_cuda(fg: Tensor, connectivity: int, out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    labels, counts = _dispatch.extension_kernel("cuda", "connected_components")(_as_bytes(fg), connectivity)
    return _into(labels, out), counts


def _stats_kernel(backend: str):
    kernel = _dispatch.extension_kernel(backend, "component_stats")
    # Values lie in [0, m], so the cast to int32 is exact.
    return lambda labels, m: kernel(labels.to(torch.int32).contiguous(), m)


def _label_then_measure(backend: str):
    def label_and_measure(fg: Tensor, connectivity: int, out: Tensor | None) -> tuple[Tensor, ComponentStats]:
        labels, counts = _dispatch.impl(OP, backend).forward(fg, connectivity, out)
        # Our own labels need no range check: skipping it saves a pass over them and, on a
        # GPU, a host synchronisation; reading M is the one that remains.
        m = int(counts.max()) if counts.numel() else 0
        return labels, _measure_labels(labels, counts, m, backend)

    return label_and_measure


def _measure_by_labels(backend: str):
    label_and_measure = _label_then_measure(backend)
    return lambda mask, connectivity: label_and_measure(_foreground(mask), connectivity, None)[1]


def _measure_by_runs(mask: Tensor, connectivity: int) -> ComponentStats:
    data, threshold = scanner_input(mask, 0.5, _foreground)
    counts, area, centroid, bbox = _dispatch.extension_kernel("cpp", "measure_components")(data, threshold,
                                                                                            connectivity)
    return ComponentStats(area, centroid, bbox, counts)


_dispatch.register(OP, "torch", _reference)
_dispatch.register(OP, "cpp", _label_cpp)
_dispatch.register(OP, "cuda", _label_cuda)
_dispatch.register(STATS_OP, "torch", _stats_torch)
for _name in ("cpp", "cuda"):
    _dispatch.register(STATS_OP, _name, _stats_kernel(_name))
_dispatch.register(WITH_STATS_OP, "torch", _label_then_measure("torch"))
_dispatch.register(WITH_STATS_OP, "cpp", _label_and_measure_cpp)
_dispatch.register(WITH_STATS_OP, "cuda", _label_then_measure("cuda"))
_dispatch.register(MEASURE_OP, "torch", _measure_by_labels("torch"))
_dispatch.register(MEASURE_OP, "cpp", _measure_by_runs)
_dispatch.register(MEASURE_OP, "cuda", _measure_by_labels("cuda"))
