"""Every op under torch.func: grad, jacrev, vmap and functional_call give what the torch backend
gives; the kernel backends' double backward raises a RuntimeError naming backend="torch"."""

import pytest
import torch
from torch.func import functional_call, grad, jacrev, vmap

from istd_kernels.nn import HLKConv
from istd_kernels.ops import (
    component_stats,
    connected_components,
    depthwise_conv2d,
    hlk_conv,
    measure_components,
    multiscale_maxpool,
    split_attention,
)

# cpp is the default backend for CPU tensors; torch is what the others are checked against.
KERNEL = "cpp"


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _dw_inputs():
    g = _gen()
    return torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64), torch.randn(3, 1, 3, 3, generator=g,
                                                                                  dtype=torch.float64)


def test_grad_over_depthwise_on_the_default_backend():
    x, w = _dw_inputs()

    def loss(w, backend):
        return (depthwise_conv2d(x, w, padding=1, backend=backend) ** 2).sum()

    torch.testing.assert_close(grad(loss)(w, None), grad(loss)(w, "torch"))


def test_grad_over_depthwise_on_triton():
    pytest.importorskip("triton")
    x, w = (t.float() for t in _dw_inputs())

    def loss(w, backend):
        return (depthwise_conv2d(x, w, padding=1, backend=backend) ** 2).sum()

    torch.testing.assert_close(grad(loss)(w, "triton"), grad(loss)(w, "torch"), rtol=1e-4, atol=1e-4)


def test_jacrev_over_depthwise():
    x, w = _dw_inputs()
    x = x[:1, :, :4, :4]

    def f(x, backend):
        return depthwise_conv2d(x, w, padding=1, backend=backend)

    torch.testing.assert_close(jacrev(f)(x, KERNEL), jacrev(f)(x, "torch"))


def test_vmap_over_depthwise_and_grad_inside_vmap():
    x, w = _dw_inputs()
    xs = torch.stack([x, 2 * x])
    y = vmap(lambda x: depthwise_conv2d(x, w, padding=1, backend=KERNEL))(xs)
    torch.testing.assert_close(y, torch.stack([depthwise_conv2d(x, w, padding=1, backend="torch"),
                                               depthwise_conv2d(2 * x, w, padding=1, backend="torch")]))
    per_sample = vmap(grad(lambda w, x: depthwise_conv2d(x, w, backend=KERNEL).sum()), in_dims=(None, 0))(w, xs)
    assert per_sample.shape == (2, *w.shape)
    torch.testing.assert_close(per_sample[1], 2 * per_sample[0])


def test_functional_call_on_hlkconv():
    torch.manual_seed(0)
    layer = HLKConv(4, 11, backend=KERNEL).double()
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(params, backend):
        layer.backend = backend
        return functional_call(layer, params, (x,)).square().sum()

    got, want = grad(loss)(params, KERNEL), grad(loss)(params, "torch")
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], msg=name)


def test_grad_over_split_attention_and_multiscale_maxpool():
    g = _gen(1)
    n, d, h, w = 1, 4, 8, 8
    u = torch.randn(n, 2 * d, h, w, generator=g, dtype=torch.float64)
    residual, v = (torch.randn(n, d, h, w, generator=g, dtype=torch.float64) for _ in range(2))
    logits = torch.randn(n, 2, h, w, generator=g, dtype=torch.float64)
    temperature = torch.tensor(1.5, dtype=torch.float64)

    def loss(u, residual, backend):
        branches = multiscale_maxpool(u, 1, 2, backend=backend)
        return split_attention(branches, logits, temperature, residual, v, 1, backend=backend).sum()

    got = grad(loss, argnums=(0, 1))(u, residual, KERNEL)
    want = grad(loss, argnums=(0, 1))(u, residual, "torch")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_jacrev_over_hlk_conv():
    g = _gen(2)
    x = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64)
    w0, w1 = (torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    w_pw = torch.randn(2, 4, 1, 1, generator=g, dtype=torch.float64)

    def f(w0, backend):
        return hlk_conv(x, w0, None, w1, None, w_pw, None, 2, backend=backend).sum((0, 2, 3))

    torch.testing.assert_close(jacrev(f)(w0, KERNEL), jacrev(f)(w0, "torch"))


def _masks():
    m = torch.zeros(3, 2, 6, 7, dtype=torch.bool)
    m[0, 0, 1:3, 1:3] = True
    m[0, 1, 4, 5] = True
    m[1, 0, 0, :] = True
    m[1, 0, 5, 6] = True
    m[2, 1, 2:5, 2] = True
    return m


@pytest.mark.parametrize("backend", ["torch", KERNEL])
def test_vmap_over_connected_components(backend):
    masks = _masks()
    labels, counts = vmap(lambda m: connected_components(m, backend=backend))(masks)
    want = [connected_components(m, backend="torch") for m in masks]
    torch.testing.assert_close(labels, torch.stack([w[0] for w in want]))
    torch.testing.assert_close(counts, torch.stack([w[1] for w in want]))


@pytest.mark.parametrize("op", [component_stats, measure_components])
def test_statistics_refuse_vmap_by_name(op):
    masks = _masks()

    def f(m):
        return op(*connected_components(m)) if op is component_stats else op(m)

    with pytest.raises(RuntimeError, match="torch.func.vmap"):
        vmap(f)(masks)


_X, _ = _dw_inputs()


def _hessian_loss(w, backend):
    return depthwise_conv2d(_X, w, padding=1, backend=backend).pow(3).sum()


def test_double_backward_names_the_torch_backend():
    _, w = _dw_inputs()
    w = w.requires_grad_()
    (gw,) = torch.autograd.grad(_hessian_loss(w, None), w, create_graph=True)
    with pytest.raises(RuntimeError, match='backend="torch"'):
        gw.sum().backward()
    with pytest.raises(RuntimeError, match='backend="torch"'):
        grad(lambda w: grad(_hessian_loss)(w, None).sum())(w.detach())


def test_double_backward_runs_on_the_torch_backend():
    _, w = _dw_inputs()
    hess = torch.func.hessian(lambda w: _hessian_loss(w, "torch"))(w)
    assert hess.shape == (*w.shape, *w.shape)


def test_double_backward_through_list_inputs_names_the_torch_backend():
    # split_attention takes its branches as a list and multiscale_maxpool returns a list: the
    # second derivative of their kernel backwards must fail with the same clear error.
    g = _gen(3)
    u = torch.randn(1, 8, 8, 8, generator=g, dtype=torch.float64)
    logits = torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64)
    temperature = torch.tensor(1.5, dtype=torch.float64)

    def loss(u):
        branches = multiscale_maxpool(u, 1, 2, backend=KERNEL)
        return split_attention(branches, logits, temperature, u[:, :4], u[:, 4:], 1, backend=KERNEL).pow(3).sum()

    with pytest.raises(RuntimeError, match='backend="torch"'):
        grad(lambda u: grad(loss)(u).sum())(u)
