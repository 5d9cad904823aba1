"""ISTD losses: hand-computed values, logits vs probabilities, stability, gradcheck, errors."""

import copy
import math

import pytest
import torch

from istd_kernels.losses import DiceLoss, DpTkLoss, PolyLoss, SoftIoULoss, TopKLoss

# p = sigmoid(z) = [[0.5, 0.75], [0.25, 0.5]]; y = [[1, 1], [0, 0]]
Z = torch.tensor([[[[0.0, math.log(3)], [-math.log(3), 0.0]]]], dtype=torch.float64)
Y = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
LN2, LN43 = math.log(2), math.log(4 / 3)  # per-pixel BCE: [ln2, ln4/3, ln4/3, ln2]; p_t = [.5, .75, .75, .5]

HAND = [
    (SoftIoULoss(), 1 - 1.25 / 2.75),                          # sum(py) = 1.25, sum(p + y - py) = 2.75
    (DiceLoss(), 1 - (2 * 1.25 + 1) / (2 + 2 + 1)),
    (PolyLoss(), (LN2 + LN43) / 2 + 3.1 * (0.5 + 0.25 + 0.25 + 0.5) / 4),
    (PolyLoss(alpha=1.0), (LN2 + LN43) / 2 + 1.0 * 0.375),
    (TopKLoss(k=50), LN2),                                     # the 2 largest of 4: ln2, ln2
    (TopKLoss(k=10), LN2),                                     # floor(0.4) -> at least 1 kept
    (TopKLoss(k=100), (LN2 + LN43) / 2),
    (DpTkLoss(k=50), 0.3 + LN2 + 3.1 * 0.5),
    (DpTkLoss(alpha=3.1, k=100), 0.3 + (LN2 + LN43) / 2 + 3.1 * 0.375),
]
ALL = [SoftIoULoss, DiceLoss, PolyLoss, TopKLoss, DpTkLoss]


@pytest.mark.parametrize("loss,want", HAND, ids=[f"{type(l).__name__}{i}" for i, (l, _) in enumerate(HAND)])
def test_hand_computed(loss, want):
    loss = copy.deepcopy(loss)
    assert loss(Z, Y).item() == pytest.approx(want, abs=1e-12)
    # the same on [N, H, W] and from probabilities
    assert loss(Z[:, 0], Y[:, 0]).item() == pytest.approx(want, abs=1e-12)
    loss.from_logits = False
    if isinstance(loss, DpTkLoss):
        loss.dice.from_logits = False
    assert loss(torch.sigmoid(Z), Y).item() == pytest.approx(want, abs=1e-12)


def test_soft_iou_smooth():
    assert SoftIoULoss(smooth=1.0)(Z, Y).item() == pytest.approx(1 - 2.25 / 3.75)


@pytest.mark.parametrize("cls", ALL)
def test_logits_and_probabilities_agree(cls):
    g = torch.Generator().manual_seed(0)
    # float64: in float32, sigmoid(z) for z ~ 10 already rounds 1 - p, which the logit path avoids
    z = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64) * 4
    y = (torch.rand(3, 1, 8, 8, generator=g) < 0.2).double()
    a = cls()(z, y)
    b = cls(from_logits=False)(torch.sigmoid(z), y)
    assert torch.allclose(a, b, atol=1e-10, rtol=1e-10)
    a32 = cls()(z.float(), y.float())
    assert torch.allclose(a32.double(), a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", ALL)
def test_extreme_logits_are_finite(cls):
    z = torch.tensor([100.0, -100.0, 100.0, -100.0, 30.0, -30.0]).reshape(1, 1, 2, 3).requires_grad_()
    for y in (torch.tensor([1.0, 0, 0, 1, 1, 0]), torch.zeros(6), torch.ones(6)):
        y = y.reshape(1, 1, 2, 3)
        loss = cls()(z, y)
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and bool(torch.isfinite(grad).all())
    # confidently wrong pixels cost ~100 nats of BCE: the logit form must not saturate
    assert TopKLoss(k=100)(z[:, :, :1, :2], torch.tensor([[[[0.0, 1.0]]]])).item() == pytest.approx(100.0)
    assert SoftIoULoss()(torch.full((1, 1, 2, 2), -100.0), torch.zeros(1, 1, 2, 2)).item() == pytest.approx(1.0)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("from_logits", [True, False])
def test_gradcheck(cls, from_logits):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 3, 4, generator=g, dtype=torch.float64)
    if not from_logits:
        x = torch.sigmoid(x) * 0.9 + 0.05
    y = (torch.rand(2, 1, 3, 4, generator=g) < 0.4).double()
    loss = cls(from_logits=from_logits)
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (x.requires_grad_(),))


def test_dptk_is_dice_plus_top_k_poly():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 1, 10, 10, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(2, 1, 10, 10, generator=g) < 0.1).double()
    # alpha = 0 reduces Poly-1 BCE to BCE: DpT-k is then Dice + Top-k BCE
    assert torch.allclose(DpTkLoss(alpha=0.0, k=10)(z, y), DiceLoss()(z, y) + TopKLoss(k=10)(z, y))
    # k = 100 keeps every pixel: the Top-k term is the Poly loss
    assert torch.allclose(DpTkLoss(k=100)(z, y), DiceLoss()(z, y) + PolyLoss()(z, y))
    # Top-k over the whole batch, not per image: 10 % of 200 pixels = 20 values
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none").flatten()
    assert torch.allclose(TopKLoss(k=10)(z, y), bce.sort(descending=True).values[:20].mean())


@pytest.mark.parametrize("cls", ALL)
def test_shape_mismatch(cls):
    with pytest.raises(ValueError, match="target must have the shape of input"):
        cls()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="must be tensors"):
        cls()(torch.zeros(2, 1, 4, 4), [0.0])


def test_bad_k():
    for k in (0, -5, 101, True):
        with pytest.raises(ValueError, match="k must be a percentage"):
            TopKLoss(k=k)
        with pytest.raises(ValueError, match="k must be a percentage"):
            DpTkLoss(k=k)
