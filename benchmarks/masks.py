"""Synthetic 512x512 infrared masks for the metrics and labelling benchmarks (no data files).

- :func:`project_pairs`: (probability map, target) pairs, targets of 1-100 px, predictions
  shifted by up to 2 px, some missed, plus a few false blobs (about 3 components an image).
- :func:`speckle_masks`: another generator: 0-5 small blobs or diagonal chains an image,
  and in every other image speckle false alarms at density 0.0015 (about 200 components an
  image on average), what a noisy detector's thresholded output looks like.
- :func:`noise_masks`: dense noise, every pixel foreground with probability ``density``.
"""

import numpy as np

N, SIZE = 64, 512


def _disk(img, r, c, radius):
    rows, cols = np.ogrid[:img.shape[0], :img.shape[1]]
    img |= (rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2


def project_pairs(n=N, size=SIZE, seed=0):
    """float32 probabilities ``[n, size, size]`` and bool targets of the same shape."""
    rng = np.random.default_rng(seed)
    target = np.zeros((n, size, size), bool)
    pred = np.zeros((n, size, size), bool)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(8, size - 8, 2)
            radius = rng.uniform(0.5, 5.5)
            _disk(target[i], r, c, radius)
            if rng.random() < 0.9:
                dr, dc = rng.integers(-2, 3, 2)
                _disk(pred[i], r + dr, c + dc, max(0.5, radius + rng.uniform(-1, 1)))
        for _ in range(rng.integers(0, 3)):
            _disk(pred[i], *rng.integers(0, size, 2), rng.uniform(0.5, 2.5))
    prob = np.where(pred, 0.9, 0.1).astype(np.float32) + rng.uniform(-0.05, 0.05, pred.shape).astype(np.float32)
    return prob, target


def speckle_masks(n=N, size=SIZE, seed=1, density=0.0015):
    """bool ``[n, size, size]``: blobs and diagonal chains, speckle in every other image."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        for _ in range(rng.integers(0, 6)):
            r, c = rng.integers(4, size - 12, 2)
            if rng.random() < 0.5:
                _disk(masks[i], r, c, rng.uniform(0.7, 3.5))
            else:
                step = rng.choice([-1, 1])
                for k in range(rng.integers(3, 9)):
                    masks[i, r + k, c + 4 + step * k] = True
        if i % 2:
            masks[i] |= rng.random((size, size)) < density
    return masks


def noise_masks(n=N, size=SIZE, seed=2, density=0.5):
    """bool ``[n, size, size]`` of independent pixels, foreground with probability ``density``."""
    return np.random.default_rng(seed).random((n, size, size)) < density
