"""accelerate(): other people's models get this package's layers and compute the same thing."""

import collections

import pytest
import torch
from hlk_cases import assert_close
from published_models import MODELS, DetachedHLKConv, HLKStage, LookAlikeHLKConv, PublishedHLKConv, lka_block
from torch import nn

from istd_kernels.nn import DepthwiseConv2d, HLKConv, accelerate, accelerate_report, restore
from istd_kernels.ops.hlk_conv import K_SIZES

DIM = 8
SHAPE = (1, DIM, 9, 11)
TRITON_DIM = 4  # the triton backend runs in its interpreter on the CPU: few channels, tiny images
# (pattern, action) -> count in each test model's report
EXPECTED = {
    "hlkconv": {("hlk", "replaced"): 1},
    "lka": {("hlk", "kept"): 1, ("depthwise", "replaced"): 2},
    "mobilenetv2": {("depthwise", "replaced"): 2},
    "multidilation": {("depthwise", "replaced"): 3, ("dw_pw", "detected"): 3},
    "lookalike": {("hlk", "kept"): 1, ("depthwise", "replaced"): 2},
}


def _build(name):
    torch.manual_seed(0)
    return MODELS[name](DIM)


def _chain():
    """Every test model in one nn.Sequential (mobilenetv2 last: it doubles the channels)."""
    torch.manual_seed(0)
    return nn.Sequential(*(MODELS[name](DIM) for name in ("hlkconv", "lka", "lookalike", "multidilation",
                                                          "mobilenetv2")))


def _counts(model):
    return dict(collections.Counter((d.pattern, d.action) for d in accelerate_report(model).decisions))


def _types(model):
    return [(path, type(m)) for path, m in model.named_modules()]


def _forward_backward(model, x, gy):
    x = x.clone().requires_grad_()
    y = model(x)
    grads = torch.autograd.grad(y, [x, *model.parameters()], gy)
    return y, grads


