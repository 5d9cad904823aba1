"""``istd train``: the papers' training recipes, checkpoints that resume exactly, and the model
and checkpoint helpers that ``evaluate`` and ``predict`` share.

Recipes (SPEC §3, §4), each value overridable on the command line:

- LCRNet: Soft-IoU loss, Adan (lr 1e-3, betas (0.98, 0.92, 0.99), eps 1e-8, weight decay
  1e-4), poly decay ``lr * (1 - epoch / epochs) ** 0.9``, batch 8, 400 epochs, whole images,
  no augmentation.
- RRCA-Net: DpT-k loss, Adagrad lr 0.05, cosine annealing to 1e-3, batch 8, 1500 epochs,
  256x256 random crops and random flips, Xavier-normal init of every conv.

The learning rate follows the schedule per epoch. Multi-GPU: launch with ``torchrun
--nproc_per_node=G istd train ...``; with ``WORLD_SIZE > 1`` each process trains on its
shard (``DistributedSampler``) with ``--batch-size`` images per process, the model is wrapped
in ``DistributedDataParallel``, metrics are summed over processes, and rank 0 alone writes
checkpoints and logs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import CLIError

FORMAT_VERSION = 1
MODELS = ("lcrnet", "rrcanet")

RECIPES: Dict[str, dict] = {
    "lcrnet": dict(loss="softiou", optimizer="adan", lr=1e-3, betas=[0.98, 0.92, 0.99], eps=1e-8,
                   weight_decay=1e-4, scheduler="poly", poly_power=0.9, min_lr=0.0, batch_size=8,
                   epochs=400, crop=0, flip=False, init="default"),
    "rrcanet": dict(loss="dptk", optimizer="adagrad", lr=0.05, betas=None, eps=1e-10, weight_decay=0.0,
                    scheduler="cosine", poly_power=0.9, min_lr=1e-3, batch_size=8, epochs=1500, crop=256,
                    flip=True, init="xavier"),
}
DEFAULT_MODEL_CONFIG = {"lcrnet": {"channels": [16, 32, 64, 64], "depths": [3, 3, 3, 3]},
                        "rrcanet": {"backbone": "resnet18", "iterations": 2}}
TINY_MODEL_CONFIG = {"lcrnet": {"channels": [16, 16], "depths": [1, 1]},
                     "rrcanet": {"backbone": "resnet10", "iterations": 1}}
# Flags a resumed run may change; every other setting comes from the checkpoint, so that
# the resumed run is the run that was interrupted.
RESUME_OVERRIDABLE = ("data", "layout", "split", "epochs", "workers", "log_every", "stop_after", "eval_batch_size", "device", "backend")


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


def build_model(name: str, config: dict, backend: Optional[str] = None) -> nn.Module:
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


# ------------------------------------------------------------------------ checkpoints

def save_checkpoint(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``: never a half file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str) -> dict:
    """Load a weights file on the CPU (tensors only: no arbitrary pickles), naming it on failure."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"weights file {p} does not exist (expected a checkpoint written by istd train, "
                       f"e.g. RUN/best.pt)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a non-checkpoint file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"cannot load weights file {p}: not a PyTorch checkpoint of tensors ({first})") from e
    if not isinstance(obj, dict):
        raise CLIError(f"weights file {p} holds a {type(obj).__name__}; expected a checkpoint or state_dict")
    return obj


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


def load_model(model: str, weights: str, args_config: dict, backend: Optional[str] = None):
    """``(model in eval mode, checkpoint dict)`` from an ``istd train`` checkpoint or a bare state_dict.

    A bare state_dict (e.g. an official RRCA-Net checkpoint) is loaded into the model shape the
    command-line flags describe; an istd checkpoint carries its own model config.
    """
    ckpt = read_checkpoint(weights)
    check_checkpoint(ckpt, weights, model)
    if "format_version" in ckpt:
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


# --------------------------------------------------------------------------- training

def _rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
             "numpy_pos": int(np_state["state"]["pos"]), "numpy_has_gauss": int(np_state["has_gauss"]),
             "numpy_gauss": float(np_state["gauss"])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    torch.set_rng_state(state["torch"])
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": state["numpy_key"].numpy().astype(np.uint32),
                                                               "pos": state["numpy_pos"]},
                         "has_gauss": state["numpy_has_gauss"], "gauss": state["numpy_gauss"]})
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _lr_factor(cfg: dict):
    epochs, base, min_lr = cfg["epochs"], cfg["lr"], cfg["min_lr"]

    def poly(e: int) -> float:
        return max(0.0, 1 - e / epochs) ** cfg["poly_power"]

    def cosine(e: int) -> float:
        return (min_lr + (base - min_lr) * (1 + math.cos(math.pi * min(e, epochs) / epochs)) / 2) / base

    return {"poly": poly, "cosine": cosine, "none": lambda e: 1.0}[cfg["scheduler"]]


