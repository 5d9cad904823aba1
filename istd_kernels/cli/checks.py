"""Argument checks shared by ``evaluate``, ``predict`` and ``profile``: each mistake is one
:class:`~istd_kernels.cli.CLIError` line naming the flag and what it accepts."""

from __future__ import annotations

from . import CLIError


def check_at_least(flag: str, value: int | None, low: int) -> None:
    """``value`` (when given) must be an integer >= ``low``."""
    if value is not None and value < low:
        raise CLIError(f"{flag} must be >= {low}; got {value}")


def check_backend(name: str | None, device=None) -> None:
    """``--backend`` must be a backend name and, when named explicitly, able to run on ``device``.

    Without ``device`` only the name is checked (before anything is loaded).
    """
    from .. import backend as _backend
    if name is None or name == "auto":
        return
    choices = _backend.NAMES + ("auto",)
    if name not in choices:
        raise CLIError(f"--backend must be one of {', '.join(choices)}; got {name!r}")
    if device is None:
        return
    ok, reason = _backend.backends()[name]
    if not ok:
        raise CLIError(f"--backend {name} is not available on this machine: {reason}")
    runs_on = {"cpp": "cpu", "cuda": "cuda"}.get(name)
    if runs_on is not None and device.type != runs_on:
        raise CLIError(f"--backend {name} runs on {runs_on} tensors but the model runs on {device.type} "
                       f"(choose --device {runs_on} or another backend)")


def load_inference_model(args):
    """``(net, device)`` from ``--model/--weights/--device/--backend``, every failure one line."""
    from .networks import inference_model
    check_backend(args.backend)
    try:
        net, device = inference_model(args)
    except KeyError as e:  # an istd checkpoint with an entry missing
        raise CLIError(f"weights file {args.weights} has no {e.args[0]!r} entry; expected a checkpoint "
                       f"written by istd train (RUN/best.pt) or a bare state_dict") from None
    check_backend(args.backend, device)
    return net, device
