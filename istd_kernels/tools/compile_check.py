"""Compile gate: ``python -m istd_kernels.tools.compile_check``.

Compiles every Triton kernel configuration ahead of time and every ``csrc/cuda/*.cu`` with
nvcc, for sm_86 (RTX 30xx) and sm_90 (H100), without a GPU. Prints registers, shared memory
and spills per kernel and exits non-zero on any compile error or any register spill.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .gate_report import failures, markdown, summary, table


def _triton_version() -> str:
    from .triton_gate import triton_version

    return triton_version()


def _parser(prog=None) -> argparse.ArgumentParser:
    from .triton_gate import MODULES

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="86,90", help="compute capabilities, comma separated (default 86,90)")
    parser.add_argument("--skip-triton", action="store_true")
    parser.add_argument("--skip-cuda", action="store_true")
    parser.add_argument("--modules", default=",".join(MODULES),
                        help=f"Triton kernel files to compile, comma separated (default all: {','.join(MODULES)})")
    parser.add_argument("--workers", type=int, default=2, help="parallel Triton compile processes (default 2)")
    parser.add_argument("--full", action="store_true", help="print every configuration, not only the summary")
    parser.add_argument("--json", help="also write all rows to this JSON file")
    parser.add_argument("--markdown", help="also write the per-kernel summary as a Markdown table to this file")
    return parser


def _run(args, archs) -> list[dict]:
    rows: list[dict] = []
    if not args.skip_cuda:
        from . import nvcc_gate

        rows += nvcc_gate.check(tuple(str(a) for a in archs))
    if not args.skip_triton:
        from . import triton_gate

        modules = tuple(m for m in args.modules.split(",") if m)
        rows += triton_gate.check(tuple(archs), workers=args.workers, modules=modules)
    return rows


def main(argv=None, prog=None) -> int:
    args = _parser(prog).parse_args(argv)
    archs = [int(a) for a in args.archs.split(",") if a]

    start = time.time()
    rows = _run(args, archs)
    elapsed = time.time() - start

    print(table(rows) if args.full else summary(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(rows) + "\n")
    bad = failures(rows)
    n_ok = sum(1 for r in rows if not r.get("error"))
    parts = ([] if args.skip_cuda else ["nvcc"]) + ([] if args.skip_triton else [f"Triton {_triton_version()}"])
    print(f"\ncompile gate ({', '.join(parts)}; {sys.executable}): {len(rows)} compilations ({n_ok} ok) "
          f"for {', '.join(f'sm_{a}' for a in archs)} in {elapsed:.0f} s; {len(bad)} failures")
    for line in bad:
        print("FAIL " + line)
    if not rows:
        print("FAIL nothing was compiled")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
