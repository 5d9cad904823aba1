"""``python -m istd_kernels.tools.report BENCH.json [--png chart.png]``: pytest-benchmark JSON -> markdown.

One row per benchmark: group, implementation, median time, images/s, the speedup over the
eager-PyTorch baseline of the same group measured in the same run, and, where the case records
modeled traffic, the bandwidth it implies (from ``extra_info``).
"""

from __future__ import annotations

import argparse
import json
import sys


def rows(data: dict) -> list[dict]:
    out = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        out.append({
            "group": bench.get("group") or bench["name"],
            "impl": info.get("impl", bench["name"]),
            "median_ms": bench["stats"]["median"] * 1e3,
            "images_per_s": info.get("images_per_s"),
            "speedup": info.get("speedup"),
            "device": info.get("device", ""),
            "gbps": info.get("modeled_GBps"),
            "peak": info.get("fraction_of_peak_bw"),
        })
    return out


def markdown(data: dict) -> str:
    """The markdown table, with the machine and date of the run above it."""
    machine = data.get("machine_info", {})
    when = data.get("datetime", "")[:10]
    devices = sorted({r["device"] for r in rows(data) if r["device"]})
    lines = [f"Measured {when} on {', '.join(devices) or machine.get('cpu', {}).get('brand_raw', '?')} "
             f"(torch {data.get('_torch', '')}).".replace(" (torch )", ""), "",
             "| case | impl | median ms | images/s | speedup vs eager | modeled GB/s |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows(data):
        speed = f"{r['speedup']:.2f}x" if r["speedup"] is not None else ""
        ips = f"{r['images_per_s']:.1f}" if r["images_per_s"] is not None else ""
        bw = f"{r['gbps']:.1f}" if r["gbps"] is not None else ""
        if r["peak"] is not None:
            bw += f" ({100 * r['peak']:.0f} % of peak)"
        lines.append(f"| {r['group']} | {r['impl']} | {r['median_ms']:.2f} | {ips} | {speed} | {bw} |")
    return "\n".join(lines)


def chart(data: dict, path: str) -> None:
    """A horizontal bar chart of speedups (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows(data) if r["speedup"] is not None]
    labels = [f"{r['group']} | {r['impl']}" for r in rs]
    fig, ax = plt.subplots(figsize=(10, 0.25 * len(rs) + 1))
    ax.barh(range(len(rs)), [r["speedup"] for r in rs])
    ax.set_yticks(range(len(rs)), labels, fontsize=6)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("speedup over eager PyTorch (same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="output of pytest --benchmark-json")
    parser.add_argument("--png", help="also write a bar chart of speedups (needs matplotlib)")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        data = json.load(f)
    print(markdown(data))
    if args.png:
        chart(data, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
