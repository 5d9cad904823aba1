"""Step 3b/3c: fused HLKConv and depthwise at LCRNet's levels (time, achieved GB/s, fraction of
peak bandwidth), and the evaluation path (labelling + Pd/Fa, ISTDMetrics) on synthetic masks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from istd_kernels.metrics import ISTDMetrics, PdFa
from istd_kernels.nn import HLKConv
from istd_kernels.ops import depthwise_conv2d, measure_components
from istd_kernels.ops.hlk_conv import decompose
from istd_kernels.tools import traffic

from .timing import Case, run_cases, time_call
from .worker import StepContext

K_SIZE = 7  # LCRNet's HLKConv
#: The kernels run in the dtype a precision of the models computes in (no autocast at this level).
DTYPES = {"float32": torch.float32, "bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}


def _bandwidth(nbytes: int, median_ms: float, peak: float | None, l2: int | None) -> dict:
    out = {"bytes": nbytes, "gbps": nbytes / (median_ms / 1e3) / 1e9}
    if peak:
        out["fraction_of_peak"] = out["gbps"] * 1e9 / peak
    if l2:
        # Back-to-back calls on a working set that fits in L2 read it from cache: the figure is
        # then cache bandwidth, not DRAM bandwidth.
        out["l2_resident"] = nbytes <= l2
    return out


def _device_limits(device: str):
    if device != "cuda":
        return None, None
    from .env import peak_bandwidth

    return peak_bandwidth(0)[0], getattr(torch.cuda.get_device_properties(0), "L2_cache_size", None)


def _timed(ctx: StepContext, make: Callable[[], Callable[[], object]], nbytes: Callable[[], int]) -> Callable[[], dict]:
    cfg = ctx.config

    def measure() -> dict:
        fn = make()
        out = time_call(fn, cfg["device"], cfg["repeats"], cfg["warmup"], ctx.deadline)
        out["images_per_s"] = cfg["level_batch"] / (out["median_ms"] / 1e3)
        return {**out, **_bandwidth(nbytes(), out["median_ms"], *_device_limits(cfg["device"]))}
    return measure


def _hlk_cases(ctx: StepContext, dtype: torch.dtype, c: int, side: int) -> Iterator[Case]:
    cfg = ctx.config
    device, batch, dtype_name = cfg["device"], cfg["level_batch"], str(dtype)[6:]
    dbytes = torch.finfo(dtype).bits // 8
    group = f"HLKConv k{K_SIZE} forward {dtype_name} C{c} {side}px batch {batch}"
    for impl in ("unfused",) + tuple(cfg["kernel_impls"]):
        fused = impl != "unfused"

        def make(impl=impl):
            torch.manual_seed(0)
            layer = HLKConv(c, K_SIZE, backend="torch" if impl == "unfused" else impl).to(device, dtype)
            x = torch.randn(batch, c, side, side, device=device, dtype=dtype)
            return torch.no_grad()(lambda: layer(x))
        nbytes = lambda fused=fused: traffic.hlk_conv(batch, c, side, side, K_SIZE, dtype_bytes=dbytes,  # noqa: E731
                                                      fused=fused).total
        meta = {"case": f"hlk-forward-{dtype_name}-C{c}-{side}", "group": group, "impl": impl, "baseline": "unfused",
                "batch": batch, "device": device, "fused": fused, "level": [c, side]}
        yield meta, _timed(ctx, make, nbytes)


def _depthwise_cases(ctx: StepContext, dtype: torch.dtype, c: int, side: int) -> Iterator[Case]:
    cfg = ctx.config
    device, batch, dtype_name = cfg["device"], cfg["level_batch"], str(dtype)[6:]
    k1, k2, dil = decompose(K_SIZE)
    for k, d in ((k1, 1), (k2, dil)):
        kname = f"{k}x{k}" + (f"d{d}" if d > 1 else "")
        group = f"depthwise {kname} forward {dtype_name} C{c} {side}px batch {batch}"
        for impl in ("F.conv2d",) + tuple(cfg["kernel_impls"]):
            def make(impl=impl, k=k, d=d):
                torch.manual_seed(0)
                x = torch.randn(batch, c, side, side, device=device, dtype=dtype)
                w = torch.randn(c, 1, k, k, device=device, dtype=dtype)
                b = torch.randn(c, device=device, dtype=dtype)
                pad = d * (k // 2)
                if impl == "F.conv2d":
                    return torch.no_grad()(lambda: F.conv2d(x, w, b, 1, pad, d, groups=c))
                return torch.no_grad()(lambda: depthwise_conv2d(x, w, b, 1, pad, d, backend=impl))
            # One read of x, one write of y, the weights once (the traffic model's convention).
            nbytes = lambda k=k: (2 * batch * c * side * side + c * (k * k + 1)) * torch.finfo(dtype).bits // 8  # noqa: E731
            meta = {"case": f"depthwise-{kname}-forward-{dtype_name}-C{c}-{side}", "group": group, "impl": impl,
                    "baseline": "F.conv2d", "batch": batch, "device": device, "fused": impl != "F.conv2d",
                    "level": [c, side]}
            yield meta, _timed(ctx, make, nbytes)


def levels(ctx: StepContext) -> None:
    """HLKConv then depthwise, level by level, per precision."""
    def cases():
        for dtype in (DTYPES[p] for p in ctx.config["precisions"]):
            for c, side in ctx.config["levels"]:
                yield from _hlk_cases(ctx, dtype, c, side)
            for c, side in ctx.config["levels"]:
                yield from _depthwise_cases(ctx, dtype, c, side)
    run_cases(ctx, cases())


@functools.lru_cache(maxsize=2)
def synthetic_pairs(n: int, side: int, device: str, seed: int = 0):
    """IR-like ``(prob [n, 1, side, side] float32, target [n, 1, side, side] bool)``.

    One to three disk targets of radius 0.5-5.5 px per image; the prediction finds 90 % of them
    shifted by up to 2 px and adds up to two small false blobs. Cached: the cases of a size
    share one set (callers must not modify it).
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")

    def disks(centres, radii, present):
        d2 = (yy - centres[..., 0, None, None]) ** 2 + (xx - centres[..., 1, None, None]) ** 2
        return ((d2 <= radii[..., None, None] ** 2) & present[..., None, None]).any(1)

    centres = torch.randint(4, max(5, side - 4), (n, 3, 2), generator=g).float()
    radii = 0.5 + 5 * torch.rand(n, 3, generator=g)
    present = torch.arange(3) < torch.randint(1, 4, (n, 1), generator=g)
    target = disks(centres, radii, present)
    shift = torch.randint(-2, 3, (n, 3, 2), generator=g).float()
    found = present & (torch.rand(n, 3, generator=g) < 0.9)
    false = disks(torch.randint(0, side, (n, 2, 2), generator=g).float(), 0.5 + 2 * torch.rand(n, 2, generator=g),
                  torch.rand(n, 2, generator=g) < 0.5)
    pred = disks(centres + shift, radii, found) | false
    noise = 0.05 * (2 * torch.rand(n, side, side, generator=g) - 1)
    prob = torch.where(pred, 0.9, 0.1) + noise
    return prob[:, None].to(device), target[:, None].to(device)


