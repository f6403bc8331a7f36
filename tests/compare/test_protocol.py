"""``compare``'s pure pieces: weighted centroid means, marginal error, the shared seeds,
non-finite rows and the typed ``NAME.key=value`` options (hand-computed references)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assignsolve.compare import (
    CompareError, centroid_update, drop_nonfinite, init_centroids, kmeans_plusplus, marginal_error,
    parse_solver_opts,
)


# --------------------------------------------------------------------------- pure pieces
def test_centroid_update_is_weighted_mean_and_keeps_empty_clusters():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3))
    q = rng.random((7, 3))
    q[:, 2] = 0.0
    prev = rng.normal(size=(3, 3))
    c = centroid_update(torch.from_numpy(x), torch.from_numpy(q), torch.from_numpy(prev)).numpy()
    for j in range(2):
        np.testing.assert_allclose(c[j], (q[:, j, None] * x).sum(0) / q[:, j].sum(), rtol=1e-12)
    np.testing.assert_array_equal(c[2], prev[2])


def test_marginal_error_hand_values():
    labels = torch.tensor([0, 0, 0, 1])  # sizes 3/4, 1/4 against 1/2, 1/2
    q = torch.nn.functional.one_hot(labels, 2).double()
    assert marginal_error(q) == pytest.approx(0.5)
    assert marginal_error(torch.full((6, 3), 1 / 3, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-15)


def test_shared_seeds_are_the_ops_kernel():
    """compare's C0 is ops.init_centroids from a generator seeded with --seed (the kmeans plugin's
    kernel); on far-apart groups the greedy D^2 draws pick one point of each group."""
    x = torch.tensor([[0.0, 0], [0.1, 0], [0, 0.1], [10, 10], [10.1, 10], [-10, 5]])
    groups = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2}
    for seed in range(5):
        idx = kmeans_plusplus(x, 3, torch.Generator().manual_seed(seed))
        assert sorted(groups[i] for i in idx.tolist()) == [0, 1, 2]
        c = init_centroids(x, 3, "kmeans++", torch.Generator().manual_seed(seed))
        np.testing.assert_array_equal(c.numpy(), x[idx].numpy())


def test_drop_nonfinite_reports_indices():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    x[3, 0], x[7, 1], x[8, 0] = np.nan, np.inf, -np.inf
    y = np.arange(10)
    xk, yk, kept, dropped = drop_nonfinite(x, y)
    assert dropped.tolist() == [3, 7, 8] and kept.tolist() == [0, 1, 2, 4, 5, 6, 9]
    np.testing.assert_array_equal(xk, x[kept])
    np.testing.assert_array_equal(yk, y[kept])


def test_parse_solver_opts():
    opts = parse_solver_opts(["sinkhorn-gpu.epsilon=0.05", "kmeans.init=kmeans++", "a.b.max_iter=3",
                              "x.device=None", "x.flag=True"])
    assert opts == {"sinkhorn-gpu": {"epsilon": 0.05}, "kmeans": {"init": "kmeans++"},
                    "a.b": {"max_iter": 3}, "x": {"device": None, "flag": True}}
    for bad in ["epsilon=0.05", "kmeans.init", ".x=1", "kmeans.=1"]:
        with pytest.raises(CompareError, match="expected NAME.key=value"):
            parse_solver_opts([bad])


def test_solver_opt_values_are_typed_like_run():
    from assignsolve.cli.options import parse_kv

    opts = parse_solver_opts(["kmeans.preprocess=false", "kmeans.max_iter=5", "kmeans.init='kmeans++'",
                              "sinkhorn-gpu.epsilon=0.05", "lp.tol=None", "coke.init=kmeans++"])
    assert opts["kmeans"] == {"preprocess": False, "max_iter": 5, "init": "kmeans++"}
    assert opts["kmeans"]["preprocess"] is False  # the string "false" would be truthy
    assert opts["sinkhorn-gpu"] == {"epsilon": 0.05} and opts["lp"] == {"tol": None}
    assert opts["coke"] == {"init": "kmeans++"}
    assert parse_kv(["preprocess=false", "max_iter=5"], "--solver-opt") == {"preprocess": False, "max_iter": 5}


# ------------------------------------------------ a plugin's invalid result is a failed row
import attrs as _attrs  # noqa: E402

from assignsolve import Assignment as _Assignment, BaseSolver as _BaseSolver  # noqa: E402
from assignsolve.compare.protocol import InvalidResultError, check_result, run_protocol  # noqa: E402


@_attrs.frozen
class _BadSoft(_BaseSolver):
    """Returns a chosen (invalid) soft assignment and claims convergence."""

    name = "bad-soft"
    needs = "scores"
    gpu = False
    requires_n_ge_k = False
    fill: float = float("nan")

    def solve(self, problem):
        n, k = problem.scores.shape
        soft = torch.full((n, k), self.fill, dtype=problem.scores.dtype)
        return _Assignment.for_problem(problem, labels=torch.zeros(n, dtype=torch.int64), soft=soft)


@pytest.mark.parametrize("fill, match", [(float("nan"), "NaN/inf"), (-0.5, "negative"), (0.5, "sum to 1")])
def test_invalid_soft_from_a_plugin_is_an_error_not_ok(fill, match):
    x = torch.randn(20, 4, dtype=torch.float64)
    with pytest.raises(InvalidResultError, match=match):
        run_protocol(_BadSoft(fill=fill), "scores", x, x[:3].clone(), 2)


def test_check_result_refuses_out_of_range_labels():
    class R:
        labels, soft = torch.tensor([0, 3]), None
    with pytest.raises(InvalidResultError, match=r"labels in 0\.\.2"):
        check_result(R(), 2, 3)
