"""Issue 9 fidelity points, each against a hand-computed or reference value.

IIC's clamp in float32, the grey-digit views (affine maps, erasing), SwAV's multi-crop loss,
solver-declared recipe options (SwAV's 3-iteration regime), prototype freezing, the IIC
lowest-loss sub-head read-out (the data-adaptive defaults: test_autoconfig.py).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from assignsolve import Problem
from assignsolve.greyviews import (CleanAndAugmented, GreyParams, affine_matrix, cross_extremum, erase_mask,
                                  random_erasing, random_stroke, small_crops)
from assignsolve.mi import IID_EPS, iic_head_losses, iic_loss
from assignsolve.objectives import swav_loss, swav_multicrop_loss
from assignsolve.train import Assigner, TrainConfig, run


# ----------------------------------------------------------------------------- IIC clamp
def authors_iid_loss(x_out: np.ndarray, x_tf_out: np.ndarray, lamb: float = 1.0) -> float:
    """xu-ji/IIC IID_losses.IID_loss re-stated in float64 numpy: EPS = sys.float_info.epsilon."""
    eps = sys.float_info.epsilon
    p = (x_out[:, :, None] * x_tf_out[:, None, :]).sum(0)
    p = (p + p.T) / 2.0
    p = p / p.sum()
    k = p.shape[0]
    p_i = np.broadcast_to(p.sum(1).reshape(k, 1), (k, k)).copy()
    p_j = np.broadcast_to(p.sum(0).reshape(1, k), (k, k)).copy()
    p[p < eps], p_i[p_i < eps], p_j[p_j < eps] = eps, eps, eps
    return float(-(p * (np.log(p) - lamb * np.log(p_j) - lamb * np.log(p_i))).sum())


def test_iid_eps_is_python_float_epsilon():
    assert IID_EPS == sys.float_info.epsilon == pytest.approx(2.220446049250313e-16)


def test_iic_loss_float32_matches_authors_float64_reference_with_near_empty_clusters():
    torch.manual_seed(0)
    k = 50  # IIC's over-clustering head: most of its clusters are empty early on
    logits = torch.randn(64, k) * 3
    logits[:, 8:] -= 30.0  # 42 clusters nearly empty: entries of P far below 1.2e-7
    p1 = torch.softmax(logits, 1)
    p2 = torch.softmax(logits + 0.3 * torch.randn(64, k), 1)
    ref = authors_iid_loss(p1.double().numpy(), p2.double().numpy())
    got = float(iic_loss(p1, p2))
    assert got == pytest.approx(ref, abs=1e-5)
    # the old float32 clamp (finfo(float32).eps) is measurably different here: the test can fail
    old = float(iic_loss(p1, p2, eps=float(torch.finfo(torch.float32).eps)))
    assert abs(old - ref) > 1e-3


def test_iic_gradient_float32_matches_float64():
    torch.manual_seed(1)
    logits = torch.randn(32, 6) * 4
    logits[:, 4:] -= 25.0
    noise = 0.2 * torch.randn(32, 6)
    grads = []
    for dtype in (torch.float32, torch.float64):
        z = logits.to(dtype).detach().clone().requires_grad_(True)
        iic_loss(torch.softmax(z, 1), torch.softmax(z + noise.to(dtype), 1)).backward()
        grads.append(z.grad.double())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_iic_head_losses_are_each_heads_loss():
    torch.manual_seed(2)
    h1 = [torch.softmax(torch.randn(20, k), 1) for k in (3, 3, 5)]
    h2 = [torch.softmax(torch.randn(20, k), 1) for k in (3, 3, 5)]
    per = iic_head_losses(h1, h2)
    assert per.shape == (3,)
    for i in range(3):
        assert float(per[i]) == pytest.approx(authors_iid_loss(h1[i].double().numpy(), h2[i].double().numpy()), abs=1e-6)


def test_iic_recipe_loss_is_the_authors_loss_at_the_default_lambda():
    # the recipe's loss: mean over the main sub-heads plus mean over the over-clustering sub-heads
    # of the authors' IID loss, at lambda 1.1 unless --iic-lamb says otherwise
    from assignsolve.ops.dist import Dist
    from assignsolve.train.recipes import IICRecipe

    assert TrainConfig().iic_lamb == 1.1
    g = torch.Generator().manual_seed(3)
    out = [{"logits": [torch.randn(16, 3, generator=g) for _ in range(2)],
            "over": [torch.randn(16, 6, generator=g) for _ in range(2)]} for _ in range(2)]
    sm = lambda z: torch.softmax(z, 1).double().numpy()  # noqa: E731
    for lamb in (None, 1.0):
        cfg = TrainConfig(solver="iic") if lamb is None else TrainConfig(solver="iic", iic_lamb=lamb)
        recipe = IICRecipe(cfg, 3, 16, 8, Assigner(cfg, "iic"), Dist(), torch.device("cpu"))
        loss, _ = recipe.loss(None, out[0], out[1], torch.arange(16))
        ref = sum(np.mean([authors_iid_loss(sm(a), sm(b), lamb or 1.1) for a, b in zip(out[0][h], out[1][h])])
                  for h in ("logits", "over"))
        assert float(loss) == pytest.approx(ref, abs=1e-5)


def test_iic_reads_out_the_lowest_loss_sub_head_among_those_using_the_most_clusters():
    # three sub-heads on 6 samples, K = 3: head 0 has the lowest loss but leaves a cluster empty
    from assignsolve.ops.dist import Dist
    from assignsolve.train.recipes import IICRecipe
    from assignsolve.train.recipes.iic import read_out_head

    def one_hot(labels):
        return torch.nn.functional.one_hot(torch.tensor(labels), 3).float() * 5

    logits = [one_hot([0, 0, 1, 1, 1, 1]), one_hot([0, 1, 2, 0, 1, 2]), one_hot([2, 2, 1, 1, 0, 0])]
    assert read_out_head(logits, [-9.0, -5.0, -6.0]) == 2
    assert read_out_head(logits, [-9.0, -7.0, -6.0]) == 1
    assert read_out_head(logits, [-9.0, -6.0, -6.0]) == 1  # a tie: the first
    assert read_out_head(logits[:1], [-1.0]) == 0

    class Ctx:  # the loop's Context: eval-mode outputs of every training sample
        def all_outputs(self):
            return {"logits": logits, "over": []}

    cfg = TrainConfig(solver="iic", n_heads=3)
    recipe = IICRecipe(cfg, 3, 6, 8, Assigner(cfg, "iic"), Dist(), torch.device("cpu"))
    recipe.note_head_losses(torch.tensor([-9.0, -5.0, -6.0]))
    torch.manual_seed(0)
    drawn = torch.rand(3)
    torch.manual_seed(0)
    recipe.end_epoch(Ctx(), 0)
    torch.testing.assert_close(torch.rand(3), drawn)  # the read-out draws nothing
    assert recipe.best_head == 2 and recipe.epoch_head_losses() is None
    outputs = {"logits": [z.flip(0) for z in logits]}  # evaluation (or a test split) keeps that head
    torch.testing.assert_close(recipe.head_labels(outputs), torch.tensor([0, 0, 1, 1, 2, 2]))
    torch.testing.assert_close(recipe.eval_problem(outputs).scores, torch.log_softmax(outputs["logits"][2], 1))
    fresh = IICRecipe(cfg, 3, 6, 8, Assigner(cfg, "iic"), Dist(), torch.device("cpu"))
    fresh.load_state_dict(recipe.state_dict())
    assert fresh.best_head == 2
    recipe.end_epoch(Ctx(), 1)  # no batches this epoch: the read-out stays
    assert recipe.best_head == 2


def test_sela_reads_out_the_head_of_the_lowest_summed_loss_over_the_epoch():
    # three heads, K = 3, 6 samples; each head's logits put weight s_h on its own label, so its
    # cross-entropy is -log(e^s / (e^s + 2)), lowest for the largest s (head 1, summed over 2 steps)
    from assignsolve.ops.dist import Dist
    from assignsolve.train.recipes import SeLa

    cfg = TrainConfig(solver="sinkhorn-pot", method="sela", n_heads=3)
    recipe = SeLa(cfg, 3, 6, 8, Assigner(cfg, "sela"), Dist(), torch.device("cpu"))
    assert recipe.best_head == 0  # before any epoch: the first head
    recipe.labels = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0], [1, 0, 2, 2, 0, 1]])
    scale = ([1.0, 3.0, 2.0], [1.0, 2.5, 3.0])  # step 1: head 1 lowest; step 2: head 2 lowest
    ce = lambda s: -math.log(math.exp(s) / (math.exp(s) + 2))  # noqa: E731
    idx = torch.tensor([4, 0, 2])
    for step_scale in scale:
        out = {"logits": [torch.nn.functional.one_hot(recipe.labels[h, idx], 3).float() * step_scale[h]
                          for h in range(3)]}
        loss, shown = recipe.loss(None, out, None, idx)
        assert float(loss) == pytest.approx(np.mean([ce(v) for v in step_scale]), rel=1e-6)
        torch.testing.assert_close(shown, recipe.labels[0, idx])  # the read-out before the epoch ends
    sums = [ce(a) + ce(b) for a, b in zip(*scale)]  # head 1 has the lowest sum, not the lowest last step
    assert int(np.argmin(sums)) == 1 and sums[1] < sums[2] < sums[0]
    recipe.end_epoch(None, 0)
    assert recipe.best_head == 1 and recipe.epoch_head_losses() is None
    outputs = {"logits": [torch.eye(3)[[0, 1, 2, 0, 1, 2]], torch.eye(3)[[2, 2, 1, 1, 0, 0]], torch.eye(3)[[0] * 6]]}
    torch.testing.assert_close(recipe.head_labels(outputs), torch.tensor([2, 2, 1, 1, 0, 0]))
    torch.testing.assert_close(recipe.eval_problem(outputs).scores, torch.log_softmax(outputs["logits"][1], 1))
    fresh = SeLa(cfg, 3, 6, 8, Assigner(cfg, "sela"), Dist(), torch.device("cpu"))
    fresh.load_state_dict(recipe.state_dict())  # a checkpoint keeps the labels and the read-out
    assert fresh.best_head == 1
    torch.testing.assert_close(fresh.labels, recipe.labels)
    fresh.load_state_dict({"labels": recipe.labels})  # a checkpoint from before the read-out: head 0
    assert fresh.best_head == 0
    recipe.end_epoch(None, 1)  # no batches this epoch: the read-out stays
    assert recipe.best_head == 1


# ----------------------------------------------------------------------------- grey views
def dot_image(row: int, col: int, size: int = 28) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size)
    x[0, 0, row, col] = 1.0
    return x


def warp(x, angle=0.0, scale=1.0, shear=0.0, tx=0.0, ty=0.0):
    b, _, h, w = x.shape
    t = lambda v: torch.full((b,), float(v))  # noqa: E731
    theta = affine_matrix(t(angle), t(scale), t(shear), t(tx), t(ty), h, w)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def peak(x):
    i = int(x.flatten().argmax())
    return divmod(i, x.shape[-1])


def test_affine_identity_translation_rotation_zoom_by_hand():
    x = dot_image(5, 9)
    torch.testing.assert_close(warp(x), x)
    # tx = 2 * 3/28 in normalised units moves the dot 3 pixels right; ty moves it down
    assert peak(warp(x, tx=2 * 3 / 28)) == (5, 12)
    assert peak(warp(x, ty=2 * 4 / 28)) == (9, 9)
    # rotation by +90 degrees about the centre (13.5, 13.5), clockwise on screen (rows down):
    # offset (dx, dy) = (9 - 13.5, 5 - 13.5) = (-4.5, -8.5) -> (-dy, dx) = (8.5, -4.5) -> col 22, row 9
    assert peak(warp(x, angle=math.pi / 2)) == (9, 22)
    # zoom 2 doubles the offset from the centre: (-4.5, -8.5) -> (-9, -17) is outside; use a nearer dot
    y = dot_image(11, 12)  # offset (-1.5, -2.5) -> (-3, -5): col 10.5, row 8.5 (bilinear spread)
    out = warp(y, scale=2.0)[0, 0]
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centroid = (float((out * rows).sum() / out.sum()), float((out * cols).sum() / out.sum()))
    assert centroid == pytest.approx((8.5, 10.5), abs=1e-4)
    assert float(out.sum()) == pytest.approx(4.0, abs=1e-4)  # twice the size: four times the ink
    # shear kappa moves a point by kappa * dy horizontally: dy = -8.5, kappa = 2/8.5 -> 2 px left
    assert peak(warp(x, shear=2 / 8.5)) == (5, 7)


def test_erase_mask_and_random_erasing():
    m = erase_mask(torch.tensor([2]), torch.tensor([3]), torch.tensor([4]), torch.tensor([5]), 10, 12)
    expected = torch.zeros(1, 1, 10, 12, dtype=torch.bool)
    expected[..., 2:6, 3:8] = True
    assert torch.equal(m, expected)
    x = torch.ones(400, 1, 28, 28)
    torch.manual_seed(0)
    assert torch.equal(random_erasing(x, p=0.0), x)
    out = random_erasing(x, p=1.0)
    frac = 1 - out.flatten(1).mean(1)
    assert float(frac.min()) > 0.0 and float(frac.max()) <= 0.33 + 0.05
    assert float(frac.mean()) == pytest.approx((0.02 + 0.33) / 2, abs=0.04)  # U(0.02, 0.33) areas
    some = random_erasing(x, p=0.25)
    assert 0.18 < float((some.flatten(1).min(1).values == 0).float().mean()) < 0.32


def test_cross_dilation_and_erosion_by_hand():
    x = torch.zeros(1, 1, 4, 5)
    x[0, 0, 1, 1], x[0, 0, 2, 4] = 1.0, 0.5
    dilated = torch.zeros(4, 5)
    for r, c in [(0, 1), (1, 0), (1, 1), (1, 2), (2, 1)]:
        dilated[r, c] = 1.0
    for r, c in [(1, 4), (2, 3), (2, 4), (3, 4)]:  # (2, 5) is outside the image
        dilated[r, c] = 0.5
    assert torch.equal(cross_extremum(x, True)[0, 0], dilated)
    block = torch.zeros(1, 1, 5, 5)
    block[..., 1:4, 1:4] = 1.0
    eroded = torch.zeros(1, 1, 5, 5)
    eroded[..., 2, 2] = 1.0  # only the centre has all four neighbours inside the block
    assert torch.equal(cross_extremum(block, False), eroded)
    ones = torch.ones(1, 1, 3, 3)  # outside the image counts as background: the border erodes
    assert torch.equal(cross_extremum(ones, False)[0, 0], torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]))


def test_random_stroke_blends_each_image_towards_its_dilation_or_erosion():
    torch.manual_seed(0)
    one = torch.zeros(1, 1, 28, 28)
    one[..., 6:22, 13:15] = 0.8  # a vertical bar, 2 px wide
    x = one.repeat(2000, 1, 1, 1)
    assert torch.equal(random_stroke(x, 0.0), x)
    out = random_stroke(x, 0.5)
    d, e = cross_extremum(one, True).flatten(), cross_extremum(one, False).flatten()
    # thicker images gain ink, thinner lose it: solve out = x + t (D - x) or x + |t| (E - x) for t
    gain = (out.flatten(1) - one.flatten()).sum(1)
    t = torch.where(gain >= 0, gain / (d - one.flatten()).sum(), -gain / (e - one.flatten()).sum())
    target = torch.where((t >= 0).view(-1, 1), d, e)
    torch.testing.assert_close(out.flatten(1), one.flatten() + t.abs().view(-1, 1) * (target - one.flatten()))
    assert float(t.abs().max()) <= 0.5 + 1e-6
    assert float(t.mean()) == pytest.approx(0.0, abs=0.02)  # U(-0.5, 0.5): mean 0, std 0.5 / sqrt(3)
    assert float(t.std()) == pytest.approx(0.5 / math.sqrt(3), abs=0.01)
    # t ~ U(-3, 3) clipped to [-1, 1]: two thirds of the images are exactly their dilation or erosion
    full = random_stroke(x, 3.0).flatten(1)
    at_end = ((full == d).all(1) | (full == e).all(1)).float().mean()
    assert float(at_end) == pytest.approx(2 / 3, abs=0.04)


def test_clean_and_augmented_varies_the_strokes_first_with_its_strength():
    x = torch.rand(8, 1, 28, 28)
    still = dict(degrees=0.0, scale=(1.0, 1.0), translate=0.0, shear=0.0, erase_p=0.0)
    torch.manual_seed(3)
    _, aug = CleanAndAugmented(2, GreyParams(stroke=0.4, **still))(x)
    torch.manual_seed(3)
    torch.testing.assert_close(aug, random_stroke(x.repeat(2, 1, 1, 1), 0.4).clamp(0, 1), atol=1e-5, rtol=0)
    assert CleanAndAugmented(2).params.stroke == 0.5  # the default, on
    _, off = CleanAndAugmented(2, GreyParams(stroke=0.0, **still))(x)
    torch.testing.assert_close(off, x.repeat(2, 1, 1, 1), atol=1e-5, rtol=0)


def test_clean_and_augmented_pairs_the_clean_batch_with_repeats():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    clean, aug = CleanAndAugmented(3)(x)
    assert clean is x and aug.shape == (18, 1, 28, 28)
    assert float(aug.min()) >= 0 and float(aug.max()) <= 1
    assert not torch.equal(aug[:6], aug[6:12])  # independent copies of the same images
    crops = small_crops(x, 2)
    assert len(crops) == 2 and crops[0].shape == (6, 1, 16, 16)


# ----------------------------------------------------------------------------- SwAV
def test_multicrop_loss_reduces_to_swav_and_matches_hand_sum():
    torch.manual_seed(0)
    s = [torch.randn(8, 5) for _ in range(4)]
    q = [torch.softmax(torch.randn(8, 5), 1) for _ in range(2)]
    assert float(swav_multicrop_loss(s[:2], q, 0.1)) == pytest.approx(float(swav_loss(s[0], s[1], q[0], q[1], 0.1)), rel=1e-6)

    def ce(z, qq):
        return float(-(qq * torch.log_softmax(z / 0.1, 1)).sum(1).mean())
    hand = 0.5 * ((ce(s[1], q[0]) + ce(s[2], q[0]) + ce(s[3], q[0])) / 3
                  + (ce(s[0], q[1]) + ce(s[2], q[1]) + ce(s[3], q[1])) / 3)
    assert float(swav_multicrop_loss(s, q, 0.1)) == pytest.approx(hand, rel=1e-6)


def swav_reference(scores: np.ndarray, eps: float = 0.05, iters: int = 3) -> np.ndarray:
    """facebookresearch/swav distributed_sinkhorn, one process, float64."""
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(1, keepdims=True)
        q /= k
        q /= q.sum(0, keepdims=True)
        q /= b
    return (q * b).T


def test_swav_recipe_gets_the_solvers_declared_swav_regime():
    a = Assigner(TrainConfig(solver="sinkhorn-gpu", method="swav"), "swav")
    assert a.options["mode"] == "swav" and a.options["epsilon"] == 0.05
    torch.manual_seed(0)
    scores = F.normalize(torch.randn(64, 16), dim=1) @ F.normalize(torch.randn(10, 16), dim=1).T
    codes = a(Problem(scores=scores)).soft
    ref = swav_reference(scores.double().numpy(), iters=10)
    np.testing.assert_allclose(np.asarray(codes), ref, atol=1e-5)
    assert np.abs(ref - swav_reference(scores.double().numpy(), iters=3)).max() > 1e-3  # the count matters
    assert a.solver.max_iter == 10  # a fixed 10 in swav mode, not SeLa's tolerance with up to 1000
    paper = Assigner(TrainConfig(solver="sinkhorn-gpu", method="swav", solver_opt={"max_iter": 3}), "swav")
    np.testing.assert_allclose(np.asarray(paper(Problem(scores=scores)).soft),
                               swav_reference(scores.double().numpy(), iters=3), atol=1e-5)
    sela = Assigner(TrainConfig(solver="sinkhorn-gpu", method="sela"), "sela")
    assert sela.options.get("mode", "sela") == "sela" and sela.options["epsilon"] == 0.1
    user = Assigner(TrainConfig(solver="sinkhorn-gpu", solver_opt={"epsilon": 0.2}), "swav")
    assert user.options["epsilon"] == 0.2  # the user's value wins


def test_deepcluster_recipe_gets_kmeans_restarts():
    # the kmeans solver declares 20 restarts for DeepCluster (recipe_options): on 10 Gaussian
    # blobs (a 5 x 2 grid, 30 points each) the restarts reach the true partition's mean squared
    # distance, hand-computed from the blob labels, where the paper's single run stops in a
    # local optimum with two blobs merged; run 0 of the restarts is the single run, so 20 is never worse
    g = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 30)
    x = np.array([[10.0 * i, 10.0 * j] for i in range(5) for j in range(2)])[y] + g.normal(size=(300, 2))
    truth = sum(((x[y == k] - x[y == k].mean(0)) ** 2).sum() for k in range(10)) / 300
    problem = Problem(features=torch.tensor(x), n_clusters=10)
    for seed in range(4):
        dc = Assigner(TrainConfig(solver="kmeans", seed=seed), "deepcluster")
        one = Assigner(TrainConfig(solver="kmeans", seed=seed, solver_opt={"n_init": 1}), "deepcluster")
        assert dc.options["n_init"] == "auto" and one.options["n_init"] == 1  # the user's value wins
        best, single = dc(problem).objective, one(problem).objective
        assert best <= single + 1e-9
        if seed == 1:
            assert best == pytest.approx(truth, rel=1e-9) and single > 2 * truth
    assert Assigner(TrainConfig(solver="kmeans", method="sela"), "sela").options.get("n_init", 1) == 1
    # "auto": 20 restarts up to K = 100, then 2000 // K (restarts x K bounded), 1 from K = 2000
    from assignsolve_plugins.kmeans import KMeans, auto_restarts

    assert [auto_restarts(k) for k in (2, 10, 100, 101, 200, 1000, 2000, 10_000)] == [20, 20, 20, 19, 10, 2, 1, 1]
    assert dc(problem).extras["n_init_best"] < 20
    with pytest.raises(ValueError, match="n_init"):
        KMeans(n_init="many")


TINY = dict(limit=96, batch_size=32, encoder_opt={"width": 8}, hidden_dim=32, proj_dim=16,
            progress=False, n_clusters=4, epochs=1)


def test_prototypes_frozen_for_the_first_steps(tmp_path):
    import assignsolve.train as T

    seen = {}
    orig = T.SwAV.after_step

    def spy(self, ctx):
        seen.setdefault("w", []).append(ctx.model_heads["proto"].weight.detach().clone())
        orig(self, ctx)
    T.SwAV.after_step = spy
    try:
        run(TrainConfig(**TINY, solver="sinkhorn-gpu", out=str(tmp_path / "a"), freeze_prototypes=2))
    finally:
        T.SwAV.after_step = orig
    w = seen["w"]  # after steps 1, 2, 3 (96 / 32)
    assert len(w) == 3
    init = F.normalize(w[0], dim=1)
    torch.testing.assert_close(w[0], init)  # step 1: no prototype update at all
    torch.testing.assert_close(F.normalize(w[1], dim=1), init)
    assert (F.normalize(w[2], dim=1) - init).abs().max() > 1e-6  # step 3 moves them


def test_swav_multicrop_runs_and_trains(tmp_path):
    row = run(TrainConfig(**TINY, solver="sinkhorn-gpu", out=str(tmp_path / "m"), small_crops=2))
    assert math.isfinite(row["loss"])


def test_one_view_recipe_trains_on_every_grey_repeat(tmp_path, monkeypatch):
    # --repeats R with a one-view recipe (SeLa): the loss sees all R augmented copies of the
    # batch, each row paired with its own sample index (before: only the first copy, R ignored)
    import assignsolve.train as T

    seen = []
    orig = T.SeLa.loss

    def spy(self, ctx, out1, out2, idx):
        seen.append((out1["logits"][0].shape[0], idx.clone()))
        return orig(self, ctx, out1, out2, idx)
    monkeypatch.setattr(T.SeLa, "loss", spy)
    x = torch.rand(64, 1, 16, 16)
    path = tmp_path / "grey.npz"
    np.savez(path, images=(x.numpy() * 255).astype(np.uint8), labels=np.arange(64) % 4)
    run(TrainConfig(data=str(path), solver="sinkhorn-pot", method="sela", encoder="cnn", epochs=1, batch_size=32,
                    repeats=3, augment="grey", n_clusters=4, out=str(tmp_path / "r"), progress=False))
    assert [rows for rows, _ in seen] == [96, 96]
    for _, idx in seen:
        assert torch.equal(idx[:32], idx[32:64]) and torch.equal(idx[:32], idx[64:])
        assert idx[:32].unique().numel() == 32


def test_swav_recipe_uses_the_solvers_trusted_codes_on_gathered_rows():
    from assignsolve.train.recipes.swav import _fast_codes

    a = Assigner(TrainConfig(solver="sinkhorn-gpu", method="swav"), "swav")
    fn = _fast_codes(a.solver)
    assert fn is not None and fn.__self__.distributed is False and fn.__self__.mode == "swav"
    torch.manual_seed(1)
    scores = F.normalize(torch.randn(48, 16), dim=1) @ F.normalize(torch.randn(6, 16), dim=1).T
    np.testing.assert_allclose(fn(scores).double().numpy(), swav_reference(scores.double().numpy(), iters=10), atol=1e-5)
    pot = Assigner(TrainConfig(solver="sinkhorn-pot", method="swav"), "swav")
    assert _fast_codes(pot.solver) is None  # no codes(): the Problem path


def test_lr_schedule_sets_swavs_cosine_every_step_and_constant_by_default(tmp_path):
    import assignsolve.train as T
    from assignsolve.train.config import scheduled_lr

    assert scheduled_lr(0.4, "cosine", 0.0) == 0.4 and scheduled_lr(0.4, "cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert scheduled_lr(0.4, "cosine", 0.3) == pytest.approx(0.2 * (1 + math.cos(0.3 * math.pi)))
    assert scheduled_lr(0.4, "constant", 0.7) == 0.4
    seen = []
    orig = T.SwAV.after_step

    def spy(self, ctx):
        seen.append(ctx.optimizer.param_groups[0]["lr"])
        orig(self, ctx)
    T.SwAV.after_step = spy
    try:
        run(TrainConfig(**{**TINY, "epochs": 2}, solver="sinkhorn-gpu", out=str(tmp_path / "c"), lr=0.01,
                        lr_schedule="cosine"))
        cosine, seen[:] = list(seen), []
        run(TrainConfig(**TINY, solver="sinkhorn-gpu", out=str(tmp_path / "k"), lr=0.01))
    finally:
        T.SwAV.after_step = orig
    # 96 samples / batch 32 = 3 steps an epoch, 6 in all: step j at 0.01 (1 + cos(pi j / 6)) / 2
    assert cosine == pytest.approx([0.005 * (1 + math.cos(math.pi * j / 6)) for j in range(6)], rel=1e-12)
    assert seen == [0.01] * 3
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="lr_schedule: expected one of"):  # a plugin recipe's bad default
        scheduled_lr(0.4, "step", 0.5)
