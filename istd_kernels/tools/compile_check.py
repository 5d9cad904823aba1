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
from typing import Iterable, List


def failures(rows: Iterable[dict]) -> List[str]:
    """Why the gate fails: one line per compile error or spilling kernel."""
    out = []
    for r in rows:
        where = f"{r['kind']} {r['kernel']} {r.get('config', '')} {r.get('arch', '')}".strip()
        if r.get("error"):
            out.append(f"{where}: {r['error']}")
        elif (r.get("spill_stores") or 0) or (r.get("spill_loads") or 0):
            out.append(f"{where}: spills {r['spill_stores']} B stores / {r['spill_loads']} B loads")
    return out


def table(rows: List[dict]) -> str:
    """Rows as a fixed-width table."""
    head = ("kind", "kernel", "config", "arch", "regs", "smem B", "spill st", "spill ld", "status")
    lines = [head]
    for r in rows:
        lines.append((r["kind"], r["kernel"], r.get("config", ""), r.get("arch", ""),
                      str(r.get("registers", "")), str(r.get("smem_bytes", "")), str(r.get("spill_stores", "")),
                      str(r.get("spill_loads", "")), "ERROR" if r.get("error") else "ok"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def summary(rows: List[dict]) -> str:
    """Max registers and total spills per (kind, kernel, arch)."""
    groups = {}
    for r in rows:
        if r.get("error") or r.get("registers") is None:
            continue
        key = (r["kind"], r["kernel"], r.get("arch", ""))
        g = groups.setdefault(key, [0, 0, 0, 0])
        g[0] = max(g[0], r["registers"])
        g[1] = max(g[1], r.get("smem_bytes") or 0)
        g[2] += (r.get("spill_stores") or 0) + (r.get("spill_loads") or 0)
        g[3] += 1
    lines = [f"{'kind':<8} {'kernel':<44} {'arch':<7} {'configs':>7} {'max regs':>8} {'max smem B':>10} {'spill B':>7}"]
    for (kind, kernel, arch), (regs, smem, spills, n) in sorted(groups.items()):
        lines.append(f"{kind:<8} {kernel[:44]:<44} {arch:<7} {n:>7} {regs:>8} {smem:>10} {spills:>7}")
    return "\n".join(lines)


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
