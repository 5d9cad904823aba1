"""``rules.assign`` (OPDC's matching of candidate pairs) against one dense assignment over all
rows and columns: the same number of pairs at the same least total cost, on conflict-free
candidate sets (its shortcut) and on sets where rows and columns compete (its groups)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from istd_kernels.metrics.rules import assign


def dense(rows, cols, cost, n_rows, n_cols):
    big = cost.sum() + 1.0
    matrix = np.full((n_rows, n_cols), big)
    matrix[rows, cols] = cost
    a, b = linear_sum_assignment(matrix)
    kept = matrix[a, b] < big
    return int(kept.sum()), float(matrix[a, b][kept].sum())


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("conflicts", [False, True])
def test_assign_equals_a_dense_assignment(seed, conflicts):
    rng = np.random.default_rng(seed)
    n_rows, n_cols = rng.integers(1, 12, 2)
    if conflicts:
        pairs = {(int(rng.integers(n_rows)), int(rng.integers(n_cols))) for _ in range(rng.integers(1, 25))}
    else:
        k = int(rng.integers(1, min(n_rows, n_cols) + 1))
        pairs = set(zip(rng.permutation(n_rows)[:k].tolist(), rng.permutation(n_cols)[:k].tolist()))
    rows, cols = (np.array(v, dtype=np.int64) for v in zip(*sorted(pairs)))
    cost = rng.uniform(0, 5, len(rows))
    chosen = assign(rows, cols, cost, n_rows, n_cols)
    r, c = rows[chosen], cols[chosen]
    assert len(set(r.tolist())) == len(r) and len(set(c.tolist())) == len(c)  # a matching
    assert (len(r), pytest.approx(cost[chosen].sum())) == dense(rows, cols, cost, n_rows, n_cols)
    if not conflicts:
        assert chosen.all()


def test_no_candidates():
    empty = np.zeros(0, dtype=np.int64)
    assert assign(empty, empty, np.zeros(0), 3, 2).shape == (0,)
