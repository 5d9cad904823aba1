"""``python -m istd_kernels.info``: versions, extensions, backends and GPU of this machine.

``python -m istd_kernels.info --explain split_attention --scales 3,5 [--device cuda]
[--dtype float16] [--backend triton]`` tells which path runs that call and why each other
path was skipped: a path's own limits, or one of ``auto``'s measured preferences
(:mod:`istd_kernels.ops._auto_rules`; ``--explain hlk_conv --k-size 23`` for an HLKConv
geometry).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import subprocess

import torch

from .backend import backends
from .extensions import build_info, cpu_extension, cuda_extension


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nvcc() -> str:
    path = shutil.which("nvcc")
    if path is None:
        return "not found"
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    return f"{out[-1] if out else '?'} ({path})"


def report() -> str:
    """The report as text."""
    info = build_info()
    lines = ["istd-kernels " + _version("istd-kernels"), ""]
    lines.append("versions")
    for name, value in [("python", platform.python_version()), ("torch", torch.__version__),
                        ("torch CUDA", torch.version.cuda or "none (CPU build)"), ("triton", _version("triton")),
                        ("numpy", _version("numpy")), ("nvcc", _nvcc())]:
        lines.append(f"  {name:<12} {value}")
    lines += ["", "extensions"]
    lines.append(f"  {'built for':<12} torch {info.get('torch_version', '?')}"
                 + (f", CUDA archs {info['cuda_arch_list']}" if info.get("cuda_arch_list") else ""))
    for label, ext in (("_C (cpu)", cpu_extension()), ("_cuda", cuda_extension())):
        lines.append(f"  {label:<12} {'available' if ext.available else 'unavailable'}: {ext.reason}")
    lines += ["", "backends"]
    for name, (ok, reason) in backends().items():
        lines.append(f"  {name:<12} {'available' if ok else 'unavailable'}: {reason}")
    lines += ["", "GPU"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"  cuda:{i}       {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.1f} GiB")
    else:
        lines.append("  none (torch.cuda.is_available() is False)")
    return "\n".join(lines)


def _parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m istd_kernels.info", description=__doc__.split("\n\n")[0])
    parser.add_argument("--explain", metavar="OP", help="an op, e.g. depthwise_conv2d or istd.split_attention")
    parser.add_argument("--device", default="cpu", help="device of the call's tensors (default cpu)")
    parser.add_argument("--dtype", default="float32", help="dtype of the call's tensors (default float32)")
    parser.add_argument("--backend", default=None, help="the backend= argument of the call (default: none)")
    parser.add_argument("--scales", default=None, help="split_attention's scales, e.g. 2,4 or 3,5")
    parser.add_argument("--k-size", type=int, default=None,
                        help="hlk_conv's receptive field, e.g. 7 or 23 (default: the fused paths' k_size 7)")
    args = parser.parse_args(argv)
    if args.explain is not None:
        args.explain = args.explain if args.explain.startswith("istd.") else "istd." + args.explain
        dtype = getattr(torch, args.dtype, None)
        if not isinstance(dtype, torch.dtype):
            parser.error(f"--dtype must name a torch dtype such as float32; got {args.dtype!r}")
        args.dtype = dtype
    return args


def explain_call(args: argparse.Namespace) -> str:
    """The ``--explain`` answer for parsed arguments."""
    from .ops import _dispatch

    call = {}
    if args.scales:
        call["scales"] = tuple(int(s) for s in args.scales.split(","))
    if args.k_size is not None:
        from .ops.hlk_conv import decompose

        call.update(zip(("k1", "k2", "dilation"), decompose(args.k_size)))
    return _dispatch.explain(args.explain, args.device, args.dtype, args.backend, **call)


def main(argv=None) -> None:
    args = _parse(argv)
    if args.explain is None:
        print(report())
        return
    try:
        print(explain_call(args))
    except ValueError as err:
        raise SystemExit(f"python -m istd_kernels.info: error: {err}") from None


if __name__ == "__main__":
    main()
