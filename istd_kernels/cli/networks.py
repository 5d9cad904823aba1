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


# What a config (from flags or from a checkpoint, which anyone may have written) may ask for:
# each bound is far above the published models (LCRNet 4 levels of <= 64 channels, depth 3;
# RRCA-Net 2 iterations), and checked before anything is built, so that a hostile checkpoint
# can neither hang the loader (10**7 iterations) nor ask for 160 GB of weights.
CONFIG_LIMITS = {"levels": (1, 6), "channels": (1, 1024), "depths": (0, 16), "iterations": (0, 16)}
MAX_PARAMETERS = 100_000_000


def _bounded_int(name: str, value, key: str) -> int:
    low, high = CONFIG_LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CLIError(f"invalid {name} configuration: {key} must hold integers in [{low}, {high}]; got {value!r}")
    return value


def _int_list(name: str, config: dict, key: str, n: int | None) -> list[int]:
    value = config[key]
    low, high = CONFIG_LIMITS["levels"]
    if not isinstance(value, (list, tuple)) or not low <= len(value) <= high or (n is not None and len(value) != n):
        want = f"{n} entries (one per level)" if n is not None else f"{low} to {high} entries"
        raise CLIError(f"invalid {name} configuration: {key} must be a list of {want}; got {value!r}")
    return [_bounded_int(name, v, key) for v in value]


def check_model_config(name: str, config) -> dict:
    """``config`` checked against :data:`CONFIG_LIMITS` (keys, types, counts, sizes); returns a clean
    copy. Raises :class:`CLIError` naming the bad entry and its bounds."""
    keys = {"lcrnet": ("channels", "depths"), "rrcanet": ("backbone", "iterations")}.get(name)
    if keys is None:
        raise CLIError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    if not isinstance(config, dict) or set(config) != set(keys):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise CLIError(f"invalid {name} configuration: expected the entries {', '.join(keys)}; got {got}")
    if name == "lcrnet":
        channels = _int_list(name, config, "channels", None)
        return {"channels": channels, "depths": _int_list(name, config, "depths", len(channels))}
    from models.rrcanet import BACKBONES
    if not isinstance(config["backbone"], str) or config["backbone"] not in BACKBONES:
        raise CLIError(f"invalid {name} configuration: backbone must be one of {', '.join(BACKBONES)}; "
                       f"got {config['backbone']!r}")
    return {"backbone": config["backbone"], "iterations": _bounded_int(name, config["iterations"], "iterations")}


def _construct(name: str, config: dict, backend: str | None) -> nn.Module:
    from models import LCRNet, RRCANet
    if name == "lcrnet":
        return LCRNet(channels=tuple(config["channels"]), depths=tuple(config["depths"]), backend=backend)
    return RRCANet(backbone=config["backbone"], iterations=config["iterations"])


def build_model(name: str, config: dict, backend: str | None = None) -> nn.Module:
    """An LCRNet or RRCA-Net from its config dict, checked first (:func:`check_model_config`,
    then at most :data:`MAX_PARAMETERS` weights, counted on the meta device without allocating
    them); a bad config is a :class:`CLIError`."""
    config = check_model_config(name, config)
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in _construct(name, config, None).parameters())
        if count > MAX_PARAMETERS:
            raise CLIError(f"invalid {name} configuration {config}: {count:,} parameters "
                           f"({4 * count / 2 ** 30:.1f} GiB in fp32), more than istd builds ({MAX_PARAMETERS:,})")
        return _construct(name, config, backend)
    except (ValueError, TypeError) as e:
        raise CLIError(f"invalid {name} configuration {config}: {e}") from e


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
    """``(net, device)`` for evaluate and predict: the device from ``--device``, weights loaded, the
    net wrapped in a :class:`~.tiling.FrameRunner` for ``--tile`` / ``--tile-overlap``."""
    flag = args.device or "auto"
    device = torch.device("cuda" if (flag == "auto" and torch.cuda.is_available()) or flag == "cuda"
                          else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda was given but no CUDA GPU is available")
    from .tiling import FrameRunner
    net, _ = load_model(args.model, args.weights, model_config_from_args(args), args.backend)
    runner = FrameRunner(net, getattr(args, "tile", None), getattr(args, "tile_overlap", None))
    return runner.eval().to(device), device


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
