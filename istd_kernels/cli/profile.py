"""``istd profile``: what a model costs, measured the way timings should be measured.

- Parameters; MACs (multiply-adds, what thop and fvcore print as "FLOPs") and FLOPs in the
  2 x MACs convention, both labelled, per image of the ``--input`` size. The counters are
  the models' own: :func:`models.rrcanet.count_flops` for RRCA-Net and
  :func:`models.lcrnet.count_flops` (Conv2d, ConvTranspose2d, Linear and fused HLKConv)
  for everything else.
- Latency of one forward pass on a ``--batch`` of random images: ``--warmup`` untimed
  passes first (the first call pays for allocation, kernel selection and compilation),
  then ``--repeats`` timed ones: CUDA events on a GPU (device time between two events, read
  after a synchronisation), ``perf_counter`` on the CPU; the median with min, max and the
  interquartile range, and images/s from the median.
- Peak GPU memory of a pass (``torch.cuda.max_memory_allocated``), on a GPU only.
- Where the time goes: one pass under ``torch.profiler`` with a labelled range per layer
  (leaf modules, and fused layers whose children do not run); time outside every layer
  (functional ops in ``forward``) is its own row.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from . import CLIError
from .checks import check_at_least, check_backend


def parse_input(text: str) -> tuple[int, int, int]:
    """``"1x1x512x512"`` or ``"1x512x512"`` -> ``(C, H, W)``."""
    try:
        dims = [int(v) for v in text.lower().split("x")]
    except ValueError:
        dims = []
    if len(dims) == 4 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) != 3 or min(dims) < 1:
        raise CLIError(f"--input must be one image's shape 1xCxHxW or CxHxW with positive sizes; got {text!r} "
                       f"(give the batch with --batch)")
    return dims[0], dims[1], dims[2]


def _factory(spec: str) -> Callable:
    """The callable named by ``MODULE:CALLABLE`` or ``FILE.py:CALLABLE``."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise CLIError(f"--model must be lcrnet, rrcanet or MODULE:CALLABLE; got {spec!r}")
    try:
        if where.endswith(".py"):
            if not Path(where).is_file():
                raise CLIError(f"--model {spec}: file {where} does not exist")
            loader = importlib.util.spec_from_file_location(Path(where).stem, where)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except CLIError:
        raise
    except Exception as e:  # any error in the user's module: name it, one line
        raise CLIError(f"--model {spec}: cannot import {where}: {type(e).__name__}: {e}") from e
    factory = getattr(module, name, None)
    if not callable(factory):
        raise CLIError(f"--model {spec}: {where} has no callable {name!r}")
    return factory


def build(spec: str, backend, tiny: bool):
    """The ``nn.Module`` to profile, in eval mode."""
    from torch import nn

    from .networks import DEFAULT_MODEL_CONFIG, MODELS, TINY_MODEL_CONFIG, build_model
    if spec in MODELS:
        net = build_model(spec, (TINY_MODEL_CONFIG if tiny else DEFAULT_MODEL_CONFIG)[spec], backend)
    else:
        try:
            net = _factory(spec)()
        except CLIError:
            raise
        except Exception as e:
            raise CLIError(f"--model {spec}: the factory raised {type(e).__name__}: {e}") from e
        if not isinstance(net, nn.Module):
            raise CLIError(f"--model {spec} returned a {type(net).__name__}; expected a torch.nn.Module")
    return net.eval()


def count_macs(net, c: int, h: int, w: int) -> int:
    """Multiply-adds of one ``[1, c, h, w]`` forward pass, by the models' own counters."""
    from models import lcrnet, rrcanet
    counter = rrcanet.count_flops if isinstance(net, rrcanet.RRCANet) else lcrnet.count_flops
    return int(counter(net, h, w, in_chans=c))


