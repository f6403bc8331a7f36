"""Defaults that adapt to the data and the solver (``assignsolve.train.autoconfig``, issue 9)."""

from __future__ import annotations

import attrs
import pytest
import torch

from assignsolve.core.errors import TrainError
from assignsolve.train import TrainConfig
from assignsolve.train.autoconfig import auto_augment, auto_batch_size, auto_encoder, auto_epochs, resolve_config


def test_a_solver_asks_the_sela_recipe_for_adam_at_2e_3_where_the_user_set_neither(monkeypatch, lp_asking):
    # a solver's recipe_training {"sela": {"optimizer": "adam", "lr": 2e-3}} (lp's until
    # 2026-12-07); Sinkhorn under the same recipe keeps the recipe's SGD at 0.05; the user's --lr,
    # or another --optimizer, wins, and the solver's 2e-3 (meant for Adam) never reaches the user's SGD
    from assignsolve.registry import manager

    mnist = (1, 28, 28)
    # the built-in lp asks for SeLa's SGD at 0.2 (since 2026-12-07); --optimizer adam gets Adam's 1e-3
    assert resolve_config(TrainConfig(solver="lp"), 5000, mnist).optimizer_lr == ("sgd", 0.2)
    assert resolve_config(TrainConfig(solver="lp"), 1797, (1, 8, 8)).optimizer_lr == ("sgd", 0.2)
    assert resolve_config(TrainConfig(solver="lp", optimizer="adam"), 5000, mnist).optimizer_lr == ("adam", 1e-3)
    assert resolve_config(TrainConfig(solver="lp", lr=0.05), 5000, mnist).optimizer_lr == ("sgd", 0.05)
    lp = lp_asking({"optimizer": "adam", "lr": 2e-3})
    assert resolve_config(TrainConfig(solver="lp"), 5000, mnist).optimizer_lr == ("adam", 2e-3)
    assert resolve_config(TrainConfig(solver="lp"), 1797, (1, 8, 8)).optimizer_lr == ("adam", 2e-3)
    assert resolve_config(TrainConfig(solver="lp", optimizer="adam"), 5000, mnist).optimizer_lr == ("adam", 2e-3)
    assert resolve_config(TrainConfig(solver="lp", lr=5e-4), 5000, mnist).optimizer_lr == ("adam", 5e-4)
    assert resolve_config(TrainConfig(solver="lp", optimizer="sgd"), 5000, mnist).optimizer_lr == ("sgd", 0.05)
    assert resolve_config(TrainConfig(solver="lp", optimizer="sgd", lr=0.01), 5000, mnist).optimizer_lr == ("sgd", 0.01)
    monkeypatch.undo()
    assert resolve_config(TrainConfig(solver="sinkhorn-pot"), 5000, mnist).optimizer_lr == ("sgd", 0.05)
    # a solver that names no optimiser gives its rate to the recipe's own only
    lp_asking({"lr": 0.02})
    assert resolve_config(TrainConfig(solver="lp"), 5000, mnist).optimizer_lr == ("sgd", 0.02)
    assert resolve_config(TrainConfig(solver="lp", optimizer="adam"), 5000, mnist).optimizer_lr == ("adam", 1e-3)
    monkeypatch.undo()
    assert resolve_config(TrainConfig(solver="lp", method="swav"), 5000, mnist).lr is None
    assert resolve_config(TrainConfig(solver="lp", method="swav"), 5000, mnist).optimizer_lr == ("adam", 1e-3)
    assert resolve_config(TrainConfig(solver="lp", method="deepcluster"), 5000, mnist).optimizer_lr == ("sgd", 0.05)
    for training, message in [({"learning_rate": 2e-3}, "'learning_rate', which is not a training option"),
                              ({"method": "swav"}, "'method', which is not a training option"),
                              ({"lr": "fast"}, r"solver 'lp': recipe_training\['sela'\]: .*lr")]:
        bad = attrs.evolve(lp, recipe_training={"sela": training})
        monkeypatch.setattr(manager, "solver_entry", lambda name, bad=bad: bad)
        with pytest.raises(TrainError, match=message):
            resolve_config(TrainConfig(solver="lp"), 5000, mnist)


