"""Rows, ptxas parsing and reporting shared by the compile gates (nvcc_gate, triton_gate).

A row is one compiled kernel on one architecture:
``dict(kind, source, kernel, config, arch, registers, smem_bytes, spill_stores, spill_loads, error)``;
a failed compilation is a row whose ``error`` holds the message and whose numbers are None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REGS_RE = re.compile(r"Used (\d+) registers")
SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
WARPS_RE = re.compile(r"\bw(\d+)$")  # a Triton row's config ends with its warps, e.g. "... w8"
# 32-bit registers of one SM on sm_80 to sm_90, the most one block may hold: a kernel whose
# registers x threads exceed it compiles cleanly and fails every launch.
REGISTER_FILE = 65536


def make_row(kind: str, source: str, kernel: str = "", config: str = "", arch: str = "",
             registers: int | None = None, smem: int | None = None, stores: int | None = None,
             loads: int | None = None, error: str | None = None) -> dict:
    return dict(kind=kind, source=source, kernel=kernel, config=config, arch=arch, registers=registers,
                smem_bytes=smem, spill_stores=stores, spill_loads=loads, error=error)


def _spills(r: dict) -> bool:
    return bool((r.get("spill_stores") or 0) or (r.get("spill_loads") or 0))


def _threads(r: dict) -> int:
    """Threads per block of a Triton row (0 when the row does not say)."""
    warps = WARPS_RE.search(r.get("config") or "")
    return 32 * int(warps.group(1)) if r.get("kind") == "triton" and warps else 0


def _where(r: dict) -> str:
    return " ".join(p for p in (r["kind"], r["kernel"], r.get("config", ""), r.get("arch", "")) if p)


def failures(rows: Iterable[dict]) -> list[str]:
    """Why the gate fails: one line per compile error, spilling kernel, or Triton kernel whose
    blocks need more registers than an SM has."""
    out = []
    for r in rows:
        if r.get("error"):
            out.append(f"{_where(r)}: {r['error']}")
        elif (r.get("registers") or 0) * _threads(r) > REGISTER_FILE:
            out.append(f"{_where(r)}: {r['registers']} registers x {_threads(r)} threads "
                       f"> the {REGISTER_FILE}-register file: every launch would fail")
        elif _spills(r):
            out.append(f"{_where(r)}: spills {r['spill_stores']} B stores / {r['spill_loads']} B loads")
    return out


def table(rows: list[dict]) -> str:
    """Every row, fixed width."""
    head = ("kind", "kernel", "config", "arch", "regs", "smem B", "spill st", "spill ld", "status")
    lines = [head]
    for r in rows:
        lines.append((r["kind"], r["kernel"], r.get("config", ""), r.get("arch", ""),
                      str(r.get("registers", "")), str(r.get("smem_bytes", "")), str(r.get("spill_stores", "")),
                      str(r.get("spill_loads", "")), "ERROR" if r.get("error") else "ok"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _groups(rows: list[dict]) -> dict:
    # (kind, kernel, arch) -> configs compiled, max registers and its config, max smem, spill bytes.
    groups = {}
    for r in rows:
        if r.get("error") or r.get("registers") is None:
            continue
        key = (r["kind"], r["kernel"], r.get("arch", ""))
        g = groups.setdefault(key, dict(n=0, regs=-1, smem=0, spills=0, worst=""))
        g["n"] += 1
        if r["registers"] > g["regs"]:
            g["regs"], g["worst"] = r["registers"], r.get("config", "")
        g["smem"] = max(g["smem"], r.get("smem_bytes") or 0)
        g["spills"] += (r.get("spill_stores") or 0) + (r.get("spill_loads") or 0)
    return groups


def summary(rows: list[dict]) -> str:
    """Per (kind, kernel, arch): configurations, max registers (and the config using them), max smem, spills."""
    groups = _groups(rows)
    lines = [f"{'kind':<8} {'kernel':<44} {'arch':<6} {'configs':>7} {'max regs':>8} {'max smem B':>10} "
             f"{'spill B':>7}  max-register config"]
    for (kind, kernel, arch), g in sorted(groups.items()):
        lines.append(f"{kind:<8} {kernel[:44]:<44} {arch:<6} {g['n']:>7} {g['regs']:>8} {g['smem']:>10} "
                     f"{g['spills']:>7}  {g['worst']}")
    return "\n".join(lines)



def markdown(rows: list[dict]) -> str:
    """:func:`summary` as a Markdown table for the docs (failed compilations are counted apart)."""
    lines = ["| kind | kernel | arch | configs | max registers | max smem B | spill B | max-register config |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for (kind, kernel, arch), g in sorted(_groups(rows).items()):
        lines.append(f"| {kind} | `{kernel}` | {arch} | {g['n']} | {g['regs']} | {g['smem']} | {g['spills']} "
                     f"| {g['worst']} |")
    n_err = sum(1 for r in rows if r.get("error"))
    if n_err:
        lines.append(f"\n{n_err} compilations failed (not in the table).")
    return "\n".join(lines)