def _forward(net, x, device, amp) -> Callable[[], None]:
    import torch

    from .runtime import autocast

    def once() -> None:
        with torch.no_grad(), autocast(device, amp):
            net(x)
    return once


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(once: Callable[[], None], device, batch: int, warmup: int, repeats: int) -> dict:
    """Latency of ``once()`` in ms: the first call, then the median and spread of ``repeats``
    timed calls after ``warmup`` untimed ones (CUDA events on a GPU), images/s and peak memory."""
    import torch
    t0 = time.perf_counter()
    once()
    _sync(device)
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(max(0, warmup - 1)):
        once()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            once()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            once()
            times.append((time.perf_counter() - t0) * 1e3)
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (times[0],) * 3
    out = {"first_call_ms": first_ms, "median_ms": median, "min_ms": min(times), "max_ms": max(times),
           "q1_ms": q1, "q3_ms": q3, "repeats": repeats, "warmup": warmup, "images_per_s": batch / median * 1e3,
           "timer": "CUDA events" if device.type == "cuda" else "time.perf_counter"}
    if device.type == "cuda":
        out["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


def layer_times(net, once: Callable[[], None], device) -> tuple[list[dict], float]:
    """One pass under ``torch.profiler`` with a range per module: ``(layers, total ms)``, the
    layers being the deepest modules that ran (whose children did not), slowest first."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile
    # By identity, not name: a module shared by several parents (RRCA-Net's recurrent
    # passes) has one name but is a child of each of them.
    modules = {id(m): (n or "(model)", m) for n, m in net.named_modules()}
    names = {k: n for k, (n, _) in modules.items()}
    open_ranges: list[record_function] = []
    ran = set()

    def enter(m, _):
        ran.add(id(m))
        open_ranges.append(record_function(f"layer:{names[id(m)]}").__enter__())

    def leave(m, _, __):
        open_ranges.pop().__exit__(None, None, None)

    handles = [h for m in net.modules() for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with profile(activities=activities) as prof:
            with record_function("istd:forward"):
                once()
            _sync(device)
    finally:
        for h in handles:
            h.remove()
    # descendants, not children: a module may call its grandchildren directly (RRCA-Net's
    # RuCB passes run the convs of a Sequential without calling the Sequential)
    deepest = [k for k in ran if not any(id(c) in ran for c in modules[k][1].modules() if c is not modules[k][1])]

    def ms(e) -> float:
        us = getattr(e, "device_time_total", 0) if device.type == "cuda" else e.cpu_time_total
        return us / 1e3

    averages = prof.key_averages()
    events = {e.key: e for e in averages}
    # On a GPU a range's time is that of the kernels it launched; the whole pass is then every
    # kernel's own time, not the host-side range (which ends before the kernels do).
    total = (sum(getattr(e, "self_device_time_total", 0) for e in averages) / 1e3 if device.type == "cuda"
             else ms(events["istd:forward"]))
    layers = [{"layer": names[k], "type": type(modules[k][1]).__name__, "calls": events[f"layer:{names[k]}"].count,
               "ms": ms(events[f"layer:{names[k]}"])} for k in deepest if f"layer:{names[k]}" in events]
    return sorted(layers, key=lambda r: -r["ms"]), total


def _device(flag: str):
    import torch
    if flag == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda was given but no CUDA GPU is available")
    return torch.device("cuda" if flag == "cuda" or (flag == "auto" and torch.cuda.is_available()) else "cpu")


def _report(r: dict) -> str:
    from .compare import render_table
    t = r["latency"]
    lines = [f"model {r['model']} ({r['model_class']}), input {r['batch']}x{'x'.join(map(str, r['input']))} on "
             f"{r['device']}{', torch.compile' if r['compile'] else ''}{', amp' if r['amp'] else ''}",
             f"parameters        {r['parameters']:,} ({r['parameters'] / 1e6:.3f} M)",
             f"MACs per image    {r['macs_per_image'] / 1e9:.3f} G  (multiply-adds; thop/fvcore print this as FLOPs)",
             f"FLOPs per image   {r['flops_per_image'] / 1e9:.3f} G  (2 x MACs)",
             f"latency per batch median {t['median_ms']:.2f} ms (min {t['min_ms']:.2f}, IQR {t['q1_ms']:.2f}-"
             f"{t['q3_ms']:.2f}, max {t['max_ms']:.2f}; {t['repeats']} runs after {t['warmup']} warm-up, "
             f"{t['timer']}; first call {t['first_call_ms']:.1f} ms)",
             f"throughput        {t['images_per_s']:.1f} images/s"]
    if "peak_memory_mib" in t:
        lines.append(f"peak GPU memory   {t['peak_memory_mib']:.1f} MiB")
    if r.get("layers"):
        total = r["profiled_ms"]
        rows = [["layer", "type", "calls", "ms", "%"]]
        rows += [[x["layer"], x["type"], str(x["calls"]), f"{x['ms']:.3f}", f"{100 * x['ms'] / total:.1f}"]
                 for x in r["layers"]]
        for label, key in (("(the other layers)", "other_layers_ms"), ("(ops outside any layer)", "outside_ms")):
            rows.append([label, "", "", f"{r[key]:.3f}", f"{100 * r[key] / total:.1f}"])
        lines += [f"where the time goes (one profiled pass, {total:.2f} ms{', eager' if r['compile'] else ''}):",
                  render_table(rows, "text")]
    return "\n".join(lines)


def run(args) -> int:
    """The ``istd profile`` subcommand."""
    import torch

    from .outputs import check_output_path, write_json
    c, h, w = parse_input(args.input)
    check_at_least("--batch", args.batch, 1)
    check_at_least("--repeats", args.repeats, 1)
    check_at_least("--warmup", args.warmup, 0)
    check_at_least("--layers", args.layers, 0)
    if args.json:
        check_output_path(args.json, "--json")
    check_backend(args.backend)
    device = _device(args.device)
    check_backend(args.backend, device)
    net = build(args.model, args.backend, args.tiny).to(device)
    macs = count_macs(net, c, h, w)
    x = torch.randn(args.batch, c, h, w, device=device)
    eager = _forward(net, x, device, args.amp)
    once = _forward(torch.compile(net), x, device, args.amp) if args.compile else eager
    r = {"model": args.model, "model_class": type(net).__name__, "input": [c, h, w], "batch": args.batch,
         "device": str(device), "backend": args.backend or "auto", "compile": bool(args.compile), "amp": bool(args.amp),
         "parameters": sum(p.numel() for p in net.parameters()), "macs_per_image": macs, "flops_per_image": 2 * macs,
         "latency": time_forward(once, device, args.batch, args.warmup, args.repeats)}
    if args.layers:
        layers, total = layer_times(net, eager, device)
        shown = layers[:args.layers]
        in_layers = sum(x["ms"] for x in layers)
        r.update(layers=shown, profiled_ms=total, other_layers_ms=in_layers - sum(x["ms"] for x in shown),
                 outside_ms=total - in_layers)
    print(_report(r))
    if args.json:
        write_json(Path(args.json), r, "--json")
        print(f"wrote {args.json}")
    return 0
