"""Overlays for people: an image with the predicted targets in red, the ground truth in
green (when a mask exists), and a legend strip underneath.

Images smaller than :data:`MIN_SIDE` are enlarged (nearest neighbour) so that outlines and
the legend stay readable. The legend says when drawing changed no pixel (nothing predicted
and no ground truth, so the picture is the input) and when the prediction covers the whole
frame, the two cases in which an overlay would otherwise look like an untouched input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_SIDE = 256
# Rings make a few small targets easy to find; hundreds of them (an untrained model, a low
# threshold) would hide the image, so above this count only the outlines are drawn.
MAX_RINGS = 50
RED, GREEN, WHITE = (0, 0, 255), (0, 200, 0), (255, 255, 255)
_LINE = 16


def _outline(vis: np.ndarray, mask: np.ndarray, colour, circles: bool) -> int:
    """Draw the outer contour of every component of ``mask`` (and a ring around it); returns the count."""
    import cv2
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(vis, contours, -1, colour, 1)
    if circles and len(contours) <= MAX_RINGS:
        for c in contours:
            (x, y), r = cv2.minEnclosingCircle(c)
            cv2.circle(vis, (int(round(x)), int(round(y))), int(r) + 6, colour, 1, cv2.LINE_AA)
    return len(contours)


def draw_overlay(grey: np.ndarray, pred: np.ndarray, truth: np.ndarray | None,
                 notes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(BGR uint8 picture, its legend lines)`` for uint8 ``grey`` [H, W], bool ``pred`` [H, W]
    and bool ``truth`` [H, W] or None; the legend starts with ``notes`` (white)."""
    import cv2
    h, w = grey.shape
    s = max(1, MIN_SIDE // max(h, w))
    big = cv2.resize(grey, (w * s, h * s), interpolation=cv2.INTER_NEAREST)
    base = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    vis = base.copy()

    def up(m):
        return cv2.resize(m.astype(np.uint8), (w * s, h * s), interpolation=cv2.INTER_NEAREST)

    n_true = _outline(vis, up(truth), GREEN, False) if truth is not None else None
    n_pred = _outline(vis, up(pred), RED, True)
    lines: list[tuple] = [*((n, WHITE) for n in notes), (f"red: prediction, {n_pred} component(s)", RED)]
    if n_true is not None:
        lines.append((f"green: ground truth, {n_true} target(s)", GREEN))
    if pred.all():
        lines.append(("prediction covers the whole frame", RED))
    if np.array_equal(vis, base):
        lines.append(("nothing drawn: picture identical to the input", WHITE))
    width = max(vis.shape[1], MIN_SIDE)
    canvas = np.zeros((vis.shape[0] + _LINE * len(lines) + 4, width, 3), np.uint8)
    canvas[:vis.shape[0], :vis.shape[1]] = vis
    for i, (text, colour) in enumerate(lines):
        cv2.putText(canvas, text, (4, vis.shape[0] + _LINE * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    return canvas, [text for text, _ in lines]
