"""``istd train``: the papers' training recipes, checkpoints that resume exactly, and the model
and checkpoint helpers that ``evaluate`` and ``predict`` share.

Recipes (docs/networks.md §3.3, §4.6), each value overridable on the command line:

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

import contextlib
import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import CLIError
from .checkpoints import RunLock, atomic_write, read_checkpoint, remove_stale_temporaries, save_checkpoint
from .checks import check_backend
from .networks import FORMAT_VERSION, build_model, check_checkpoint, model_config_from_args, xavier_init
from .outputs import check_new_files, check_not_inputs
from .runtime import Progress, autocast, timed_forwards

RECIPES: dict[str, dict] = {
    "lcrnet": dict(loss="softiou", optimizer="adan", lr=1e-3, betas=[0.98, 0.92, 0.99], eps=1e-8,
                   weight_decay=1e-4, scheduler="poly", poly_power=0.9, min_lr=0.0, batch_size=8,
                   epochs=400, crop=0, flip=False, init="default"),
    "rrcanet": dict(loss="dptk", optimizer="adagrad", lr=0.05, betas=None, eps=1e-10, weight_decay=0.0,
                    scheduler="cosine", poly_power=0.9, min_lr=1e-3, batch_size=8, epochs=1500, crop=256,
                    flip=True, init="xavier"),
}
# Flags a resumed run may change; every other setting comes from the checkpoint, so that
# the resumed run is the run that was interrupted.
RESUME_OVERRIDABLE = ("data", "layout", "split", "epochs", "workers", "log_every", "stop_after", "eval_batch_size",
                      "device", "backend")


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


def evaluate_model(net: nn.Module, ds, device: torch.device, amp: bool, batch_size: int, workers: int,
                   d: _Dist) -> dict:
    """ISTDMetrics of ``net`` on ``ds`` (each process scores its share; the counts are summed over
    processes). Batches hold images of one size (``scoring.size_grouped``), so the figures do not
    depend on ``batch_size``."""
    from torch.utils.data import DataLoader, Subset

    from ..metrics import ISTDMetrics
    from .scoring import size_grouped
    if d.world > 1:  # every image exactly once over all processes (DistributedSampler would repeat some)
        ds = Subset(ds, list(range(d.rank, len(ds), d.world)))
    items = DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers)
    metrics, clock, images = ISTDMetrics(logits=True), [0.0], 0
    for logits, y, _, sizes in timed_forwards(net, size_grouped(items, batch_size), device, amp, clock):
        for i, (h, w) in enumerate(sizes):
            metrics.update(logits[i:i + 1, :, :h, :w], y[i:i + 1, :, :h, :w])
        images += len(sizes)
    out = metrics.compute()
    out["images_per_s"] = images / clock[0] if clock[0] > 0 else float("nan")
    return out


def _write_logs(run: Path, rows: list, cfg: dict) -> None:
    def write_csv(f):
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["epoch"])
        w.writeheader()
        w.writerows(rows)

    atomic_write(run / "log.csv", write_csv, mode="w")
    atomic_write(run / "log.json", lambda f: f.write(json.dumps({"config": cfg, "epochs": rows}, indent=1)),
                 mode="w")


def _train_loader(ds, batch_size, workers, seed, epoch, d: _Dist):
    """A shuffled loader whose order is a function of (seed, epoch) alone."""
    from torch.utils.data import DataLoader, DistributedSampler

    from .data import pad_collate
    sampler, gen = None, None
    if d.world > 1:
        sampler = DistributedSampler(ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
    else:
        # a fresh generator per epoch: the order of epoch e does not depend on epochs before it
        gen = torch.Generator()
        gen.manual_seed(seed * 100003 + epoch)
    return DataLoader(ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, generator=gen,
                      num_workers=workers, collate_fn=pad_collate, persistent_workers=False, pin_memory=False)


@dataclass
class _State:
    """What one training run carries from epoch to epoch."""

    train_ds: object
    test_ds: object
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    criterion: nn.Module
    start: int = 0
    best: float = -1.0
    best_epoch: int = 0
    rows: list = field(default_factory=list)


_TRAINING_KEYS = ("config", "epoch", "model_state", "optimizer_state", "scheduler_state", "rng", "best_iou", "log")
# How many training images --crop is checked against (reading every image would delay the start).
_CROP_CHECK_IMAGES = 16


def _check_crop(crop: int | None, train_ds) -> None:
    if not crop:
        return
    from .data import read_grey
    pairs = train_ds.pairs[:_CROP_CHECK_IMAGES]
    largest = max(max(read_grey(ipath).shape) for _, ipath, _ in pairs)
    if crop > largest:
        raise CLIError(f"--crop {crop} is larger than the training images (the largest of the first "
                       f"{len(pairs)} is {largest} px); expected --crop <= {largest}, or 0 for whole images")


def _build_state(cfg: dict, d: _Dist, resume: dict | None) -> _State:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .data import ISTDDataset
    from .masks import survey_masks
    crop = cfg["crop"] or None
    train_ds = ISTDDataset(cfg["data"], "train", cfg["layout"], cfg["split"], crop=crop, flip=cfg["flip"],
                           seed=cfg["seed"])
    test_ds = ISTDDataset(cfg["data"], "test", cfg["layout"], cfg["split"])
    _check_crop(crop, train_ds)
    if d.main:
        survey_masks([p[2] for p in train_ds.pairs + test_ds.pairs], cfg["data"])
    model = build_model(cfg["model"], cfg["model_config"], cfg["backend"])
    if cfg["init"] == "xavier":
        xavier_init(model)
    model.to(d.device)
    optimizer = _optimizer(cfg, model.parameters())
    net = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None) if d.world > 1 else model
    st = _State(train_ds, test_ds, model, net, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg)),
                torch.amp.GradScaler("cuda", enabled=cfg["amp"] and d.device.type == "cuda"), _loss(cfg["loss"]))
    if resume is not None:
        model.load_state_dict(resume["model_state"])
        optimizer.load_state_dict(resume["optimizer_state"])
        st.scheduler.load_state_dict(resume["scheduler_state"])
        if resume.get("scaler_state"):
            st.scaler.load_state_dict(resume["scaler_state"])
        st.start, st.best, st.rows = int(resume["epoch"]), float(resume["best_iou"]), list(resume["log"])
        st.best_epoch = best_epoch_of(resume)
        _set_rng_state(resume["rng"])
    return st


def _train_epoch(st: _State, cfg: dict, d: _Dist, epoch: int) -> tuple:
    """One pass over the training set: (mean loss over all processes, seconds)."""
    st.train_ds.set_epoch(epoch)
    loader = _train_loader(st.train_ds, cfg["batch_size"], cfg["workers"], cfg["seed"], epoch, d)
    st.net.train()
    lr = st.optimizer.param_groups[0]["lr"]
    progress = Progress(f"epoch {epoch + 1}/{cfg['epochs']}", len(loader), every_steps=cfg["log_every"])
    t0, loss_sum, n_batches = time.perf_counter(), 0.0, 0
    for step, (x, y, _, _) in enumerate(loader, 1):
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        st.optimizer.zero_grad(set_to_none=True)
        with autocast(d.device, cfg["amp"]):
            logits = st.net(x, return_logits=True)
        loss = st.criterion(logits.float(), y)
        if not torch.isfinite(loss):
            raise CLIError(f"loss became {loss.item()} at epoch {epoch + 1} step {step}; lower --lr or drop --amp")
        st.scaler.scale(loss).backward()
        st.scaler.step(st.optimizer)
        st.scaler.update()
        loss_sum, n_batches = loss_sum + loss.item(), n_batches + 1
        if d.main:
            progress.step(step, x.shape[0] * d.world, f"loss {loss.item():.4f} lr {lr:.2e}")
    seconds = time.perf_counter() - t0
    if d.world > 1:
        t = torch.tensor([loss_sum, n_batches], device=d.device, dtype=torch.float64)
        dist.all_reduce(t)
        loss_sum, n_batches = t.tolist()
    return loss_sum / max(n_batches, 1), seconds


def _checkpoint(st: _State, cfg: dict, epoch: int, row: dict) -> dict:
    return {"format_version": FORMAT_VERSION, "model": cfg["model"], "model_config": cfg["model_config"],
            "config": cfg, "epoch": epoch + 1, "model_state": st.model.state_dict(),
            "optimizer_state": st.optimizer.state_dict(), "scheduler_state": st.scheduler.state_dict(),
            "scaler_state": st.scaler.state_dict() if st.scaler.is_enabled() else None, "rng": _rng_state(),
            "best_iou": st.best, "best_epoch": st.best_epoch, "metrics": row, "log": st.rows}


def _finish_epoch(st: _State, cfg: dict, d: _Dist, run: Path, epoch: int, loss: float, train_s: float) -> dict:
    """Score the test set, then write last.pt, best.pt (when improved) and the logs."""
    st.scheduler.step()
    t0 = time.perf_counter()
    m = evaluate_model(st.model, st.test_ds, d.device, cfg["amp"], cfg["eval_batch_size"], cfg["workers"], d)
    row = {"epoch": epoch + 1, "lr": st.optimizer.param_groups[0]["lr"], "train_loss": loss, "iou": m["iou"],
           "niou": m["niou"], "pd": m["pd"], "fa": m["fa"],
           "train_images_per_s": len(st.train_ds) / max(train_s, 1e-9), "epoch_s": train_s + time.perf_counter() - t0}
    st.rows.append(row)
    improved = m["iou"] > st.best
    if improved:
        st.best, st.best_epoch = m["iou"], epoch + 1
    if d.main:
        ckpt = _checkpoint(st, cfg, epoch, row)
        # last.pt first: it names the epoch best.pt must hold, so a kill between the two writes
        # is repaired from last.pt by the next --resume (repair_best).
        save_checkpoint(ckpt, run / "last.pt")
        if improved:
            save_checkpoint(ckpt, run / "best.pt")
        _write_logs(run, st.rows, cfg)
        print(f"epoch {epoch + 1}/{cfg['epochs']} loss {loss:.4f} | test IoU {100 * m['iou']:.2f} "
              f"nIoU {100 * m['niou']:.2f} Pd {100 * m['pd']:.2f} Fa {1e6 * m['fa']:.2f}e-6"
              f"{' (best)' if improved else ''} | {row['epoch_s']:.1f} s", flush=True)
    d.barrier()
    return row


def _determinism(cfg: dict, d: _Dist) -> None:
    if cfg["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif d.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def train(cfg: dict, run: Path, resume: dict | None = None) -> dict:
    """Train as ``cfg`` says, writing ``run/last.pt``, ``run/best.pt``, ``run/log.csv``, ``run/log.json``.

    With ``resume`` (a checkpoint dict) the model, optimizer, scheduler, scaler and RNG states
    and the log rows are restored and training continues at the next epoch, reproducing an
    uninterrupted run (same data order and augmentation: both are functions of seed and epoch).
    Returns the last epoch's log row.
    """
    d = _Dist(cfg["device"])
    try:
        check_backend(cfg["backend"], d.device)
        _determinism(cfg, d)
        _seed_all(cfg["seed"])
        st = _build_state(cfg, d, resume)
        run.mkdir(parents=True, exist_ok=True)
        if d.main:
            print(f"istd train: {cfg['model']} {cfg['model_config']} on {cfg['data']} ({len(st.train_ds)} train / "
                  f"{len(st.test_ds)} test images), {d.world} process(es) on {d.device}; {cfg['loss']} loss, "
                  f"{cfg['optimizer']} lr {cfg['lr']:g}, {cfg['scheduler']} schedule, epochs {st.start + 1}.."
                  f"{cfg['epochs']}", flush=True)
        stop_at = cfg["epochs"] if not cfg.get("stop_after") else min(cfg["epochs"], st.start + cfg["stop_after"])
        row: dict = st.rows[-1] if st.rows else {}
        for epoch in range(st.start, stop_at):
            loss, seconds = _train_epoch(st, cfg, d, epoch)
            row = _finish_epoch(st, cfg, d, run, epoch, loss, seconds)
        return row
    finally:
        d.close()


def best_epoch_of(ckpt: dict) -> int:
    """The epoch whose weights best.pt must hold (older checkpoints: the first with the best IoU)."""
    if ckpt.get("best_epoch"):
        return int(ckpt["best_epoch"])
    rows = ckpt.get("log") or []
    return next((int(r["epoch"]) for r in rows if r.get("iou") == ckpt.get("best_iou")), 0)


def repair_best(run: Path, last: dict) -> bool:
    """Rewrite ``run/best.pt`` from ``last`` when a kill came between the two writes of its epoch."""
    want = best_epoch_of(last)
    path = run / "best.pt"
    try:
        have = read_checkpoint(str(path)).get("epoch") if path.is_file() else None
    except CLIError:
        have = None
    if have == want:
        return False
    if want != last.get("epoch"):
        print(f"istd train: warning: {path} should hold epoch {want} but holds {have}, and last.pt cannot "
              f"restore it (it holds epoch {last.get('epoch')})", flush=True)
        return False
    save_checkpoint(last, path)
    print(f"istd train: {path} held epoch {have}, not the best epoch {want} recorded in last.pt (a run was "
          f"stopped between the two writes); rewrote it from last.pt", flush=True)
    return True


def _resume_config(args, run_dir: Path):
    """``(cfg, checkpoint)`` for ``--resume``; ``(None, None)`` when the run has already finished."""
    path = run_dir / "last.pt" if args.resume == "auto" else Path(args.resume)
    if args.resume == "auto" and not path.exists():
        print(f"istd train: {run_dir} has no last.pt yet (the run stopped before its first epoch ended); "
              f"starting afresh", flush=True)
        return config_from_args(args), None
    resume = read_checkpoint(str(path))
    check_checkpoint(resume, str(path), args.model)
    missing = [k for k in _TRAINING_KEYS if k not in resume]
    if "format_version" not in resume or missing:
        raise CLIError(f"{path} is not a training checkpoint of istd train (expected RUN/last.pt"
                       f"{'; it has no ' + ', '.join(missing) if missing else ''})")
    cfg = dict(resume["config"])
    given = config_from_args(args)
    for key in RESUME_OVERRIDABLE:
        if getattr(args, key, None) is not None and given[key] != cfg.get(key):
            cfg[key] = given[key]
    if path.parent.resolve() == run_dir.resolve():
        repair_best(run_dir, resume)
    if cfg["epochs"] <= resume["epoch"]:
        print(f"istd train: {path} already finished epoch {resume['epoch']} of {cfg['epochs']}; "
              f"pass a larger --epochs to train further")
        return None, None
    return cfg, resume


def run(args) -> int:
    """The ``istd train`` subcommand."""
    run_dir = check_not_inputs(args.out, "--out", [Path(args.data) / "images", Path(args.data) / "masks"])
    check_backend(args.backend)
    if not args.resume:  # a resumed run continues its own files; a new one must not replace another's
        check_new_files([run_dir / f for f in ("last.pt", "best.pt", "log.csv", "log.json")], "--out",
                        args.overwrite)
    # Only rank 0 writes the run folder; other ranks of a torchrun job must not take its lock.
    main = int(os.environ.get("RANK", "0")) == 0
    with RunLock(run_dir) if main else contextlib.nullcontext():
        if main:
            stale = remove_stale_temporaries(run_dir)
            if stale:
                print(f"istd train: removed {len(stale)} temporary file(s) a stopped run left in {run_dir}: "
                      f"{', '.join(stale)}", flush=True)
        cfg, resume = _resume_config(args, run_dir) if args.resume else (config_from_args(args), None)
        if cfg is not None:
            train(cfg, run_dir, resume)
    return 0
