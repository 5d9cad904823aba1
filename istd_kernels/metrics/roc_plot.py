"""The picture of a threshold sweep: pixel ROC and object Pd / Fa, false alarms on log axes.

False-alarm rates of useful thresholds span decades (1e-7 .. 1e-2), so linear axes squash
them against zero; both x axes are logarithmic and cover whole decades, which always puts
at least two labelled ticks on them. Rates are drawn in the units the console prints: TPR
and Pd in percent, Fa x 1e-6. No axis carries an offset (a ``1e-6+9.8215e-1`` over the
label). Thresholds whose false-alarm rate is 0 have no place on a log axis; the legend says
how many were left out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

# The operating point of the binary metrics (docs/metrics.md §1), marked when the sweep contains it.
_OPERATING_POINT = 0.5


def _agg_figure(size):
    """A bare Figure on an Agg canvas: no pyplot, so no GUI backend and no global figure
    state in a training job, and the PNG is the same on every machine."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("ROC.plot needs matplotlib: install the `plot` extra "
                          "(pip install \"istd-kernels[plot]\", or pip install matplotlib)") from e
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _decades(values: Sequence[float]) -> tuple:
    """x limits: the whole decades around the positive ``values`` (at least one decade)."""
    positive = [v for v in values if v > 0]
    if not positive:
        return 1e-7, 1.0
    low = 10.0 ** math.floor(math.log10(min(positive)))
    high = 10.0 ** math.ceil(math.log10(max(positive)))
    return low, max(high, 10 * low)


def _mantissa_label(value: float, _pos=None) -> str:
    exponent = math.floor(math.log10(value) + 1e-9)
    return rf"${value / 10 ** exponent:.0f}\times10^{{{exponent}}}$"


def _panel(ax, x: Sequence[float], y_percent: Sequence[float], thresholds: Sequence[float],
           xlabel: str, ylabel: str, title: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

    shown = [i for i, v in enumerate(x) if v > 0]
    hidden = len(x) - len(shown)
    label = "thresholds" + (f" ({hidden} with no false alarm not shown)" if hidden else "")
    ax.plot([x[i] for i in shown], [y_percent[i] for i in shown], marker=".", label=label)
    at = [i for i in shown if thresholds[i] == _OPERATING_POINT]
    if at:
        ax.plot([x[at[0]]], [y_percent[at[0]]], "o", color="tab:red", label=f"threshold {_OPERATING_POINT}")
    ax.set_xscale("log")
    low, high = _decades(x)
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
    if high / low > 10.5:
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:  # one decade: two labels alone say little, so label 2 and 5 x 10^k as well
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(_mantissa_label))
    plain = ScalarFormatter(useOffset=False)
    plain.set_scientific(False)
    ax.yaxis.set_major_formatter(plain)
    ax.set_ylim(0, 100.5)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def draw(result: dict, path: str | os.PathLike, model: str | None = None,
         data: str | None = None):
    """Save the two curves of ``result`` (what :meth:`ROC.compute` returns) to ``path`` and
    return the matplotlib Figure. ``model`` and ``data`` name the title."""
    if os.path.isdir(path):
        raise ValueError(f"path must name a file to write (e.g. roc.png); got the folder {os.fspath(path)!r}")
    fig = _agg_figure((11, 4.8))
    pixel_ax, object_ax = fig.subplots(1, 2)
    thresholds = result["thresholds"]
    _panel(pixel_ax, result["fpr"], [100 * v for v in result["tpr"]], thresholds,
           "false positive rate (pixels, log scale)", "true positive rate (pixels, %)", "pixel ROC")
    _panel(object_ax, [1e6 * v for v in result["fa"]], [100 * v for v in result["pd"]], thresholds,
           "Fa (x 1e-6, log scale)", "Pd (%)", "Pd / Fa (objects)")
    parts = [f"model: {model}" if model else "", f"data: {data}" if data else ""]
    head = ", ".join(p for p in parts if p)
    fig.suptitle(f"ROC, {len(thresholds)} thresholds" + (f" ({head})" if head else ""))
    fig.tight_layout()
    fig.savefig(path)
    return fig
