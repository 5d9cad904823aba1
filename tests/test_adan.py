"""Adan (istd_kernels.optim.Adan) against steps worked out by hand."""

import copy
import math

import pytest
import torch

from istd_kernels.optim import Adan


def _step(opt, p, grad):
    p.grad = torch.tensor([grad], dtype=p.dtype)
    opt.step()


def test_two_hand_worked_steps_proximal_decay():
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Adan([p], lr=0.1, betas=(0.5, 0.5, 0.5), eps=0.0, weight_decay=0.1)
    # step 1, g = 2: m = 1, v = 0, n = 2; corrections 0.5 -> u = (1/0.5) / sqrt(2/0.5) = 1
    _step(opt, p, 2.0)
    theta1 = (1.0 - 0.1 * 1.0) / (1 + 0.1 * 0.1)
    assert p.item() == pytest.approx(theta1, rel=1e-12)
    # step 2, g = 1: diff = -1; m = 1, v = -0.5, nesterov = 0.5, n = 0.5*2 + 0.5*0.25 = 1.125;
    # corrections 0.75 -> u = (1/0.75 + 0.5 * -0.5/0.75) / sqrt(1.125/0.75) = 1 / sqrt(1.5)
    _step(opt, p, 1.0)
    theta2 = (theta1 - 0.1 / math.sqrt(1.5)) / 1.01
    assert p.item() == pytest.approx(theta2, rel=1e-12)


def test_no_prox_decoupled_decay():
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Adan([p], lr=0.1, betas=(0.5, 0.5, 0.5), eps=0.0, weight_decay=0.1, no_prox=True)
    _step(opt, p, 2.0)
    assert p.item() == pytest.approx(1.0 * (1 - 0.01) - 0.1, rel=1e-12)


def test_lcrnet_betas_first_step_is_sign_sized():
    p = torch.nn.Parameter(torch.tensor([0.5, -0.5], dtype=torch.float64))
    opt = Adan([p], lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0)
    p.grad = torch.tensor([3.0, -0.25], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([0.5 - 1e-3 * 3 / (3 + 1e-8), -0.5 + 1e-3 * 0.25 / (0.25 + 1e-8)],
                            dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=0)


def test_minimises_a_quadratic_and_state_round_trips():
    torch.manual_seed(0)
    target = torch.randn(5)
    p = torch.nn.Parameter(torch.zeros(5))
    opt = Adan([p], lr=0.05, weight_decay=0.0)
    for _ in range(400):
        opt.zero_grad()
        ((p - target) ** 2).sum().backward()
        opt.step()
    torch.testing.assert_close(p.detach(), target, atol=5e-2, rtol=0)
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = Adan([q], lr=0.05)
    # deep copy: load_state_dict would otherwise share the state tensors with `opt`
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for o, w in ((opt, p), (opt2, q)):
        o.zero_grad()
        ((w - target) ** 2).sum().backward()
        o.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)


def test_rejects_bad_arguments():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="betas"):
        Adan([p], betas=(0.9, 0.9))
    with pytest.raises(ValueError, match="lr"):
        Adan([p], lr=-1.0)
