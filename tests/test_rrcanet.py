"""RRCA-Net and its layers: official sizes, official checkpoint layout, weight sharing, shapes, compile."""

import copy

import pytest
import torch
import torch.nn.functional as F

from istd_kernels.nn.rrca import DIAAM, ChannelAttention, ResidualBlock, RuCB
from models.rrcanet import RRCANet, convert_official_state_dict, count_flops

C = (8, 16, 32, 64)
BLOCKS = {"resnet10": (2, 1, 1, 1), "resnet18": (3, 2, 2, 2), "resnet34": (4, 4, 6, 3)}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# --- the official checkpoint's layout, written from docs/networks.md §4.5 ---------------------

def official_layout(blocks=(3, 2, 2, 2), passes=3, in_chans=1):
    """key -> shape of the official state_dict; plus, for each shared conv tensor, its keys."""
    shapes, shared = {}, []

    def conv(p, cin, cout, k, bias=True):
        shapes[p + ".weight"] = (cout, cin, k, k)
        if bias:
            shapes[p + ".bias"] = (cout,)

    def bn(p, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{p}.{name}"] = (c,)
        shapes[p + ".num_batches_tracked"] = ()

    def res_block(p, cin, cout):
        conv(p + ".conv1", cin, cout, 3)
        bn(p + ".bn1", cout)
        conv(p + ".conv2", cout, cout, 3)
        bn(p + ".bn2", cout)
        if cin != cout:
            conv(p + ".shortcut.0", cin, cout, 1)
            bn(p + ".shortcut.1", cout)

    res_block("conv0_0.0", in_chans, C[0])
    for i in range(passes):
        for l in range(4):
            p = f"iteration{i}_layer{l}_encoder_convs"
            cin, cout = C[max(l - 1, 0)], C[l]
            for u in range(blocks[l]):
                conv(f"{p}.operator.{6 * u}", cin if u == 0 else cout, cout, 3)
                bn(f"{p}.operator.{6 * u + 1}", cout)
                conv(f"{p}.operator.{6 * u + 3}", cout, cout, 3)
                bn(f"{p}.operator.{6 * u + 4}", cout)
            if l > 0:
                conv(p + ".shortcut.0", cin, cout, 1)
                bn(p + ".shortcut.1", cout)
    for l in range(4):
        for u in range(blocks[l]):
            for k in (6 * u, 6 * u + 3):
                for name in ("weight", "bias"):
                    shared.append([f"iteration{i}_layer{l}_encoder_convs.operator.{k}.{name}" for i in range(passes)])
    for i in range(passes):
        for j in range(3):
            p = f"iteration{i}_layer{j}_decoders_SBAM"
            low, high = C[2 - j], C[3 - j]
            conv(p + ".pwconv1", low, low, 1)
            conv(p + ".pwconv2", high, low, 1)
            conv(p + ".ca.fc1", low, max(1, low // 8), 1, bias=False)
            conv(p + ".ca.fc2", max(1, low // 8), low, 1, bias=False)
    res_block("post_transform_conv_block.0", C[0] * passes, C[0])
    conv("final", C[0], 1, 1)
    return shapes, shared


def random_official_state_dict(seed=0, **kw):
    shapes, shared = official_layout(**kw)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * (0.5 if len(shape) == 4 else 0.2)
    for keys in shared:  # one tensor, listed under every pass
        for k in keys[1:]:
            sd[k] = sd[keys[0]].clone()
    return sd


def reference_forward(sd, x, blocks=(3, 2, 2, 2), passes=3):
    """RRCA-Net in plain functional ops on an official-layout state_dict (eval mode), per docs/networks.md §4."""
    def conv(p, t):
        pad = sd[p + ".weight"].shape[-1] // 2
        return F.conv2d(t, sd[p + ".weight"], sd.get(p + ".bias"), padding=pad)

    def bn(p, t):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-5)

    def res_block(p, t):
        sc = bn(p + ".shortcut.1", conv(p + ".shortcut.0", t)) if p + ".shortcut.0.weight" in sd else t
        out = F.relu(bn(p + ".bn1", conv(p + ".conv1", t)))
        return F.relu(bn(p + ".bn2", conv(p + ".conv2", out)) + sc)

    def sbam(p, low, high):
        h = conv(p + ".pwconv2", F.interpolate(high, scale_factor=2, mode="bilinear", align_corners=True))
        mlp = lambda v: conv(p + ".ca.fc2", F.relu(conv(p + ".ca.fc1", v)))  # noqa: E731
        h = h * torch.sigmoid(mlp(F.adaptive_max_pool2d(h, 1)) + mlp(F.adaptive_avg_pool2d(h, 1)))
        return low + h * torch.sigmoid(conv(p + ".pwconv1", low))

    feat, outs = res_block("conv0_0.0", x), []
    for i in range(passes):
        skips = []
        for l in range(4):
            p = f"iteration{i}_layer{l}_encoder_convs"
            if l:
                feat = F.max_pool2d(feat, 2)
            for u in range(blocks[l]):
                o = f"{p}.operator."
                sc = feat
                if u == 0 and p + ".shortcut.0.weight" in sd:
                    sc = bn(p + ".shortcut.1", conv(p + ".shortcut.0", feat))
                t = F.relu(bn(o + str(6 * u + 1), conv(o + str(6 * u), feat)))
                feat = F.relu(bn(o + str(6 * u + 4), conv(o + str(6 * u + 3), t)) + sc)
            skips.append(feat)
        d = skips[3]
        for j in range(3):
            d = sbam(f"iteration{i}_layer{j}_decoders_SBAM", skips[2 - j], d)
        outs.append(d)
        feat = d
    return conv("final", res_block("post_transform_conv_block.0", torch.cat(outs, 1)))


def randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
    return model.eval()


# --- sizes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone,expected", [("resnet18", 202_089), ("resnet10", 102_489), ("resnet34", 363_161)])
def test_official_parameter_counts(backbone, expected):
    assert n_params(RRCANet(backbone)) == expected


def test_each_extra_pass_adds_about_9k_parameters():
    # a pass's own BNs, shortcuts and DIAAMs; plus 8 more input channels for the stacking block
    assert n_params(RRCANet(iterations=2)) - n_params(RRCANet(iterations=1)) == 8496 + 8 * 8 * 9 + 8 * 8


# --- official checkpoint layout -----------------------------------------------------------------

@pytest.mark.parametrize("backbone", sorted(BLOCKS))
def test_state_dict_has_the_official_layout(backbone):
    shapes, _ = official_layout(BLOCKS[backbone])
    got = {k: tuple(v.shape) for k, v in RRCANet(backbone).state_dict().items()}
    assert got == shapes
    if backbone == "resnet18":
        assert len(shapes) == 539


def test_official_state_dict_loads_strict_and_computes_the_reference():
    sd = random_official_state_dict(seed=1)
    assert len(sd) == 539
    model = RRCANet()
    model.load_state_dict(sd, strict=True)
    model.eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    x = torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference_forward(sd, x)
        got = model(x, return_logits=True)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_state_dict_round_trip_reproduces_outputs():
    a = randomize(RRCANet("resnet10"), seed=3)
    b = RRCANet("resnet10")
    b.load_state_dict(a.state_dict(), strict=True)
    b.eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_converter_unwraps_training_containers():
    sd = random_official_state_dict(seed=4)
    wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}
    converted = convert_official_state_dict(wrapped)
    assert converted.keys() == sd.keys()
    RRCANet().load_state_dict(converted, strict=True)
    assert convert_official_state_dict({"model." + k: v for k, v in sd.items()}).keys() == sd.keys()


def test_load_refuses_differing_copies_of_a_shared_conv():
    sd = random_official_state_dict(seed=5)
    key = "iteration2_layer1_encoder_convs.operator.3.weight"
    sd[key] = sd[key] + 1
    with pytest.raises(ValueError, match="shared tensor"):
        RRCANet().load_state_dict(sd, strict=True)


# --- weight sharing -----------------------------------------------------------------------------

def test_encoder_convs_are_one_parameter_for_every_pass():
    model = RRCANet()
    for l, nb in enumerate(BLOCKS["resnet18"]):
        ops = [getattr(model, f"iteration{i}_layer{l}_encoder_convs").operator for i in range(3)]
        for k in range(0, 6 * nb, 3):
            assert ops[0][k].weight is ops[1][k].weight is ops[2][k].weight
            assert ops[0][k].bias is ops[1][k].bias is ops[2][k].bias
            assert ops[0][k + 1] is not ops[1][k + 1] is not ops[2][k + 1]  # BatchNorms are per pass
    # the optimiser sees each shared tensor once, and its gradient sums over the passes
    params = list(model.parameters())
    assert len({id(p) for p in params}) == len(params)
    model(torch.rand(2, 1, 16, 16), return_logits=True).sum().backward()
    assert model.iteration0_layer0_encoder_convs.operator[0].weight.grad is not None
    # dtype moves and deep copies keep the sharing, and the copy runs its own modules
    model.double()
    ops = [getattr(model, f"iteration{i}_layer3_encoder_convs").operator for i in range(3)]
    assert ops[0][0].weight is ops[2][0].weight and ops[2][0].weight.dtype == torch.float64
    clone = copy.deepcopy(model).eval()
    a, b = clone.iteration1_layer2_encoder_convs, clone.iteration2_layer2_encoder_convs
    assert a.operator[3].weight is b.operator[3].weight
    with torch.no_grad():
        clone.final.bias.add_(1.0)
        x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
        assert torch.allclose(clone(x, return_logits=True), model.eval()(x, return_logits=True) + 1.0)


def test_rucb_plugin():
    torch.manual_seed(0)
    rucb = RuCB(8, 16, num_blocks=2, passes=3)
    convs = 8 * 16 * 9 + 16 + 3 * (16 * 16 * 9 + 16)
    per_pass = 4 * 2 * 16 + (8 * 16 + 16 + 2 * 16)
    assert n_params(rucb) == convs + 3 * per_pass
    assert rucb.passes[0].operator[3].weight is rucb.passes[2].operator[3].weight
    x = torch.rand(2, 8, 6, 10)
    assert rucb(x, 1).shape == (2, 16, 6, 10)
    rucb.eval()
    copy = RuCB(8, 16, num_blocks=2, passes=3)
    copy.load_state_dict(rucb.state_dict(), strict=True)
    copy.eval()
    assert torch.equal(copy(x, 2), rucb(x, 2))
    bad = rucb.state_dict()
    bad["passes.1.operator.0.bias"] = bad["passes.1.operator.0.bias"] + 1
    with pytest.raises(ValueError, match="shared tensor"):
        copy.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 8, H, W\]"):
        rucb(torch.rand(2, 16, 6, 10))


def test_layers_shapes_and_formulas():
    torch.manual_seed(0)
    ca = ChannelAttention(16)
    assert n_params(ca) == 2 * 16 * 2
    x = torch.randn(2, 16, 5, 7)
    w = ca(x)
    assert w.shape == (2, 16, 1, 1) and bool(((w > 0) & (w < 1)).all())
    mlp = lambda v: ca.fc2(F.relu(ca.fc1(v)))  # noqa: E731
    want = torch.sigmoid(mlp(x.amax((2, 3), keepdim=True)) + mlp(x.mean((2, 3), keepdim=True)))
    assert torch.allclose(w, want, atol=1e-6)

    dia = DIAAM(8, 16)
    low, high = torch.randn(2, 8, 10, 6), torch.randn(2, 16, 5, 3)
    h = dia.pwconv2(F.interpolate(high, scale_factor=2, mode="bilinear", align_corners=True))
    h = h * dia.ca(h) * torch.sigmoid(dia.pwconv1(low))
    assert torch.allclose(dia(low, high), low + h, atol=1e-6)
    with pytest.raises(ValueError, match="high must have shape"):
        dia(low, torch.randn(2, 16, 4, 3))

    rb = ResidualBlock(24, 8)
    assert rb(torch.randn(1, 24, 4, 4)).shape == (1, 8, 4, 4)
    assert ResidualBlock(8, 8).shortcut is None


# --- forward --------------------------------------------------------------------------------------

def test_odd_sizes_round_trip():
    model = randomize(RRCANet("resnet10"), seed=6)
    x = torch.rand(1, 1, 37, 45)
    with torch.no_grad():
        y = model(x)
        padded = model(F.pad(x, (0, 3, 0, 3)))[:, :, :37, :45]
    assert y.shape == (1, 1, 37, 45)
    assert bool(((y >= 0) & (y <= 1)).all())
    assert torch.allclose(y, padded, atol=1e-6)
    with torch.no_grad():
        assert model(torch.rand(2, 1, 1, 1)).shape == (2, 1, 1, 1)


def test_return_logits():
    model = randomize(RRCANet("resnet10"), seed=7)
    x = torch.rand(2, 1, 16, 8)
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(model(x, return_logits=True)), model(x), atol=1e-6)


def test_deep_supervision():
    plain = randomize(RRCANet("resnet10"), seed=8)
    ds = RRCANet("resnet10", deep_supervision=True)
    assert n_params(ds) == n_params(plain)
    ds.load_state_dict(plain.state_dict(), strict=True)
    ds.eval()
    x = torch.rand(2, 1, 13, 20)
    with torch.no_grad():
        outs = ds(x)
        logits = ds(x, return_logits=True)
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == (2, 1, 13, 20) for o in outs)
    assert torch.allclose(outs[-1], plain(x), atol=1e-6)
    assert all(torch.allclose(torch.sigmoid(l), o, atol=1e-6) for l, o in zip(logits, outs))
    assert len(RRCANet("resnet10", iterations=0, deep_supervision=True).eval()(x)) == 2