def _metric_fn(factory, prob, target):
    def run():
        m = factory()
        m.update(prob, target)
        return m.compute()  # reads the counts back: the time includes the host sync
    return run


def _reference(kind: str, prob, target):
    from istd_kernels.metrics.reference import oracle_pdfa, reference_metrics  # needs scikit-image

    p, t = (prob[:, 0] > 0.5).cpu().numpy(), target[:, 0].cpu().numpy()
    return (lambda: oracle_pdfa(p, t)) if kind == "pdfa" else (lambda: reference_metrics(p, t))


def metrics(ctx: StepContext) -> None:
    """Labelling + Pd/Fa and ISTDMetrics on the device, then the per-image scikit-image loops
    they are compared with."""
    cfg = ctx.config
    device = cfg["device"]

    def case(kind, size, impl, make, timed_on):
        n, side = size
        group = f"{'labelling + Pd/Fa' if kind == 'pdfa' else 'ISTDMetrics'} {n}x{side}x{side}"
        meta = {"case": kind, "group": group, "impl": impl, "baseline": "skimage per-image loop", "batch": n,
                "device": timed_on}

        def measure():
            fn = make(*synthetic_pairs(n, side, device))
            out = time_call(fn, timed_on, cfg["repeats"] if timed_on == device else min(3, cfg["repeats"]),
                            cfg["warmup"], ctx.deadline)
            return dict(out, images_per_s=n / (out["median_ms"] / 1e3))
        return meta, measure

    # The GPU cases first (labelling + Pd/Fa is the target), the CPU baselines after.
    run_cases(ctx, [
        case("pdfa", cfg["pdfa"], f"PdFa ({device})", lambda p, t: _metric_fn(PdFa, p, t), device),
        case("pdfa", cfg["pdfa"], f"measure_components only ({device})",
             lambda p, t: (lambda: measure_components(p[:, 0] > 0.5).counts.sum().item()), device),
        case("metrics", cfg["metrics"], f"ISTDMetrics ({device})", lambda p, t: _metric_fn(ISTDMetrics, p, t), device),
        case("pdfa", cfg["pdfa"], "skimage per-image loop", lambda p, t: _reference("pdfa", p, t), "cpu"),
        case("metrics", cfg["metrics"], "skimage per-image loop", lambda p, t: _reference("metrics", p, t), "cpu"),
    ])