def _optimizer(cfg: dict, params):
    name, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    if name == "adan":
        from ..optim import Adan
        return Adan(params, lr=lr, betas=tuple(cfg["betas"] or (0.98, 0.92, 0.99)), eps=cfg["eps"],
                    weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd, eps=cfg["eps"])
    if name in ("adam", "adamw"):
        betas = tuple(cfg["betas"][:2]) if cfg["betas"] else (0.9, 0.999)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=betas, eps=cfg["eps"], weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    raise CLIError(f"unknown optimizer {name!r}")


def _loss(name: str) -> nn.Module:
    from ..losses import DpTkLoss, SoftIoULoss
    return {"softiou": SoftIoULoss, "dptk": DpTkLoss}[name]()


def _or(value, default):
    return default if value is None else value


def config_from_args(args) -> dict:
    """The run's full configuration: the model's recipe, then every flag the user gave."""
    cfg = dict(RECIPES[args.model])
    cfg.update(model=args.model, model_config=model_config_from_args(args), data=str(args.data),
               layout=args.layout, split=args.split, seed=args.seed, amp=bool(args.amp),
               deterministic=bool(args.deterministic), workers=_or(args.workers, 2),
               log_every=_or(args.log_every, 50), stop_after=args.stop_after,
               eval_batch_size=_or(args.eval_batch_size, 1), device=_or(args.device, "auto"), backend=args.backend)
    for key in ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "scheduler", "min_lr", "loss", "crop",
                "flip"):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    if cfg["epochs"] < 1 or cfg["batch_size"] < 1:
        raise CLIError(f"--epochs and --batch-size must be >= 1; got {cfg['epochs']} and {cfg['batch_size']}")
    for key, low in (("crop", 0), ("workers", 0), ("eval_batch_size", 1), ("stop_after", 1), ("log_every", 0)):
        if cfg[key] is not None and cfg[key] < low:
            raise CLIError(f"--{key.replace('_', '-')} must be >= {low}; got {cfg[key]}")
    if not cfg["lr"] > 0:
        raise CLIError(f"--lr must be > 0; got {cfg['lr']}")
    if cfg["scheduler"] == "cosine" and not 0 <= cfg["min_lr"] <= cfg["lr"]:
        raise CLIError(f"--min-lr must be in [0, --lr]; got {cfg['min_lr']} with lr {cfg['lr']}")
    return cfg


class _Dist:
    """Process-group facts; a single process is world 1, rank 0."""

    def __init__(self, device_flag: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        want_cuda = device_flag == "cuda" or (device_flag == "auto" and torch.cuda.is_available())
        if device_flag == "cuda" and not torch.cuda.is_available():
            raise CLIError("--device cuda was given but no CUDA GPU is available")
        if want_cuda:
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if want_cuda else "gloo")
        self.main = self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def evaluate_model(net: nn.Module, loader, device: torch.device, amp: bool = False, roc=None) -> dict:
    """ISTDMetrics (and optionally a ROC) over ``loader``; predictions cropped to each image's size."""
    from ..metrics import ISTDMetrics
    metrics = ISTDMetrics(logits=True)
    net.eval()
    images, seconds = 0, 0.0
    with torch.no_grad():
        for x, y, _, sizes in loader:
            x, y = x.to(device), y.to(device)
            t0 = time.perf_counter()
            with _autocast(device, amp):
                logits = net(x, return_logits=True).float()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - t0
            for i, (h, w) in enumerate(sizes):
                metrics.update(logits[i:i + 1, :, :h, :w], y[i:i + 1, :, :h, :w])
                if roc is not None:
                    roc.update(logits[i:i + 1, :, :h, :w], y[i:i + 1, :, :h, :w])
            images += len(sizes)
    out = metrics.compute()
    out["images_per_s"] = images / seconds if seconds > 0 else float("nan")
    out["images_seen"] = images
    return out


