"""Argument checks shared by the ops: each error names the argument and what was expected."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..layout import FLOAT_DTYPES


def _dtype_names(dtypes: Iterable[torch.dtype]) -> str:
    return ", ".join(str(d).replace("torch.", "") for d in dtypes)


def check_tensor(value: object, name: str, ndim: int | None = None, dtypes=FLOAT_DTYPES,
                 shape_doc: str = "") -> torch.Tensor:
    """Raise TypeError/ValueError unless ``value`` is a tensor of rank ``ndim`` and one of ``dtypes``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dtypes is not None and value.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype {_dtype_names(dtypes)}; got {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        doc = f" {shape_doc}" if shape_doc else ""
        raise ValueError(f"{name} must be {ndim}-D{doc}; got shape {tuple(value.shape)}")
    return value


def check_same(value: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    """Raise unless ``value`` has ``ref``'s dtype and device."""
    if value.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}); got {value.dtype}")
    if value.device != ref.device:
        raise ValueError(f"{name} must be on the device of {ref_name} ({ref.device}); got {value.device}")


def is_int(value: object) -> bool:
    """Whether ``value`` is a Python int and not a bool (``True`` is an int to isinstance)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, name: str, low: int | None = None, high: int | None = None, what: str = "an int"
              ) -> int:
    """``value`` as an int in [low, high] (None: unbounded): TypeError for a non-int (bools
    included), ValueError out of range."""
    if not is_int(value):
        raise TypeError(f"{name} must be {what}; got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}; got {value!r}")
    return int(value)


def check_positive_int(value: object, name: str, what: str = "a positive int") -> int:
    """``value`` as an int >= 1 (:func:`check_int`); both errors say ``name must be <what>``."""
    try:
        return check_int(value, name, 1, what=what)
    except ValueError:
        raise ValueError(f"{name} must be {what}; got {value!r}") from None


def as_pair(value: object, name: str, low: int, high: int | None = None) -> tuple[int, int]:
    """``value`` as an (int, int) pair, each in [low, high]."""
    if isinstance(value, (list, tuple)):
        items = tuple(value)
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}")
    else:
        items = (value, value)
    try:
        return tuple(check_int(item, name, low, high, "an int or a pair of ints") for item in items)  # type: ignore
    except ValueError as err:
        raise ValueError(str(err).rsplit("; got", 1)[0] + f"; got {value!r}") from None


def unaliased(outputs, inputs):
    """``outputs`` with every tensor that shares storage with an input or an earlier output cloned.

    A custom op's outputs may alias neither its inputs nor one another; kernels that write
    several small gradients into one buffer return views of it. Checked by storage rather
    than ``Tensor._is_view()``, which does not survive every dispatch mode.
    """
    seen = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor) and t.numel()}
    out = []
    for t in outputs:
        if isinstance(t, torch.Tensor) and t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            seen.add(ptr)
        out.append(t)
    return out


def autocast_cast(like: object, *tensors):
    """``tensors`` cast to the autocast dtype of ``like``'s device when autocast is on there.

    Done before the argument checks, so that under autocast an op accepts what its neighbours
    hand it (activations already in bf16, parameters still in fp32), as PyTorch's own ops do.
    Non-tensors, None and non-floating tensors pass through for the checks to judge.
    """
    # Devices without autocast (meta, used for shape propagation) take the inputs as they are.
    # A tuple, not torch.amp.is_autocast_available: torch 2.11's dynamo cannot trace that call,
    # which broke fullgraph compiles of the ops there; the package runs on cpu and cuda only.
    if (not isinstance(like, torch.Tensor) or like.device.type not in ("cpu", "cuda")
            or not torch.is_autocast_enabled(like.device.type)):
        return tensors
    dtype = torch.get_autocast_dtype(like.device.type)

    def cast(t):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            return t.to(dtype)
        if isinstance(t, (list, tuple)):
            return type(t)(cast(b) for b in t)
        return t

    return tuple(cast(t) for t in tensors)
