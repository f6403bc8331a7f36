"""Encoders (plugins/encoders.py) and heads (assignsolve/heads.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import assignsolve
from assignsolve import cli
from assignsolve.heads import ClusterHeads, ProjectionHead, Prototypes


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_backward(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    enc.train()
    y = enc(x)
    assert y.shape == (x.shape[0], enc.out_dim)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in enc.parameters()]
    assert all(g is not None for g in grads), "every parameter gets a gradient"
    assert any(g.abs().sum() > 0 for g in grads)
    return y


def test_builtin_encoders_registered():
    assert {"cnn", "mlp", "resnet18", "resnet50"} <= set(assignsolve.list_encoders())
    # the timm family is registered exactly when timm can be found
    from assignsolve_plugins.encoders import _timm_available

    assert ("timm:" in assignsolve.list_encoders()) == bool(_timm_available())


@pytest.mark.parametrize(("name", "shape", "out_dim"), [
    ("resnet18", (3, 32, 32), 512),
    ("resnet18", (1, 8, 8), 512),
    ("resnet50", (3, 32, 32), 2048),
    ("resnet50", (1, 8, 8), 2048),
    ("cnn", (1, 8, 8), 256),
    ("cnn", (3, 32, 32), 256),
    ("mlp", (64,), 256),
    ("mlp", (1, 8, 8), 256),
])
def test_forward_backward_out_dim(name, shape, out_dim):
    torch.manual_seed(0)
    enc = assignsolve.get_encoder(name, shape)
    assert enc.out_dim == out_dim
    forward_backward(enc, torch.rand(2, *shape))


def test_resnet_trunk_parameter_counts_match_torchvision():
    # torchvision resnet18 / resnet50: 11,689,512 / 25,557,032 parameters including the
    # 1000-class fc (512*1000 + 1000 and 2048*1000 + 1000 parameters).
    r18 = assignsolve.get_encoder("resnet18", (3, 224, 224))
    r50 = assignsolve.get_encoder("resnet50", (3, 224, 224))
    assert not r18.cifar_stem and not r50.cifar_stem
    assert n_params(r18) == 11_689_512 - (512 * 1000 + 1000) == 11_176_512
    assert n_params(r50) == 25_557_032 - (2048 * 1000 + 1000) == 23_508_032


def test_resnet_stem_choice_and_spatial_sizes():
    auto_small = assignsolve.get_encoder("resnet18", (3, 64, 64))
    auto_large = assignsolve.get_encoder("resnet18", (3, 96, 96))
    forced = assignsolve.get_encoder("resnet18", (3, 32, 32), cifar_stem=False)
    assert auto_small.cifar_stem and not auto_large.cifar_stem and not forced.cifar_stem
    assert auto_small.conv1.kernel_size == (3, 3) and auto_small.conv1.stride == (1, 1)
    assert isinstance(auto_small.maxpool, nn.Identity)
    assert auto_large.conv1.kernel_size == (7, 7) and isinstance(auto_large.maxpool, nn.MaxPool2d)
    # CIFAR stem: 3x3 stem costs 3*64*9 weights instead of 3*64*49
    assert n_params(auto_large) - n_params(auto_small) == 3 * 64 * (49 - 9)
    # stage resolutions: 32 -> 32, 16, 8, 4 with the CIFAR stem; 224 -> 56, 28, 14, 7 with ImageNet's
    maps = auto_small.eval().feature_maps(torch.rand(1, 3, 32, 32))
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]
    big = assignsolve.get_encoder("resnet18", (3, 224, 224)).eval()
    assert [m.shape[-1] for m in big.feature_maps(torch.rand(1, 3, 224, 224))] == [56, 28, 14, 7]
    # one channel in: the stem has 1 input channel
    assert assignsolve.get_encoder("resnet50", (1, 8, 8)).conv1.in_channels == 1


def test_forward_matches_manual_pooling_of_last_map():
    torch.manual_seed(1)
    enc = assignsolve.get_encoder("resnet18", (3, 16, 16)).eval()
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(enc(x), enc.feature_maps(x)[-1].mean(dim=(2, 3)))


def test_encoder_options():
    assert assignsolve.get_encoder("cnn", (1, 8, 8), width=16).out_dim == 64
    enc = assignsolve.get_encoder("mlp", (10,), hidden_dim=32, out_dim=7, depth=2)
    assert enc.out_dim == 7
    # flatten(10) -> 32 -> 32 -> 7, each Linear without bias followed by BN (weight + bias)
    assert n_params(enc) == 10 * 32 + 2 * 32 + 32 * 32 + 2 * 32 + 32 * 7 + 2 * 7
    r = assignsolve.get_encoder("resnet18", (3, 32, 32), zero_init_residual=True)
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0 for stage in (r.layer1, r.layer4) for b in stage)


def test_encoders_are_deterministic_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        enc = assignsolve.get_encoder("cnn", (1, 8, 8)).eval()
        outs.append(enc(torch.ones(2, 1, 8, 8)))
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize(("name", "shape", "match"), [
    ("resnet18", (64,), r"expected input_shape \(C, H, W\).*found \(64,\)"),
    ("cnn", (3, 0, 32), r"expected input_shape \(C, H, W\) with positive sizes, found \(3, 0, 32\)"),
    ("mlp", "abc", r"expected input_shape as a tuple of ints, found 'abc'"),
    ("cnn", (1, 8.5, 8), r"expected input_shape as a tuple of ints, found \(1, 8.5, 8\)"),
])
def test_bad_input_shape(name, shape, match):
    with pytest.raises(ValueError, match=match):
        assignsolve.get_encoder(name, shape)


def test_bad_options_and_batches():
    with pytest.raises(ValueError, match=r"cifar_stem: expected True, False or None \(auto\), found 'yes'"):
        assignsolve.get_encoder("resnet18", (3, 32, 32), cifar_stem="yes")
    with pytest.raises(ValueError, match=r"expected width a positive int, found 0"):
        assignsolve.get_encoder("cnn", (1, 8, 8), width=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
        assignsolve.get_encoder("cnn", (1, 8, 8), depth=3)
    with pytest.raises(ValueError, match=r"expected a batch \[B, 3, H, W\], found shape \[2, 1, 8, 8\]"):
        assignsolve.get_encoder("cnn", (3, 8, 8))(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"expected a batch \[B, 64\], found shape \[2, 63\]"):
        assignsolve.get_encoder("mlp", (64,))(torch.rand(2, 63))
    with pytest.raises(assignsolve.UnknownEncoderError, match="did you mean 'resnet18'"):
        assignsolve.get_encoder("resnet19", (3, 32, 32))


def test_cli_lists_encoders(capsys):
    assert cli.main(["encoders"]) == 0
    out = capsys.readouterr().out
    for name in ("cnn", "mlp", "resnet18", "resnet50"):
        assert any(line.split()[0] == name and "encoders" in line.split() for line in out.splitlines()[2:])
    assert cli.main(["encoders", "resnet*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert names == ["resnet18", "resnet50"]


# ------------------------------------------------------------------ heads
def test_projection_head():
    torch.manual_seed(0)
    head = ProjectionHead(32, 16, 8)
    z = head(torch.randn(5, 32))
    assert z.shape == (5, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    raw = ProjectionHead(32, 16, 8, normalize=False)
    raw.load_state_dict(head.state_dict())
    h = torch.randn(5, 32)
    torch.testing.assert_close(head(h), raw(h) / raw(h).norm(dim=1, keepdim=True))
    # parameter count: 32*16+16 + BN 2*16 + 16*8+8
    assert n_params(head) == 32 * 16 + 16 + 2 * 16 + 16 * 8 + 8
    lin = ProjectionHead(32, 0, 8, normalize=False)
    assert isinstance(lin.net, nn.Linear)
    with pytest.raises(ValueError, match=r"expected features \[B, 32\], found shape \[5, 31\]"):
        head(torch.randn(5, 31))


def test_projection_head_output_batchnorm_spreads_rows():
    # CoKe's projection ends in BatchNorm1d: in training mode the pre-normalisation output of a
    # batch has per-coordinate mean 0 and (biased) variance 1 (fresh BN: weight 1, bias 0).
    torch.manual_seed(0)
    head = ProjectionHead(32, 16, 8, out_bn=True)
    h = torch.randn(64, 32).abs() + 3.0  # all-positive inputs, like pooled post-ReLU features
    pre = head.net(h)
    torch.testing.assert_close(pre.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(pre.var(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    z = head(h)
    torch.testing.assert_close(z, pre / pre.norm(dim=1, keepdim=True))
    # centred coordinates: the batch's mean pairwise cosine is about 0, below the same head's
    # without the output BN (0.22 on this input)
    plain = ProjectionHead(32, 16, 8)
    plain.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("net.4")})
    zp = plain(h)
    assert abs(float((z @ z.T).mean())) < 0.05 < float((zp @ zp.T).mean())
    # the option adds one BN(8) and leaves the state-dict keys of out_bn=False unchanged
    assert n_params(head) == n_params(plain) + 2 * 8
    assert list(ProjectionHead(32, 16, 8).state_dict()) == [
        "net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias", "net.1.running_mean",
        "net.1.running_var", "net.1.num_batches_tracked", "net.3.weight", "net.3.bias"]
    linear_bn = ProjectionHead(32, 0, 8, out_bn=True)
    assert [type(m) for m in linear_bn.net] == [nn.Linear, nn.BatchNorm1d]


def test_cluster_heads_input_batchnorm_is_one_standardisation():
    torch.manual_seed(0)
    heads = ClusterHeads(16, n_clusters=10, n_heads=2, overcluster=30, input_bn=True)
    for layer in (*heads.heads, *heads.overcluster_heads):
        layer.reset_parameters()  # larger weights than the N(0, 0.01) top-layer draw
    h = torch.randn(32, 16).abs() * 2 + 5.0
    main, over = heads.all_logits(h)
    # hand formula: (h - mean) / sqrt(biased var + eps), then each Linear
    hs = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + heads.input_norm.eps)
    for layer, out in zip([*heads.heads, *heads.overcluster_heads], [*main, *over]):
        torch.testing.assert_close(out, hs @ layer.weight.T + layer.bias, atol=1e-5, rtol=1e-5)
    assert int(heads.input_norm.num_batches_tracked) == 1  # normalised once for all heads
    assert not any(p.requires_grad for p in heads.input_norm.parameters())  # non-affine
    heads.eval()  # evaluation uses the tracked statistics, not the batch's
    torch.testing.assert_close(heads(h)[0], heads.heads[0](heads.input_norm(h)))
    assert isinstance(ClusterHeads(16, 10).input_norm, nn.Identity)


def test_cluster_heads_shapes_and_reset():
    torch.manual_seed(0)
    heads = ClusterHeads(16, n_clusters=10, n_heads=3, overcluster=70)
    h = torch.randn(4, 16)
    out = heads(h)
    assert isinstance(out, list) and len(out) == 3 and all(o.shape == (4, 10) for o in out)
    over = heads.overcluster_logits(h)
    assert len(heads.overcluster_heads) == 3 and all(o.shape == (4, 70) for o in over)
    # sub-heads are independent draws
    assert not torch.equal(heads.heads[0].weight, heads.heads[1].weight)
    # initial draw and reset: N(0, 0.01^2) weights, zero bias (DeepCluster top layer)
    for layer in (*heads.heads, *heads.overcluster_heads):
        assert abs(float(layer.weight.detach().std()) - 0.01) < 0.002 and float(layer.bias.detach().abs().sum()) == 0
    before = [p.detach().clone() for p in heads.parameters()]
    with torch.no_grad():
        for p in heads.parameters():
            p.add_(1.0)
    heads.reset_parameters()
    after = list(heads.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after) if a.dim() == 2)
    for layer in (*heads.heads, *heads.overcluster_heads):
        assert abs(float(layer.weight.detach().std()) - 0.01) < 0.002 and float(layer.bias.detach().abs().sum()) == 0
        assert abs(float(layer.weight.detach().mean())) < 0.002
    # logits are the affine map of the features
    torch.testing.assert_close(heads(h)[2], h @ heads.heads[2].weight.T + heads.heads[2].bias)


def test_cluster_heads_without_overcluster_and_errors():
    heads = ClusterHeads(8, 4)
    assert len(heads(torch.randn(3, 8))) == 1 and len(heads.overcluster_heads) == 0
    assert heads.overcluster_logits(torch.randn(3, 8)) == []
    with pytest.raises(ValueError, match=r"expected n_clusters a positive int, found 0"):
        ClusterHeads(8, 0)
    with pytest.raises(ValueError, match=r"expected overcluster a positive int, found -3"):
        ClusterHeads(8, 4, overcluster=-3)


def test_prototypes_normalised_and_scores_are_cosines():
    torch.manual_seed(0)
    protos = Prototypes(6, 5)
    torch.testing.assert_close(protos.weight.norm(dim=1), torch.ones(5))
    assert protos.linear.bias is None
    with torch.no_grad():
        protos.weight.mul_(torch.arange(1.0, 6.0)[:, None])
    direction = protos.weight.detach() / protos.weight.detach().norm(dim=1, keepdim=True)
    assert protos.normalize_() is protos
    torch.testing.assert_close(protos.weight, direction)
    z = torch.nn.functional.normalize(torch.randn(7, 6), dim=1)
    s = protos(z)
    torch.testing.assert_close(s, torch.nn.functional.cosine_similarity(z[:, None], direction[None], dim=2))
    assert protos.weight.requires_grad