def _progress(prefix: str, step: int, total: int, text: str) -> None:
    """A progress bar redrawn in place on a terminal; one plain line per call in logs and pipes."""
    if sys.stdout.isatty():
        done = int(30 * step / max(total, 1))
        end = "\n" if step >= total else ""
        print(f"\r{prefix} [{'#' * done}{'.' * (30 - done)}] {step}/{total} {text}", end=end, flush=True)
    else:
        print(f"{prefix} step {step}/{total} {text}", flush=True)


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def _write_logs(run: Path, rows: list, cfg: dict) -> None:
    fields = list(rows[0].keys()) if rows else ["epoch"]
    tmp = run / ".log.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, run / "log.csv")
    tmp = run / ".log.json.tmp"
    tmp.write_text(json.dumps({"config": cfg, "epochs": rows}, indent=1))
    os.replace(tmp, run / "log.json")


def _make_loader(ds, batch_size, shuffle, workers, seed, epoch, d: _Dist, shard_eval=False):
    from torch.utils.data import DataLoader, DistributedSampler, Subset
    from .data import pad_collate
    sampler, gen = None, None
    if shuffle:
        if d.world > 1:
            sampler = DistributedSampler(ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
        else:
            # a fresh generator per epoch: the order of epoch e does not depend on epochs before it
            gen = torch.Generator()
            gen.manual_seed(seed * 100003 + epoch)
    elif shard_eval and d.world > 1:
        # every image exactly once over all processes (DistributedSampler would repeat some)
        ds = Subset(ds, list(range(d.rank, len(ds), d.world)))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=gen, num_workers=workers, collate_fn=pad_collate,
                      persistent_workers=False, pin_memory=False)


