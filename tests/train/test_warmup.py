"""``--warmup``: the learning rate rises linearly over the first fraction of the run's epochs,
rounded up to whole epochs (SwAV's warm-up), on top of ``--lr-schedule``; the exact LP asks SeLa
for 0.1 (docs/training.md)."""

from __future__ import annotations

import math

import pytest

from assignsolve.core.errors import TrainError
from assignsolve.train import TrainConfig, run
from assignsolve.train.autoconfig import resolve_config
from assignsolve.train.config import warmup_epochs, warmup_factor

TINY = dict(limit=96, batch_size=32, encoder_opt={"width": 8}, hidden_dim=32, proj_dim=16,
            progress=False, n_clusters=4, device="cpu")


def test_warmup_is_whole_epochs_and_its_factor_the_share_done_at_the_end_of_the_step():
    # a fraction of the run rounded up to whole epochs, as SwAV counts its warm-up
    assert [warmup_epochs(0.1, e) for e in (28, 10, 15, 1)] == [3, 1, 2, 1]
    assert [warmup_epochs(0.2, e) for e in (28, 10, 15, 1)] == [6, 2, 3, 1]
    assert warmup_epochs(0.5, 2) == 1 and warmup_epochs(0.34, 3) == 2 and warmup_epochs(0.0, 28) == 0
    assert 0.55 * 100 > 55 and warmup_epochs(0.55, 100) == 55  # not 56 from the float product
    assert warmup_factor(0.25, 1) == 0.25 and warmup_factor(1.0, 1) == 1.0 and warmup_factor(3.0, 1) == 1.0
    assert warmup_factor(1 / 3, 2) == pytest.approx(1 / 6, rel=1e-15)
    assert warmup_factor(0.5, 0) == 1.0  # no warm-up


def test_every_step_takes_the_warmed_up_scheduled_rate(tmp_path, monkeypatch):
    # 96 samples / batch 32 = 3 steps an epoch, 6 in 2 epochs; --warmup 0.5 = the first epoch
    # (3 steps); step j (0-based) at 0.01 (1 + cos(pi j / 6)) / 2 * min(1, (j + 1) / 3); without
    # warm-up the steps are the cosine alone
    import assignsolve.train as T

    seen = []
    orig = T.SeLa.after_step

    def spy(self, ctx):
        seen.append(ctx.optimizer.param_groups[0]["lr"])
        orig(self, ctx)
    monkeypatch.setattr(T.SeLa, "after_step", spy)
    cfg = dict(**TINY, solver="sinkhorn-pot", epochs=2, lr=0.01, lr_schedule="cosine")
    run(TrainConfig(**cfg, warmup=0.5, out=str(tmp_path / "w")))
    warmed, seen[:] = list(seen), []
    run(TrainConfig(**cfg, warmup=0.0, out=str(tmp_path / "c")))
    cosine = [0.005 * (1 + math.cos(math.pi * j / 6)) for j in range(6)]
    assert warmed == pytest.approx([c * min(1.0, (j + 1) / 3) for j, c in enumerate(cosine)], rel=1e-12)
    assert seen == pytest.approx(cosine, rel=1e-12)
    assert warmed[0] == pytest.approx(0.01 / 3, rel=1e-12) and warmed[3:] == seen[3:]


def test_the_exact_lp_asks_sela_for_a_tenth_of_the_run_and_the_users_warmup_wins():
    digits, mnist = (1, 8, 8), (1, 28, 28)
    assert resolve_config(TrainConfig(solver="lp"), 5000, mnist).warmup == 0.1  # 1 of 10 epochs
    assert resolve_config(TrainConfig(solver="lp"), 1797, digits).warmup == 0.1  # 3 of 28
    assert resolve_config(TrainConfig(solver="lp", warmup=0.0), 1797, digits).warmup == 0.0
    assert resolve_config(TrainConfig(solver="lp", method="swav"), 1797, digits).warmup == 0.0
    for solver in ("sinkhorn-pot", "sinkhorn-gpu", "kmeans", "coke", "iic"):
        assert resolve_config(TrainConfig(solver=solver), 1797, digits).warmup == 0.0, solver
        assert resolve_config(TrainConfig(solver=solver, warmup=0.3), 1797, digits).warmup == 0.3, solver
    for bad in (-0.1, 1.5):
        with pytest.raises(TrainError, match="warmup"):
            TrainConfig(warmup=bad)


def test_a_recipes_bad_default_warmup_is_refused_naming_the_recipe(monkeypatch):
    import assignsolve.train as T

    for bad in (None, 2.0, "0.1", True):
        monkeypatch.setattr(T.SeLa, "default_warmup", bad)
        with pytest.raises(TrainError, match=r"recipe 'sela': default_warmup must be a number in \[0, 1\]"):
            resolve_config(TrainConfig(solver="sinkhorn-pot"), 1797, (1, 8, 8))
