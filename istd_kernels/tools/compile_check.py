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
from typing import List

from .gate_report import failures, summary, table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="86,90", help="compute capabilities, comma separated (default 86,90)")
    parser.add_argument("--skip-triton", action="store_true")
    parser.add_argument("--skip-cuda", action="store_true")
    parser.add_argument("--full", action="store_true", help="print every configuration, not only the summary")
    parser.add_argument("--json", help="also write all rows to this JSON file")
    args = parser.parse_args(argv)
    archs = [int(a) for a in args.archs.split(",") if a]

    rows: List[dict] = []
    start = time.time()
    if not args.skip_cuda:
        from . import nvcc_gate

        rows += nvcc_gate.check(tuple(str(a) for a in archs))
    if not args.skip_triton:
        from . import triton_gate

        rows += triton_gate.check(tuple(archs))
    elapsed = time.time() - start

    print(table(rows) if args.full else summary(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    bad = failures(rows)
    n_ok = sum(1 for r in rows if not r.get("error"))
    print(f"\ncompile gate: {len(rows)} compilations ({n_ok} ok) for {', '.join(f'sm_{a}' for a in archs)} "
          f"in {elapsed:.0f} s; {len(bad)} failures")
    for line in bad:
        print("FAIL " + line)
    if not rows:
        print("FAIL nothing was compiled")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