def test_auto_defaults_follow_the_data():
    assert auto_epochs(5000) == 10 and auto_epochs(60000) == 10 and auto_epochs(1797) == 28
    assert auto_epochs(100) == 30
    assert auto_encoder((1, 28, 28)) == "convnet" and auto_encoder((1, 8, 8)) == "cnn"
    assert auto_encoder((3, 32, 32)) == "cnn" and auto_encoder((64,)) == "mlp"
    assert auto_augment((1, 28, 28)) == "grey" and auto_augment((1, 8, 8)) == "default"
    assert auto_augment((1, 28, 28), "iic") == "grey" and auto_augment((1, 8, 8), "iic") == "weak"
    assert auto_augment((3, 32, 32), "iic") == "default" and auto_augment((64,), "coke") == "default"
    assert resolve_config(TrainConfig(solver="iic"), 1797, (1, 8, 8)).augment == "weak"
    assert resolve_config(TrainConfig(solver="kmeans"), 1797, (1, 8, 8)).augment == "default"
    assert resolve_config(TrainConfig(solver="coke"), 1797, (1, 8, 8)).augment == "weak"
    assert resolve_config(TrainConfig(solver="iic", augment="strong"), 1797, (1, 8, 8)).augment == "strong"
    iic = resolve_config(TrainConfig(solver="iic"), 5000, (1, 28, 28))
    assert (iic.epochs, iic.batch_size, iic.augment, iic.repeats, iic.encoder) == (10, 128, "grey", 4, "convnet")
    dc = resolve_config(TrainConfig(solver="kmeans"), 5000, (1, 28, 28))
    assert (dc.batch_size, dc.repeats) == (256, 1)
    mine = resolve_config(TrainConfig(solver="iic", epochs=3, batch_size=64, repeats=2, encoder="cnn"), 5000, (1, 28, 28))
    assert (mine.epochs, mine.batch_size, mine.repeats, mine.encoder) == (3, 64, 2, "cnn")
    # --repeats makes copies only with the 'grey' views: elsewhere it is refused, not ignored
    with pytest.raises(TrainError, match=r"--repeats 4: .*'weak'"):
        resolve_config(TrainConfig(solver="iic", repeats=4), 1797, (1, 8, 8))
    assert resolve_config(TrainConfig(solver="iic", repeats=1), 1797, (1, 8, 8)).repeats == 1
    # the stroke jitter of the 'grey' views: the recipe's there (IIC 0.3, CoKe and SwAV 0.5, the
    # one-view ones 0), off (0) elsewhere, and refused elsewhere
    jitter = {s: resolve_config(TrainConfig(solver=s), 5000, (1, 28, 28)).stroke_jitter
              for s in ("iic", "coke", "sinkhorn-gpu", "sinkhorn-pot", "lp", "kmeans")}
    assert jitter == {"iic": 0.3, "coke": 0.5, "sinkhorn-gpu": 0.5, "sinkhorn-pot": 0.0, "lp": 0.0, "kmeans": 0.0}
    assert resolve_config(TrainConfig(solver="kmeans", stroke_jitter=0.3), 5000, (1, 28, 28)).stroke_jitter == 0.3
    assert resolve_config(TrainConfig(solver="iic"), 1797, (1, 8, 8)).stroke_jitter == 0.0
    assert resolve_config(TrainConfig(solver="iic", stroke_jitter=0.2), 5000, (1, 28, 28)).stroke_jitter == 0.2
    assert resolve_config(TrainConfig(solver="iic", stroke_jitter=0), 1797, (1, 8, 8)).stroke_jitter == 0
    with pytest.raises(TrainError, match=r"--stroke-jitter 0.3: .*'weak'"):
        resolve_config(TrainConfig(solver="iic", stroke_jitter=0.3), 1797, (1, 8, 8))
    for bad in (-0.1, 1.5):
        with pytest.raises(TrainError, match="stroke_jitter"):
            TrainConfig(stroke_jitter=bad)


def test_sela_halves_its_default_batch_until_an_epoch_has_16_steps(lp_asking):
    # the loop's full batches an epoch, n // batch: 1,797 / 256 -> 7, / 128 -> 14, / 64 -> 28;
    # 5,000 / 256 -> 19, 4,096 / 256 -> 16, 4,095 / 256 -> 15
    from assignsolve.ops.dist import Dist
    from assignsolve.train.loop import _batches

    assert [auto_batch_size(256, n, 16) for n in (1797, 5000, 4096, 4095, 100, 5)] == [64, 256, 256, 128, 32, 32]
    for n in (1797, 4095, 4096, 5000):
        assert len(list(_batches(torch.arange(n), auto_batch_size(256, n, 16), Dist()))) >= 16, n
    assert auto_batch_size(256, 1797, 0) == 256 and auto_batch_size(128, 1797, 16) == 64
    assert auto_batch_size(256, 10, 16, floor=4) == 4 and auto_batch_size(16, 10, 16) == 16
    digits, mnist = (1, 8, 8), (1, 28, 28)
    batch = {(s, n): resolve_config(TrainConfig(solver=s), n, shape).batch_size
             for s in ("sinkhorn-pot", "lp", "kmeans", "sinkhorn-gpu", "iic") for n, shape in ((1797, digits), (5000, mnist))}
    assert batch == {("sinkhorn-pot", 1797): 64, ("sinkhorn-pot", 5000): 256, ("lp", 1797): 64, ("lp", 5000): 256,
                     ("kmeans", 1797): 256, ("kmeans", 5000): 256, ("sinkhorn-gpu", 1797): 256,
                     ("sinkhorn-gpu", 5000): 256, ("iic", 1797): 128, ("iic", 5000): 128}
    # with DDP the batch is per process, the steps those of one process's share (2,500 of 5,000)
    assert resolve_config(TrainConfig(solver="sinkhorn-pot"), 5000, mnist, world=2).batch_size == 128
    assert resolve_config(TrainConfig(solver="sinkhorn-pot"), 5000, mnist, world=2).epochs == 10
    assert resolve_config(TrainConfig(solver="sinkhorn-pot", batch_size=256), 1797, digits).batch_size == 256
    assert resolve_config(TrainConfig(solver="lp", batch_size=128), 1797, digits).batch_size == 128
    # a solver's recipe_training batch is taken as it is (not halved); --batch-size wins over it
    lp_asking({"batch_size": 256})
    assert resolve_config(TrainConfig(solver="lp"), 1797, digits).batch_size == 256
    assert resolve_config(TrainConfig(solver="lp", batch_size=64), 1797, digits).batch_size == 64