def train(cfg: dict, run: Path, resume: Optional[dict] = None) -> dict:
    """Train as ``cfg`` says, writing ``run/last.pt``, ``run/best.pt``, ``run/log.csv``, ``run/log.json``.

    With ``resume`` (a checkpoint dict) the model, optimizer, scheduler, scaler and RNG states
    and the log rows are restored and training continues at the next epoch, reproducing an
    uninterrupted run (same data order and augmentation: both are functions of seed and epoch).
    Returns the last epoch's log row.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP
    from .data import ISTDDataset

    d = _Dist(cfg["device"])
    try:
        if cfg["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif d.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        _seed_all(cfg["seed"])
        crop = cfg["crop"] or None
        train_ds = ISTDDataset(cfg["data"], "train", cfg["layout"], cfg["split"], crop=crop, flip=cfg["flip"],
                               seed=cfg["seed"])
        test_ds = ISTDDataset(cfg["data"], "test", cfg["layout"], cfg["split"])
        model = build_model(cfg["model"], cfg["model_config"], cfg["backend"])
        if cfg["init"] == "xavier":
            xavier_init(model)
        model.to(d.device)
        optimizer = _optimizer(cfg, model.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg))
        use_scaler = cfg["amp"] and d.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        criterion = _loss(cfg["loss"])
        start, best, rows = 0, -1.0, []
        if resume is not None:
            model.load_state_dict(resume["model_state"])
            optimizer.load_state_dict(resume["optimizer_state"])
            scheduler.load_state_dict(resume["scheduler_state"])
            if resume.get("scaler_state"):
                scaler.load_state_dict(resume["scaler_state"])
            start, best, rows = int(resume["epoch"]), float(resume["best_iou"]), list(resume["log"])
            _set_rng_state(resume["rng"])
        net = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None) if d.world > 1 else model
        run.mkdir(parents=True, exist_ok=True)
        if d.main:
            print(f"istd train: {cfg['model']} {cfg['model_config']} on {cfg['data']} ({len(train_ds)} train / "
                  f"{len(test_ds)} test images), {d.world} process(es) on {d.device}; {cfg['loss']} loss, "
                  f"{cfg['optimizer']} lr {cfg['lr']:g}, {cfg['scheduler']} schedule, epochs {start + 1}.."
                  f"{cfg['epochs']}", flush=True)
        stop_at = cfg["epochs"] if not cfg.get("stop_after") else min(cfg["epochs"], start + cfg["stop_after"])
        row: dict = rows[-1] if rows else {}
        for epoch in range(start, stop_at):
            train_ds.set_epoch(epoch)
            loader = _make_loader(train_ds, cfg["batch_size"], True, cfg["workers"], cfg["seed"], epoch, d)
            net.train()
            lr = optimizer.param_groups[0]["lr"]
            t_epoch = time.perf_counter()
            t_window, seen_window, loss_sum, n_batches = time.perf_counter(), 0, 0.0, 0
            for step, (x, y, _, _) in enumerate(loader, 1):
                x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(d.device, cfg["amp"]):
                    logits = net(x, return_logits=True)
                loss = criterion(logits.float(), y)
                if not torch.isfinite(loss):
                    raise CLIError(f"loss became {loss.item()} at epoch {epoch + 1} step {step}; lower --lr "
                                   f"or drop --amp")
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.item()
                n_batches += 1
                seen_window += x.shape[0] * d.world
                if d.main and cfg["log_every"] and step % cfg["log_every"] == 0:
                    dt = time.perf_counter() - t_window
                    _progress(f"epoch {epoch + 1}/{cfg['epochs']}", step, len(loader),
                              f"loss {loss.item():.4f} lr {lr:.2e} {seen_window / max(dt, 1e-9):.1f} img/s")
                    t_window, seen_window = time.perf_counter(), 0
            train_time = time.perf_counter() - t_epoch
            scheduler.step()
            if d.world > 1:
                t = torch.tensor([loss_sum, n_batches], device=d.device, dtype=torch.float64)
                dist.all_reduce(t)
                loss_sum, n_batches = t.tolist()
            test_loader = _make_loader(test_ds, cfg["eval_batch_size"], False, cfg["workers"], cfg["seed"], epoch, d,
                                       shard_eval=True)
            m = evaluate_model(model, test_loader, d.device, cfg["amp"])
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(n_batches, 1),
                   "iou": m["iou"], "niou": m["niou"], "pd": m["pd"], "fa": m["fa"],
                   "train_images_per_s": len(train_ds) / max(train_time, 1e-9), "epoch_s": time.perf_counter() - t_epoch}
            rows.append(row)
            improved = m["iou"] > best
            best = max(best, m["iou"])
            if d.main:
                ckpt = {"format_version": FORMAT_VERSION, "model": cfg["model"], "model_config": cfg["model_config"],
                        "config": cfg, "epoch": epoch + 1, "model_state": model.state_dict(),
                        "optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(),
                        "scaler_state": scaler.state_dict() if use_scaler else None, "rng": _rng_state(),
                        "best_iou": best, "metrics": row, "log": rows}
                save_checkpoint(ckpt, run / "last.pt")
                if improved:
                    save_checkpoint(ckpt, run / "best.pt")
                _write_logs(run, rows, cfg)
                print(f"epoch {epoch + 1}/{cfg['epochs']} loss {row['train_loss']:.4f} | test IoU {100 * m['iou']:.2f} "
                      f"nIoU {100 * m['niou']:.2f} Pd {100 * m['pd']:.2f} Fa {1e6 * m['fa']:.2f}e-6"
                      f"{' (best)' if improved else ''} | {row['epoch_s']:.1f} s", flush=True)
            d.barrier()
        return row
    finally:
        d.close()


def run(args) -> int:
    """The ``istd train`` subcommand."""
    run_dir = Path(args.out)
    resume = None
    if args.resume:
        path = run_dir / "last.pt" if args.resume == "auto" else Path(args.resume)
        resume = read_checkpoint(str(path))
        check_checkpoint(resume, str(path), args.model)
        if "format_version" not in resume or "optimizer_state" not in resume:
            raise CLIError(f"{path} is not a training checkpoint of istd train (expected RUN/last.pt)")
        cfg = dict(resume["config"])
        given = config_from_args(args)
        for key in RESUME_OVERRIDABLE:
            if getattr(args, key, None) is not None and given[key] != cfg.get(key):
                cfg[key] = given[key]
        if cfg["epochs"] <= resume["epoch"]:
            print(f"istd train: {path} already finished epoch {resume['epoch']} of {cfg['epochs']}; "
                  f"pass a larger --epochs to train further")
            return 0
    else:
        cfg = config_from_args(args)
    train(cfg, run_dir, resume)
    return 0
