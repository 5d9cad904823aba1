"""Result tables: the console table of ``istd evaluate`` and the paper-table comparison of
several prediction folders (IoU %, nIoU %, Pd %, Fa x 1e-6) as text, Markdown, LaTeX or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

TABLE_FORMATS = ("text", "md", "latex", "csv")
PAPER_HEADER = ["predictions", "images", "IoU (%)", "nIoU (%)", "Pd (%)", "Fa (x1e-6)"]


def paper_row(name: str, result: dict) -> list[str]:
    """One row of the paper table from a result of :meth:`~.scoring.Scorer.result`."""
    return [name, str(result["images"]), f"{result['iou_percent']:.2f}", f"{result['niou_percent']:.2f}",
            f"{result['pd_percent']:.2f}", f"{result['fa_x1e-6']:.2f}"]


def _text(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def _markdown(rows: Sequence[Sequence[str]]) -> str:
    def line(r):
        return "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
    rule = "|" + "|".join([" --- "] + [" ---: "] * (len(rows[0]) - 1)) + "|"
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"}


def _latex(rows: Sequence[Sequence[str]]) -> str:
    def line(r):
        return " & ".join("".join(_LATEX_SPECIAL.get(ch, ch) for ch in c) for c in r) + " \\\\"
    cols = "l" + "r" * (len(rows[0]) - 1)
    return "\n".join([f"\\begin{{tabular}}{{{cols}}}", "\\hline", line(rows[0]), "\\hline",
                      *(line(r) for r in rows[1:]), "\\hline", "\\end{tabular}"])


def _csv(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().rstrip("\n")


def render_table(rows: Sequence[Sequence[str]], fmt: str = "text") -> str:
    """``rows`` (equal-length lists of strings, the first the header) as a table in ``fmt``
    (one of :data:`TABLE_FORMATS`)."""
    renderers = {"text": _text, "md": _markdown, "latex": _latex, "csv": _csv}
    if fmt not in renderers:
        raise ValueError(f"fmt must be one of {', '.join(TABLE_FORMATS)}; got {fmt!r}")
    return renderers[fmt](rows)
