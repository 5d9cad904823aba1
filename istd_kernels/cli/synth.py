"""``istd synth``: a synthetic infrared small-target data set in the BasicIRSTD layout.

No public ISTD data set can be downloaded on the project's machines, so tests and demos use
images made here: a cluttered background (sky gradient, cloud-like fractal noise, a horizon
with ground texture and building edges, sensor noise and column stripes) with 1-3 small
targets (Gaussian spots, ellipses, rectangles, triangles; 1-100 pixels), hotter than their
surroundings, added at a low signal-to-clutter ratio: SCR = target amplitude / std of the
background in a window three times the target's size, drawn from ``scr`` (default 2.5-8;
real data sets span roughly 1-10).

Everything is drawn from ``numpy.random.default_rng`` streams spawned from one seed, one
stream per image, so a given ``(seed, n, size)`` always writes the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import CLIError
from .outputs import check_new_files


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - cv2 is a test dependency
        raise CLIError("istd synth needs OpenCV: pip install opencv-python-headless") from e
    return cv2


def _fractal_noise(rng: np.random.Generator, size: int, octaves: int = 5, persistence: float = 0.55) -> np.ndarray:
    """Cloud-like noise in [0, 1]: smooth random fields at doubling frequencies, summed."""
    cv2 = _cv2()
    out = np.zeros((size, size), np.float64)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 1) + 1
        grid = rng.random((cells, cells))
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    return (out - out.min()) / max(out.max() - out.min(), 1e-9)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A grey background in [0, 255] (float64) with the clutter of real IR scenes."""
    cv2 = _cv2()
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    angle = rng.uniform(-0.4, 0.4)
    sky = rng.uniform(60, 150) + rng.uniform(-50, 50) * (np.cos(angle) * yy + np.sin(angle) * xx)
    clouds = _fractal_noise(rng, size)
    # thresholded noise gives bright cloud banks with edges, the main false-alarm source
    cover = rng.uniform(0.3, 0.7)
    bank = np.clip((clouds - cover) / (1 - cover), 0, 1) ** rng.uniform(0.6, 1.5)
    img = sky + rng.uniform(20, 70) * bank + rng.uniform(3, 10) * (clouds - 0.5)
    if rng.random() < 0.7:
        # horizon line, tilted; ground below it is darker or brighter and textured
        h0 = rng.uniform(0.55, 0.9) * size
        tilt = rng.uniform(-0.15, 0.15)
        horizon = h0 + tilt * (np.arange(size) - size / 2)
        ground = yy * (size - 1) > horizon[None, :]
        texture = _fractal_noise(rng, size, octaves=6, persistence=0.7)
        level = rng.uniform(30, 200)
        img = np.where(ground, level + 40 * (texture - 0.5), img)
        # buildings: bright or dark rectangles standing on the horizon, hard edges
        for _ in range(rng.integers(0, 5)):
            w = int(rng.integers(max(2, size // 16), max(3, size // 5)))
            x0 = int(rng.integers(0, max(1, size - w)))
            top = int(horizon[min(x0, size - 1)] - rng.uniform(0.05, 0.3) * size)
            bottom = int(horizon[min(x0, size - 1)]) + 1
            img[max(0, top):max(0, bottom), x0:x0 + w] = rng.uniform(20, 230)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2))
    img += rng.normal(0, rng.uniform(1.5, 6.0), img.shape)                      # sensor noise
    img += rng.normal(0, rng.uniform(0.0, 2.0), (1, size))                       # column stripes
    return img


def _target_shape(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An ``(intensity profile in [0, 1], mask)`` pair, both ``k x k``, with 1-100 mask pixels."""
    cv2 = _cv2()
    kind = rng.choice(["gauss", "ellipse", "rect", "triangle"], p=[0.45, 0.25, 0.15, 0.15])
    k = int(min(size, 15))
    c = (k - 1) / 2
    yy, xx = np.mgrid[0:k, 0:k].astype(np.float64)
    for _ in range(20):
        if kind == "gauss":
            sy, sx = rng.uniform(0.4, 2.2, 2)
            theta = rng.uniform(0, np.pi)
            dy, dx = yy - c, xx - c
            u = np.cos(theta) * dx + np.sin(theta) * dy
            v = -np.sin(theta) * dx + np.cos(theta) * dy
            profile = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
            mask = profile > 0.3
        else:
            m = np.zeros((k, k), np.uint8)
            if kind == "ellipse":
                axes = (int(rng.integers(0, 5)), int(rng.integers(0, 5)))
                cv2.ellipse(m, (int(c), int(c)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            elif kind == "rect":
                h, w = rng.integers(1, 8, 2)
                y0, x0 = int(c - h // 2), int(c - w // 2)
                m[y0:y0 + h, x0:x0 + w] = 1
            else:
                pts = (c + rng.uniform(-5, 5, (3, 2))).round().astype(np.int32)
                cv2.fillConvexPoly(m, pts, 1)
            mask = m.astype(bool)
            # a slight blur: real targets are smeared by the optics
            profile = cv2.GaussianBlur(m.astype(np.float64), (0, 0), 0.6)
            profile = profile / max(profile.max(), 1e-9)
            profile[mask] = np.maximum(profile[mask], 0.6)
        if 1 <= mask.sum() <= 100:
            return profile, mask
    profile = np.zeros((k, k))
    profile[int(c), int(c)] = 1.0
    return profile, profile > 0


DEFAULT_SCR = (2.5, 8.0)


def synth_image(rng: np.random.Generator, size: int,
                scr: tuple[float, float] = DEFAULT_SCR) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image uint8 [size, size], mask uint8 0/255)`` pair drawn from ``rng``."""
    img = _background(rng, size)
    mask = np.zeros((size, size), bool)
    n_targets = int(rng.integers(1, 4))
    for _ in range(n_targets):
        profile, tmask = _target_shape(rng, size)
        k = profile.shape[0]
        for _ in range(20):
            y0, x0 = (int(v) for v in rng.integers(0, size - k + 1, 2))
            region = (slice(y0, y0 + k), slice(x0, x0 + k))
            # keep targets apart: two touching masks would merge into one object
            grown = np.zeros((size, size), bool)
            grown[max(0, y0 - 3):y0 + k + 3, max(0, x0 - 3):x0 + k + 3] = True
            if not (mask & grown).any():
                break
        else:
            continue
        # The clutter a detector must see the target against: a window around it, not the
        # target's own k x k patch (whose std can be near zero on a smooth sky).
        window = img[max(0, y0 - k):y0 + 2 * k, max(0, x0 - k):x0 + 2 * k]
        local_std = max(float(window.std()), 2.0)
        amplitude = rng.uniform(*scr) * local_std
        img[region] += amplitude * profile
        mask[region] |= tmask
    return np.clip(img, 0, 255).round().astype(np.uint8), (mask * 255).astype(np.uint8)


def write_dataset(out: str, name: str, n: int, size: int, seed: int = 0, test_fraction: float = 0.5,
                  scr: tuple[float, float] = DEFAULT_SCR, overwrite: bool = False) -> Path:
    """Write ``n`` images of ``size x size`` to ``out/name`` (BasicIRSTD layout); return that folder.

    Ids are ``00000 .. n-1``; the last ``round(n * test_fraction)`` (at least 1 when n >= 2)
    form the test split, the rest the training split. An existing file among those it would
    write is a :class:`CLIError` unless ``overwrite``.
    """
    cv2 = _cv2()
    if n < 2:
        raise CLIError(f"--n must be at least 2 (one training and one test image); got {n}")
    if size < 8:
        raise CLIError(f"--size must be at least 8 pixels; got {size}")
    if not name or os.sep in name or name in (".", ".."):
        raise CLIError(f"--name must be a plain folder name; got {name!r}")
    if not 0 < test_fraction < 1:
        raise CLIError(f"--test-fraction must be in (0, 1); got {test_fraction}")
    if not 0 < scr[0] <= scr[1]:
        raise CLIError(f"--scr must be two numbers 0 < LOW <= HIGH; got {scr[0]} {scr[1]}")
    root = Path(out) / name
    ids: list[str] = [f"{i:05d}" for i in range(n)]
    lists = [root / "img_idx" / f"{split}_{name}.txt" for split in ("train", "test")]
    check_new_files([*(root / sub / f"{i}.png" for sub in ("images", "masks") for i in ids), *lists], "--out",
                    overwrite)
    for sub in ("images", "masks", "img_idx"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    streams = np.random.SeedSequence(seed).spawn(n)
    for i, s in zip(ids, streams):
        image, mask = synth_image(np.random.default_rng(s), size, scr)
        for path, arr in ((root / "images" / f"{i}.png", image), (root / "masks" / f"{i}.png", mask)):
            if not cv2.imwrite(str(path), arr):
                raise CLIError(f"could not write {path}")
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    split = n - n_test
    lists[0].write_text("".join(i + "\n" for i in ids[:split]))
    lists[1].write_text("".join(i + "\n" for i in ids[split:]))
    return root


def run(args) -> int:
    """The ``istd synth`` subcommand."""
    root = write_dataset(args.out, args.name, args.n, args.size, args.seed, args.test_fraction, tuple(args.scr),
                         args.overwrite)
    print(f"wrote {args.n} images of {args.size}x{args.size} to {root} (BasicIRSTD layout)")
    return 0