def _assert_same_computation(original, accelerated, shape=SHAPE):
    x = torch.randn(shape)
    gy = torch.randn_like(original(x))
    y0, g0 = _forward_backward(original, x, gy)
    y1, g1 = _forward_backward(accelerated, x, gy)
    torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-5)
    assert len(g0) == len(g1)
    # Weight gradients are sums over N*H*W products whose order differs between backends:
    # compared with the project's float32 tolerance relative to the largest magnitude.
    for i, (a, b) in enumerate(zip(g1, g0)):
        assert_close(a, b, torch.float32, f"gradient {i} (0 = input, then parameters)")


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_outputs_and_gradients_match(name, backend):
    dim = TRITON_DIM if backend == "triton" else DIM
    torch.manual_seed(0)
    original = MODELS[name](dim)
    accelerated = accelerate(original, backend=backend)
    assert _counts(accelerated) == EXPECTED[name]
    replaced = [m for m in accelerated.modules() if isinstance(m, (HLKConv, DepthwiseConv2d))]
    assert replaced and all(m.backend == backend for m in replaced)
    _assert_same_computation(original, accelerated, (1, dim, 9, 11))


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("k_size", sorted(K_SIZES))
def test_every_published_k_size_is_fused(k_size, backend):
    torch.manual_seed(k_size)
    original = PublishedHLKConv(6, k_size)
    fused = accelerate(original, backend=backend)
    assert type(fused) is HLKConv and fused.k_size == k_size
    assert list(fused.state_dict()) == list(original.state_dict())
    _assert_same_computation(original, fused, (2, 6, 13, 10))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_training_step_gives_the_same_weights(name):
    original = _build(name)
    accelerated = accelerate(original, backend="cpp")
    x, target = torch.randn(2, DIM, 9, 11), None
    for model in (original, accelerated):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        y = model(x)
        target = torch.randn_like(y) if target is None else target
        nn.functional.mse_loss(y, target).backward()
        opt.step()
    after0, after1 = original.state_dict(), accelerated.state_dict()
    assert list(after0) == list(after1)
    for key in after0:
        torch.testing.assert_close(after1[key], after0[key], atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("cls,reason", [(LookAlikeHLKConv, "forward differs"),
                                        (DetachedHLKConv, "gradients differ")])
def test_look_alikes_are_left_alone(cls, reason):
    torch.manual_seed(0)
    original = cls(DIM, 7)
    accelerated = accelerate(original, backend="cpp")
    assert type(accelerated) is cls
    (decision,) = [d for d in accelerate_report(accelerated).decisions if d.pattern == "hlk"]
    assert decision.action == "kept" and reason in decision.reason
    _assert_same_computation(original, accelerated)


class _Conv2dSubclass(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


def _hooked_hlk():
    module = PublishedHLKConv(4, 7)
    module.conv0.register_forward_hook(lambda *args: None)
    return module


@pytest.mark.parametrize("make,reason", [
    (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4, padding_mode="reflect"), "padding_mode='reflect'"),
    (lambda: nn.Conv2d(4, 4, 4, padding="same", groups=4), "pads asymmetrically"),
    (lambda: nn.Conv2d(4, 8, 3, groups=4), "channel multiplier 2"),
    (lambda: nn.Conv2d(4, 4, 3, dilation=9, groups=4), "larger than the kernels' limit"),
    (lambda: nn.Conv2d(4, 4, 33, groups=4), "larger than the kernels' limit"),
    (lambda: _Conv2dSubclass(4, 4, 3, groups=4), "subclass of nn.Conv2d"),
])
def test_unsupported_convs_are_left_alone_with_a_reason(make, reason):
    model = nn.Sequential(make())
    accelerated = accelerate(model)
    assert _types(accelerated) == _types(model)
    (decision,) = accelerate_report(accelerated).decisions
    assert decision.action == "kept" and reason in decision.reason


@pytest.mark.parametrize("make,reason", [
    (_hooked_hlk, "has hooks"),
    (lambda: PublishedHLKConv(4, 7).to("meta"), "meta device"),
    (lambda: lka_block(4)[2], "conv1 is not a dense 1x1"),
])
def test_hlk_candidates_left_alone_keep_their_depthwise_swaps(make, reason):
    module = make()
    accelerated = accelerate(module)
    assert type(accelerated) is type(module)
    hlk = [d for d in accelerate_report(accelerated).decisions if d.pattern == "hlk"]
    assert [d.action for d in hlk] == ["kept"] and reason in hlk[0].reason
    assert type(accelerated.conv0) is DepthwiseConv2d and type(accelerated.conv1) is nn.Conv2d


def test_state_dict_loads_both_ways():
    original = HLKStage(DIM, 23)
    accelerated = accelerate(original)
    assert type(accelerated.hlk) is HLKConv
    assert list(accelerated.state_dict()) == list(original.state_dict())
    other = accelerate(HLKStage(DIM, 23))
    other.load_state_dict(original.state_dict(), strict=True)  # checkpoint from before -> after
    fresh = HLKStage(DIM, 23)
    fresh.load_state_dict(other.state_dict(), strict=True)  # after -> before
    for key, value in original.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_inplace_keeps_the_parameter_objects():
    model = nn.Sequential(HLKStage(DIM), MODELS["mobilenetv2"](DIM))
    params = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # built before: must still drive the model
    accelerated = accelerate(model, inplace=True)
    assert accelerated is model and type(model[0].hlk) is HLKConv
    assert all(a is b for a, b in zip(model.parameters(), params))
    before = [p.detach().clone() for p in params]
    model(torch.randn(SHAPE)).square().sum().backward()
    opt.step()
    moved = [not torch.equal(p, b) for p, b in zip(model.parameters(), before) if p.grad.abs().sum() > 0]
    assert len(moved) > len(params) // 2 and all(moved)


def test_the_default_copy_leaves_the_model_alone():
    model = MODELS["lka"](DIM)
    types = _types(model)
    accelerated = accelerate(model)
    assert _types(model) == types and _types(accelerated) != types
    assert not any(a is b for a, b in zip(model.parameters(), accelerated.parameters()))


def test_restore_round_trip():
    model = _chain()
    accelerated = accelerate(model)
    restored = restore(accelerated)
    assert _types(restored) == _types(model)
    assert list(restored.state_dict()) == list(model.state_dict())
    assert not hasattr(restored, "_istd_accelerate_report") and not isinstance(restored[0].hlk, HLKConv)
    _assert_same_computation(model, restored)
    assert restore(accelerated, inplace=True) is accelerated and _types(accelerated) == _types(model)
    assert type(restore(accelerate(PublishedHLKConv(4, 11)))) is PublishedHLKConv


def test_restore_leaves_layers_the_model_was_built_with():
    model = nn.Sequential(DepthwiseConv2d(4, 3, padding=1), HLKConv(4), nn.Conv2d(4, 4, 3, groups=4))
    restored = restore(accelerate(model))
    assert [type(m) for m in restored] == [DepthwiseConv2d, HLKConv, nn.Conv2d]


def test_idempotent():
    once = accelerate(_chain())
    twice = accelerate(once)
    assert _types(twice) == _types(once)
    actions = collections.Counter(d.action for d in accelerate_report(twice).decisions)
    assert "replaced" not in actions and actions["already"] == sum(
        n for (p, a), n in _counts(once).items() if a == "replaced")
    _assert_same_computation(once, twice)


def test_shared_module_is_replaced_everywhere():
    shared = PublishedHLKConv(4, 7)
    model = nn.ModuleList([shared, nn.Sequential(shared)])
    accelerated = accelerate(model, inplace=True)
    assert type(accelerated[0]) is HLKConv and accelerated[1][0] is accelerated[0]


def test_patterns_subset():
    model = accelerate(HLKStage(DIM), patterns=["depthwise"])
    assert type(model.hlk) is PublishedHLKConv and type(model.hlk.conv0) is DepthwiseConv2d
    assert {d.pattern for d in accelerate_report(model).decisions} == {"depthwise"}


def test_compile():
    torch.manual_seed(0)
    model = nn.Sequential(PublishedHLKConv(4, 7), nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4))
    accelerated = accelerate(model, backend="cpp")
    compiled = torch.compile(accelerated, fullgraph=True)
    x = torch.randn(1, 4, 10, 12)
    y = compiled(x)
    torch.testing.assert_close(y, model(x), atol=1e-5, rtol=1e-5)
    (g,) = torch.autograd.grad(y.sum(), [accelerated[0].conv0.weight])
    (r,) = torch.autograd.grad(model(x).sum(), [model[0].conv0.weight])
    torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(model="net"), TypeError, "model must be a torch.nn.Module"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(inplace="yes"), TypeError, "inplace must be a bool"),
    (dict(patterns="fused"), ValueError, "patterns must be 'all' or a non-empty collection"),
    (dict(patterns=[]), ValueError, "patterns must be 'all' or a non-empty collection"),
    (dict(patterns=3), TypeError, "patterns must be 'all' or a collection"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"model": nn.Conv2d(2, 2, 3, groups=2), **kwargs}
    with pytest.raises(error, match=match):
        accelerate(**args)


def test_bad_arguments_of_restore_and_report():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        restore(None)
    with pytest.raises(TypeError, match="inplace must be a bool"):
        restore(nn.Conv2d(2, 2, 1), inplace=1)
    with pytest.raises(ValueError, match="was not returned by istd_kernels.nn.accelerate"):
        accelerate_report(nn.Conv2d(2, 2, 1))
