"""The networks the ``istd`` subcommands build and load: configs from flags, LCRNet/RRCA-Net
construction, and checkpoints or bare state_dicts loaded for inference (evaluate, predict,
profile) with every mistake one :class:`~istd_kernels.cli.CLIError` line."""

from __future__ import annotations

import torch
from torch import nn

from . import CLIError
from .checkpoints import read_checkpoint

FORMAT_VERSION = 1
MODELS = ("lcrnet", "rrcanet")


DEFAULT_MODEL_CONFIG = {"lcrnet": {"channels": [16, 32, 64, 64], "depths": [3, 3, 3, 3]},
                        "rrcanet": {"backbone": "resnet18", "iterations": 2}}
TINY_MODEL_CONFIG = {"lcrnet": {"channels": [16, 16], "depths": [1, 1]},
                     "rrcanet": {"backbone": "resnet10", "iterations": 1}}

# ----------------------------------------------------------------------------- models

def model_config_from_args(args) -> dict:
    """The model's constructor arguments from ``--tiny`` and the per-model shape flags."""
    name = args.model
    cfg = dict((TINY_MODEL_CONFIG if getattr(args, "tiny", False) else DEFAULT_MODEL_CONFIG)[name])
    if name == "lcrnet":
        for key in ("channels", "depths"):
            value = getattr(args, f"lcrnet_{key}", None)
            if value:
                try:
                    cfg[key] = [int(v) for v in value.split(",")]
                except ValueError:
                    raise CLIError(f"--lcrnet-{key} must be comma-separated integers; got {value!r}") from None
    else:
        if getattr(args, "rrcanet_backbone", None):
            cfg["backbone"] = args.rrcanet_backbone
        if getattr(args, "rrcanet_iterations", None) is not None:
            cfg["iterations"] = args.rrcanet_iterations
    return cfg


def build_model(name: str, config: dict, backend: str | None = None) -> nn.Module:
    """An LCRNet or RRCA-Net from its config dict; a bad config is a :class:`CLIError`."""
    from models import LCRNet, RRCANet
    try:
        if name == "lcrnet":
            return LCRNet(channels=tuple(config["channels"]), depths=tuple(config["depths"]), backend=backend)
        if name == "rrcanet":
            return RRCANet(backbone=config["backbone"], iterations=int(config["iterations"]))
    except (ValueError, TypeError, KeyError) as e:
        raise CLIError(f"invalid {name} configuration {config}: {e}") from e
    raise CLIError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def xavier_init(model: nn.Module) -> None:
    """Xavier-normal conv weights and zero conv biases, as RRCA-Net's training script does."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def check_checkpoint(ckpt: dict, path: str, model: str) -> None:
    """Refuse a checkpoint of a newer format or of the other model, with one clear line."""
    if "format_version" not in ckpt:
        return
    version = ckpt["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CLIError(f"weights file {path} has checkpoint format {version}, newer than this istd reads "
                       f"(up to {FORMAT_VERSION}); upgrade istd-kernels")
    if ckpt.get("model") != model:
        raise CLIError(f"weights file {path} holds a {ckpt.get('model')} checkpoint; expected {model} "
                       f"(pass --model {ckpt.get('model')} or the other weights)")


def inference_model(args):
    """``(net, device)`` for evaluate and predict: the device from ``--device``, weights loaded."""
    flag = args.device or "auto"
    device = torch.device("cuda" if (flag == "auto" and torch.cuda.is_available()) or flag == "cuda"
                          else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda was given but no CUDA GPU is available")
    net, _ = load_model(args.model, args.weights, model_config_from_args(args), args.backend)
    return net.to(device), device


def load_model(model: str, weights: str, args_config: dict, backend: str | None = None):
    """``(model in eval mode, checkpoint dict)`` from an ``istd train`` checkpoint or a bare state_dict.

    A bare state_dict (e.g. an official RRCA-Net checkpoint) is loaded into the model shape the
    command-line flags describe; an istd checkpoint carries its own model config.
    """
    ckpt = read_checkpoint(weights)
    check_checkpoint(ckpt, weights, model)
    if "format_version" in ckpt:
        missing = [k for k in ("model_config", "model_state") if k not in ckpt]
        if missing:
            raise CLIError(f"weights file {weights} has no {', '.join(missing)} entry; expected a checkpoint "
                           f"written by istd train (RUN/best.pt) or a bare state_dict")
        config, state = ckpt["model_config"], ckpt["model_state"]
    else:
        from models.rrcanet import convert_official_state_dict
        config, state = args_config, convert_official_state_dict(ckpt)
    net = build_model(model, config, backend)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        own = set(net.state_dict())
        missing, unexpected = own - set(state), set(state) - own
        detail = (f"{len(missing)} missing and {len(unexpected)} unexpected keys" if missing or unexpected
                  else "tensor shapes differ")
        raise CLIError(f"weights file {weights} does not fit {model} {config} ({detail}); expected weights "
                       f"of that model and size") from None
    net.eval()
    return net, ckpt
