"""``Scorer.update_batch`` (what ``istd compare`` scores with) gives the rows and totals of
one ``Scorer.update`` per image: images with nothing to find or nothing found, bool maps and
probabilities, another threshold, the older false-pixel rule."""

import pytest
import torch

from istd_kernels.cli.scoring import Scorer


def _images(n=12, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = torch.rand(n, size, size, generator=g) > 0.995            # scattered single-pixel targets
    targets[:, 10:13, 10:14] = True                                      # and a blob each
    probs = torch.rand(n, size, size, generator=g) * 0.6
    probs[:, 11:14, 10:13] = 0.9                                         # the blob found, shifted by one row
    probs[2], targets[3], probs[4], targets[4] = 0.0, False, 0.0, False  # nothing found / nothing to find / both
    return probs, targets


@pytest.mark.parametrize("threshold, legacy, as_bool", [(0.5, False, False), (0.5, False, True),
                                                        (0.37, True, False), (0.55, False, True)])
def test_batch_rows_and_totals_equal_one_update_per_image(threshold, legacy, as_bool):
    probs, targets = _images()
    preds = probs > threshold if as_bool else probs
    ids = [f"img{i}" for i in range(len(preds))]
    one, batched = Scorer(threshold, False, legacy), Scorer(threshold, False, legacy)
    for p, t, i in zip(preds, targets, ids):
        one.update(p, t, i)
    batched.update_batch(preds[:5], targets[:5], ids[:5])
    batched.update_batch(preds[5:], targets[5:], ids[5:])
    assert batched.rows == one.rows
    got, want = batched.result(), one.result()
    # nIoU's sum of per-image IoUs is added a batch at a time: equal up to the order of the additions
    for key in ("niou", "niou_percent"):
        assert got.pop(key) == pytest.approx(want.pop(key), rel=1e-12, abs=1e-15)
    assert got == want
    assert any(r["iou"] is None for r in one.rows) and any(r["targets"] == 0 for r in one.rows)


def test_batch_refuses_what_it_cannot_score():
    probs, targets = _images()
    with pytest.raises(ValueError, match="update_batch scores the basic metrics only"):
        Scorer(roc=True).update_batch(probs, targets, [str(i) for i in range(len(probs))])
    with pytest.raises(ValueError, match="N idents"):
        Scorer().update_batch(probs, targets, ["a"])