def test_bad_inputs():
    model = RRCANet("resnet10")
    with pytest.raises(ValueError, match=r"x must have shape \[N, 1, H, W\]; got \(1, 16, 16\)"):
        model(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 1, H, W\]; got \(1, 3, 16, 16\)"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, H, W\]"):
        RRCANet("resnet10", in_chans=3)(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="backbone"):
        RRCANet("resnet50")
    with pytest.raises(ValueError, match="iterations"):
        RRCANet(iterations=-1)


def test_torch_compile_matches_eager():
    # Inductor on CPU builds a C++ kernel per fused op, which took 160 s for the default
    # resnet18 with a cold cache in CI; resnet10 still has every kind of block and both passes.
    model = randomize(RRCANet("resnet10", iterations=1), seed=9)
    x = torch.rand(1, 1, 16, 16)
    compiled = torch.compile(model)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_deep_supervision_traces_as_one_graph():
    model = randomize(RRCANet("resnet10", deep_supervision=True), seed=10)
    x = torch.rand(1, 1, 16, 16)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(compiled(x), model(x)))


# --- FLOPs ----------------------------------------------------------------------------------------

def expected_macs(h, w, blocks=(3, 2, 2, 2), passes=3):
    """Conv MACs from the architecture, for H, W divisible by 8."""
    pix = [h * w // 4 ** l for l in range(4)]
    stem = pix[0] * (1 * 8 * 9 + 8 * 8 * 9 + 1 * 8)
    enc = 0
    for l in range(4):
        cin, cout = C[max(l - 1, 0)], C[l]
        enc += pix[l] * (cin * cout * 9 + (2 * blocks[l] - 1) * cout * cout * 9)
    shortcuts = sum(pix[l] * C[l - 1] * C[l] for l in range(1, 4))
    dec = 0
    for l in range(3):
        low, high = C[l], C[l + 1]
        dec += pix[l] * (low * low + high * low) + 4 * low * max(1, low // 8)  # 1x1s + CA MLP on 2 pooled
    head = pix[0] * (24 * 8 * 9 + 8 * 8 * 9 + 24 * 8 + 8)
    return stem + passes * (enc + shortcuts + dec) + head, stem + enc + passes * (shortcuts + dec) + head


def test_count_flops():
    model = RRCANet()
    executed, shared_once = expected_macs(64, 32)
    assert count_flops(model, 64, 32) == executed
    assert count_flops(model, 64, 32, shared_once=True) == shared_once
    assert model.training  # restored