def test_sela_trains_five_heads_the_exact_lp_too(lp_asking):
    # SeLa's default_heads is 5, for Sinkhorn and the exact LP alike; a solver's recipe_training
    # {"n_heads": 1} (lp's until 2026-12-07) asks for 1; --n-heads wins over both
    digits, mnist = (1, 8, 8), (1, 28, 28)
    for n, shape in [(1797, digits), (5000, mnist)]:
        assert resolve_config(TrainConfig(solver="sinkhorn-pot"), n, shape).n_heads_used == 5
        assert resolve_config(TrainConfig(solver="lp"), n, shape).n_heads_used == 5
    assert resolve_config(TrainConfig(solver="sinkhorn-pot", n_heads=1), 1797, digits).n_heads_used == 1
    lp_asking({"n_heads": 1})
    assert resolve_config(TrainConfig(solver="lp"), 1797, digits).n_heads_used == 1
    assert resolve_config(TrainConfig(solver="lp", n_heads=3), 1797, digits).n_heads_used == 3


def test_a_solver_asks_sela_for_standardised_head_inputs_on_globally_pooled_features(monkeypatch, lp_asking):
    # a solver's recipe_training {"head_bn": "pooled"} (lp's until 2026-12-07): on 8x8 digits
    # (the globally pooled 'cnn') its SeLa heads read BatchNorm'd features; on MNIST's 'convnet'
    # grid, and for Sinkhorn under the same recipe, they read the raw features; IIC's own default
    # is "pooled" too; the user's --head-bn wins. The standardisation is checked by hand:
    # W (h - mean) / sqrt(var + eps) + b.
    import torch

    from assignsolve.ops.dist import Dist
    from assignsolve.train.build import build_model

    def heads(n, shape, **kw):
        cfg = resolve_config(TrainConfig(**kw), n, shape)
        torch.manual_seed(0)
        built = build_model(cfg, shape, 10, n, Dist(), torch.device("cpu"))
        return cfg, built.model.heads["cluster"]

    digits, mnist = (1, 8, 8), (1, 28, 28)
    cfg, lp_digits = heads(1797, digits, solver="lp")  # asks for no head_bn: SeLa's "off"
    assert cfg.head_bn is None and cfg.head_bn_used == "off" and isinstance(lp_digits.input_norm, torch.nn.Identity)
    lp_asking({"head_bn": "pooled"})
    cfg, lp_digits = heads(1797, digits, solver="lp")
    assert cfg.head_bn == "pooled" and cfg.encoder == "cnn"
    assert isinstance(lp_digits.input_norm, torch.nn.BatchNorm1d) and not lp_digits.input_norm.affine
    for n, shape, kw in [(5000, mnist, {"solver": "lp"}), (1797, digits, {"solver": "lp", "head_bn": "off"})]:
        assert isinstance(heads(n, shape, **kw)[1].input_norm, torch.nn.Identity), kw
    monkeypatch.undo()
    for n, shape, kw in [(1797, digits, {"solver": "sinkhorn-pot"}), (5000, mnist, {"solver": "iic"}),
                         (1797, digits, {"solver": "kmeans"})]:
        assert isinstance(heads(n, shape, **kw)[1].input_norm, torch.nn.Identity), kw
    for n, shape, kw in [(1797, digits, {"solver": "iic"}), (5000, mnist, {"solver": "sinkhorn-pot", "head_bn": "on"}),
                         (1797, digits, {"solver": "kmeans", "head_bn": "pooled"})]:
        assert isinstance(heads(n, shape, **kw)[1].input_norm, torch.nn.BatchNorm1d), kw
    assert TrainConfig(solver="sinkhorn-pot").head_bn_used == "off" and TrainConfig(solver="iic").head_bn_used == "pooled"
    assert TrainConfig(head_bn=False).head_bn == "off" and TrainConfig(head_bn=True).head_bn == "on"  # YAML's off / on
    with pytest.raises(ValueError, match="head_bn"):
        TrainConfig(head_bn="yes")

    h = torch.randn(32, lp_digits.in_dim, dtype=torch.float64) * 3 + 5
    lp_digits.double().train()
    w, b = lp_digits.heads[0].weight, lp_digits.heads[0].bias
    z = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(lp_digits(h)[0], z @ w.T + b)
